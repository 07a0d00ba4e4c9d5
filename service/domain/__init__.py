"""The rules of docs/rules.md, free of Flask and kombu."""
