"""The plug server's limits on a fake clock: connection slots, the frame budget, deadlines, write stalls."""

from __future__ import annotations

from twisted.internet.task import Clock

from vesyncd.plugs import limits


def test_slots_refuse_beyond_the_limit_and_free_on_release() -> None:
    """Two slots: the third acquire is refused until one is released; releasing never goes negative."""
    slots = limits.ConnectionSlots(2)
    assert slots.acquire() and slots.acquire()
    assert not slots.acquire()
    slots.release()
    assert slots.acquire() and slots.used == 2
    for _ in range(5):
        slots.release()
    assert slots.used == 0


def test_frame_budget_allows_a_burst_then_the_rate() -> None:
    """A full bucket allows C{burst} frames at once, then C{rate} per second as time passes."""
    clock = Clock()
    budget = limits.FrameBudget(clock, rate=5.0, burst=10.0, maxDropped=3)
    assert [budget.allow() for _ in range(12)] == [True] * 10 + [False] * 2
    assert budget.dropped == 2 and not budget.flooded
    clock.advance(1.0)
    assert [budget.allow() for _ in range(6)] == [True] * 5 + [False]
    assert budget.flooded


def test_frame_budget_refills_no_further_than_the_burst() -> None:
    """An hour of silence refills the bucket to C{burst}, not to an hour's worth of frames."""
    clock = Clock()
    budget = limits.FrameBudget(clock, rate=5.0, burst=4.0)
    clock.advance(3600)
    assert sum(budget.allow() for _ in range(10)) == 4


def test_bad_frames_end_the_connection_at_the_limit() -> None:
    """badFrame() says to close on the C{maxBad}-th bad frame, not before."""
    budget = limits.FrameBudget(Clock(), maxBad=3)
    assert [budget.badFrame() for _ in range(3)] == [False, False, True]


def test_deadline_fires_once_and_cancel_is_always_safe() -> None:
    """A started deadline calls back once at its time; a restart replaces it; cancel works in any state."""
    clock = Clock()
    fired: list[float] = []
    deadline = limits.Deadline(clock)
    deadline.cancel()
    deadline.start(10, lambda: fired.append(clock.seconds()))
    clock.advance(5)
    deadline.start(10, lambda: fired.append(clock.seconds()))
    assert deadline.pending
    clock.advance(9)
    assert fired == []
    clock.advance(1)
    assert fired == [15.0] and not deadline.pending
    deadline.cancel()
    deadline.start(1, lambda: fired.append(-1))
    deadline.cancel()
    clock.advance(5)
    assert fired == [15.0] and clock.getDelayedCalls() == []


def test_write_stall_times_out_unless_the_peer_reads_again() -> None:
    """A paused producer calls timedOut after C{timeout} s; resuming in time cancels it."""
    clock = Clock()
    out: list[str] = []
    stall = limits.WriteStall(clock, lambda: out.append("stalled"), timeout=30)
    stall.pauseProducing()
    clock.advance(29)
    stall.resumeProducing()
    clock.advance(60)
    assert out == []
    stall.pauseProducing()
    stall.pauseProducing()
    clock.advance(30)
    assert out == ["stalled"]


def test_write_stall_bounds_bytes_queued_while_paused() -> None:
    """Bytes written while the peer reads are free; while paused, more than maxQueued is refused."""
    stall = limits.WriteStall(Clock(), lambda: None, maxQueued=100)
    assert not stall.queued(10_000)
    stall.pauseProducing()
    assert not stall.queued(60) and not stall.queued(40)
    assert stall.queued(1)
    stall.resumeProducing()
    assert stall.waiting == 0 and not stall.queued(1000)


def test_stop_producing_cancels_the_stall_clock() -> None:
    """A connection that goes away leaves no timer behind."""
    clock = Clock()
    stall = limits.WriteStall(clock, lambda: None)
    stall.pauseProducing()
    stall.stopProducing()
    assert clock.getDelayedCalls() == [] and not stall.paused
