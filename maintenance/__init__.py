"""Retention: the sweep of tasks' temporary blobs and the purge of finished instances (issue 11)."""
