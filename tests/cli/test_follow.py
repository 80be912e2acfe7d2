"""Following several tasks without a server: canned status documents stand in for the management API."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from classifier_cli import main
from classifier_cli.api import ClassifierClient
from tests.cli.conftest import COLUMNS
from tests.cli.test_render import OUTPUT

pytestmark = pytest.mark.unit

DONE = {"runtimeStatus": "Completed", "output": OUTPUT}
CLEAN = {
    "runtimeStatus": "Completed",
    "output": {**copy.deepcopy(OUTPUT), "status": "Completed", "images": OUTPUT["images"][:1]},
}
RUNNING = {"runtimeStatus": "Running", "customStatus": {"stage": "preprocessing", "images_total": 4}}


def test_ctrl_c_prints_the_finished_tasks_summary_and_how_to_follow_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    statuses = {"a" * 32: DONE, "b" * 32: RUNNING, "c" * 32: CLEAN, "d" * 32: RUNNING}

    def status(self: ClassifierClient, instance_id: str) -> dict[str, Any]:
        return {"instanceId": instance_id, **statuses[instance_id]}

    def ctrl_c(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ClassifierClient, "status", status)
    monkeypatch.setattr(main.time, "sleep", ctrl_c)
    run = CliRunner().invoke(main.cli, ["wait", *statuses], env={"COLUMNS": COLUMNS}, catch_exceptions=False)

    assert run.exit_code == 130
    assert f"task {'a' * 32} · CompletedWithErrors" in run.stdout and f"task {'c' * 32} · Completed" in run.stdout
    assert "4 image(s) in 2 task(s): 2 failed" in run.stdout  # the summary of the two that finished
    assert "bbbb" not in run.stdout
    assert run.stderr.endswith(
        f"error: interrupted: {'b' * 32}, {'d' * 32} not followed to the end (the tasks run on; "
        f"follow them with: classify wait {'b' * 32} {'d' * 32})\n"
    )
    assert "progress: preprocessing · tasks 2/4 · 4/12 images" in run.stderr


def test_ctrl_c_between_submissions_names_the_tasks_already_submitted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(b"not decoded locally")
    answers: list[Any] = [{"id": "1" * 32, "statusQueryGetUri": "unused"}, KeyboardInterrupt()]

    def submit(self: ClassifierClient, payload: dict[str, Any]) -> dict[str, Any]:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    monkeypatch.setattr(ClassifierClient, "submit", submit)
    run = CliRunner().invoke(main.cli, ["submit", str(tmp_path), "--batch", "2"], catch_exceptions=False)
    assert run.exit_code == 130
    assert run.stderr.endswith(
        f"error: interrupted while submitting: {'1' * 32} submitted (the tasks run on; "
        f"follow them with: classify wait {'1' * 32})\n"
    )
