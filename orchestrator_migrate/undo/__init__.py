"""Undo: restore a backup, roll back by backup or by inverse SQL."""
