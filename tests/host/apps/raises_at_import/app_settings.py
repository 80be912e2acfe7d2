"""Stands for an app's own settings module that refuses a missing value."""

import os


def load_settings() -> dict[str, str]:
    try:
        return {"table": os.environ["RESULTS_TABLE_FOR_THIS_TEST"]}
    except KeyError as exc:
        raise RuntimeError("RESULTS_TABLE is not set") from exc
