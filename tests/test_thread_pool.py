"""The legacy adapter's worker threads (gateway.adapters.thread_pool)."""

from __future__ import annotations

import threading

import pytest
from structlog.testing import capture_logs

from gateway.adapters.thread_pool import ThreadPool


def test_work_runs_in_named_threads_started_as_needed_up_to_the_limit() -> None:
    pool = ThreadPool(2, "legacy")
    assert pool.threads == 0
    names: list[str] = []
    done = threading.Semaphore(0)

    def work(tag: int) -> None:
        names.append(f"{threading.current_thread().name}:{tag}")
        done.release()

    for tag in range(5):
        pool.submit(work, tag)
    for _ in range(5):
        assert done.acquire(timeout=5)
    assert pool.threads == 2
    assert sorted(name.split(":")[1] for name in names) == ["0", "1", "2", "3", "4"]
    assert {name.split(":")[0] for name in names} <= {"legacy_0", "legacy_1"}
    pool.close()


def test_failing_work_is_logged_and_the_thread_keeps_serving() -> None:
    pool = ThreadPool(1, "legacy")
    ran = threading.Event()

    def boom() -> None:
        raise ValueError("view exploded")

    with capture_logs() as logs:
        pool.submit(boom)
        pool.submit(ran.set)
        assert ran.wait(5)
    assert [entry["event"] for entry in logs] == ["legacy.thread_work_failed"]
    assert pool.threads == 1
    pool.close()


def test_close_refuses_new_work_finishes_queued_work_and_ends_the_threads() -> None:
    pool = ThreadPool(1, "closing")
    release = threading.Event()
    finished: list[str] = []
    pool.submit(lambda: (release.wait(5), finished.append("running")))
    pool.submit(finished.append, "queued")
    pool.close()
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(print)
    thread = next(t for t in threading.enumerate() if t.name == "closing_0")
    release.set()
    thread.join(5)
    assert not thread.is_alive()
    assert finished == ["running", "queued"]
    pool.close()  # a second close is harmless


def test_a_thread_started_for_work_submitted_as_the_pool_closes_still_ends() -> None:
    # A submit that queued its work just before close() starts its thread just after it:
    # close() queued an end only for the threads it knew (none here).
    pool = ThreadPool(1, "late")
    pool.close()
    pool._start_thread()
    [thread] = [t for t in threading.enumerate() if t.name == "late_0"]
    thread.join(5)
    assert not thread.is_alive()
