"""Inference activity trigger and model prewarm: the model serving itself is ``activities.serving``.

Loading the app imports this module, not ``activities.serving``: with torch and torchvision, Microsoft's
worker library took 4.8 s and 874 MB to index the app on the 2-core test machine, without them 0.9 s and
85 MB (``docs/tuning_experiments_2026-11-24.txt``, section 15). So Azure's worker indexes the app (and
answers HTTP) without waiting for them, the prewarm thread imports them in the background, and the local
host's dispatcher, which runs no activity, never holds them. The price: a broken torch install no longer
fails the app's load (except in the local host's standalone role, which reports the weights at load); the
prewarm thread logs it, and each activity fails with it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import azure.durable_functions as df

from activities.lazy_imports import import_once
from contracts import INFERENCE_ACTIVITY, InferenceInput
from settings import get_settings

bp = df.Blueprint()
log = logging.getLogger(__name__)

PREWARM_THREAD = "model-prewarm"
#: The loggers that say what each model's weights are: the serving module's, the weights resolver's and the
#: model cache's ("loaded ..."). Early workers load while the dispatcher reports, so their lines would come first.
WEIGHTS_LOGGERS = ("activities.serving", "inference.weights", "inference.cache")
_APP_ROOT = Path(__file__).resolve().parent.parent
_SERVING = "activities.serving"


@bp.activity_trigger(input_name="payload", activity=INFERENCE_ACTIVITY)
def classify_batch(payload: dict) -> dict:  # type: ignore[type-arg]  # Azure's worker refuses dict[str, Any]
    import_once(_SERVING)
    from activities.serving import infer

    return infer(InferenceInput.from_json(payload)).to_json()


class _QuietPrewarm(logging.Filter):
    """Drops the prewarm thread's records below ERROR: the dispatcher's report already said them.

    Attached in the local host's worker and standalone processes only; on Azure each worker process
    reports for itself.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or record.threadName != PREWARM_THREAD


def _prewarm(models: tuple[str, ...]) -> None:
    try:
        import_once(_SERVING)
    except Exception:  # a broken install: said here once, and by every activity that needs it
        log.exception("could not import the model serving (torch, torchvision)")
        return
    from activities.serving import prewarm

    prewarm(models)


def start_prewarm() -> None:
    """Prepare the ``MODEL_PREWARM`` models so the first task does not pay for loading them.

    On Azure the models load on a background thread. The local host (``DURABLE_HOST_ROLE``) prints a
    function listing that should stay on screen, so the weights are reported synchronously, once, before
    it: by its dispatcher, which runs no activity and so loads nothing (a third copy of each model would
    cost a gigabyte), or by its single ``standalone`` process, which then loads them quietly in the
    background like the worker processes do.
    """
    models = get_settings().model_prewarm
    role = os.environ.get("DURABLE_HOST_ROLE")
    if not models:
        return
    if role == "dispatcher":
        report_weights_apart(models)
        return
    if role == "standalone":
        import_once(_SERVING)
        from activities.serving import report_weights

        report_weights(models)
    if role in ("worker", "standalone"):
        for name in WEIGHTS_LOGGERS:
            logging.getLogger(name).addFilter(_QuietPrewarm())
    threading.Thread(target=_prewarm, args=(models,), name=PREWARM_THREAD, daemon=True).start()


def report_weights_apart(models: tuple[str, ...]) -> None:
    """``activities.serving.report_weights`` run by a child process, its lines logged here as it logged them.

    Checking the weights needs torchvision (their file names, digests and labels); a child imports it and
    exits, so the dispatcher says the same lines at the same point of its start and never holds torch. As
    before, no time limit: a checkpoint named by blob is downloaded for the report, with its own timeouts.
    What the child writes to stderr (Python's warnings) is passed on as it was.
    """
    code = "import sys; from activities.serving import report_weights_as_json_lines as r; r(sys.argv[1:])"
    path = os.pathsep.join(filter(None, (str(_APP_ROOT), os.environ.get("PYTHONPATH"))))
    child = subprocess.run(
        [sys.executable, "-c", code, *models],
        cwd=_APP_ROOT,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    for line in child.stdout.splitlines():
        _relay(line)
    sys.stderr.write(child.stderr)
    if child.returncode != 0:
        log.error("checking the weights of %s failed (exit code %d)", ", ".join(models), child.returncode)


def _relay(line: str) -> None:
    """Log a record the child printed under its logger and level; any other line as it is."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    match record:
        case [str(name), int(level), str(text)] if not isinstance(level, bool):
            logging.getLogger(name).log(level, "%s", text)
        case _:
            log.info("%s", line)
