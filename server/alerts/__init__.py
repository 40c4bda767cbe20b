"""Alerts to animal-care staff: rules, alert state machine, durable notification outbox, channels."""
