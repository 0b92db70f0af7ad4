"""Detect: what differs between the database and the models."""
