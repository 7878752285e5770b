"""Idle keep-alive `http.client` connections, kept per origin and shared by a process's calls.

The standard library's client is the cheapest way Python has to send a call, which matters at half
a dozen outbound calls per click. Slack's and Cloudflare's clients each keep one pool: what is sent
over it, and what a failure is called, is theirs.
"""

from __future__ import annotations

import select
import ssl as ssl_module
import threading
import time
from http.client import HTTPConnection, HTTPResponse, HTTPSConnection
from ssl import SSLContext
from typing import Any

#: (scheme, host, port)
Origin = tuple[str, str, int]


class KeepAlivePool:
    """An idle connection is reused only while young (`idle_expiry`) and still quiet: one the server
    has closed reads as ready and is dropped before it is used, so a request never goes out on a
    connection already gone. A checked-out connection is the caller's until it hands it back with
    `done` (after reading the whole answer) or closes it."""

    def __init__(self, *, ssl: SSLContext | None = None, max_idle: int = 32, idle_expiry: float = 30.0) -> None:
        self._ssl = ssl
        self._max_idle = max_idle
        self._idle_expiry = idle_expiry
        self._idle: dict[Origin, list[tuple[HTTPConnection, float]]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def checkout(self, origin: Origin, timeout: float | None) -> HTTPConnection:
        """An idle connection to `origin`, or a new one not yet connected (`sock` is None)."""
        now = time.monotonic()
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                if not idle:
                    break
                connection, since = idle.pop()
            sock = connection.sock
            if sock is None or now - since > self._idle_expiry or _closed_by_peer(sock):
                connection.close()
                continue
            sock.settimeout(timeout)
            return connection
        scheme, host, port = origin
        if scheme == "https":
            return HTTPSConnection(host, port, timeout=timeout, context=self._ssl or _default_context())
        return HTTPConnection(host, port, timeout=timeout)

    def done(self, origin: Origin, connection: HTTPConnection, response: HTTPResponse) -> None:
        """After `response` was read whole: the connection goes back to the pool, unless the server
        closes it or the answer was informational (1xx: http.client passes over 100 Continue only,
        so the final answer to a 103 would still be on the wire, read as the next request's)."""
        if response.will_close or 100 <= response.status < 200:
            connection.close()
        else:
            self.checkin(origin, connection)

    def checkin(self, origin: Origin, connection: HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if not self._closed and len(idle) < self._max_idle:
                idle.append((connection, time.monotonic()))
                return
        connection.close()

    def close(self) -> None:
        """Close the idle connections; those in use are closed when they come back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection, _ in connections:
                connection.close()


def _closed_by_peer(sock: Any) -> bool:
    """An idle keep-alive socket that reads as ready has been closed (or spoken to) by the server."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


_context: SSLContext | None = None


def _default_context() -> SSLContext:
    global _context
    if _context is None:
        _context = ssl_module.create_default_context()
    return _context
