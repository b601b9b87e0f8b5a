"""
How the store's database calls are run: in one dedicated thread while the daemon runs
(L{threadRunner}, so the reactor never waits on the disk or the database server and writes keep
their order), or at once in the calling thread (L{inlineRunner}, for tests and tools).  A runner is
C{run(fn, *args) -> Deferred}.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, fail, maybeDeferred

Runner = Callable[..., Deferred]


def threadRunner(reactor: Any) -> tuple[Runner, Callable[[], None]]:
    """A runner that calls functions in one dedicated thread, and a function stopping that thread."""
    from twisted.internet.threads import deferToThreadPool
    from twisted.python.threadpool import ThreadPool

    pool = ThreadPool(minthreads=1, maxthreads=1, name="vesyncd-store")
    stopped: list[bool] = []

    def run(fn: Callable[..., Any], *args: Any) -> Deferred:
        # A read asked for while the daemon shuts down, after the thread is gone, fails like any
        # other store error instead of raising out of the caller.
        if stopped:
            return fail(StoreClosed("the store is closed: vesyncd is stopping"))
        # Started on first use, not at creation: twistd forks to daemonize after building the
        # service, and a thread started before that fork would not exist in the daemon.
        if not pool.started:
            pool.start()
        return deferToThreadPool(reactor, pool, fn, *args)

    def stop() -> None:
        stopped.append(True)
        pool.stop()

    return run, stop



class StoreClosed(Exception):
    """A database call came after the store's thread stopped (daemon shutdown)."""


def inlineRunner(fn: Callable[..., Any], *args: Any) -> Deferred:
    """Run a database call at once in the calling thread (tests and tools)."""
    return maybeDeferred(fn, *args)


