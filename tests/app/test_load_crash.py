"""The short form of the soak (``benchmarks/soak.py``, ``make soak``) that stays in CI: 20 tasks submitted at
once to the app on the local host with two worker processes, one SIGKILL of the host mid-run and a restart.

Every task must complete exactly once (one InferenceTasks row each, with the TaskID its output names, and one
InferenceResults row per image), no request may answer 5xx, and nothing may be left in the tensor (or upload)
container.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.soak import SoakConfig, run

pytestmark = [pytest.mark.host, pytest.mark.slow]


def test_twenty_tasks_and_a_sigkill_every_task_completes_exactly_once(tmp_path: Path) -> None:
    report = run(SoakConfig(tasks=20, kills=1, images=2, fuzz=0, workers=2), tmp_path)
    assert report.problems == []
    (kill,) = report.kills
    assert kill.unfinished > 0, f"every task had ended before the kill: the test proves nothing ({kill})"
    assert report.server_errors == 0 and report.statuses["2xx"] >= 20
    assert (report.tensors_left, report.uploads_left) == (0, 0)
