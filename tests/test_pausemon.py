"""
The benchmark's reactor-pause monitor (L{bench.pausemon}): lateness of its timer, and on Linux the
split of a long pause into running, waiting for a CPU and sleeping.
"""

from __future__ import annotations

import os

import pytest
from twisted.internet.task import Clock

from bench.pausemon import ReactorPauses


class SteppedTimer:
    """A monotonic timer the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fire(clock: Clock, timer: SteppedTimer, late: float) -> None:
    """Let the monitor's next firing come C{late} seconds after it was due."""
    timer.now += 0.001 + late
    clock.advance(0.001)


def test_lateness_is_counted_as_pauses() -> None:
    """A firing 20 ms late is the longest pause and counts as over 10 ms; an on-time one does not."""
    clock, timer = Clock(), SteppedTimer()
    monitor = ReactorPauses(clock, timer=timer)
    monitor.start()
    fire(clock, timer, 0.0)
    fire(clock, timer, 0.020)
    fire(clock, timer, 0.0)
    figures = monitor.figures()
    assert figures["pause_firings"] == 3
    assert figures["pause_longest_ms"] == pytest.approx(20.0, abs=0.01)
    assert figures["pause_over_10ms"] == 1 and figures["pause_over_50ms"] == 0
    assert "pause_split_ms" not in figures  # only when asked for


@pytest.mark.skipif(not os.path.exists("/proc/thread-self/schedstat"), reason="needs Linux schedstat")
@pytest.mark.skipif(not os.path.exists("/proc/thread-self/schedstat"), reason="needs Linux schedstat")
def test_other_threads_running_in_a_pause_are_named() -> None:
    """A thread of the process that burns CPU during a pause is listed with the time it ran."""
    import threading
    import time

    clock, timer = Clock(), SteppedTimer()
    monitor = ReactorPauses(clock, timer=timer, attribute=True)
    go, done, release = threading.Event(), threading.Event(), threading.Event()

    def burn() -> None:
        go.wait(10)
        end = time.thread_time() + 0.03
        while time.thread_time() < end:
            pass
        done.set()
        release.wait(10)  # still alive when the monitor fires

    worker = threading.Thread(target=burn, name="burner")
    worker.start()
    try:
        monitor.start()  # lists the burner
        go.set()
        assert done.wait(10)
        fire(clock, timer, 0.030)
    finally:
        release.set()
        worker.join(10)
    figures = monitor.figures()
    [worst] = figures["pause_worst"]
    [(name, ran)] = [(k, v) for k, v in worst["other_threads"].items() if k.endswith(f"/{worker.native_id}")]
    assert ran >= 25.0
    assert figures["pause_split_ms"]["others"] >= 25.0
    monitor.stop()


def test_long_pause_is_split_into_ran_waited_and_slept() -> None:
    """A 30 ms pause in which the thread barely ran is almost all "slept"; the parts add up to it."""
    clock, timer = Clock(), SteppedTimer()
    monitor = ReactorPauses(clock, timer=timer, attribute=True)
    monitor.start()
    fire(clock, timer, 0.0)
    fire(clock, timer, 0.030)
    figures = monitor.figures()
    split = figures["pause_split_ms"]
    assert split["pause"] == pytest.approx(31.0, abs=0.01)  # the stretch since the last firing
    assert split["ran"] + split["runqueue"] + split["slept"] == pytest.approx(split["pause"], abs=0.2)
    assert split["slept"] > 25.0  # the test's thread ran for far less than the 30 ms the timer moved
    assert split["steal"] >= 0.0
    [worst] = figures["pause_worst"]
    assert isinstance(worst["other_threads"], dict) and worst["other_threads_ran_ms"] >= 0.0
    assert worst["ms"] == pytest.approx(31.0, abs=0.01)
    monitor.stop()
