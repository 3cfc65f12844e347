"""A soak of mixed traffic: memory, threads and file descriptors before, at peak and after.

::

    python bench/soak.py                     # 10,000 requests from 8 client threads
    python bench/soak.py --requests 2000

One ``gateway serve`` process (legacy threads 8, body limit 4 KiB). After a warm-up that starts
every pool thread, the baseline is read from ``/proc/<pid>``; then the mix below runs while a
sampler records the peak; then, once the connections have closed, the values after. The mix:
legacy and new GETs, uploads within the limit, 404s, a forged ``Host`` (400), bodies over the
limit (413 at once from ``Content-Length``, and chunked ones that grow past it), and clients that
hang up in the middle of an endless legacy stream. Exits non-zero when threads or descriptors
do not return to the baseline, or memory grows by more than 16 MiB.
"""

from __future__ import annotations

import argparse
import http.client
import random
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hardening_apps import serving

#: AnyIO's worker threads (sync FastAPI code, ``run_in_threadpool``) start on demand and are
#: retired only on later use; a few over the baseline is not a leak.
THREAD_SLACK = 4
RSS_SLACK_KIB = 16 * 1024


def resources(pid: int) -> tuple[int, int, int]:
    proc = Path(f"/proc/{pid}")
    rss = next(
        int(line.split()[1])
        for line in (proc / "status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return len(list((proc / "task").iterdir())), len(list((proc / "fd").iterdir())), rss


def raw(port: int, data: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        response = b""
        try:
            while chunk := sock.recv(65536):
                response += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return int(response.split(b" ", 2)[1]) if response else 0


def one(port: int, kind: str, connection: http.client.HTTPConnection) -> int:
    def request(method: str, path: str, body: bytes | None = None) -> int:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        response.read()
        return response.status

    if kind == "legacy":
        return request("GET", "/legacy/hello")
    if kind == "new":
        return request("GET", "/new/hello")
    if kind == "not-found":
        return request("GET", "/nothing/here")
    if kind == "upload":
        return request("POST", "/new/upload", b"u" * 2000)
    if kind == "legacy-upload":
        return request("POST", "/legacy/upload", b"u" * 2000)
    if kind == "bad-host":
        return raw(
            port, b"GET /legacy/hello HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
        )
    if kind == "oversized":
        return raw(
            port, b"POST /new/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 9000\r\n\r\n"
        )
    if kind == "oversized-chunked":
        chunk = b"bb8\r\n" + b"x" * 3000 + b"\r\n"
        head = (
            b"POST /legacy/upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        return raw(port, head + chunk * 2)
    if kind == "disconnect":
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /legacy/stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
            sock.recv(4096)
        return 0
    raise ValueError(kind)


EXPECTED = {
    "legacy": 200,
    "new": 200,
    "not-found": 404,
    "upload": 200,
    "legacy-upload": 200,
    "bad-host": 400,
    "oversized": 413,
    "oversized-chunked": 413,
    "disconnect": 0,
}


def burst(port: int, count: int, seed: int, clients: int = 8) -> Counter[str]:
    kinds = random.Random(seed).choices(list(EXPECTED), k=count)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def run(share: list[str]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for kind in share:
            status = one(port, kind, connection)
            with lock:
                outcomes["ok" if status == EXPECTED[kind] else f"{kind}:{status}"] += 1
        connection.close()

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, [kinds[i::clients] for i in range(clients)]))
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args(argv)

    with serving(threads=8) as (port, pid):
        burst(port, 500, seed=1)
        slow = [
            "GET /legacy/slow?seconds=0.5 HTTP/1.1\r\nHost: localhost\r\n\r\n" for _ in range(8)
        ]
        with ThreadPoolExecutor(8) as pool:  # start all eight legacy threads
            list(pool.map(lambda text: raw(port, text.encode()), slow))
        time.sleep(1)
        baseline = resources(pid)

        peak = list(baseline)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                for index, value in enumerate(resources(pid)):
                    peak[index] = max(peak[index], value)
                time.sleep(0.1)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        outcomes = burst(port, args.requests, seed=2)
        elapsed = time.monotonic() - started
        done.set()
        sampler.join()

        deadline = time.monotonic() + 15
        after = resources(pid)
        while time.monotonic() < deadline and (
            after[0] > baseline[0] + THREAD_SLACK or after[1] > baseline[1]
        ):
            time.sleep(0.2)
            after = resources(pid)

    print(f"{args.requests} mixed requests in {elapsed:.1f}s; outcomes: {dict(outcomes)}")
    rows = [("", "baseline", "peak", "after")]
    rows.append(("threads", *(str(v[0]) for v in (baseline, peak, after))))
    rows.append(("open fds", *(str(v[1]) for v in (baseline, peak, after))))
    rows.append(("RSS MiB", *(f"{v[2] / 1024:.1f}" for v in (baseline, peak, after))))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    bounded = (
        after[0] <= baseline[0] + THREAD_SLACK
        and after[1] <= baseline[1]
        and after[2] <= baseline[2] + RSS_SLACK_KIB
        and set(outcomes) == {"ok"}
    )
    print("back to baseline" if bounded else "NOT back to baseline")
    return 0 if bounded else 1


if __name__ == "__main__":
    raise SystemExit(main())
