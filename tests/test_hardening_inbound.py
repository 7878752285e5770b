"""Inbound hardening (issue #11 item 8): the signature is checked over the raw bytes before the body
is parsed, oversized bodies are refused before they are read whole, and nothing malformed, signed
or not, makes the server answer 500 or log a traceback."""

from __future__ import annotations

import hashlib
import hmac
import logging
import socket
import time

import pytest

from tests.conftest import ALICE
from tests.fakes.slack import FakeSlack
from tests.harness import SIGNING_SECRET, BotUnderTest

LIMIT = 1024 * 1024
FORM = "application/x-www-form-urlencoded"

MALFORMED: list[tuple[str, bytes, str]] = [
    ("garbage bytes", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", FORM),
    ("invalid UTF-8", b"command=%2Fcf-access&text=\xff\xfe\xfd", FORM),
    ("invalid UTF-8 JSON", b'{"type": "event_callback", "x": "\xc3\x28"}', "application/json"),
    ("payload= with broken JSON", b"payload=%7B%22type%22%3A%22block_actions%22%2C", FORM),
    ("payload= that is not an object", b"payload=%5B1%2C2%5D", FORM),
    ("broken JSON", b'{"type": "event_callback", ', "application/json"),
    ("JSON that is not an object", b'["event_callback"]', "application/json"),
    ("deeply nested JSON", b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json"),
    ("JSON of the wrong shape", b'{"type": "event_callback", "authorizations": "x"}', "application/json"),
    ("form fields of the wrong shape", b"payload=%7B%22user%22%3A3%2C%22team%22%3A5%7D", FORM),
]


def sign(body: bytes, timestamp: int, secret: str = SIGNING_SECRET) -> str:
    """Slack's v0 signature over the byte-exact body (works for bodies that are not UTF-8)."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def post_raw(bot: BotUnderTest, body: bytes, content_type: str, *, signed: bool) -> int:
    headers = {"Content-Type": content_type}
    if signed:
        timestamp = int(time.time())
        headers |= {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": sign(body, timestamp)}
    return bot.http.post("/slack/events", content=body, headers=headers).status_code


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert "Traceback" not in caplog.text
    assert not [record for record in caplog.records if record.exc_info], "an exception was logged"


@pytest.mark.parametrize(("what", "body", "content_type"), MALFORMED, ids=[case[0] for case in MALFORMED])
def test_unsigned_malformed_bodies_get_401_before_any_parsing(
    bot: BotUnderTest, caplog: pytest.LogCaptureFixture, what: str, body: bytes, content_type: str
) -> None:
    """Unsigned input never reaches a parser: Bolt used to parse first and answer 500 with a traceback."""
    caplog.set_level(logging.INFO)
    assert post_raw(bot, body, content_type, signed=False) == 401, what
    assert_no_traceback(caplog)


@pytest.mark.parametrize(("what", "body", "content_type"), MALFORMED, ids=[case[0] for case in MALFORMED])
def test_signed_malformed_bodies_get_400_not_500(
    bot: BotUnderTest, caplog: pytest.LogCaptureFixture, what: str, body: bytes, content_type: str
) -> None:
    """A body with a good signature that cannot be read is the sender's fault: 400, logged in one line."""
    caplog.set_level(logging.INFO)
    assert post_raw(bot, body, content_type, signed=True) == 400, what
    assert_no_traceback(caplog)
    assert any("malformed" in record.getMessage() for record in caplog.records)


def test_bad_timestamp_headers_get_401(bot: BotUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    """slack_sdk's verifier calls int() on the timestamp header; a non-number must not become a 500."""
    body = b"command=%2Fcf-access&text=help"
    now = str(int(time.time()))
    for timestamp in ("not-a-number", "", "1e9", f"{now[:4]}_{now[4:]}", "\u0661\u0662"):
        headers = {"Content-Type": FORM, "X-Slack-Request-Timestamp": timestamp.encode(), "X-Slack-Signature": b"v0=00"}
        assert bot.http.post("/slack/events", content=body, headers=headers).status_code == 401, timestamp
    assert_no_traceback(caplog)


def test_signature_is_over_the_raw_bytes(bot: BotUnderTest, fake_slack: FakeSlack) -> None:
    """A well-formed, correctly signed command still works; the same bytes signed with another secret do not."""
    body = f"command=%2Fcf-access&text=help&user_id={ALICE}&channel_id=C0OPS00001&team_id=T0TEAM0001".encode()
    timestamp = int(time.time())
    headers = {"Content-Type": FORM, "X-Slack-Request-Timestamp": str(timestamp)}
    good = bot.http.post("/slack/events", content=body, headers=headers | {"X-Slack-Signature": sign(body, timestamp)})
    assert good.status_code == 200 and "/cf-access request" in good.text
    forged = sign(body, timestamp, secret="another-secret-0123456789")
    assert (
        bot.http.post("/slack/events", content=body, headers=headers | {"X-Slack-Signature": forged}).status_code == 401
    )


def raw_exchange(bot: BotUnderTest, head: bytes, chunks: list[bytes]) -> bytes:
    """Send a request head and some body bytes on a bare socket, then read what the server answers.

    The body is deliberately left unfinished: a server that waits for all of it never answers.
    """
    with socket.create_connection(("127.0.0.1", bot.port), timeout=5) as connection:
        connection.sendall(head)
        for chunk in chunks:
            connection.sendall(chunk)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                data = connection.recv(65536)
                if not data:
                    break
                answer += data
        except TimeoutError:
            pass
    return answer


def test_declared_oversized_body_gets_413_without_being_read(
    bot: BotUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    """Content-Length over 1 MiB: refused on the header alone, before the body has even arrived."""
    head = (
        b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        + f"Content-Length: {LIMIT + 1}\r\n\r\n".encode()
    )
    answer = raw_exchange(bot, head, [b"command=%2Fcf-access&text=" + b"a" * 1000])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert_no_traceback(caplog)


def test_chunked_oversized_body_gets_413_at_the_limit(bot: BotUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    """No Content-Length (chunked): read as a stream and stopped once past 1 MiB, without waiting for the end."""
    head = (
        b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"a" * 65536
    chunks = [b"%x\r\n" % len(piece) + piece + b"\r\n" for _ in range(LIMIT // len(piece) + 2)]
    answer = raw_exchange(bot, head, chunks)  # the terminating 0-chunk is never sent
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert_no_traceback(caplog)


def test_body_at_the_limit_is_still_read(bot: BotUnderTest) -> None:
    """1 MiB exactly is allowed: unsigned, it is refused for its signature rather than its size."""
    body = b"command=%2Fcf-access&text=" + b"a" * (LIMIT - 26)
    assert len(body) == LIMIT
    assert post_raw(bot, body, FORM, signed=False) == 401
