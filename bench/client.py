"""The load generator: sends requests built beforehand, from a process of its own, and times them.

What it times is what Slack times: from sending a request to reading the answer. Two things
the bench once timed with it, and which are not the bot's, are kept out:
- building the request (an Approve click's payload carries the whole message: 7 KB of JSON);
- the fake Slack and Cloudflare servers, which answer the bot's follow-up calls in the bench's own
  process: sharing that interpreter (one GIL) made the bot's acks look slower the more follow-up
  work it did, which a bare app, with none, never paid.
"""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import httpx
from slack_sdk.signature import SignatureVerifier


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


def send_all(url: str, requests: list[Prepared], concurrency: int, secret: str) -> tuple[list[float], int, float]:
    """In the load process: (each request's seconds, non-200 answers, wall seconds)."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(len(requests)))
    verifier = SignatureVerifier(secret)

    def worker(http: httpx.Client) -> None:
        nonlocal errors
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            request = requests[n]
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": request.content_type,
                "X-Slack-Request-Timestamp": timestamp,
                "X-Slack-Signature": verifier.generate_signature(timestamp=timestamp, body=request.body),
            }
            content = request.body.encode()
            started = time.perf_counter()
            try:
                failed = http.post("/slack/events", content=content, headers=headers).status_code != 200
            except httpx.HTTPError:  # a timeout or reset: counted, with the time it took
                failed = True
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                errors += failed

    # Connections are opened by the first requests, inside the timed span, as before this client
    # had a process of its own: whether Slack keeps its connections to an app open is not documented.
    clients = [httpx.Client(base_url=url, timeout=30) for _ in range(concurrency)]
    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(http,)) for http in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    for http in clients:
        http.close()
    return latencies, errors, wall


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
