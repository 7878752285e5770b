"""httpx's last hop for Cloudflare calls, over the standard library's keep-alive connections.

httpx builds the request (base URL, headers, JSON, timeouts) and reads the answer (content
decoding, `json()`); only the exchange on the wire is `http.client`'s instead of httpcore's and
h11's. A whole call measured 1.3-1.5 ms of CPU this way against 1.7-2.0 ms (loopback, this slow
machine), at two Cloudflare calls per approval. A proxy from the environment is still httpx's own
transport, mounted by httpx itself.

Failures are raised as httpx raises them, so the client's handling does not change: a connect
failure is `ConnectError` (`ConnectTimeout`), a timeout after it `ReadTimeout`, a dropped or garbled
answer `RemoteProtocolError` / `ReadError`. Nothing is retried here: a POST whose answer was lost is
the invite outbox's to re-check.
"""

from __future__ import annotations

from http.client import HTTPException
from ssl import SSLContext

import httpx

from bot.core.keepalive import KeepAlivePool


class KeepAliveTransport(httpx.BaseTransport):
    def __init__(self, *, ssl: SSLContext | None = None, max_idle: int = 16, idle_expiry: float = 30.0) -> None:
        # httpx's own context (certifi's CAs), as Cloudflare calls have always been verified with.
        context = ssl if ssl is not None else httpx.create_ssl_context()
        self._pool = KeepAlivePool(ssl=context, max_idle=max_idle, idle_expiry=idle_expiry)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https") or not url.host:
            raise httpx.UnsupportedProtocol(f"cannot send to {url}", request=request)
        origin = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        timeouts = request.extensions.get("timeout", {})
        body = request.read()
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in request.headers.raw}
        connection = self._pool.checkout(origin, timeouts.get("connect"))
        try:
            if connection.sock is None:
                try:
                    connection.connect()
                except TimeoutError as error:
                    raise httpx.ConnectTimeout(str(error), request=request) from error
                except OSError as error:
                    raise httpx.ConnectError(str(error), request=request) from error
            connection.sock.settimeout(timeouts.get("read"))
            try:
                connection.request(request.method, url.raw_path.decode("ascii"), body=body or None, headers=headers)
            except ValueError:  # a header http.client refuses (a line break): never echo it, it may be the token
                raise httpx.LocalProtocolError(
                    "a request header has a value HTTP cannot carry", request=request
                ) from None
            response = connection.getresponse()
            data = response.read()
            if 100 <= response.status < 200:  # not the answer (see KeepAlivePool.done): ambiguous
                raise httpx.RemoteProtocolError(f"informational answer {response.status}", request=request)
        except httpx.TransportError:
            connection.close()
            raise
        except TimeoutError as error:
            connection.close()
            raise httpx.ReadTimeout(str(error) or "timed out", request=request) from error
        except HTTPException as error:  # the server closed, or answered something that is not HTTP
            connection.close()
            raise httpx.RemoteProtocolError(f"{type(error).__name__}: {error}", request=request) from error
        except OSError as error:  # reset, broken pipe
            connection.close()
            raise httpx.ReadError(f"{type(error).__name__}: {error}", request=request) from error
        self._pool.done(origin, connection, response)
        return httpx.Response(
            response.status,
            # http.client decoded them as latin-1: encoded back, any byte survives (httpx wants ASCII str).
            headers=[(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.getheaders()],
            stream=httpx.ByteStream(data),
            extensions={
                "http_version": b"HTTP/1.0" if response.version == 10 else b"HTTP/1.1",
                "reason_phrase": response.reason.encode("latin-1", "replace"),
            },
        )

    def close(self) -> None:
        self._pool.close()
