"""Backups: verified copies of the database, retention."""
