"""The system benchmark's summary: the reference it judges against, and the rows it prints."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.system_benchmark import adopt_remeasured, print_summary, summarise_raw, targets

pytestmark = pytest.mark.unit


def raw_point(streams: int, threads: int, batch: int, rate: float) -> dict[str, Any]:
    return {"precision": "fp32", "streams": streams, "threads": threads, "batch": batch, "images_per_s": rate}


def first_raw() -> dict[str, Any]:
    grid = [raw_point(1, 2, 1, 25.0), raw_point(1, 2, 8, 28.0), raw_point(2, 1, 8, 29.0), raw_point(2, 1, 16, 30.0)]
    return summarise_raw(grid)


def test_a_better_remeasured_point_becomes_the_reference_with_its_own_configuration() -> None:
    raw = first_raw()
    assert raw["best"] == {"streams": 2, "threads": 1, "batch": 16}
    again = [raw_point(2, 1, 16, 29.5), raw_point(2, 1, 8, 31.0), raw_point(1, 2, 1, 20.0)]
    adopt_remeasured(raw, again)
    assert raw["best_images_per_s"] == 31.0 and raw["best"] == {"streams": 2, "threads": 1, "batch": 8}
    assert raw["batch8_images_per_s"] == 31.0 and raw["batch8"] == {"streams": 2, "threads": 1, "batch": 8}
    assert raw["batch1_ms_per_image"] == 1000.0 / 25.0  # the slower remeasurement does not replace it


def test_a_worse_remeasurement_keeps_the_first_reference() -> None:
    raw = first_raw()
    adopt_remeasured(raw, [raw_point(2, 1, 16, 20.0), raw_point(2, 1, 8, 21.0), raw_point(1, 2, 1, 26.0)])
    assert raw["best_images_per_s"] == 30.0 and raw["best"] == {"streams": 2, "threads": 1, "batch": 16}
    assert raw["batch1_ms_per_image"] == 1000.0 / 26.0


def load_point(size: int, concurrency: int, rate: float, probe: float) -> dict[str, Any]:
    return {
        "task_size": size,
        "concurrency": concurrency,
        "images_per_s": rate,
        "latency_p50_ms": 100.0,
        "latency_p95_ms": 150.0,
        "latency_p99_ms": 160.0,
        "cpu_ms_per_image": {"host": 2.0, "worker 1": 50.0},
        "client_cpu_ms_per_image": 1.0,
        "machine_busy": 0.97,
        "machine_probe_ms": probe,
        "machine_kernel_probe_ms": probe / 2,
    }


def test_the_summary_prints_the_targets_against_the_reference_and_every_probe(
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw = first_raw()
    adopt_remeasured(raw, [raw_point(2, 1, 16, 29.5), raw_point(2, 1, 8, 31.0), raw_point(1, 2, 1, 20.0)])
    raw.update(
        batch1_after_idle_ms=42.0,
        machine_probe_ms=20.0,
        machine_kernel_probe_ms=10.0,
        machine_probe_after_ms=21.0,
        machine_kernel_probe_after_ms=11.0,
    )
    report = {
        "model": "resnet18",
        "raw": raw,
        "single_task": {
            "latency_p50_ms": 45.0,
            "client_cpu_per_poll_ms": 0.5,
            "asyncio_client_latency_p50_ms": 47.0,
            "activities_p50_ms": 41.0,
            "overhead_p50_ms": 4.0,
            "overhead_p95_ms": 6.0,
            "visible_after_p50_ms": 2.0,
            "visible_after_p95_ms": 3.0,
            "machine_probe_ms": 22.0,
            "machine_kernel_probe_ms": 12.0,
        },
        "dynamic_batching_gain_1_image_x16": 1.5,
        "unbatched_1_image_x16": {"images_per_s": 16.0},
        "load": [load_point(1, 16, 24.0, 19.0), load_point(8, 4, 28.0, 23.0)],
        "rss_mb": {"host": 110.0, "worker 1": 1600.0},
    }
    print_summary(report)
    rows = capsys.readouterr().out.splitlines()
    assert (
        "| raw reference, best of batch 1/8/16 × threads × streams, before or after (fp32) | 31.0 images/s "
        in "\n".join(rows)
    )
    assert "(batch 8, 2 streams × 1 thread(s)) |" in "\n".join(rows)
    assert any(r.startswith("| a lone task's compute") and r.endswith("| 41.0 / 42.0 / 40.0 ms |") for r in rows)
    assert any(
        r.startswith("| speed probe, Python")
        and r.endswith("before 20.0, lone tasks 22.0, system phases 19.0–23.0, raw reference after 21.0 |")
        for r in rows
    )
    assert any(
        r.startswith("| kernel probe, torch")
        and r.endswith("before 10.0, lone tasks 12.0, system phases 9.5–11.5, raw reference after 11.0 |")
        for r in rows
    )
    met = {target: ok for target, _, ok in targets(report)}
    assert met == {
        "8-image tasks, best concurrency ÷ best raw ≥ 0.90": True,  # 28.0 / 31.0 = 0.903
        "1-image task alone, client p50 ≤ raw batch-1 compute + 10 ms": True,  # 45 <= 40 + 10
        "16 concurrent 1-image tasks ÷ raw batch 8 ≥ 0.75": True,  # 24 / 31 = 0.774
    }
    assert "| target: 16 concurrent 1-image tasks ÷ raw batch 8 ≥ 0.75 | 24.0 / 31.0 = 0.77 met |" in rows
