"""The first start on a machine without internet or weights: what the console shows, in which order.

The app runs in the real local host with torchvision's default weights, an empty ``TORCH_HOME`` and
a proxy that refuses every connection, so the download fails as it does on a locked-down build box.
With one process (``standalone``) and with worker processes (``dispatcher`` + ``worker``) the user must
see one line per model saying what to do, before the function listing, and no traceback, no
"downloading" line and no converter advisory, even after a task for those models has run.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
import requests

from durable_host.testing import HostProcess
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.host

REFUSING_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, so every download fails at once


@pytest.mark.parametrize("workers", ["0", "1", "2"])
def test_a_start_without_weights_says_once_per_model_what_to_do_before_the_listing(
    tmp_path: Path, shared_images_dir: Path, workers: str
) -> None:
    env = {
        "TORCH_HOME": str(tmp_path / "torch"),
        "BLOB_LOCAL_ROOT": str(tmp_path / "blobs"),
        "SQL_CONNECTION_STRING": f"sqlite:///{tmp_path / 'results.db'}",
        "MODEL_WEIGHTS_RESNET18": "IMAGENET1K_V1",
        "MODEL_WEIGHTS_RESNET50": "IMAGENET1K_V2",
        "MODEL_PREWARM": "resnet18,resnet50",
        "HTTPS_PROXY": REFUSING_PROXY,
        "https_proxy": REFUSING_PROXY,
        "ACTIVITY_RETRY_INTERVAL_MS": "100",
    }
    photo = next(iter(sorted(shared_images_dir.glob("*.jpg"))))
    with HostProcess(REPO_ROOT, env=env, extra_args=("--workers", workers), startup_timeout=120) as host:
        body = {
            "images": [{"name": photo.name, "data": base64.b64encode(photo.read_bytes()).decode()}],
            "models": ["resnet18", "resnet50"],
        }
        started = requests.post(f"{host.base_url}/api/tasks", json=body, timeout=30)
        assert started.status_code == 202, started.text
        status_url = started.json()["statusQueryGetUri"]
        deadline = time.monotonic() + 120
        while (status := requests.get(status_url, timeout=30).json())["runtimeStatus"] in ("Pending", "Running"):
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        time.sleep(0.3)  # the console is flushed every 50 ms
        lines = host.output.splitlines()

    assert status["output"]["status"] == "Failed", status
    (image,) = status["output"]["images"]
    for model in ("resnet18", "resnet50"):
        assert "TORCH_HOME" in image["predictions"][model]["error"], status["output"]
    listing = lines.index("Functions:")
    for model, env_var in (("resnet18", "MODEL_WEIGHTS_RESNET18"), ("resnet50", "MODEL_WEIGHTS_RESNET50")):
        said = [i for i, line in enumerate(lines) if f"{model} is not loaded" in line]
        assert len(said) == 1, lines
        assert said[0] < listing and env_var in lines[said[0]], lines
    assert not [line for line in lines if "Traceback" in line or "downloading" in line], lines
    assert not [line for line in lines if "expected_type" in line], lines
