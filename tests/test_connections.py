"""Keep-alive to Slack and Cloudflare (issue #15): calls share a few pooled connections instead of
opening one each (in production, a TLS handshake each). The fakes count accepted connections.
And Block Kit serialisation, the other per-call cost the issue's profile named."""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.error import URLError

import pytest
from pydantic import SecretStr
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import ButtonElement, SectionBlock

from bot.cloudflare.client import CloudflareClient, CloudflareCredentials, pooled_transport
from bot.cloudflare.errors import CloudflareUnavailable
from bot.cloudflare.transport import KeepAliveTransport
from bot.slack.gateway import NO_ANSWER, SlackError, SlackGateway, make_web_client
from bot.slack.transport import PooledRespond
from bot.slack.validation import cache_block_kit_validators
from tests.conftest import ALICE, BOB, World
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.slack import FakeSlack, SlackFault
from tests.harness import BOT_TOKEN, CF_TOKEN, BotUnderTest
from tests.helpers import file_request, roots_of, stored


def test_fifty_slack_calls_open_one_connection(fake_slack: FakeSlack) -> None:
    client = make_web_client(BOT_TOKEN, fake_slack.url + "/api/")
    slack = SlackGateway(client)
    responds = [  # a response_url takes 5 posts: two interactions' worth
        PooledRespond(response_url=f"{fake_slack.url}/response/keepalive-{n}", http=client.http) for n in range(2)
    ]
    before = fake_slack.connections
    for n in range(20):
        assert slack.profile(ALICE).email == "alice@example.com"
        slack.post("C0OPS00001", f"message {n}")
    for n in range(10):
        responds[n % 2](text=f"reply {n}", response_type="ephemeral")
    assert [len(fake_slack.responses_for(f"keepalive-{n}")) for n in range(2)] == [5, 5]
    assert fake_slack.connections - before <= 2, f"{fake_slack.connections - before} connections for 50 calls"
    client.http.close()


def test_the_sdk_still_retries_and_raises_over_the_pool(fake_slack: FakeSlack) -> None:
    """Only the last hop is ours: a 429 is retried by slack_sdk's handler after Retry-After, and a
    5xx on a post (which may have been posted) is not, and surfaces as the SDK's error."""
    client = make_web_client(BOT_TOKEN, fake_slack.url + "/api/")
    slack = SlackGateway(client)
    fake_slack.inject(SlackFault(method="users.info", status=429, retry_after=0))
    assert slack.profile(ALICE).email == "alice@example.com"
    assert len(fake_slack.calls_to("users.info")) == 2
    fake_slack.inject(SlackFault(method="chat.postMessage", status=500, error="internal_error"))
    with pytest.raises(SlackError) as refused:
        slack.post("C0OPS00001", "once")
    assert refused.value.code == "internal_error" and refused.value.response.status_code == 500
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    client.http.close()


def test_fifty_cloudflare_calls_open_one_connection(fake_cf: FakeCloudflare, world: World) -> None:
    client = CloudflareClient(
        base_url=fake_cf.url + "/client/v4", credentials=CloudflareCredentials(token=SecretStr(CF_TOKEN))
    )
    before = fake_cf.connections
    for _ in range(25):
        client.get_account(world.acme)
        client.get_member(world.acme, world.bob_member)
    assert fake_cf.connections - before <= 2, f"{fake_cf.connections - before} connections for 50 calls"
    client.close()


def test_the_bot_reuses_its_connections(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    """Filing and approving ten requests (dozens of Slack calls, listeners' response_url replies
    included, and twenty Cloudflare calls) opens a handful of connections, not one per call."""
    requesters = [fake_slack.add_user(f"U0KEEP{n:04d}", f"keep{n}@example.com", f"keep{n}") for n in range(10)]
    slack_before, cloudflare_before = fake_slack.connections, fake_cf.connections
    slack_calls_before, cloudflare_calls_before = len(fake_slack.calls), len(fake_cf.calls)
    for requester in requesters:
        request_id = file_request(bot, fake_slack, requester)
        bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB)
        assert stored(bot, request_id).status == "invited"
    slack_calls = len(fake_slack.calls) - slack_calls_before + len(requesters)  # + response_url replies
    cloudflare_calls = len(fake_cf.calls) - cloudflare_calls_before
    slack_opened = fake_slack.connections - slack_before
    cloudflare_opened = fake_cf.connections - cloudflare_before
    print(
        f"\n{slack_calls} Slack calls over {slack_opened} connections, {cloudflare_calls} Cloudflare over {cloudflare_opened}"
    )
    assert slack_calls >= 50 and cloudflare_calls >= 20
    assert slack_opened <= 5 and cloudflare_opened <= 5


