"""Kill -9 the host with orchestrations in flight; after a restart they all finish correctly."""

from __future__ import annotations

import collections
import time

import pytest
import requests

from durable_host.testing import HostProcess

from .conftest import APPS

pytestmark = pytest.mark.host


def expected(iid: str) -> list[str]:
    return [f"{iid}:{n}" for n in (0, 1, 2, 3, 10, 11, 12)]


def test_sigkill_loses_nothing(tmp_path):
    journal = tmp_path / "journal.txt"
    env = {"RECOVERY_JOURNAL": str(journal)}
    hub = tmp_path / "hub"
    ids = [f"crash-{i}" for i in range(8)]
    host = HostProcess(APPS / "recovery", env=env, hub_dir=hub)
    with host:
        mgmt = f"{host.base_url}/runtime/webhooks/durabletask"
        for iid in ids:
            assert requests.post(f"{mgmt}/orchestrators/slow_sequence/{iid}").status_code == 202
        time.sleep(1.0)
        host.kill()
        before = journal.read_text().splitlines()
        statuses = {}
        host.start()  # same port, same hub folder
        deadline = time.monotonic() + 60
        for iid in ids:
            while True:
                body = requests.get(f"{mgmt}/instances/{iid}").json()
                if body["runtimeStatus"] not in ("Running", "Pending"):
                    break
                assert time.monotonic() < deadline, host.output[-3000:]
                time.sleep(0.1)
            statuses[iid] = body
    assert before, "nothing ran before the kill"
    assert len(before) < 8 * 7, "everything finished before the kill: the test proves nothing"
    for iid in ids:
        assert statuses[iid]["runtimeStatus"] == "Completed", statuses[iid]
        assert statuses[iid]["output"] == expected(iid)
    runs = collections.Counter(journal.read_text().splitlines())
    # at-least-once for activities that were running at the kill; completed steps are not redone
    assert all(count <= 2 for count in runs.values()), runs
    reruns = sum(count - 1 for count in runs.values())
    assert reruns <= 4 + 4, runs  # at most the in-flight activities (plus unflushed completions)
    assert "Task hub recovered" in host.output
