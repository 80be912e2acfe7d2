"""Every shell example in README.md runs as written against the app, as a new user would run it.

The app is started the way ``make run`` starts it (the local host on this folder), with seeded random
weights because nothing can be downloaded here. Each ```bash block then runs in bash from the
repository root, failing on the first failing command. Three things are rewritten, each to the value
it stands for: ``http://127.0.0.1:7071`` to this host's address, ``.localdata/blobs`` to this test's
blob folder, ``../shared`` to the shared material. A block can be left out only with a
``<!-- readme-test: skip, REASON -->`` line right above it, and the reason is reported.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from durable_host.testing import HostProcess
from tests.fixtures.app_host import RANDOM_WEIGHTS, local_state

pytestmark = pytest.mark.host

REPO_ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(?:<!-- readme-test: skip, (?P<skip>.*?) -->\n)?```bash\n(?P<body>.*?)```", re.S)


class Example(NamedTuple):
    line: int
    body: str
    skip: str | None


def examples() -> list[Example]:
    text = (REPO_ROOT / "README.md").read_text()
    return [
        Example(text.count("\n", 0, m.start("body")), m.group("body"), m.group("skip")) for m in BLOCK.finditer(text)
    ]


@pytest.fixture(scope="module")
def readme_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HostProcess, Path]]:
    data = tmp_path_factory.mktemp("readme")
    env = {
        **RANDOM_WEIGHTS,
        **local_state(data),
    }
    with HostProcess(REPO_ROOT, env=env, hub_dir=data / "hub") as host:
        yield host, data / "blobs"


def test_the_readme_has_runnable_examples() -> None:
    runnable = [example for example in examples() if example.skip is None]
    assert len(runnable) >= 4, "the README lost its examples, or this test lost track of them"


@pytest.mark.parametrize("example", examples(), ids=lambda e: f"README line {e.line}")
def test_a_readme_example_runs_as_written(
    example: Example, readme_host: tuple[HostProcess, Path], shared_images_dir: Path
) -> None:
    if example.skip is not None:
        pytest.skip(example.skip)
    host, blobs = readme_host
    script = (
        example.body.replace("http://127.0.0.1:7071", host.base_url)
        .replace(".localdata/blobs", str(blobs))
        .replace("../shared", str(shared_images_dir.parent))
    )
    env = {**os.environ, "CLASSIFIER_URL": host.base_url}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"README line {example.line}:\n{example.body}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stdout + done.stderr
