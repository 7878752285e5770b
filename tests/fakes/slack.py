"""A stateful fake of the Slack Web API and of `response_url`s.

It answers with Slack's envelope (`ok`/`error`, HTTP 429 + Retry-After when rate limited) and is
as strict as Slack: required and unknown arguments are checked against Slack's OpenAPI spec,
Block Kit limits and view rules (a modal with inputs needs `submit`) are enforced
(`tests/fakes/block_kit.py`), a `trigger_id` is good once and for 3 seconds, channels must
exist. It keeps messages, threads, views and DMs so tests assert what users would see.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes.block_kit import message_errors, view_errors
from tests.fakes.http import FakeResponse, FakeServer
from tests.schemas import slack_known_arguments, slack_required_arguments

BOT_USER_ID = "U0CFBOT001"
TEAM_ID = "T0TEAM0001"
TRIGGER_TTL = 3.0  # seconds: "Pass a valid trigger_id within 3 seconds of receiving it"
DEFAULT_CHANNELS = ("C0APPROVE1", "C0OPS00001")
_FORM_ENCODED_JSON_FIELDS = ("blocks", "view", "attachments")


#: users.list without a limit answers the whole list up to this many users, limit_required above.
USERS_LIST_WHOLE = 200


@dataclass
class SlackUser:
    id: str
    email: str | None
    name: str
    deleted: bool = False
    is_bot: bool = False
    is_restricted: bool = False
    is_ultra_restricted: bool = False
    is_stranger: bool = False
    team_id: str = TEAM_ID
    is_email_confirmed: bool = True


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def all_text(self) -> str:
        """Everything a reader sees: text plus the text of every block, flattened."""
        return self.text + "\n" + json.dumps(self.blocks, ensure_ascii=False)

    def action_ids(self) -> list[str]:
        ids: list[str] = []
        for block in self.blocks:
            for element in block.get("elements", []) if block.get("type") == "actions" else []:
                ids.append(element.get("action_id"))
        return ids


@dataclass
class Ephemeral:
    channel: str
    user: str
    text: str
    blocks: list[dict[str, Any]]


#: Posts one response_url takes (within 30 minutes of the interaction).
RESPONSE_URL_USES = 5


@dataclass
class SlackFault:
    method: str
    status: int = 429
    error: str = "ratelimited"
    retry_after: int = 1
    times: int = 1
    delay: float = 0.0
    # The call takes effect (the message is posted) and only the answer fails: Slack's 5xx are ambiguous.
    after_effect: bool = False
    # No failure: the call is carried out, and answered, only after `delay` (a slow Slack).
    slow: bool = False
    # Answer this many matching calls normally first (e.g. fail a walk's second page).
    skip: int = 0
    # With `slow`: carry the call out as soon as this is set (`delay` is then the longest wait).
    until: threading.Event | None = None
    # The connection is closed with no answer at all (after the call took effect with `after_effect`).
    drop: bool = False
    # The answer is an HTML page with `status`, as a proxy or load balancer in front of Slack sends.
    html: bool = False


class FakeSlack(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.users: dict[str, SlackUser] = {}
        self.messages: list[Message] = []
        self._by_key: dict[tuple[str, str], Message] = {}
        self.ephemerals: list[Ephemeral] = []
        self.expired_response_urls: set[str] = set()
        self.response_urls_expired = False
        self.responses: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}
        self.home_views: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[str] = []
        self.faults: list[SlackFault] = []
        self.used_triggers: set[str] = set()
        self.triggers: dict[str, float] = {}
        self.channels: dict[str, bool] = dict.fromkeys(DEFAULT_CHANNELS, False)  # id -> private
        #: users.list answers at most this many members a page, whatever the limit asked (Slack may
        #: answer fewer than `limit` before the end); None: `limit`.
        self.users_page_cap: int | None = None
        self._ts = itertools.count(1)
        self._view_ids = itertools.count(1)
        self._changed = threading.Condition(self.lock)
        self.add_user(BOT_USER_ID, None, "cf-access", is_bot=True)

    # --- set-up and inspection ---------------------------------------------------------------

    def add_user(self, user_id: str, email: str | None, name: str, **standing: Any) -> str:
        """`standing`: deleted, is_bot, is_restricted, is_ultra_restricted, is_stranger, team_id, is_email_confirmed."""
        self.users[user_id] = SlackUser(user_id, email, name, **standing)
        return user_id

    def add_channel(self, channel_id: str, *, private: bool = False) -> str:
        self.channels[channel_id] = private
        return channel_id

    def issue_trigger(self) -> str:
        """A trigger_id as Slack puts in a command or interaction payload: good once, for 3 seconds."""
        trigger = f"{secrets.randbelow(10**11)}.{secrets.randbelow(10**9)}.{secrets.token_hex(16)}"
        with self.lock:
            self.triggers[trigger] = time.monotonic()
        return trigger

    def age_triggers(self, seconds: float) -> None:
        """Pretend every trigger issued so far was issued `seconds` earlier (no sleeping in tests)."""
        with self.lock:
            self.triggers = {trigger: issued - seconds for trigger, issued in self.triggers.items()}

    def inject(self, fault: SlackFault) -> None:
        with self.lock:
            self.faults.append(fault)

    def dm_channel(self, user_id: str) -> str:
        return "D" + user_id[1:]

    def roots(self) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m.thread_ts is None]

    def thread(self, root: Message) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m.thread_ts == root.ts and m.channel == root.channel]

    def dms_to(self, user_id: str) -> list[Message]:
        channel = self.dm_channel(user_id)
        with self.lock:
            return [m for m in self.messages if m.channel == channel]

    def ephemerals_to(self, user_id: str) -> list[Ephemeral]:
        with self.lock:
            return [e for e in self.ephemerals if e.user == user_id]

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        with self.lock:
            return [args for name, args in self.calls if name == method]

    def wait_until(self, predicate: Any, timeout: float = 10.0) -> bool:
        with self._changed:
            return bool(self._changed.wait_for(predicate, timeout))

    # --- HTTP ----------------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes
    ) -> FakeResponse:
        if path.startswith("/response/"):
            return self._response_url(path, raw)
        api_method = path.removeprefix("/api/")
        args = self._arguments(headers, raw, query)
        with self._changed:
            self.calls.append((api_method, args))
            self._changed.notify_all()
            fault = next((f for f in self.faults if f.method == api_method), None)
            if fault and fault.skip > 0:
                fault.skip -= 1
                fault = None
            if fault:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
        if fault and fault.slow:
            if fault.until is not None:
                fault.until.wait(fault.delay)
            else:
                time.sleep(fault.delay)
            return self._dispatch(api_method, headers, args)
        if fault and fault.after_effect:
            self._dispatch(api_method, headers, dict(args))
        if fault and fault.drop:
            return FakeResponse(fault.status, None, drop=True)
        if fault and fault.html:
            page = f"<html><head><title>{fault.status} Forbidden</title></head><body>proxy says no</body></html>"
            return FakeResponse(fault.status, None, raw=page.encode(), content_type="text/html")
        if fault:
            if fault.status == 429:
                return FakeResponse(
                    429,
                    {"ok": False, "error": "ratelimited"},
                    {"Retry-After": str(fault.retry_after)},
                    delay=fault.delay,
                )
            return FakeResponse(fault.status, {"ok": False, "error": fault.error}, delay=fault.delay)
        return self._dispatch(api_method, headers, args)

    def _dispatch(self, api_method: str, headers: dict[str, str], args: dict[str, Any]) -> FakeResponse:
        token = headers.get("authorization", "").removeprefix("Bearer ") or args.pop("token", "")
        if api_method == "apps.connections.open":  # the one method that takes the app-level token
            return self._apps_connections_open(token)
        if not token.startswith(("xoxb-", "xapp-")):
            return _error("not_authed")
        args.pop("token", None)
        missing = slack_required_arguments(api_method) - set(args) if api_method != "auth.test" else set()
        # views.update takes view_id or external_id; chat.* take text or blocks.
        if missing:
            return self._reject(api_method, f"missing required arguments: {sorted(missing)}", "invalid_arguments")
        known = slack_known_arguments(api_method)
        # slack_sdk adds the workspace's team_id to every call of a client made for a request (org apps).
        unknown = sorted(set(args) - known - {"team_id"}) if known else []
        if unknown:
            return self._reject(api_method, f"unknown arguments: {unknown}", "invalid_arguments")
        handler = getattr(self, "_" + api_method.replace(".", "_"), None)
        if handler is None:
            return _error("unknown_method")
        with self._changed:
            response: FakeResponse = handler(args)
            self._changed.notify_all()
            return response

    def _arguments(self, headers: dict[str, str], raw: bytes, query: dict[str, str]) -> dict[str, Any]:
        args: dict[str, Any] = dict(query)
        if not raw:
            return args
        if headers.get("content-type", "").startswith("application/json"):
            args.update(json.loads(raw))
        else:
            args.update(dict(parse_qsl(raw.decode(), keep_blank_values=True)))
            for name in _FORM_ENCODED_JSON_FIELDS:
                if isinstance(args.get(name), str):
                    args[name] = json.loads(args[name])
        return args

    def _reject(self, method: str, why: str, error: str) -> FakeResponse:
        self.errors.append(f"{method}: {why}")
        return FakeResponse(200, {"ok": False, "error": error, "response_metadata": {"messages": [f"[ERROR] {why}"]}})

    def _reject_blocks(self, method: str, errors: list[str], error: str = "invalid_blocks") -> FakeResponse:
        self.errors.append(f"{method}: {'; '.join(errors)}")
        return FakeResponse(
            200,
            {
                "ok": False,
                "error": error,
                "errors": errors,
                "response_metadata": {"messages": [f"[ERROR] {e}" for e in errors]},
            },
        )

    def _check_message(self, method: str, args: dict[str, Any]) -> FakeResponse | None:
        if not args.get("text"):
            return self._reject(
                method, "text is required alongside blocks (notifications and accessibility)", "no_text"
            )
        errors = message_errors(args.get("blocks") or [])
        if errors:
            return self._reject_blocks(method, errors)
        if len(str(args["text"])) > 40_000:
            return self._reject(method, "text over 40,000 characters", "msg_too_long")
        return None

    def _check_channel(self, method: str, channel: str) -> FakeResponse | None:
        if channel.startswith("D") and "U" + channel[1:] in self.users:
            return None
        if channel not in self.channels:
            return self._reject(method, f"no channel {channel}", "channel_not_found")
        if self.channels[channel]:
            return self._reject(method, f"the bot is not in private channel {channel}", "not_in_channel")
        return None

    def _resolve_channel(self, channel: str) -> str | None:
        if channel.startswith("U") and channel in self.users:
            return None  # chat.update needs a conversation id; the bot must store what postMessage returned
        return channel

    # --- methods ----------------------------------------------------------------------------------

    def _auth_test(self, _args: dict[str, Any]) -> FakeResponse:
        return _ok(
            url="https://acme.slack.com/",
            team="Acme",
            user="cf-access",
            team_id="T0TEAM0001",
            user_id=BOT_USER_ID,
            bot_id="B0CFACCESS",
        )

    def _users_lookupByEmail(self, args: dict[str, Any]) -> FakeResponse:
        email = str(args["email"]).lower()
        for user in self.users.values():
            if user.email and user.email.lower() == email and not user.deleted:
                return _ok(user=self._user_json(user))
        return _error("users_not_found")

    def _users_list(self, args: dict[str, Any]) -> FakeResponse:
        """Cursor pages of every user, deactivated and bots included, as Slack lists them. Without a
        limit a workspace larger than USERS_LIST_WHOLE answers limit_required (Slack: "If the
        collection is too large you may experience limit_required"); the cursor is opaque."""
        users = list(self.users.values())
        try:
            limit = int(args.get("limit") or 0)
        except ValueError:
            return self._reject("users.list", f"limit {args.get('limit')!r} is not a number", "invalid_arguments")
        if limit <= 0 and len(users) > USERS_LIST_WHOLE:
            return _error("limit_required")
        size = min(limit, 1000) if limit > 0 else len(users)
        if self.users_page_cap is not None:
            size = min(size, self.users_page_cap)
        start = 0
        if args.get("cursor"):
            try:
                start_id = base64.b64decode(str(args["cursor"]), validate=True).decode().removeprefix("user:")
            except (binascii.Error, UnicodeDecodeError):
                return _error("invalid_cursor")
            ids = [user.id for user in users]
            if start_id not in ids:
                return _error("invalid_cursor")
            start = ids.index(start_id)
        page = users[start : start + size]
        following = users[start + size : start + size + 1]
        next_cursor = base64.b64encode(f"user:{following[0].id}".encode()).decode() if following else ""
        return _ok(
            members=[self._user_json(user) for user in page],
            cache_ts=int(time.time()),
            response_metadata={"next_cursor": next_cursor},
        )

    def _users_info(self, args: dict[str, Any]) -> FakeResponse:
        user = self.users.get(str(args.get("user")))
        if user is None:
            return _error("user_not_found")
        return _ok(user=self._user_json(user))

    @staticmethod
    def _user_json(user: SlackUser) -> dict[str, Any]:
        """A user object as users.info and users.list carry it. A deactivated one lacks the fields of a
        live account (measured on real Slack in 2026, brekkylab/backlot#258) and carries is_forgotten."""
        profile: dict[str, Any] = {"real_name": user.name, "display_name": user.name, "team": user.team_id}
        if user.email:
            profile["email"] = user.email
        body: dict[str, Any] = {
            "id": user.id,
            "team_id": user.team_id,
            "name": user.name,
            "deleted": user.deleted,
            "is_bot": user.is_bot,
            "is_app_user": False,
            "profile": profile,
        }
        if user.deleted:
            body["is_forgotten"] = False
            return body
        body.update(
            real_name=user.name,
            is_restricted=user.is_restricted,
            is_ultra_restricted=user.is_ultra_restricted,
            is_email_confirmed=user.is_email_confirmed,
            tz="Europe/London",
        )
        if user.is_stranger:
            body["is_stranger"] = True
        return body

    def _conversations_open(self, args: dict[str, Any]) -> FakeResponse:
        users = [u for u in str(args.get("users", "")).split(",") if u]
        if len(users) != 1 or users[0] not in self.users:
            return _error("user_not_found")
        if self.users[users[0]].deleted:
            # Slack's documented refusal for a deactivated person (chat.postMessage to their user id
            # still succeeds: their DM history exists; slackapi/python-slack-sdk#1156).
            return self._reject("conversations.open", f"{users[0]} is deactivated", "user_disabled")
        return _ok(channel={"id": self.dm_channel(users[0])})

    def _chat_postMessage(self, args: dict[str, Any]) -> FakeResponse:
        refused = self._check_message("chat.postMessage", args)
        if refused:
            return refused
        channel = str(args["channel"])
        if channel.startswith("U"):
            channel = self.dm_channel(channel)
        refused = self._check_channel("chat.postMessage", channel)
        if refused:
            return refused
        thread_ts = args.get("thread_ts")
        parent = self._by_key.get((channel, str(thread_ts))) if thread_ts else None
        if thread_ts and (parent is None or parent.thread_ts is not None):
            return self._reject(
                "chat.postMessage", f"thread_ts {thread_ts} is not a root in {channel}", "thread_not_found"
            )
        ts = f"1700000000.{next(self._ts):06d}"
        message = Message(channel, ts, args["text"], _with_block_ids(args.get("blocks") or []), thread_ts)
        self.messages.append(message)
        self._by_key[(channel, ts)] = message
        return _ok(
            channel=channel,
            ts=ts,
            message={
                "type": "message",
                "text": message.text,
                "ts": ts,
                "bot_id": "B0CFACCESS",
                "blocks": message.blocks,
            },
        )

    def _chat_update(self, args: dict[str, Any]) -> FakeResponse:
        refused = self._check_message("chat.update", args)
        if refused:
            return refused
        channel = self._resolve_channel(str(args["channel"]))
        message = self._by_key.get((str(channel), str(args["ts"])))
        if message is not None:
            message.history.append({"text": message.text, "blocks": message.blocks})
            message.text = args["text"]
            if "blocks" in args:
                message.blocks = _with_block_ids(args["blocks"] or [])
            return _ok(channel=channel, ts=message.ts, text=message.text)
        return self._reject("chat.update", f"no message {args['ts']} in {args['channel']}", "message_not_found")

    def _chat_postEphemeral(self, args: dict[str, Any]) -> FakeResponse:
        refused = self._check_message("chat.postEphemeral", args)
        if refused:
            return refused
        self.ephemerals.append(
            Ephemeral(str(args["channel"]), str(args["user"]), args["text"], args.get("blocks") or [])
        )
        return _ok(message_ts=f"1700000000.{next(self._ts):06d}")

    def _views_open(self, args: dict[str, Any]) -> FakeResponse:
        trigger = str(args["trigger_id"])
        issued = self.triggers.get(trigger)
        if issued is None:
            return self._reject("views.open", f"invalid `trigger_id` {trigger}", "invalid_arguments")
        if trigger in self.used_triggers:
            return self._reject("views.open", "trigger_id used twice", "expired_trigger_id")
        if time.monotonic() - issued > TRIGGER_TTL:
            return self._reject("views.open", "trigger_id used after 3 seconds", "expired_trigger_id")
        refused = self._check_view("views.open", args["view"])
        if refused:
            return refused
        self.used_triggers.add(trigger)
        return self._store_view(args["view"], None)

    def _check_view(self, method: str, view: Any) -> FakeResponse | None:
        error, details = view_errors(view)
        return self._reject_blocks(method, details, error) if error else None

    def _views_update(self, args: dict[str, Any]) -> FakeResponse:
        view_id = args.get("view_id")
        if view_id not in self.views:
            return self._reject("views.update", f"no view {view_id}", "not_found")
        if args.get("hash") and args["hash"] != self.views[view_id]["hash"]:
            return _error("hash_conflict")
        refused = self._check_view("views.update", args["view"])
        if refused:
            return refused
        return self._store_view(args["view"], view_id)

    def _views_publish(self, args: dict[str, Any]) -> FakeResponse:
        view = args["view"]
        if view.get("type") != "home":
            return self._reject("views.publish", "views.publish takes a home view", "invalid_arguments")
        if str(args["user_id"]) not in self.users:
            return _error("invalid_arguments")
        refused = self._check_view("views.publish", view)
        if refused:
            return refused
        stored = dict(view, id=f"VHOME{args['user_id']}", hash=f"h{next(self._view_ids)}")
        self.home_views[str(args["user_id"])] = stored
        return _ok(view=stored)

    def _store_view(self, view: dict[str, Any], view_id: str | None) -> FakeResponse:
        view_id = view_id or f"V{next(self._view_ids):09d}"
        stored = dict(view, id=view_id, hash=f"h{next(self._view_ids)}", state={"values": {}})
        self.views[view_id] = stored
        return _ok(view=stored)

    # Socket Mode: a FakeSocketMode (tests/fakes/socket_mode.py) serves the WebSocket side and sets `socket_mode`.
    app_token = "xapp-1-A0CFACCESS-1-test-app-token-0123456789"
    socket_mode: Any = None

    def _apps_connections_open(self, token: str) -> FakeResponse:
        """As Slack: only the app-level token (connections:write) gets a one-use WebSocket URL."""
        if not token:
            return _error("not_authed")
        if not token.startswith("xapp-"):
            return _error("not_allowed_token_type")
        if token != self.app_token:
            return _error("invalid_auth")
        if self.socket_mode is None:
            return _ok(url="ws://127.0.0.1:1/link/?ticket=nobody-listens")
        return _ok(url=self.socket_mode.issue_url())

    def _response_url(self, path: str, raw: bytes) -> FakeResponse:
        """As Slack: a response_url takes up to RESPONSE_URL_USES posts within 30 minutes
        (`expire_response_url` plays the 30 minutes passing); after that it answers 404."""
        with self._changed:
            if self.response_urls_expired or path in self.expired_response_urls:
                return FakeResponse(404, None, raw=b"expired_url", content_type="text/plain")
            if sum(r["_response_url"] == path for r in self.responses) >= RESPONSE_URL_USES:
                return FakeResponse(404, None, raw=b"used_url", content_type="text/plain")
            body = json.loads(raw or b"{}")
            body["_response_url"] = path
            self.responses.append(body)
            self._changed.notify_all()
        return FakeResponse(200, {"ok": True})

    def expire_response_url(self, response_id: str) -> None:
        with self.lock:
            self.expired_response_urls.add(f"/response/{response_id}")

    def expire_response_urls(self) -> None:
        """Every response_url, issued or to come, is past its 30 minutes (the bot answers late)."""
        with self.lock:
            self.response_urls_expired = True

    def responses_for(self, response_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.responses if r["_response_url"] == f"/response/{response_id}"]

    def view_text(self, view_id: str) -> str:
        return json.dumps(self.views[view_id], ensure_ascii=False)


def _with_block_ids(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Slack gives every block without a block_id a generated one."""
    return [block if "block_id" in block else {**block, "block_id": f"gen{n}"} for n, block in enumerate(blocks)]


def _ok(**fields: Any) -> FakeResponse:
    return FakeResponse(200, {"ok": True, **fields})


def _error(error: str) -> FakeResponse:
    return FakeResponse(200, {"ok": False, "error": error})


MENTION = re.compile(r"<@(U[A-Z0-9]+)>")
