"""Preprocess activity trigger: the work (Pillow, torch, torchvision) is ``activities.preprocessing``, imported
by the first batch, so loading the app does not wait for those libraries (see ``activities.inference``)."""

from __future__ import annotations

import azure.durable_functions as df

from activities.lazy_imports import import_once
from contracts import PREPROCESS_ACTIVITY, PreprocessBatchInput

bp = df.Blueprint()


@bp.activity_trigger(input_name="payload", activity=PREPROCESS_ACTIVITY)
def preprocess_images(payload: dict) -> dict:  # type: ignore[type-arg]  # Azure's worker refuses dict[str, Any]
    import_once("activities.preprocessing")
    from activities.preprocessing import preprocess_batch

    return preprocess_batch(PreprocessBatchInput.from_json(payload)).to_json()
