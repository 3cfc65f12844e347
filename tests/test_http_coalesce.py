"""A response's head and its first body bytes leave in one write (gateway.http_coalesce).

The transport alone, around a recording transport; then a real ``gateway serve`` over raw
sockets: a small response arrives whole in one segment, a stream whose first chunk is late
still gets its head at once, and a ``100 Continue``, a HEAD answer and pipelined requests keep
their order.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
from hardening import hardening_config, parse_response, read_all, sample_env
from support import GatewayProcess

from gateway.http_coalesce import HeadWithFirstBody


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def coalescing(loop: asyncio.AbstractEventLoop) -> tuple[RecordingTransport, HeadWithFirstBody]:
    transport = RecordingTransport()
    return transport, HeadWithFirstBody(transport, loop)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_the_head_waits_for_the_first_body_bytes_and_goes_with_them() -> None:
    transport, writer = coalescing(asyncio.get_running_loop())
    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # before the response starts: at once
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    writer.write(b"HEAD")
    assert len(transport.writes) == 1  # held
    writer.write(b"body")
    writer.write(b"more")
    assert transport.writes[1:] == [b"HEADbody", b"more"]
    await asyncio.sleep(0)  # the scheduled flush finds nothing left to write
    assert transport.writes[1:] == [b"HEADbody", b"more"]


@pytest.mark.anyio
async def test_a_head_whose_body_is_late_is_written_alone_on_the_next_turn_of_the_loop() -> None:
    transport, writer = coalescing(asyncio.get_running_loop())
    writer.write(b"HEAD")
    assert transport.writes == []
    await asyncio.sleep(0)
    assert transport.writes == [b"HEAD"]
    writer.write(b"late chunk")
    assert transport.writes == [b"HEAD", b"late chunk"]


@pytest.mark.anyio
async def test_a_large_first_chunk_is_not_copied_into_the_head() -> None:
    transport, writer = coalescing(asyncio.get_running_loop())
    big = b"x" * (64 * 1024 + 1)
    writer.write(b"HEAD")
    writer.write(big)
    assert transport.writes == [b"HEAD", big]
    assert transport.writes[1] is big


@pytest.mark.anyio
async def test_close_writes_a_held_head_first_and_a_closed_connection_gets_nothing() -> None:
    loop = asyncio.get_running_loop()
    transport, writer = coalescing(loop)
    writer.write(b"HEAD")  # a HEAD answer: no body follows, then Connection: close
    writer.close()
    assert transport.writes == [b"HEAD"]
    assert transport.closed
    assert writer.is_closing()

    transport, writer = coalescing(loop)
    writer.write(b"HEAD")
    transport.closed = True  # the client went away before the loop turned
    await asyncio.sleep(0)
    assert transport.writes == []


# -- over a real server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp_path = tmp_path_factory.mktemp("coalesce")
    with GatewayProcess(hardening_config(tmp_path), env=sample_env(tmp_path)) as gateway:
        yield gateway


def connect(server: GatewayProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


@pytest.mark.e2e
@pytest.mark.parametrize("target", ["/svc/echo", "/echo"], ids=["new", "legacy"])
def test_a_small_response_arrives_whole_in_one_segment(server: GatewayProcess, target: str) -> None:
    with connect(server) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        first = sock.recv(65536)  # one write, one segment: head and body together
    response = parse_response(first)
    assert response.status == 200
    assert len(response.body) == int(response.headers["content-length"]) > 0


@pytest.mark.e2e
def test_a_stream_whose_first_chunk_is_late_gets_its_head_at_once(server: GatewayProcess) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"GET /svc/late-stream?delay=2 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        sock.settimeout(1.5)  # well before the first chunk
        started = time.monotonic()
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
        assert time.monotonic() - started < 1.5
        assert head.startswith(b"HTTP/1.1 200 ")
        assert head.endswith(b"\r\n\r\n")  # no body byte yet
        rest = read_all(sock, timeout=10)
    assert parse_response(head + rest).body == b"first\nsecond\n"


@pytest.mark.e2e
def test_continue_head_and_pipelined_answers_keep_their_order(server: GatewayProcess) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST /svc/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        sock.settimeout(10)
        interim = sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(
            b"hello"
            b"HEAD /svc/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        raw = read_all(sock, timeout=10)
    upload, _, rest = raw.partition(b"}")
    assert upload.startswith(b"HTTP/1.1 200 ")
    assert b'"size":5' in upload
    head_answer, _, legacy = rest.partition(b"\r\n\r\n")
    assert head_answer.startswith(b"HTTP/1.1 200 ")
    assert b"content-length:" in head_answer.lower()
    assert legacy.startswith(b"HTTP/1.1 200 ")
    assert parse_response(legacy).json()["method"] == "GET"
