"""Test helper: run the real host as a subprocess around a test.

Example::

    from durable_host.testing import HostProcess

    with HostProcess("path/to/app", env={"MY_SETTING": "1"}) as host:
        r = requests.post(f"{host.base_url}/api/orchestrators/hello")
        status_url = r.json()["statusQueryGetUri"]
        ...
        host.kill()      # SIGKILL, e.g. to test recovery
        host.start()     # same port and hub: unfinished orchestrations continue

The host runs ``python -m durable_host --port PORT --hub-dir HUB`` with ``cwd=app_dir`` and
the current interpreter, so the app sees exactly what ``func start`` would give it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class HostStartError(RuntimeError):
    """The host did not become ready; the message carries its captured output."""


class HostProcess:
    """Context manager running ``python -m durable_host`` for an app folder.

    Parameters
    ----------
    app_dir:
        Function app folder (``host.json`` + ``function_app.py``); the host's working directory.
    port:
        Port to listen on; ``None`` picks a free one.
    env:
        Extra environment variables for the host (on top of ``os.environ``).
    hub_dir:
        Task hub folder; ``None`` uses a fresh temporary folder removed on exit. Pass the same
        folder to a second ``HostProcess`` (or call ``start()`` again) to test recovery.
    extra_args:
        More command-line arguments, e.g. ``("--workers", "2")``.
    startup_timeout:
        Seconds to wait for readiness (imports such as torch can be slow).

    Attributes: ``base_url`` (``http://127.0.0.1:PORT``), ``port``, ``hub_dir``, ``output``
    (everything the host printed so far). Methods: ``start()``, ``stop()`` (graceful, SIGINT
    like Ctrl-C), ``kill()`` (SIGKILL). On a failed start, ``HostStartError`` carries the log.
    """

    def __init__(
        self,
        app_dir: str | os.PathLike[str],
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        hub_dir: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 60.0,
    ):
        self.app_dir = Path(app_dir).resolve()
        self.port = port or free_port()
        self.env = dict(env or {})
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if hub_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="durable-hub-")
            hub_dir = self._tmp.name
        self.hub_dir = Path(hub_dir)
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[str] | None = None
        self._output: list[str] = []
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        with self._lock:
            return "".join(self._output)

    def wait_for_output(self, text: str, timeout: float = 15.0) -> str:
        """The captured output once it contains ``text``.

        A state seen over HTTP does not mean this process has read the lines the host logged before it:
        they may still sit in the pipe, so a test that checks the log after a state waits for the line.
        """
        return wait_for(lambda: self.output if text in self.output else None, repr(text), self, timeout)

    def __enter__(self) -> HostProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def start(self) -> None:
        """Start the host and block until it answers ``/admin/host/status``."""
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        cmd = [
            sys.executable,
            "-m",
            "durable_host",
            "--port",
            str(self.port),
            "--hub-dir",
            str(self.hub_dir),
            *self.extra_args,
        ]
        self.process = subprocess.Popen(
            cmd, cwd=self.app_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        threading.Thread(target=self._pump, args=(self.process,), daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                time.sleep(0.2)  # let the pump collect the last lines
                raise HostStartError(f"host exited with code {self.process.returncode}:\n{self.output}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/admin/host/status", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.1)
        self.kill()
        raise HostStartError(f"host not ready after {self.startup_timeout}s:\n{self.output}")

    def _pump(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._lock:
                self._output.append(line)

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (SIGINT, as Ctrl-C); SIGKILL if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the host, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def wait_for[T](
    condition: Callable[[], T | None], what: str, host: HostProcess | None = None, timeout: float = 90.0
) -> T:
    """Poll until ``condition()`` is truthy and return its value; on timeout fail with the host's output.

    Tests of an asynchronous host must wait for a state, never sleep and then assert: a loaded machine
    makes any fixed sleep too short.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{host.output[-6000:] if host else ''}")
        time.sleep(0.05)
