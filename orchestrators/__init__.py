"""The classification orchestration and the pure decisions it makes."""
