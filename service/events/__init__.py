"""Outgoing events: subscriptions, the event outbox, its delivery and reminder mails (docs/events.md)."""