def test_block_kit_is_validated_as_before_with_the_validators_found_once() -> None:
    """The serving process caches which validators each Block Kit class has (issue #15: most of
    the CPU of a message was finding them); the validators themselves still run and still refuse."""
    cache_block_kit_validators()
    button = ButtonElement(text="Approve", action_id="request_approve", value="1", style="primary")
    assert button.to_dict()["style"] == "primary"
    with pytest.raises(SlackObjectFormationError, match="style"):
        ButtonElement(text="Approve", action_id="request_approve", value="1", style="loud").to_dict()
    with pytest.raises(SlackObjectFormationError, match="text"):
        SectionBlock(text="x" * 3001).to_dict()


def test_a_dm_to_someone_new_is_one_post_and_later_ones_reuse_the_conversation(fake_slack: FakeSlack) -> None:
    """Slack takes a user id as `channel` and answers with the DM's id: no conversations.open
    (Tier 3, once per new person: an approval burst would spend the tier on it)."""
    client = make_web_client(BOT_TOKEN, fake_slack.url + "/api/")
    slack = SlackGateway(client)
    first = slack.dm(ALICE, "first")
    second = slack.dm(ALICE, "second")
    assert first.channel_id == second.channel_id == fake_slack.dm_channel(ALICE)
    assert [m.text for m in fake_slack.dms_to(ALICE)] == ["first", "second"]
    assert [args["channel"] for args in fake_slack.calls_to("chat.postMessage")] == [ALICE, first.channel_id]
    assert fake_slack.calls_to("conversations.open") == []

    # Should a workspace refuse user ids as channels, the conversation is opened first.
    fake_slack.inject(SlackFault(method="chat.postMessage", status=200, error="channel_not_found"))
    assert slack.dm(BOB, "via open").channel_id == fake_slack.dm_channel(BOB)
    assert [m.text for m in fake_slack.dms_to(BOB)] == ["via open"]
    assert len(fake_slack.calls_to("conversations.open")) == 1

    # A deactivated person's DM cannot be opened: the refusal reaches the caller, nothing is posted.
    gone = fake_slack.add_user("U0GONE0001", "gone@example.com", "gone", deleted=True)
    fake_slack.inject(SlackFault(method="chat.postMessage", status=200, error="channel_not_found"))
    with pytest.raises(SlackError) as refused:
        slack.dm(gone, "to nobody")
    assert refused.value.code == "user_disabled"
    assert fake_slack.dms_to(gone) == []
    client.http.close()


