"""The load generator: sends requests built beforehand, from a process of its own, and times them.

What it times is what Slack times: from sending a request to reading the answer. Three things
the bench once timed with it, and which are not the bot's, are kept out:
- building the request (an Approve click's payload carries the whole message: 7 KB of JSON);
- the fake Slack and Cloudflare servers, which answer the bot's follow-up calls in the bench's own
  process: sharing that interpreter (one GIL) made the bot's acks look slower the more follow-up
  work it did, which a bare app, with none, never paid;
- the client's own threads: one per connection, they took turns at this process's GIL, and an
  answer that had arrived waited for its thread's turn (see `send_all`).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from urllib.parse import urlsplit

from slack_sdk.signature import SignatureVerifier

#: As long as an answer may take before it counts as an error (Slack gives an app 3 s).
TIMEOUT = 30.0


@dataclass(frozen=True)
class Prepared:
    """One request as Slack would send it, before signing (the signature is made when it is sent)."""

    body: str
    content_type: str


@dataclass
class Stats:
    p50: float
    p99: float
    throughput: float
    errors: int


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, whether the connection stays open) of one HTTP/1.1 answer, its body read."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("closed before answering")
    status = int(status_line.split()[1])
    length, chunked, keep = 0, False, True
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = value == "chunked"
        elif name == "connection":
            keep = value != "close"
    if not chunked:
        await reader.readexactly(length)
        return status, keep
    while size := int((await reader.readline()).split(b";")[0], 16):
        await reader.readexactly(size + 2)
    await reader.readline()
    return status, keep


async def _send_all(
    url: str, requests: list[Prepared], concurrency: int, secret: str
) -> tuple[list[float], int, float]:
    address = urlsplit(url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    verifier = SignatureVerifier(secret)
    latencies: list[float] = []
    errors = 0
    pending = iter(requests)

    async def worker() -> None:
        nonlocal errors
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for request in pending:
            body = request.body.encode()
            timestamp = str(int(time.time()))
            signature = verifier.generate_signature(timestamp=timestamp, body=request.body)
            head = (
                f"POST /slack/events HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {request.content_type}\r\n"
                f"Content-Length: {len(body)}\r\nX-Slack-Request-Timestamp: {timestamp}\r\n"
                f"X-Slack-Signature: {signature}\r\n\r\n"
            ).encode()
            started = time.perf_counter()
            try:
                if connection is None:
                    connection = await asyncio.open_connection(host, port)
                reader, writer = connection
                writer.write(head + body)
                async with asyncio.timeout(TIMEOUT):
                    status, keep = await _read_answer(reader)
                failed = status != 200
            except (TimeoutError, OSError, EOFError, ValueError, IndexError):  # IncompleteReadError: an EOFError
                failed, keep = True, False  # a timeout or reset: counted, with the time it took
            latencies.append(time.perf_counter() - started)
            errors += failed
            if not keep and connection is not None:
                connection[1].close()
                connection = None
        if connection is not None:
            connection[1].close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - started


def send_all(url: str, requests: list[Prepared], concurrency: int, secret: str) -> tuple[list[float], int, float]:
    """In the load process: (each request's seconds, non-200 answers, wall seconds).

    One event loop with raw HTTP/1.1 keep-alive connections, not a thread per connection: 16 client
    threads took turns at this process's own GIL (5 ms turns), and an answer that had arrived
    waited for its thread's turn before the clock stopped. Connections are opened by the first
    requests, inside the timed span: whether Slack keeps its connections to an app open is not
    documented.
    """
    return asyncio.run(_send_all(url, requests, concurrency, secret))


class LoadProcess:
    """One load process for the whole run (started once: its start-up is not timed)."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
        self._pool.submit(time.time).result()

    def run(self, url: str, requests: list[Prepared], concurrency: int) -> Stats:
        latencies, errors, wall = self._pool.submit(send_all, url, requests, concurrency, self._secret).result()
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        return Stats(statistics.median(latencies) * 1000, p99 * 1000, len(latencies) / wall, errors)

    def close(self) -> None:
        self._pool.shutdown()
