"""The rules of CONTRACT.md section 2, free of Flask and kombu."""