class _Cloudflare(BaseHTTPRequestHandler):
    """A bare server speaking Cloudflare's envelope the way its edge does on the wire: gzip when
    the client accepts it, and keep-alive connections it may close while they are idle."""

    protocol_version = "HTTP/1.1"
    close_after_answer = False
    #: Answers to precede with a 103 Early Hints; each is finished only once the next call arrives.
    early_hints = 0
    next_call = threading.Event()
    closed = threading.Event()
    seen: ClassVar[list[str]] = []
    encodings: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self._answer({"id": "a1", "name": "Zoë's"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self._answer({"id": "m1", "status": "pending"})

    def _answer(self, result: dict[str, str]) -> None:
        type(self).seen.append(f"{self.command} {self.path}")
        if type(self).early_hints:
            type(self).early_hints -= 1
            _send_early_hints(self)
            type(self).next_call.wait(5)  # the origin is slow: the final answer comes after the next call
        else:
            type(self).next_call.set()
        body = json.dumps({"success": True, "errors": [], "messages": [], "result": result}).encode()
        data = gzip.compress(body) if "gzip" in self.headers.get("Accept-Encoding", "") else body
        with contextlib.suppress(OSError):  # after a 103, the client may have closed the connection
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("CF-Note", "café")  # not ASCII: latin-1 on the wire, as HTTP allows
            if data != body:
                self.send_header("Content-Encoding", "gzip")
                type(self).encodings.append("gzip")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        # Closed without a `Connection: close`: the client learns it only from the socket.
        self.close_connection = type(self).close_after_answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def _send_early_hints(handler: BaseHTTPRequestHandler) -> None:
    """A 103 Early Hints, on the wire at once; the final answer follows later."""
    handler.send_response_only(103)
    handler.send_header("Link", "</style.css>; rel=preload")
    handler.end_headers()
    handler.wfile.flush()


class _ClosingServer(ThreadingHTTPServer):
    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        self.RequestHandlerClass.closed.set()  # type: ignore[attr-defined]  # after the socket is closed


@pytest.fixture
def bare_cloudflare() -> Iterator[tuple[str, type[_Cloudflare]]]:
    handler = type(
        "Handler",
        (_Cloudflare,),
        {"closed": threading.Event(), "seen": [], "encodings": [], "early_hints": 0, "next_call": threading.Event()},
    )
    server = _ClosingServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def _client(url: str, token: str = CF_TOKEN) -> CloudflareClient:
    return CloudflareClient(
        base_url=url, credentials=CloudflareCredentials(token=SecretStr(token)), sleep=lambda _seconds: None
    )


def test_a_compressed_cloudflare_answer_is_read(bare_cloudflare: tuple[str, type[_Cloudflare]]) -> None:
    url, handler = bare_cloudflare
    client = _client(url)
    assert client.get_account("a1").name == "Zoë's"
    assert handler.encodings == ["gzip"], "the answer was not compressed: nothing was tested"
    client.close()


def test_a_connection_cloudflare_closed_while_idle_is_not_used(bare_cloudflare: tuple[str, type[_Cloudflare]]) -> None:
    """The edge closes idle keep-alive connections without notice: the next call goes out on a new
    one rather than failing on the dead one (which, for a POST, would be an ambiguous failure)."""
    url, handler = bare_cloudflare
    handler.close_after_answer = True
    client = _client(url)
    assert client.get_account("a1").id == "a1"
    assert handler.closed.wait(5)
    handler.close_after_answer = False
    # A POST is never retried: it would fail on the dead connection.
    assert client.create_member("a1", email="new@example.com", role_ids=["r1"]).id == "m1"
    assert handler.seen == ["GET /accounts/a1", "POST /accounts/a1/members"]
    client.close()


def test_a_proxy_in_the_environment_is_used(
    bare_cloudflare: tuple[str, type[_Cloudflare]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only httpx's own transport honours HTTP(S)_PROXY: with one set, Cloudflare calls go through it."""
    proxy, handler = bare_cloudflare  # the server answers as the proxy: it sees the absolute URL
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = _client("http://cloudflare.invalid/client/v4")
    assert client.get_account("a1").id == "a1"
    assert handler.seen == ["GET http://cloudflare.invalid/client/v4/accounts/a1"]
    client.close()


def test_no_answer_from_slack_is_not_a_refusal(fake_slack: FakeSlack) -> None:
    """A call that got no answer (nothing listening, a connection closed mid-call) is not Slack's
    error: callers must not read it as "no" (not found, not delivered). A post is not sent twice."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client = make_web_client(BOT_TOKEN, f"http://127.0.0.1:{port}/api/")
    with pytest.raises(NO_ANSWER) as refused:
        SlackGateway(client).profile(ALICE)
    assert isinstance(refused.value, URLError), "nothing was sent: the filing counts on telling it apart"
    assert not isinstance(refused.value, SlackError)
    client.http.close()

    client = make_web_client(BOT_TOKEN, fake_slack.url + "/api/")
    fake_slack.inject(SlackFault(method="chat.postMessage", drop=True, after_effect=True, times=5))
    with pytest.raises(NO_ANSWER):
        SlackGateway(client).post("C0OPS00001", "once")
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    client.http.close()


def test_cloudflare_unreachable_is_unavailable() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client = _client(f"http://127.0.0.1:{port}")
    with pytest.raises(CloudflareUnavailable) as refused:
        client.create_member("a1", email="x@example.com", role_ids=["r"])
    assert "ConnectError" in str(refused.value)
    client.close()


def test_an_early_hints_answer_never_answers_the_next_request(bare_cloudflare: tuple[str, type[_Cloudflare]]) -> None:
    """A 103 before a slow answer to a POST: the POST is ambiguous (the outbox re-checks it), and
    the answer that follows the 103 is never read as the next request's."""
    url, handler = bare_cloudflare
    handler.early_hints = 1
    client = _client(url)
    with pytest.raises(CloudflareUnavailable) as lost:
        client.create_member("a1", email="new@example.com", role_ids=["r1"])
    assert lost.value.ambiguous
    assert client.get_account("a1").id == "a1"
    assert handler.seen == ["POST /accounts/a1/members", "GET /accounts/a1"]
    client.close()


def test_a_token_http_cannot_carry_fails_without_showing_it(bare_cloudflare: tuple[str, type[_Cloudflare]]) -> None:
    url, handler = bare_cloudflare
    client = _client(url, token="secret-token-value\n")
    with pytest.raises(CloudflareUnavailable) as refused:
        client.create_member("a1", email="x@example.com", role_ids=["r"])
    assert "secret-token-value" not in str(refused.value) and handler.seen == []
    client.close()


@pytest.mark.parametrize(
    ("environment", "pooled"),
    [
        ({}, True),
        ({"NO_PROXY": "localhost,.internal"}, True),
        ({"HTTP_PROXY": "http://proxy.internal:3128"}, True),  # the API is https: not for it
        ({"HTTPS_PROXY": "http://proxy.internal:3128"}, False),
        ({"https_proxy": "http://proxy.internal:3128"}, False),
        ({"ALL_PROXY": "socks5://proxy.internal:1080"}, False),
    ],
)
def test_cloudflare_calls_leave_the_pool_only_for_a_proxy_of_their_scheme(
    environment: dict[str, str], pooled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    chosen = pooled_transport("https://api.cloudflare.com/client/v4")
    assert isinstance(chosen, KeepAliveTransport) is pooled


class _EarlyHintingSlack(BaseHTTPRequestHandler):
    """Slack's Web API on the wire, answering its first call with a 103 Early Hints, and the final
    answer to that call only once the next call has arrived (or after 5 s): a client that sent the
    next call on the same connection would read that answer as its own."""

    protocol_version = "HTTP/1.1"
    hints = 1
    next_call = threading.Event()
    seen: ClassVar[list[tuple[str, int]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append((self.path, self.client_address[1]))
        answer: dict[str, Any] = {"ok": True, "channel": "C0OPS00001", "ts": "1700000000.000001"}
        if self.path.endswith("users.info"):
            answer = {"ok": True, "user": {"id": ALICE, "name": "alice", "profile": {"email": "alice@example.com"}}}
        if type(self).hints:
            type(self).hints -= 1
            _send_early_hints(self)
            type(self).next_call.wait(5)
        else:
            type(self).next_call.set()
        body = json.dumps(answer).encode()
        with contextlib.suppress(OSError):  # the client may have closed the connection the 103 came on
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_an_early_hints_answer_from_slack_never_answers_the_next_call() -> None:
    """The Slack pool, like Cloudflare's, never reuses a connection after a 1xx: the post it
    answered fails as an HTTP error (it may have been posted, as after a 5xx), and the next call
    goes out on a new connection and reads its own answer, not the post's."""
    handler = type("Handler", (_EarlyHintingSlack,), {"hints": 1, "next_call": threading.Event(), "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = make_web_client(BOT_TOKEN, f"http://127.0.0.1:{server.server_address[1]}/api/")
    slack = SlackGateway(client)
    try:
        with pytest.raises(SlackError) as lost:
            slack.post("C0OPS00001", "hello")
        assert lost.value.response.status_code == 103
        assert slack.profile(ALICE).email == "alice@example.com"
        [(post, post_port), (info, info_port)] = handler.seen
        assert (post, info) == ("/api/chat.postMessage", "/api/users.info") and post_port != info_port
    finally:
        client.http.close()
        server.shutdown()
        server.server_close()
