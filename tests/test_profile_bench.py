"""bench/profile_bench.py's reading of py-spy's raw stacks: busy samples by thread and module."""

from __future__ import annotations

from pathlib import Path

from bench.profile_bench import summarise

# The line of the legacy threads' loop that waits for work, and the one that runs it.
_POOL_SOURCE = (Path(__file__).parent.parent / "gateway/adapters/thread_pool.py").read_text()
_GET_LINE, _RUN_LINE = (
    next(n for n, line in enumerate(_POOL_SOURCE.splitlines(), 1) if text in line)
    for text in ("self._queue.get()", "fn(*args)")
)

_LOOP = "thread (81): MainThread;main (gateway/cli.py:66)"
_FLASK = "thread (94): legacy_3;Thread.run (threading.py:982)"

RAW = [
    # The event loop waiting in epoll: idle, left out.
    f"{_LOOP};Runner.run (asyncio/runners.py:118) 500",
    f"{_LOOP};send (/venv/lib/python3.11/site-packages/uvicorn/protocols/http/h.py:524) 30",
    f"{_LOOP};__call__ (gateway/middleware/request_context.py:127) 12",
    f"{_LOOP};relay (gateway/adapters/legacy.py:580) 8",
    # A Flask thread waiting for work: idle; one running a view: busy.
    f"{_FLASK};ThreadPool._work (gateway/adapters/thread_pool.py:{_GET_LINE}) 400",
    f"{_FLASK};ThreadPool._work (gateway/adapters/thread_pool.py:{_RUN_LINE}) 7",
    f"{_FLASK};wsgi_app (/venv/lib/python3.11/site-packages/flask/app.py:1511) 20",
    f"{_FLASK};__init__ (/usr/lib/python3.11/threading.py:265) 5",
    "thread (82): log-flush;Event.wait (threading.py:629) 100",
    "thread (82): log-flush;flush (gateway/log_sink.py:96) 3",
]


def test_busy_samples_are_charged_to_their_thread_and_module() -> None:
    assert summarise(RAW) == {
        ("loop", "uvicorn"): 30,
        ("loop", "gateway/middleware/request_context.py"): 12,
        ("loop", "gateway/adapters/legacy.py"): 8,
        ("legacy", "flask"): 20,
        ("legacy", "threading"): 5,
        ("legacy", "gateway/adapters/thread_pool.py"): 7,
        ("log-flush", "gateway/log_sink.py"): 3,
    }


def test_waiting_threads_and_malformed_lines_count_nothing() -> None:
    idle = [line for line in RAW if "runners.py" in line or f"thread_pool.py:{_GET_LINE})" in line]
    assert summarise([*idle, "", "no-stack-here 3"]) == {}


def test_a_torn_stack_is_not_a_sample() -> None:
    # py-spy --nonblocking reads memory while the process runs: seen, a frame whose name was
    # the text of an access line, so the line ended in JSON instead of a count.
    torn = f'{_FLASK}; (hello","status":200,"event":"request"}}'
    assert summarise([torn, RAW[1]]) == {("loop", "uvicorn"): 30}
