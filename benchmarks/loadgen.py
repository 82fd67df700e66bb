"""A bounded loopback load generator: a fixed number of POSTs over keep-alive HTTP/1.1 connections.

Plain asyncio streams, so the client spends little of the shared CPU on each request (an HTTP
library would cost the servers under test more of the two cores than the request itself). Every
response is read in full and counted: a non-200 status, a dropped connection or a timeout is an error.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return (self.requests - self.errors) / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {
        k.strip().lower(): v.strip()
        for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return status, body
            body += chunk[:-2]
    raise ConnectionError("response without length")


async def _worker(
    host: str,
    port: int,
    bodies: list[bytes],
    path: str,
    queue: asyncio.Queue,
    headers: str,
    result: LoadResult,
    timeout: float,
    keep_alive: bool,
) -> None:
    connection = None
    try:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            body = bodies[i % len(bodies)]
            request = (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            started = time.perf_counter()
            try:
                if connection is None:
                    connection = await asyncio.open_connection(host, port)
                reader, writer = connection
                writer.write(request)
                status, _ = await asyncio.wait_for(_read_response(reader), timeout)
            except (
                TimeoutError,
                OSError,
                asyncio.IncompleteReadError,
                ConnectionError,
                ValueError,
            ):
                result.errors += 1
                if connection is not None:
                    connection[1].close()
                connection = None
                continue
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status != 200:
                result.errors += 1
            if not keep_alive:
                writer.close()
                connection = None
    finally:
        if connection is not None:
            connection[1].close()


async def _run(
    host, port, path, payloads, requests, concurrency, token, timeout, keep_alive
) -> LoadResult:
    bodies = [json.dumps(p, separators=(",", ":")).encode() for p in payloads]
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    headers = f"Authorization: Bearer {token}\r\n" if token else ""
    if not keep_alive:
        headers += "Connection: close\r\n"
    result = LoadResult(requests, 0, 0.0, [])
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _worker(host, port, bodies, path, queue, headers, result, timeout, keep_alive)
            for _ in range(concurrency)
        )
    )
    result.seconds = time.perf_counter() - started
    return result


def run_load(
    port: int,
    path: str,
    payloads: list,
    requests: int,
    concurrency: int,
    token: str | None = None,
    host: str = "127.0.0.1",
    timeout: float = 30.0,
    keep_alive: bool = True,
) -> LoadResult:
    """Send ``requests`` POSTs of the payloads (cycled) with ``concurrency`` clients; wait for every answer.

    With ``keep_alive`` each client holds one connection; without, it connects anew per request
    (as independent batch jobs do), which also lets every server worker accept its share.
    """
    return asyncio.run(
        _run(host, port, path, payloads, requests, concurrency, token, timeout, keep_alive)
    )
