"""CPU time the host process spends per task of the real app, and per status poll.

On a 2-core machine every millisecond the host process (HTTP, episodes, SQLite, logging, pipes to the
workers) spends is taken from the forward passes in the worker processes, so this measures *CPU time*
(``/proc`` utime + stime), which a busy, shared machine does not distort the way it distorts throughput:

1. one ``GET statusQueryGetUri`` on its own (a client polls it many times per task): host CPU per request
   for a finished 1-image and a finished 8-image task, a few hundred requests in a row;
2. N 1-image and N 8-image tasks of the real app (``random:0`` weights, two worker processes: a value
   that means worker processes in checkouts before and after ``--workers 1`` changed meaning, so ``--repo``
   comparisons across that change compare the same setup), clients polling every 0.5 s: host CPU per task,
   polls and orchestrator episodes per task, and the host's CPU per task without its polls (a client
   polling every 50 ms adds latency / 50 ms polls of the cost measured in 1.); per host thread (event
   loop, store writer, log flusher, thread pool, worker pipes: the names come from ``py-spy dump``) when
   py-spy is given;
3. the host alone, without the app: HelloSequence5 orchestrations of ``tests/host/apps/bench`` (no-op
   activities, two worker processes): host CPU per orchestration;
4. with ``--py-spy``, a sampled profile of the host during each load phase, by category: only samples of
   the thread holding the GIL (Python work; system calls and waits are not in it), shares indicative only
   (py-spy samples wall-clock time and cannot always tell who holds the GIL).

    python benchmarks/host_cpu.py [--tasks 40] [--concurrency 4] [--py-spy /path/to/py-spy] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from system_benchmark import REPO_ROOT, SHARED_IMAGES, Client, cpu_seconds, host_processes, stage_photos

from durable_host.testing import HostProcess

TICK = os.sysconf("SC_CLK_TCK")
# The line the host logs after each episode of the app's orchestrator function.
EPISODE_LINE = "Executed 'Functions.classify_images'"

# Profile categories: a sample counts for the first rule any of its frames matches (outermost rules first
# would hide the cost inside them, so the specific costs come first).
CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    ("logging", re.compile(r"logging/__init__|durable_host/logs\.py")),
    ("task hub store (SQLite, writer thread)", re.compile(r"durable_host/store\.py|sqlite3")),
    ("orchestrator episodes (SDK replay)", re.compile(r"durable_host/episode\.py|durable_host/sdk_adapter\.py")),
    ("engine bookkeeping", re.compile(r"durable_host/(engine|lifecycle)\.py")),
    ("management API / status bodies", re.compile(r"durable_host/(management|status|operations)\.py")),
    ("app HTTP functions (starter, SDK client)", re.compile(r"durable_host/(http_triggers|invoke)\.py")),
    ("worker pipes (pickle, send, recv)", re.compile(r"durable_host/activities\.py|multiprocessing/")),
    ("aiohttp server (parse, respond)", re.compile(r"aiohttp/")),
    ("asyncio loop", re.compile(r"asyncio/")),
]
# Innermost frames of a thread that waits: the event loop's select, the log flusher's sleep, the store
# writer's and the pipe reader's blocking reads, idle pool threads.
IDLE = re.compile(
    r"^(EpollSelector\.select|_PollLikeSelector\.select|BufferedStreamHandler\._flusher|Store\._run|"
    r"Condition\.wait|_worker|wait) \("
)


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of ``pid`` so far."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def thread_names(pid: int, py_spy: str | None) -> dict[int, str]:
    """Python thread names by native thread id (py-spy dump prints both); empty without py-spy."""
    if not py_spy:
        return {}
    dump = subprocess.run([py_spy, "dump", "-p", str(pid)], capture_output=True, text=True, check=False).stdout
    return {int(tid): name for tid, name in re.findall(r'^Thread (\d+) \([a-z]+\): "([^"]*)"', dump, re.MULTILINE)}


def thread_group(name: str) -> str:
    """Pool threads (``worker_3``, ``asyncio_0``) counted together."""
    return re.sub(r"_\d+$", "_*", name)


def status_poll_cost(pid: int, url: str, requests_: int) -> float:
    """Host CPU ms of one ``GET statusQueryGetUri`` of a finished task (keep-alive, one client)."""
    http = requests.Session()
    http.get(url, timeout=30).raise_for_status()
    before = cpu_seconds({"host": pid})["host"]
    for _ in range(requests_):
        http.get(url, timeout=30)
    return (cpu_seconds({"host": pid})["host"] - before) * 1000.0 / requests_


def load_phase(
    host: HostProcess,
    blobs: list[str],
    size: int,
    tasks: int,
    concurrency: int,
    poll_interval: float,
    py_spy: str | None,
) -> dict[str, Any]:
    """``tasks`` tasks of ``size`` images, ``concurrency`` at a time: host CPU per task and per thread."""
    assert host.process is not None
    pid = host.process.pid
    client = Client(host.base_url, poll_interval)
    episodes_before = host.output.count(EPISODE_LINE)
    work = [[blobs[(t * size + i) % len(blobs)] for i in range(size)] for t in range(tasks)]
    threads_before = thread_cpu(pid)
    before = cpu_seconds({"host": pid})["host"]
    started = time.perf_counter()
    client.run(work, "resnet18", concurrency)
    wall = time.perf_counter() - started
    host_ms = (cpu_seconds({"host": pid})["host"] - before) * 1000.0
    time.sleep(0.2)  # the episodes' log lines are flushed every 50 ms
    episodes = host.output.count(EPISODE_LINE) - episodes_before
    threads_after = thread_cpu(pid)
    names = thread_names(pid, py_spy)
    per_thread: dict[str, float] = {}
    for tid, seconds in threads_after.items():
        group = thread_group(names.get(tid, f"thread {tid}"))
        per_thread[group] = per_thread.get(group, 0.0) + (seconds - threads_before.get(tid, 0.0)) * 1000.0 / tasks
    return {
        "task_size": size,
        "tasks": tasks,
        "concurrency": concurrency,
        "wall_s": wall,
        "host_cpu_ms_per_task": host_ms / tasks,
        "polls_per_task": client.polls / tasks,
        "episodes_per_task": episodes / tasks,
        "host_cpu_ms_per_thread_per_task": {
            k: v for k, v in sorted(per_thread.items(), key=lambda kv: -kv[1]) if v >= 0.05
        },
    }


def profile_summary(raw_path: Path) -> dict[str, float]:
    """Share of the host's busy samples per category, from py-spy's raw (collapsed stacks) output.

    py-spy cannot always tell idle threads here (it may count a thread blocked in ``select`` or
    ``sleep`` as running), so samples whose innermost frame is such a wait are left out.
    """
    total = 0
    shares: Counter[str] = Counter()
    for line in raw_path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if IDLE.search(stack.rsplit(";", 1)[-1]):
            continue
        samples = int(count)
        total += samples
        shares[next((name for name, rule in CATEGORIES if rule.search(stack)), "other")] += samples
    return {name: 100.0 * n / total for name, n in shares.most_common()} if total else {}


def engine_phase(repo: Path, hub: Path, orchestrations: int) -> dict[str, float]:
    """The host alone: HelloSequence5 (five no-op activities in a row) of ``tests/host/apps/bench``, with two
    worker processes, 16 started at a time: host CPU per orchestration, without any app cost or model."""
    with HostProcess(repo / "tests" / "host" / "apps" / "bench", extra_args=("--workers", "2"), hub_dir=hub) as host:
        assert host.process is not None
        mgmt = f"{host.base_url}/runtime/webhooks/durabletask"
        http = requests.Session()

        def run(prefix: str, count: int) -> None:
            for start in range(0, count, 16):
                ids = [f"{prefix}{i}" for i in range(start, min(start + 16, count))]
                for instance_id in ids:
                    http.post(f"{mgmt}/orchestrators/HelloSequence5/{instance_id}", timeout=30).raise_for_status()
                for instance_id in ids:
                    while http.get(f"{mgmt}/instances/{instance_id}", timeout=30).status_code != 200:
                        time.sleep(0.05)

        run("warm-", 16)
        before = cpu_seconds({"host": host.process.pid})["host"]
        run("seq-", orchestrations)
        cpu_ms = (cpu_seconds({"host": host.process.pid})["host"] - before) * 1000.0
    return {"orchestrations": orchestrations, "host_cpu_ms_per_orchestration": cpu_ms / orchestrations}


def measure(repo: Path, blobs: list[str], env: dict[str, str], hub: Path, args: argparse.Namespace) -> dict[str, Any]:
    """All the measurements on one host, running the host and the app of the checkout ``repo``."""
    report: dict[str, Any] = {"repo": str(repo), "engine": engine_phase(repo, hub / "engine", args.orchestrations)}
    with HostProcess(repo, env=env, hub_dir=hub) as host:
        assert host.process is not None
        pid = host.process.pid
        warm = Client(host.base_url, 0.01)
        warm.run([blobs[:size] for size in (1, 8, 1, 8)], "resnet18", 1)  # model load, first episodes, SQLite file
        finished = {}
        for size in (1, 8):
            response = requests.post(
                f"{host.base_url}/api/tasks",
                json={"model": "resnet18", "images": [{"blob": b} for b in blobs[:size]], "top_k": 5},
                timeout=60,
            )
            finished[size] = response.json()["statusQueryGetUri"]
            while requests.get(finished[size], timeout=30).json()["runtimeStatus"] != "Completed":
                time.sleep(0.05)
        report["status_poll_host_cpu_ms"] = {
            f"{size}-image task, finished": status_poll_cost(pid, url, args.polls) for size, url in finished.items()
        }
        report["processes"] = list(host_processes(pid))
        phases = []
        for size in (1, 8):
            profile = None
            raw = hub / "host-profile.txt"
            if args.py_spy:
                profile = subprocess.Popen(
                    [args.py_spy, "record", "--gil", "-p", str(pid), "-r", "200", "-f", "raw", "-o", str(raw)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1.0)
            phase = load_phase(host, blobs, size, args.tasks, args.concurrency, args.poll_interval, args.py_spy)
            if profile is not None:
                profile.send_signal(2)  # SIGINT: py-spy writes what it has
                profile.wait(timeout=60)
                phase["profile_percent_of_busy_samples"] = profile_summary(raw)
            phases.append(phase)
        report["load"] = phases
    poll_ms = max(report["status_poll_host_cpu_ms"].values())
    for phase in report["load"]:
        phase["host_cpu_ms_per_task_without_polls"] = phase["host_cpu_ms_per_task"] - phase["polls_per_task"] * poll_ms
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=40, help="tasks per load phase")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--polls", type=int, default=1000, help="status requests in a row per measurement")
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=0.5,
        help="seconds between a load client's polls: slow, so that the task's own cost dominates (the polls are "
        "measured on their own, and subtracted)",
    )
    parser.add_argument("--py-spy", dest="py_spy", help="py-spy executable: thread names and a profile")
    parser.add_argument(
        "--repo",
        type=Path,
        action="append",
        help="checkout whose host and app run (default: this one); give several, e.g. a `git worktree` of the "
        "commit before a change, to compare them in one run",
    )
    parser.add_argument("--orchestrations", type=int, default=400, help="HelloSequence5 runs of the host alone")
    parser.add_argument("--rounds", type=int, default=1, help="measure every checkout this many times, in turn")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    photos = sorted(SHARED_IMAGES.glob("*.jpg"))
    if not photos:
        raise SystemExit(f"no photos in {SHARED_IMAGES}; set SHARED_DIR")
    reports = []
    with tempfile.TemporaryDirectory() as tmp:
        blobs = stage_photos(photos, Path(tmp) / "blobs")
        env = {
            "FUNCTIONS_WORKER_PROCESS_COUNT": os.environ.get("FUNCTIONS_WORKER_PROCESS_COUNT", "2"),  # see 2. above
            "PYTHON_THREADPOOL_THREAD_COUNT": os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "16"),
            "BLOB_LOCAL_ROOT": str(Path(tmp) / "blobs"),
            "SQL_CONNECTION_STRING": f"sqlite:///{tmp}/results.db",
            "MODEL_WEIGHTS_RESNET18": "random:0",
            "MODEL_WEIGHTS_RESNET50": "random:0",
            "MODEL_PREWARM": "resnet18",
        }
        for round_ in range(args.rounds):
            for number, repo in enumerate(args.repo or [REPO_ROOT]):
                reports.append(measure(repo.resolve(), blobs, env, Path(tmp) / f"hub-{round_}-{number}", args))
    print(json.dumps(reports, indent=2))
    print("\n| host CPU, ms | " + " | ".join(r["repo"] for r in reports) + " |")
    print("|---|" + "---|" * len(reports))
    cells = " | ".join(f"{r['engine']['host_cpu_ms_per_orchestration']:.2f}" for r in reports)
    print(f"| host alone: one HelloSequence5 orchestration (6 episodes, 5 activities) | {cells} |")
    for key in reports[0]["status_poll_host_cpu_ms"]:
        print(
            f"| one status poll, {key} | "
            + " | ".join(f"{r['status_poll_host_cpu_ms'][key]:.3f}" for r in reports)
            + " |"
        )
    for n, phase in enumerate(reports[0]["load"]):
        for field, what in (
            ("host_cpu_ms_per_task", "per task"),
            ("polls_per_task", "polls per task"),
            ("episodes_per_task", "orchestrator episodes per task"),
            ("host_cpu_ms_per_task_without_polls", "per task without its polls"),
        ):
            cells = " | ".join(f"{r['load'][n][field]:.1f}" for r in reports)
            print(f"| {phase['task_size']}-image tasks x{phase['concurrency']}, {what} | {cells} |")
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
