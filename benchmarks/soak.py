"""Load, crash and fuzz soak of the whole app on the local host; exits 1 when anything is wrong.

    python benchmarks/soak.py [--tasks 200] [--kills 5] [--images 2] [--fuzz 2000] [--workers 2] [--seed 11]
                              [--json PATH]

1. **Load and crashes.** The app (``function_app.py``) runs on ``durable_host`` with worker processes, a fresh
   blob folder, SQLite file and task hub, and ResNet18 with seeded random weights (no download; the same
   FLOPs as the real ones). All tasks (each with ``--images`` synthetic JPEGs sent inline) are submitted at
   once from 16 threads; then the host is SIGKILLed ``--kills`` times at random points of the run (when a
   randomly chosen number of tasks has completed) and restarted on the same hub.
2. **Exactly once.** Every task must end Completed with every image classified, with exactly one
   ``InferenceTasks`` row (the TaskID its output names) and one ``InferenceResults`` row per image, and
   nothing may be left in the tensor or upload containers.
3. **Fuzz.** ``--fuzz`` malformed or hostile requests, in 8 threads, to every endpoint of the app and of the
   management API (random bytes, broken and mutated JSON, odd content types, query strings and ids); none
   may answer 5xx or take longer than 30 s, an ``/api`` error must be JSON, the instances they started must
   all end, and the host must still answer.

Any 5xx during the whole run, a hang, or a check that fails is listed under "problems".
``tests/app/test_load_crash.py`` runs the short form in CI (20 tasks, one kill); ``make soak`` the long one.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from PIL import Image
from sqlalchemy import func, select

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from durable_host.testing import HostProcess  # noqa: E402
from storage.database import get_engine  # noqa: E402
from storage.models import InferenceResult, InferenceTask  # noqa: E402

MGMT = "/runtime/webhooks/durabletask"
REQUEST_TIMEOUT_S = 30.0  # a request that takes longer is a hang
TERMINAL = {"Completed", "Failed", "Terminated", "Canceled"}
MODEL = "resnet18"


@dataclass(frozen=True)
class SoakConfig:
    tasks: int = 200
    kills: int = 5
    images: int = 2  # per task
    fuzz: int = 2000
    workers: int = 2
    seed: int = 11
    timeout_s: float = 600.0  # for all tasks to finish after the last restart


@dataclass
class Kill:
    completed_before: int  # tasks Completed when the host was killed
    unfinished: int  # tasks not yet ended at the kill
    restart_s: float  # from the SIGKILL until the restarted host answered


@dataclass
class SoakReport:
    config: SoakConfig
    kills: list[Kill] = field(default_factory=list)
    load_seconds: float = 0.0  # from the first submission until every task ended
    images_per_second: float = 0.0
    fuzz_seconds: float = 0.0
    requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)  # "2xx": n, ...
    fuzz_statuses: dict[str, int] = field(default_factory=dict)
    connection_errors: int = 0  # refused or reset while the host was down (the client polls again)
    tensors_left: int = 0
    uploads_left: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return self.statuses.get("5xx", 0)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "server_errors": self.server_errors}


class Traffic:
    """Every HTTP request of the run goes through here, so that no 5xx and no hang can go unnoticed."""

    def __init__(self, report: SoakReport) -> None:
        self.report = report
        self.lock = threading.Lock()
        self.statuses: Counter[str] = Counter()
        self.fuzz_statuses: Counter[str] = Counter()

    def send(self, method: str, url: str, *, fuzz: bool = False, **kwargs: Any) -> requests.Response | None:
        """The response; None when the host is not reachable (while it is down)."""
        started = time.monotonic()
        try:
            response = requests.request(method, url, timeout=REQUEST_TIMEOUT_S, **kwargs)
        except requests.Timeout:
            self.problem(f"hang: {method} {url[:200]} took over {REQUEST_TIMEOUT_S} s")
            return None
        except requests.ConnectionError:
            with self.lock:
                self.report.connection_errors += 1
            return None
        status = f"{response.status_code // 100}xx"
        with self.lock:
            self.report.requests += 1
            self.statuses[status] += 1
            if fuzz:
                self.fuzz_statuses[str(response.status_code)] += 1
        if response.status_code >= 500:
            body = kwargs.get("data") or kwargs.get("json")
            self.problem(
                f"{response.status_code} for {method} {url[:200]} (body {str(body)[:120]!r}, "
                f"{time.monotonic() - started:.1f} s): {response.text[:300]}"
            )
        return response

    def problem(self, text: str) -> None:
        with self.lock:
            self.report.problems.append(text)

    def close(self) -> None:
        self.report.statuses = dict(sorted(self.statuses.items()))
        self.report.fuzz_statuses = dict(sorted(self.fuzz_statuses.items(), key=lambda item: int(item[0])))


def synthetic_jpegs(count: int, rng: random.Random) -> list[bytes]:
    """Small noise photos: decoding and the reference transform run as for a real one."""
    photos = []
    for _ in range(count):
        width, height = rng.randint(96, 320), rng.randint(96, 320)
        image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
        photos.append(buffer.getvalue())
    return photos


def app_env(data: Path) -> dict[str, str]:
    return {
        "BLOB_LOCAL_ROOT": str(data / "blobs"),
        "SQL_CONNECTION_STRING": f"sqlite:///{data / 'results.db'}",
        "MODEL_WEIGHTS_RESNET18": "random:0",
        "MODEL_PREWARM": MODEL,
        "INFERENCE_BATCH_SIZE": "4",
        "ACTIVITY_RETRY_INTERVAL_MS": "200",
        "SYNC_WAIT_MAX_SECONDS": "2",  # fuzzed ?wait= values must not hold requests open for long
    }


class Soak:
    def __init__(self, host: HostProcess, data: Path, config: SoakConfig, report: SoakReport) -> None:
        self.host = host
        self.data = data
        self.config = config
        self.report = report
        self.traffic = Traffic(report)
        self.rng = random.Random(config.seed)

    @property
    def mgmt(self) -> str:
        return f"{self.host.base_url}{MGMT}"

    # ------------------------------------------------------------------ load and crashes

    def submit(self, index: int, photos: list[bytes]) -> str:
        images = [
            {"data": base64.b64encode(photo).decode(), "name": f"soak-{index}-{n}.jpg"}
            for n, photo in enumerate(photos)
        ]
        body = {"model": MODEL, "images": images, "top_k": 3}
        response = self.traffic.send("POST", f"{self.host.base_url}/api/tasks", json=body)  # the host is up now
        if response is None or response.status_code != 202:
            raise RuntimeError(f"submission {index} failed: {response and response.text[:300]}")
        instance_id: str = response.json()["id"]
        return instance_id

    def statuses(self) -> dict[str, dict[str, Any]] | None:
        """Every instance's status by id (one request: the management API's list), None while the host is down."""
        response = self.traffic.send("GET", f"{self.mgmt}/instances", params={"top": "100000", "showInput": "false"})
        if response is None or response.status_code != 200:
            return None
        return {body["instanceId"]: body for body in response.json()}

    def completed(self, ids: list[str]) -> tuple[int, int] | None:
        """(Completed, not ended) among ``ids``."""
        found = self.statuses()
        if found is None:
            return None
        runtime = [found[i]["runtimeStatus"] if i in found else "Pending" for i in ids]
        return runtime.count("Completed"), sum(status not in TERMINAL for status in runtime)

    def kill_when(self, ids: list[str], threshold: int) -> None:
        """SIGKILL the host once ``threshold`` tasks have completed, then restart it on the same hub."""
        while (progress := self.completed(ids)) is None or (progress[0] < threshold and progress[1]):
            time.sleep(0.05)
        self.host.kill()
        killed = time.monotonic()
        self.host.start()
        self.report.kills.append(Kill(progress[0], progress[1], round(time.monotonic() - killed, 2)))

    def load(self) -> list[str]:
        config = self.config
        photos = synthetic_jpegs(config.images * 4, self.rng)
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(lambda i: self.submit(i, self.rng.sample(photos, config.images)), range(config.tasks)))
        for threshold in sorted(self.rng.sample(range(1, config.tasks), min(config.kills, config.tasks - 1))):
            self.kill_when(ids, threshold)
        deadline = time.monotonic() + config.timeout_s
        while (progress := self.completed(ids)) is None or progress[1]:
            if time.monotonic() > deadline:
                self.traffic.problem(f"{progress and progress[1]} task(s) unfinished after {config.timeout_s} s")
                break
            time.sleep(0.1)
        self.report.load_seconds = round(time.monotonic() - started, 2)
        self.report.images_per_second = round(config.tasks * config.images / self.report.load_seconds, 1)
        return ids

    # ------------------------------------------------------------------ exactly once

    def verify(self, ids: list[str]) -> None:
        found = self.statuses() or {}
        engine = get_engine(f"sqlite:///{self.data / 'results.db'}")
        with engine.connect() as connection:
            rows = {
                instance_id: (task_id, count)
                for instance_id, task_id, count in connection.execute(
                    select(InferenceTask.instance_id, InferenceTask.task_id, func.count(InferenceResult.result_id))
                    .outerjoin(InferenceResult, InferenceResult.task_id == InferenceTask.task_id)
                    .group_by(InferenceTask.task_id)
                )
            }
        task_rows = Counter(instance_id for instance_id in rows)
        for instance_id in ids:
            status = found.get(instance_id, {})
            output = status.get("output") or {}
            if status.get("runtimeStatus") != "Completed" or output.get("status") != "Completed":
                self.traffic.problem(f"task {instance_id}: {status.get('runtimeStatus')}, output {str(output)[:300]}")
                continue
            if instance_id not in rows or task_rows[instance_id] != 1:
                self.traffic.problem(f"task {instance_id}: {task_rows[instance_id]} InferenceTasks row(s)")
                continue
            task_id, results = rows[instance_id]
            if output.get("database_task_id") != task_id or results != self.config.images:
                self.traffic.problem(
                    f"task {instance_id}: TaskID {task_id} (output says {output.get('database_task_id')}), "
                    f"{results} InferenceResults row(s) for {self.config.images} image(s)"
                )
        extra = set(rows) - set(ids)
        if extra:
            self.traffic.problem(f"{len(extra)} InferenceTasks row(s) of tasks nobody submitted: {sorted(extra)[:5]}")
        blobs = Path(self.data / "blobs")
        self.report.tensors_left = sum(1 for path in (blobs / "tensors").rglob("*") if path.is_file())
        self.report.uploads_left = sum(1 for path in (blobs / "uploads").rglob("*") if path.is_file())
        if self.report.tensors_left or self.report.uploads_left:
            self.traffic.problem(
                f"left behind: {self.report.tensors_left} tensor blob(s), {self.report.uploads_left} upload(s)"
            )

    # ------------------------------------------------------------------ fuzz

    def fuzz(self, ids: list[str]) -> None:
        started = time.monotonic()
        requests_ = [Fuzzer(random.Random(self.config.seed * 1000 + n), ids).request() for n in range(self.config.fuzz)]
        before = set(self.statuses() or {})

        def send(request: FuzzRequest) -> None:
            response = self.traffic.send(
                request.method,
                f"{self.host.base_url}{request.path}",
                fuzz=True,
                params=request.params,
                data=request.body,
                headers=request.headers,
            )
            if response is None:
                self.traffic.problem(f"no answer to {request.method} {request.path[:200]}")
            elif request.reaches_app(response.url) and 400 <= response.status_code < 500:
                try:
                    json.loads(response.text)
                except ValueError:
                    self.traffic.problem(f"{response.status_code} without a JSON body for {request.path[:200]}")

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, requests_))
        self.report.fuzz_seconds = round(time.monotonic() - started, 2)
        deadline = time.monotonic() + 120
        while True:
            found = self.statuses()
            if found is None:
                self.traffic.problem("the host stopped answering after the fuzz phase")
                return
            running = [i for i, body in found.items() if i not in before and body["runtimeStatus"] not in TERMINAL]
            if not running:
                return
            if time.monotonic() > deadline:
                self.traffic.problem(
                    f"{len(running)} instance(s) started by fuzzed requests never ended: {running[:5]}"
                )
                return
            time.sleep(0.2)


#: The app's own routes: their errors must be JSON. Other methods and paths are answered by the host's
#: router (404, empty, as on Azure), and so are a request line over the HTTP server's limit (400, text) and
#: an id with an encoded slash (the local host's router decodes ``%2F`` and then matches no route).
APP_ROUTES = {("POST", "/api/tasks"), ("POST", "/api/create_task"), ("GET", "/api/tasks/{id}")}
MAX_REQUEST_LINE = 8190


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    path: str
    params: dict[str, str]
    body: bytes | None
    headers: dict[str, str]

    def reaches_app(self, url: str) -> bool:
        route = "/api/tasks/{id}" if self.path.startswith("/api/tasks/") and self.path != "/api/tasks/" else self.path
        routed = len(url) < MAX_REQUEST_LINE - 100 and "%2f" not in self.path.lower()
        return routed and (self.method, route) in APP_ROUTES


#: The hostile vocabulary, shared with the property-based test (``tests/app/test_fuzz_api.py``): numbers
#: (valid JSON tokens too, the last one over Python's 4,300-digit limit) and strings that look like numbers.
NUMBERS = ("0", "-1", "1", "3", "101", str(2**31), str(2**63), "9" * 5000)
NOT_NUMBERS = ("--5", "²", "1e3", " 7", "0x10", "NaN", "٣", "5\x00", "true", "null")
CONTENT_TYPES = ("application/json", "image/jpeg", "image/png", "text/plain", "multipart/form-data", "", "x/y")
#: Query parameters of the app (``top_k``, ``wait``, ``model``) and of the management API.
QUERY_NAMES = ("model", "top_k", "wait", "k", "createdTimeFrom", "runtimeStatus", "top", "showHistory", "reason")
#: Every endpoint, ``{id}``, ``{event}``, ``{op}`` and ``{name}`` being where a path segment goes.
ENDPOINTS = (
    ("POST", "/api/tasks"),
    ("POST", "/api/create_task"),
    ("GET", "/api/tasks/{id}"),
    ("GET", f"{MGMT}/instances/{{id}}"),
    ("GET", f"{MGMT}/instances"),
    ("DELETE", f"{MGMT}/instances/{{id}}"),
    ("POST", f"{MGMT}/instances/{{id}}/{{op}}"),
    ("POST", f"{MGMT}/instances/{{id}}/restart"),
    ("POST", f"{MGMT}/instances/{{id}}/raiseEvent/{{event}}"),
    ("POST", f"{MGMT}/orchestrators/{{name}}"),
)
CONTROL_OPERATIONS = ("terminate", "suspend", "resume", "rewind")
#: Methods the app's two submission routes do not take (the host's router answers them).
WRONG_METHODS = ("PUT", "PATCH", "GET", "DELETE")


class Fuzzer:
    """One hostile request: an endpoint of the app or the management API, with junk where input goes."""

    def __init__(self, rng: random.Random, ids: list[str]) -> None:
        self.rng = rng
        self.ids = ids

    def text(self) -> str:
        choices: list[Callable[[], str]] = [
            lambda: "",
            lambda: self.rng.choice(NUMBERS),
            lambda: self.rng.choice(NOT_NUMBERS),
            lambda: "".join(chr(self.rng.randint(1, 0x2FFF)) for _ in range(self.rng.randint(1, 40))),
            lambda: "../" * self.rng.randint(1, 5) + "etc/passwd",
            lambda: self.rng.choice(self.ids) if self.ids else "x",
            lambda: "x" * self.rng.choice([101, 1025, 70000]),
            lambda: "%" + self.rng.randbytes(4).hex() + "%2F%00",
        ]
        return self.rng.choice(choices)()

    def value(self, depth: int = 0) -> Any:
        kind = self.rng.randint(0, 7 if depth < 3 else 3)
        if kind == 0:
            return self.text()
        if kind == 1:
            return self.rng.choice([0, -1, 1.5, 2**70, True, None])
        if kind == 2:
            return base64.b64encode(self.rng.randbytes(self.rng.randint(0, 64))).decode()
        if kind == 3:
            return {"blob": self.text()} if self.rng.random() < 0.5 else {"url": f"http://{self.text()}/x.jpg"}
        if kind in (4, 5):
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 4))]
        keys = ["model", "models", "model_type", "images", "top_k", "data", "blob", "url", "name", self.text()]
        return {self.rng.choice(keys): self.value(depth + 1) for _ in range(self.rng.randint(0, 5))}

    def body(self) -> bytes:
        kind = self.rng.randint(0, 5)
        if kind == 0:
            return self.rng.randbytes(self.rng.randint(0, 2048))
        if kind == 1:
            depth = self.rng.choice([10, 1000, 100_000])
            return b"[" * depth + b"]" * depth
        if kind == 2:
            return json.dumps(self.value()).encode()[: self.rng.choice([10**6, 20, 5])]
        valid: dict[str, Any] = {"model": MODEL, "images": [{"blob": "uploads/none/0.jpg"}], "top_k": 3}
        for _ in range(self.rng.randint(1, 3)):  # a mutated valid body
            valid[self.rng.choice(["model", "models", "images", "top_k", "extra", "model_type"])] = self.value(1)
        return json.dumps(valid).encode()

    def request(self) -> FuzzRequest:
        def text() -> str:  # a path segment
            return quote(self.text(), safe="")

        endpoints = [
            *ENDPOINTS,
            (self.rng.choice(WRONG_METHODS), self.rng.choice(["/api/tasks", "/api/create_task"])),
        ]
        method, template = self.rng.choice(endpoints)
        path = template.format(
            id=text(),
            event=text(),
            op=self.rng.choice(CONTROL_OPERATIONS),
            name=self.rng.choice(["classify_images", text()]),
        )
        params = {self.rng.choice(QUERY_NAMES): self.text() for _ in range(self.rng.randint(0, 3))}
        content_type = self.rng.choice(CONTENT_TYPES)
        headers = {"Content-Type": content_type} if content_type else {}
        return FuzzRequest(method, path, params, self.body() if method in ("POST", "PUT", "PATCH") else None, headers)


@contextmanager
def running_app(data: Path, workers: int) -> Iterator[HostProcess]:
    host = HostProcess(REPO, env=app_env(data), hub_dir=data / "hub", extra_args=("--workers", str(workers)))
    with host:
        yield host


def run(config: SoakConfig, data: Path) -> SoakReport:
    """The whole soak in ``data`` (a fresh folder); the report lists any problem."""
    report = SoakReport(config)
    with running_app(data, config.workers) as host:
        soak = Soak(host, data, config, report)
        try:
            ids = soak.load()
            soak.verify(ids)
            if config.fuzz:
                soak.fuzz(ids)
        finally:
            soak.traffic.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = SoakConfig()
    parser.add_argument("--tasks", type=int, default=defaults.tasks)
    parser.add_argument("--kills", type=int, default=defaults.kills)
    parser.add_argument("--images", type=int, default=defaults.images, help="images per task")
    parser.add_argument("--fuzz", type=int, default=defaults.fuzz, help="fuzzed requests after the load phase")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="the host's worker processes")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--json", type=Path, help="write the report here too")
    args = parser.parse_args()
    config = SoakConfig(args.tasks, args.kills, args.images, args.fuzz, args.workers, args.seed)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        report = run(config, Path(tmp))
    document = json.dumps(report.to_json(), indent=2)
    print(document)
    if args.json:
        args.json.write_text(document + "\n")
    print("soak:", "FAILED" if report.problems else "passed", file=sys.stderr)
    sys.exit(1 if report.problems else 0)


if __name__ == "__main__":
    main()
