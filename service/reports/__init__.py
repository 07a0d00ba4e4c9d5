"""Follow-up: why each result of an employee did what it did, the expiring and coverage reports."""
