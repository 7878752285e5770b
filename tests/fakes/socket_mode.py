"""Slack's Socket Mode side, on a local WebSocket server (ws://127.0.0.1:<free port>).

`FakeSlack`'s `apps.connections.open` hands out one-use URLs from `issue_url()`; a connection
with an unknown or reused ticket is refused at the handshake, as Slack does. Each accepted
connection gets Slack's `hello`; tests then send envelopes, `disconnect` messages, drop the TCP
connection or silence it, and read back the acks the bot sent (when, and on which connection).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.fakes.slack import FakeSlack

APP_ID = "A0CFACCESS"


@dataclass
class Link:
    """One connection, as the server saw it."""

    number: int
    ticket: str
    ws: ServerConnection
    opened_at: float
    closed_at: float | None = None
    close_code: int | None = None
    received: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Ack:
    message: dict[str, Any]
    after: float  # seconds from sending the envelope
    link: int  # the connection it arrived on


class FakeSocketMode:
    def __init__(self, slack: FakeSlack) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="fake-socket-mode")
        self._changed = threading.Condition()
        self._tickets = itertools.count(1)
        self._envelopes = itertools.count(1)
        self._unused: set[str] = set()
        self._sent_at: dict[str, float] = {}
        self.issued: list[float] = []  # when each apps.connections.open URL was issued
        self.links: list[Link] = []
        self.acks: dict[str, Ack] = {}
        self.refused_handshakes = 0
        self._server: Server | None = None
        self.port = 0
        self._slack = slack

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeSocketMode:
        self._thread.start()

        async def listen() -> Server:  # the server must be made inside its loop
            return await serve(
                self._serve, "127.0.0.1", 0, process_request=self._check_ticket, ping_interval=None, close_timeout=0.5
            )

        self._server = self._call(listen())
        self.port = self._server.sockets[0].getsockname()[1]
        self._slack.socket_mode = self
        return self

    def stop(self) -> None:
        self._slack.socket_mode = None
        if self._server is not None:
            self._server.close()
            self._call(self._server.wait_closed())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _call(self, coroutine: Any, timeout: float = 5.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    # --- what FakeSlack calls ----------------------------------------------------------------

    def issue_url(self) -> str:
        with self._changed:
            ticket = f"ticket-{next(self._tickets)}"
            self._unused.add(ticket)
            self.issued.append(time.monotonic())
            self._changed.notify_all()
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={APP_ID}"

    # --- server side --------------------------------------------------------------------------

    def _check_ticket(self, _connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        ticket = parse_qs(parts.query).get("ticket", [""])[0]
        with self._changed:
            if parts.path.rstrip("/") == "/link" and ticket in self._unused:
                self._unused.discard(ticket)
                return None
            self.refused_handshakes += 1
        body = b"invalid or reused ticket\n"
        return Response(HTTPStatus.UNAUTHORIZED, "Unauthorized", Headers({"Content-Length": str(len(body))}), body)

    async def _serve(self, ws: ServerConnection) -> None:
        ticket = parse_qs(urlsplit(ws.request.path if ws.request else "").query)["ticket"][0]
        with self._changed:
            link = Link(len(self.links) + 1, ticket, ws, time.monotonic())
            num_connections = 1 + sum(1 for other in self.links if other.closed_at is None)
        await ws.send(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": num_connections,
                    "debug_info": {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060},
                    "connection_info": {"app_id": APP_ID},
                }
            )
        )
        with self._changed:
            self.links.append(link)
            self._changed.notify_all()
        try:
            async for raw in ws:
                message = json.loads(raw)
                with self._changed:
                    link.received.append(message)
                    envelope_id = message.get("envelope_id")
                    if envelope_id in self._sent_at and envelope_id not in self.acks:
                        self.acks[envelope_id] = Ack(
                            message, time.monotonic() - self._sent_at[envelope_id], link.number
                        )
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self._changed:
                link.closed_at = time.monotonic()
                link.close_code = ws.close_code
                self._changed.notify_all()

    # --- test side ----------------------------------------------------------------------------

    def wait(self, predicate: Any, timeout: float, what: str) -> None:
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def wait_link(self, number: int, timeout: float = 10.0) -> Link:
        """The `number`-th connection, once it has been sent `hello`."""
        self.wait(lambda: len(self.links) >= number, timeout, f"Socket Mode connection {number}")
        return self.links[number - 1]

    def wait_closed(self, link: Link, timeout: float = 10.0) -> None:
        self.wait(lambda: link.closed_at is not None, timeout, f"connection {link.number} to close")

    def send(self, link: Link, message: dict[str, Any]) -> None:
        self._call(link.ws.send(json.dumps(message)))

    def send_envelope(
        self, link: Link, kind: str, payload: dict[str, Any], *, accepts_response_payload: bool = True
    ) -> str:
        envelope_id = f"{next(self._envelopes):08x}-fake-envelope"
        with self._changed:
            self._sent_at[envelope_id] = time.monotonic()
        self.send(
            link,
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": accepts_response_payload,
            },
        )
        return envelope_id

    def wait_ack(self, envelope_id: str, timeout: float = 3.0) -> Ack:
        """The bot's ack; Slack gives up on an envelope not acknowledged within 3 s."""
        self.wait(lambda: envelope_id in self.acks, timeout, f"the ack of envelope {envelope_id}")
        return self.acks[envelope_id]

    def disconnect(self, link: Link, reason: str = "refresh_requested") -> None:
        self.send(link, {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}})

    def drop(self, link: Link) -> None:
        """The TCP connection goes away with no WebSocket close frame."""
        self._loop.call_soon_threadsafe(link.ws.transport.abort)

    def silence(self, link: Link) -> None:
        """The peer stops reading and answering (pings included), as behind a dead NAT or proxy."""
        self._loop.call_soon_threadsafe(link.ws.transport.pause_reading)
