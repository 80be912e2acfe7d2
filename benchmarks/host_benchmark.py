"""Benchmark of durable_host: prints figures, asserts nothing.

    python benchmarks/host_benchmark.py [--orchestrations 1000] [--fan-out 1000] [--log-level INFO]

1. HelloSequence5 (5 sequential no-op activities): N orchestrations started at once through the
   management API; throughput = N / (last completion - first start), and p50/p99 latency
   (ExecutionCompleted - ExecutionStarted, from each instance's history).
2. One orchestration fanning out to M no-op activities and in again: seconds end to end (the
   start request in wait mode until the output is back).
3. The latency floor a lone task meets: HelloSequence5 orchestrations one at a time, each after the
   same 0.3 s of idleness as the system benchmark's lone tasks, the client polling every millisecond,
   with activities in the host process and in one worker process (``make run``). Client-observed p50,
   and per activity hop (TaskScheduled to TaskCompleted, from the history).

The host runs as a real subprocess (``durable_host.testing.HostProcess``) on a fresh hub.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import cast

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from durable_host.testing import HostProcess  # noqa: E402

APP = REPO / "tests" / "host" / "apps" / "bench"
#: As the system benchmark's lone tasks (benchmarks/system_benchmark.py LONE_TASK_IDLE_S).
LONE_IDLE_S = 0.3


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def hello_sequence(base: str, count: int) -> dict[str, float]:
    mgmt = f"{base}/runtime/webhooks/durabletask"
    prefix = f"seq-{int(time.time())}-"
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def start(i: int) -> None:
            async with session.post(f"{mgmt}/orchestrators/HelloSequence5/{prefix}{i}") as r:
                assert r.status == 202, await r.text()

        t0 = time.time()
        await asyncio.gather(*(start(i) for i in range(count)))
        accepted = time.time() - t0
        while True:
            async with session.get(
                f"{mgmt}/instances", params={"instanceIdPrefix": prefix, "runtimeStatus": "Pending,Running", "top": "1"}
            ) as r:
                if not await r.json():
                    break
            await asyncio.sleep(0.05)
        wall = time.time() - t0
        latencies, starts, ends = [], [], []
        for i in range(count):
            async with session.get(f"{mgmt}/instances/{prefix}{i}", params={"showHistory": "true"}) as r:
                body = await r.json()
            assert body["runtimeStatus"] == "Completed", body
            events = body["historyEvents"]
            began, ended = ts(events[0]["Timestamp"]), ts(events[-1]["Timestamp"])
            starts.append(began)
            ends.append(ended)
            latencies.append(ended - began)
    latencies.sort()
    span = max(ends) - min(starts)
    return {
        "count": count,
        "accept_s": accepted,
        "wall_s": wall,
        "span_s": span,
        "per_s": count / span,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


async def fan_out(base: str, width: int) -> float:
    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        # wait mode needs both, as in the extension
        wait = {"timeout": "120", "pollingInterval": "1"}
        async with session.post(
            f"{base}/runtime/webhooks/durabletask/orchestrators/FanOutFanIn", json=width, params=wait
        ) as r:
            assert r.status == 200 and await r.json() == width, await r.text()
        return time.perf_counter() - t0


def lone_sequences(port: int, count: int) -> dict[str, float]:
    """HelloSequence5 one at a time after idleness, on one keep-alive connection polled every millisecond,
    so that the figures are the host's and not the client's polling interval."""
    mgmt = "/runtime/webhooks/durabletask"
    connection = http.client.HTTPConnection("127.0.0.1", port)

    def call(method: str, path: str) -> dict[str, object]:
        connection.request(method, path)
        response = connection.getresponse()
        return cast(dict[str, object], json.loads(response.read()))

    totals, first_hops, later_hops, starts, ends = [], [], [], [], []
    for i in range(count):
        time.sleep(LONE_IDLE_S)
        began = time.perf_counter()
        call("POST", f"{mgmt}/orchestrators/HelloSequence5/lone-{i}")
        while call("GET", f"{mgmt}/instances/lone-{i}")["runtimeStatus"] != "Completed":
            time.sleep(0.001)
        totals.append(time.perf_counter() - began)
        events = cast(list[dict[str, str]], call("GET", f"{mgmt}/instances/lone-{i}?showHistory=true")["historyEvents"])
        done = [event for event in events if event["EventType"] == "TaskCompleted"]
        hops = [ts(event["Timestamp"]) - ts(event["ScheduledTime"]) for event in done]
        first_hops.append(hops[0])
        later_hops.extend(hops[1:])
        starts.append(ts(done[0]["ScheduledTime"]) - ts(events[0]["Timestamp"]))
        ends.append(ts(events[-1]["Timestamp"]) - ts(done[-1]["Timestamp"]))
    connection.close()
    return {
        "p50_ms": 1000 * statistics.median(totals),
        "first_hop_ms": 1000 * statistics.median(first_hops),
        "later_hop_ms": 1000 * statistics.median(later_hops),
        "start_ms": 1000 * statistics.median(starts),
        "end_ms": 1000 * statistics.median(ends),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orchestrations", type=int, default=1000)
    parser.add_argument("--fan-out", type=int, default=1000)
    parser.add_argument("--lone", type=int, default=40, help="lone HelloSequence5 orchestrations per host setup")
    parser.add_argument(
        "--log-level", default="INFO", help="host log level (INFO prints a line per invocation, like func start)"
    )
    args = parser.parse_args()
    with HostProcess(APP, extra_args=("--log-level", args.log_level)) as host:
        seq = asyncio.run(hello_sequence(host.base_url, args.orchestrations))
        fan = asyncio.run(fan_out(host.base_url, args.fan_out))
        episodes = host.output.count("Executed 'Functions.FanOutFanIn'")
    print(f"HelloSequence5 x{seq['count']} started at once (host log level {args.log_level}):")
    print(f"  all accepted (202) in {seq['accept_s']:.2f} s; all completed in {seq['wall_s']:.2f} s")
    print(
        f"  throughput: {seq['per_s']:.0f} orchestrations/s "
        f"({seq['count']} in {seq['span_s']:.2f} s, first start to last completion)"
    )
    print(f"  latency: p50 {seq['p50_ms']:.0f} ms, p99 {seq['p99_ms']:.0f} ms")
    print(
        f"Fan-out/fan-in of {args.fan_out} activities: {fan:.2f} s end to end"
        + (f" ({episodes} orchestrator episodes)" if episodes else "")
    )
    for label, workers in (("activities in the host process", "0"), ("one worker process, as make run", "1")):
        with HostProcess(APP, extra_args=("--log-level", args.log_level, "--workers", workers)) as host:
            lone = lone_sequences(host.port, args.lone)
        print(
            f"HelloSequence5 alone after {LONE_IDLE_S} s of idleness x{args.lone}, {label}: client-observed p50 "
            f"{lone['p50_ms']:.1f} ms; p50 start to first activity scheduled {lone['start_ms']:.2f} ms, first hop "
            f"{lone['first_hop_ms']:.2f} ms, later hops {lone['later_hop_ms']:.2f} ms, last completion to the end "
            f"{lone['end_ms']:.2f} ms"
        )


if __name__ == "__main__":
    main()
