"""Queue consumers and the scheduler."""
