"""The buffered log sink: order kept, urgent lines at once, nothing lost at close."""

from __future__ import annotations

import io
import threading
import time

from gateway.log_sink import LineSink, SinkLogger


def test_info_waits_warning_flushes_everything_in_order() -> None:
    stream = io.StringIO()
    sink = LineSink(stream, interval=60)  # no periodic flush during the test
    logger = SinkLogger(sink)
    logger.info("one")
    logger.debug("two")
    assert stream.getvalue() == ""
    logger.error("three")
    assert stream.getvalue() == "one\ntwo\nthree\n"
    sink.close()


def test_periodic_flush_writes_buffered_lines() -> None:
    stream = io.StringIO()
    sink = LineSink(stream, interval=0.01)
    SinkLogger(sink).info("later")
    deadline = time.monotonic() + 5
    while stream.getvalue() == "" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.getvalue() == "later\n"
    sink.close()


def test_close_and_size_bound_flush() -> None:
    stream = io.StringIO()
    sink = LineSink(stream, interval=60)
    SinkLogger(sink).info("x" * 70_000)  # over 64 KiB: written at once
    assert len(stream.getvalue()) == 70_001
    SinkLogger(sink).info("last")
    sink.close()
    assert stream.getvalue().endswith("last\n")


def test_lines_from_many_threads_are_never_torn() -> None:
    stream = io.StringIO()
    sink = LineSink(stream, interval=0.001)

    def write(tag: str) -> None:
        for index in range(500):
            sink.write(f"{tag}-{index}-" + tag * 50, urgent=index % 50 == 0)

    threads = [threading.Thread(target=write, args=(tag,)) for tag in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sink.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2000
    assert all(line.endswith(line.split("-")[0] * 50) for line in lines)
    for tag in "abcd":  # each thread's lines keep their order
        mine = [int(line.split("-")[1]) for line in lines if line.startswith(f"{tag}-")]
        assert mine == list(range(500))


def test_broken_stream_never_raises() -> None:
    stream = io.StringIO()
    stream.close()
    sink = LineSink(stream, interval=60)
    SinkLogger(sink).error("into the void")
    sink.close()


def test_deferred_lines_are_rendered_when_written_in_order_with_the_others() -> None:
    stream = io.StringIO()
    sink = LineSink(stream, interval=60)
    rendered: list[str] = []

    def render(item: dict[str, int]) -> str:
        rendered.append(threading.current_thread().name)
        return f"n={item['n']}"

    sink.write("first", urgent=False)
    sink.write_later(render, {"n": 2})
    sink.write_later(render, {"n": 3})
    assert rendered == []  # nothing rendered on the caller's path
    sink.write("fourth", urgent=True)
    assert stream.getvalue() == "first\nn=2\nn=3\nfourth\n"
    assert len(rendered) == 2
    sink.close()


def test_deferred_lines_are_rendered_by_the_flusher_thread() -> None:
    stream = io.StringIO()
    sink = LineSink(stream, interval=0.01)
    threads: list[str] = []

    def render(item: str) -> str:
        threads.append(threading.current_thread().name)
        return item

    sink.write_later(render, "later")
    deadline = time.monotonic() + 5
    while stream.getvalue() == "" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.getvalue() == "later\n"
    assert threads == ["log-flush"]
    sink.close()


def test_many_deferred_lines_are_bounded_too() -> None:
    stream = io.StringIO()
    sink = LineSink(stream, interval=60)
    for index in range(5000):
        sink.write_later(str, index)
    assert stream.getvalue() != ""  # the pending bound flushed some on the way
    sink.close()
    assert stream.getvalue().splitlines() == [str(index) for index in range(5000)]
