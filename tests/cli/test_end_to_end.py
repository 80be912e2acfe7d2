"""``classify`` against the real app on the local Durable Functions host, through its HTTP API only."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from classifier_cli.api import ApiError
from durable_host.testing import HostProcess, free_port
from tests.cli.conftest import Classify, Run, photos

pytestmark = pytest.mark.host

BOTH_MODELS = ("-m", "resnet18", "-m", "resnet50")


def task_ids(run: Run) -> list[str]:
    return re.findall(
        r"^task ([0-9a-f]{32}) · (?:Completed|CompletedWithErrors|Failed)\s*$", run.stdout, flags=re.MULTILINE
    )


def table_lines(run: Run, image: str) -> list[str]:
    return [line for line in run.stdout.splitlines() if f" {image} " in line]


@pytest.fixture(scope="module")
def photo_run(app_host: HostProcess, shared_images_dir: Path) -> tuple[Run, str]:
    """The shared photos through both models, with the CLI as a real subprocess (as a user runs it)."""
    classify = Classify(app_host.base_url)
    run = classify.subprocess("submit", str(shared_images_dir), *BOTH_MODELS, "-k", "3")
    [task_id] = task_ids(run)
    return run, task_id


def test_submit_uploads_follows_and_prints_every_photo_through_both_models(
    photo_run: tuple[Run, str], shared_images_dir: Path
) -> None:
    run, _ = photo_run
    assert run.exit_code == 0, run.stderr
    for name in photos(shared_images_dir):
        lines = table_lines(run, name)
        assert len(lines) == 2, run.stdout
        for model, line in zip(("resnet18", "resnet50"), lines, strict=True):
            assert model in line and "RANDOM (seed 0)" in line
            assert re.search(r" 0\.\d{3} ", line), line  # a top-1 probability
    assert re.search(r"timings: queue \d+ ms · preprocess \d+ ms · inference \d+ ms · total \d+ ms", run.stdout)
    assert "Traceback" not in run.stderr


def test_submit_shows_progress_from_custom_status(photo_run: tuple[Run, str]) -> None:
    run, task_id = photo_run
    assert "submitting task 1/1: 5 image(s)" in run.stderr
    assert re.search(r"progress: (preprocessing|inference) · tasks 0/1 · \d/5 images", run.stderr), run.stderr
    assert f"task {task_id} ended: Completed · task Completed" in run.stderr
    assert "progress: done · tasks 1/1 · 5/5 images" in run.stderr
    assert re.search(r"done · tasks 1/1 ━+ 5/5 images", run.stderr)  # the bar as last drawn
    assert "predictions" not in run.stderr  # one unit, images, from start to end


def test_status_result_list_and_purge_on_a_real_task(
    classify: Classify, photo_run: tuple[Run, str], shared_images_dir: Path
) -> None:
    _, task_id = photo_run
    status = classify("status", task_id)
    assert status.exit_code == 0
    assert f"task {task_id}: Completed · task Completed (classify_images)" in status.stdout
    assert "progress: done 5/5 images" in status.stdout
    assert all(len(table_lines(status, name)) == 2 for name in photos(shared_images_dir))

    listed = classify("list", "--status", "Completed", "--json")
    assert listed.exit_code == 0
    assert task_id in [item["instanceId"] for item in json.loads(listed.stdout)]
    running = classify("list", "--status", "Running,Pending", "--json")
    assert task_id not in [item["instanceId"] for item in json.loads(running.stdout)]
    table = classify("list")
    assert any(task_id in line and "Completed" in line for line in table.stdout.splitlines())

    purged = classify("purge", task_id)
    assert purged.exit_code == 0 and "purged the history" in purged.stdout
    gone = classify("status", task_id)
    assert gone.exit_code == 2 and f"error: no task with id '{task_id}'" in gone.stderr
    not_waited = classify("wait", task_id)
    assert not_waited.exit_code == 2 and f"error: no task with id '{task_id}'" in not_waited.stderr
    again = classify("purge", task_id)
    assert again.exit_code == 2 and f"error: no task with id '{task_id}'" in again.stderr

    stored = classify("result", task_id)  # the persisted result outlives the purged history
    assert stored.exit_code == 0
    assert re.search(rf"task {task_id} \(TaskID \d+\): Completed · 5 image\(s\)", stored.stdout)
    assert all(len(table_lines(stored, name)) == 2 for name in photos(shared_images_dir))
    as_json = json.loads(classify("result", task_id, "--json").stdout)
    assert as_json["instance_id"] == task_id and len(as_json["results"]) == 10


def test_a_folder_bigger_than_a_batch_becomes_several_tasks_followed_together(
    classify: Classify, shared_images_dir: Path
) -> None:
    run = classify("submit", str(shared_images_dir), "--batch", "2", "-k", "1", "--json")
    assert run.exit_code == 0, run.stderr
    statuses = json.loads(run.stdout)
    assert [s["runtimeStatus"] for s in statuses] == ["Completed"] * 3
    names = [image["name"] for s in statuses for image in s["output"]["images"]]
    assert names == photos(shared_images_dir)
    assert all(len(image["predictions"]["resnet18"]["top_k"]) == 1 for s in statuses for image in s["output"]["images"])

    ids = [s["instanceId"] for s in statuses]
    waited = classify("wait", *ids)  # several ids: one bar, a line per task, one summary table
    assert waited.exit_code == 0, waited.stderr
    assert waited.stdout.count("5 image(s) in 3 task(s): 0 failed") == 1
    assert all(len(table_lines(waited, name)) == 1 for name in photos(shared_images_dir))
    assert [line for line in waited.stdout.splitlines() if line.startswith("task ")] == [
        f"task {instance_id} · Completed" for instance_id in ids
    ]
    assert "weights: resnet18 RANDOM (seed 0)" in waited.stdout
    assert "progress: done · tasks 3/3 · 5/5 images" in waited.stderr
    detailed = classify("wait", *ids, "--details")  # and each task's full table before the summary
    assert detailed.exit_code == 0
    assert task_ids(detailed) == ids * 2  # the full tables' titles, then the summary's lines
    assert all(len(table_lines(detailed, name)) == 2 for name in photos(shared_images_dir))


def test_a_file_that_is_not_an_image_shows_the_apis_error_and_exits_1(
    classify: Classify, shared_images_dir: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "holiday.jpg"
    bad.write_text("this is text, not a JPEG")
    run = classify("submit", str(shared_images_dir / "rocket.jpg"), str(bad))
    assert run.exit_code == 1, run.stderr
    [bad_line] = table_lines(run, "holiday.jpg")
    assert (
        "not a supported image (JPEG, PNG, GIF, BMP, TIFF, WEBP, AVIF): "
        'unrecognised data starting with "this is text, no"' in bad_line
    )
    assert "b'" not in bad_line
    [good_line] = table_lines(run, "rocket.jpg")
    assert "RANDOM (seed 0)" in good_line
    [task_id] = task_ids(run)

    status = classify("status", task_id)  # the orchestration completed; the task did not fully
    assert status.exit_code == 1
    assert f"task {task_id}: Completed · task CompletedWithErrors" in status.stdout
    newest = json.loads(classify("list", "--top", "5", "--json").stdout)
    # createdTime has whole seconds, so tasks submitted just before may tie with this one
    assert task_id in [item["instanceId"] for item in newest if item["createdTime"] == newest[0]["createdTime"]]
    with_errors = json.loads(classify("list", "--outcome", "CompletedWithErrors,Failed", "--json").stdout)
    assert task_id in [item["instanceId"] for item in with_errors]
    assert all(item["output"]["status"] != "Completed" for item in with_errors)
    clean = json.loads(classify("list", "--outcome", "completed", "--json").stdout)
    assert task_id not in [item["instanceId"] for item in clean]
    assert all(item["output"]["status"] == "Completed" for item in clean)


def test_terminate_wait_and_a_wait_that_times_out(classify: Classify, shared_images_dir: Path, tmp_path: Path) -> None:
    for copy in range(6):  # enough work that the task is still running when terminated
        for photo in shared_images_dir.glob("*.jpg"):
            shutil.copy(photo, tmp_path / f"{copy}-{photo.name}")
    submitted = classify("submit", str(tmp_path), "--batch", "30", *BOTH_MODELS, "--no-follow", "--json")
    assert submitted.exit_code == 0, submitted.stderr
    [task] = json.loads(submitted.stdout)
    assert task["statusQueryGetUri"].startswith(classify.base_url)

    impatient = classify("wait", task["id"], "--timeout", "0")
    assert impatient.exit_code == 2 and f"error: still running after 0 s: {task['id']}" in impatient.stderr

    terminated = classify("terminate", task["id"], "--reason", "test stop")
    assert terminated.exit_code == 0 and f"termination of task {task['id']} requested" in terminated.stdout
    waited = classify("wait", task["id"], "--timeout", "60")
    assert waited.exit_code == 1
    assert f"task {task['id']}: Terminated" in waited.stdout and "test stop" in waited.stdout
    again = classify("terminate", task["id"])
    assert again.exit_code == 2 and again.stderr.startswith(f"error: task {task['id']!r} has already ended")
    never_stored = classify("result", task["id"])
    assert never_stored.exit_code == 2
    assert f"error: task {task['id']!r} ended as Terminated (test stop); its result was not persisted" in (
        never_stored.stderr
    )
    assert "still running" not in never_stored.stderr


def test_an_unknown_model_shows_the_apis_400_message_and_exits_2(classify: Classify, shared_images_dir: Path) -> None:
    run = classify.subprocess("submit", str(shared_images_dir / "rocket.jpg"), "-m", "resnet99")
    assert run.exit_code == 2
    assert "error: unknown model 'resnet99'" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout


def test_a_missing_path_is_refused_locally(classify: Classify, tmp_path: Path) -> None:
    run = classify("submit", str(tmp_path / "nope.jpg"))
    assert run.exit_code == 2 and f"error: no such file or folder: {tmp_path / 'nope.jpg'}" in run.stderr
    assert "submitting" not in run.stderr


def test_an_unreachable_app_gets_the_friendly_message(shared_images_dir: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    run = Classify(url).subprocess("submit", str(shared_images_dir / "rocket.jpg"), timeout=30)
    assert run.exit_code == 2
    assert run.stderr.strip().endswith(f"error: cannot reach {url} — is the app running? (make run)")
    assert "Traceback" not in run.stderr


def test_debug_keeps_the_traceback_for_whoever_asks() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    plain = Classify(url)("status", "abc")
    assert plain.exit_code == 2 and plain.stderr == f"error: cannot reach {url} — is the app running? (make run)\n"
    with pytest.raises(ApiError, match="cannot reach"):
        Classify(url)("--debug", "status", "abc")


def test_a_folder_of_several_tasks_shows_one_bar_and_one_summary_row_per_image(
    classify: Classify, shared_images_dir: Path, tmp_path: Path
) -> None:
    shutil.copytree(shared_images_dir, tmp_path, dirs_exist_ok=True)
    (tmp_path / "notes.png").write_text("hello\n")
    run = classify("submit", str(tmp_path), "--batch", "2", "-k", "1", "--interval", "0.05")
    assert run.exit_code == 1, run.stderr
    assert "6 image(s) in 3 task(s): 1 failed" in run.stdout
    rows = [line for line in run.stdout.splitlines() if re.search(r"\.(jpg|png) ", line)]
    assert len(rows) == 6 and "notes.png" in rows[0]  # one row per image, failures first
    assert (
        'not a supported image (JPEG, PNG, GIF, BMP, TIFF, WEBP, AVIF): unrecognised data starting with "hello"'
        in rows[0]
    )
    done = [int(n) for n in re.findall(r"^progress: .* · (\d)/6 images$", run.stderr, flags=re.MULTILINE)]
    assert done == sorted(done) and done[-1] == 6, run.stderr  # one bar in images, never back to 0
    assert "predictions" not in run.stderr


def test_list_refuses_a_status_the_api_would_ignore_and_takes_any_case(classify: Classify) -> None:
    """The API drops a runtime status it does not know and then filters on none: a typo listed every task."""
    typo = classify("list", "--status", "Runnin")
    assert typo.exit_code == 2 and "Runnin" in typo.stderr and "choose from Pending, Running" in typo.stderr
    lower = classify("list", "--status", "completed", "--json")
    assert lower.exit_code == 0 and all(item["runtimeStatus"] == "Completed" for item in json.loads(lower.stdout))


def test_wait_prints_the_tasks_that_ended_before_one_that_is_unknown(
    classify: Classify, shared_images_dir: Path
) -> None:
    submitted = classify("submit", str(shared_images_dir / "rocket.jpg"), "--no-follow", "--json")
    task_id = json.loads(submitted.stdout)[0]["id"]
    assert classify("wait", task_id).exit_code == 0
    run = classify("wait", task_id, "no-such-task")
    assert run.exit_code == 2
    assert f"task {task_id} · Completed" in run.stdout and "no-such-task" in run.stderr


def test_a_task_waiting_in_its_session_shows_as_pending_to_status_and_wait(
    classify: Classify, shared_images_dir: Path, tmp_path: Path
) -> None:
    """Until its turn the task has no instance (404): status and wait find it in its session's queue."""
    for copy in range(4):  # a head task that runs for a few seconds
        for photo in shared_images_dir.glob("*.jpg"):
            shutil.copy(photo, tmp_path / f"{copy}-{photo.name}")
    session = f"cli-{free_port()}"
    head = classify("submit", str(tmp_path), "--batch", "30", *BOTH_MODELS, "--session", session, "--no-follow")
    second = classify("submit", str(shared_images_dir / "rocket.jpg"), "--session", session, "--no-follow", "--json")
    assert head.exit_code == 0 and second.exit_code == 0, head.stderr + second.stderr
    [task] = json.loads(second.stdout)
    waiting = classify("status", task["id"], "--json")
    assert waiting.exit_code == 0, waiting.stderr
    document = json.loads(waiting.stdout)
    assert document["runtimeStatus"] == "Pending", document  # the head's 40 images take seconds
    assert document["customStatus"]["stage"] == f"queued in session {session}, 1 task(s) ahead"
    followed = classify("wait", task["id"], "--timeout", "120")
    assert followed.exit_code == 0 and f"task {task['id']}" in followed.stdout


def test_ctrl_c_exits_130_outside_following_too(classify: Classify, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shell reports a process ended by SIGINT as 130; click's own "Aborted!" exit 1 means "an image failed"."""

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("classifier_cli.api.ClassifierClient.instances", interrupted)
    run = classify("list")
    assert run.exit_code == 130 and run.stderr == "error: interrupted\n"
