"""Stands for an app's own settings module that refuses a bad value."""


def load_settings() -> dict[str, str]:
    raise RuntimeError("RESULTS_TABLE is not set")
