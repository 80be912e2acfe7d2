"""The system benchmark's plot shows only what was measured, and says on what."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.system_benchmark import plot

pytestmark = [pytest.mark.unit, pytest.mark.slow]  # matplotlib alone takes a second to import


def point(size: int, concurrency: int, rate: float) -> dict[str, float]:
    return {
        "task_size": size,
        "concurrency": concurrency,
        "images_per_s": rate,
        "latency_p50_ms": 10.0 * concurrency,
        "latency_p95_ms": 15.0 * concurrency,
    }


def test_throughput_has_only_measured_points_and_latency_one_pair_of_bars_per_scenario(tmp_path: Path) -> None:
    report = {
        "model": "resnet18",
        "precision": "bf16",
        "raw_images_per_s": {"resnet18": 100.0},
        "machine": {"cores": 2, "cpu": "Test CPU 9000", "torch": "2.15.0"},
        "load": [point(1, 1, 10), point(1, 16, 50), point(8, 2, 70), point(8, 4, 90)],
    }
    figure = plot(report, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 0
    throughput, latency = figure.axes
    series = {
        line.get_label(): (list(line.get_xdata()), line.get_linestyle())
        for line in throughput.get_lines()
        if "tasks through the system" in line.get_label()
    }
    assert series == {
        "1-image tasks through the system": ([1, 16], "None"),
        "8-image tasks through the system": ([2, 4], "None"),
    }
    assert [round(bar.get_height()) for bar in latency.patches] == [10, 160, 20, 40, 15, 240, 30, 60]
    title = figure.texts[0].get_text()
    assert "RANDOM weights" in title and "2 cores" in title and "Test CPU 9000" in title and "bf16" in title
