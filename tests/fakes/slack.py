"""A stateful fake of the Slack Web API and of `response_url`s.

It answers with Slack's envelope (`ok`/`error`, HTTP 429 + Retry-After when rate limited), checks
required arguments against Slack's OpenAPI spec, enforces Block Kit's per-message limits, and
keeps messages, threads, views and DMs so tests assert what users would see.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes.http import FakeResponse, FakeServer
from tests.schemas import slack_required_arguments

BOT_USER_ID = "U0CFBOT001"
_FORM_ENCODED_JSON_FIELDS = ("blocks", "view", "attachments")


@dataclass
class SlackUser:
    id: str
    email: str | None
    name: str
    deleted: bool = False
    is_bot: bool = False


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


@dataclass
class SlackFault:
    method: str
    status: int = 429
    error: str = "ratelimited"
    retry_after: int = 1
    times: int = 1
    delay: float = 0.0


class FakeSlack(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.users: dict[str, SlackUser] = {}
        self.messages: list[Message] = []
        self._by_key: dict[tuple[str, str], Message] = {}
        self.ephemerals: list[Ephemeral] = []
        self.responses: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}
        self.home_views: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[str] = []
        self.faults: list[SlackFault] = []
        self.used_triggers: set[str] = set()
        self._ts = itertools.count(1)
        self._view_ids = itertools.count(1)
        self._changed = threading.Condition(self.lock)
        self.add_user(BOT_USER_ID, None, "cf-access", is_bot=True)

    # --- set-up and inspection ---------------------------------------------------------------

    def add_user(
        self, user_id: str, email: str | None, name: str, *, is_bot: bool = False, deleted: bool = False
    ) -> str:
        self.users[user_id] = SlackUser(user_id, email, name, deleted=deleted, is_bot=is_bot)
        return user_id

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
            if fault:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
        if fault:
            if fault.status == 429:
                return FakeResponse(
                    429,
                    {"ok": False, "error": "ratelimited"},
                    {"Retry-After": str(fault.retry_after)},
                    delay=fault.delay,
                )
            return FakeResponse(fault.status, {"ok": False, "error": fault.error}, delay=fault.delay)
        token = headers.get("authorization", "").removeprefix("Bearer ") or args.pop("token", "")
        if not token.startswith(("xoxb-", "xapp-")):
            return _error("not_authed")
        missing = slack_required_arguments(api_method) - set(args) if api_method != "auth.test" else set()
        # views.update takes view_id or external_id; chat.* take text or blocks.
        if missing:
            return self._reject(api_method, f"missing required arguments: {sorted(missing)}", "invalid_arguments")
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

    def _check_message(self, method: str, args: dict[str, Any]) -> FakeResponse | None:
        blocks = args.get("blocks") or []
        if not args.get("text"):
            return self._reject(
                method, "text is required alongside blocks (notifications and accessibility)", "no_text"
            )
        if len(blocks) > 50:
            return self._reject(method, f"{len(blocks)} blocks; a message takes at most 50", "invalid_blocks")
        block_ids = [b["block_id"] for b in blocks if "block_id" in b]
        if len(block_ids) != len(set(block_ids)):
            return self._reject(method, "duplicate block_id", "invalid_blocks")
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

    def _users_info(self, args: dict[str, Any]) -> FakeResponse:
        user = self.users.get(str(args.get("user")))
        if user is None:
            return _error("user_not_found")
        return _ok(user=self._user_json(user))

    @staticmethod
    def _user_json(user: SlackUser) -> dict[str, Any]:
        profile: dict[str, Any] = {"real_name": user.name, "display_name": user.name}
        if user.email:
            profile["email"] = user.email
        return {
            "id": user.id,
            "name": user.name,
            "real_name": user.name,
            "deleted": user.deleted,
            "is_bot": user.is_bot,
            "profile": profile,
            "tz": "Europe/London",
        }

    def _conversations_open(self, args: dict[str, Any]) -> FakeResponse:
        users = [u for u in str(args.get("users", "")).split(",") if u]
        if len(users) != 1 or users[0] not in self.users:
            return _error("user_not_found")
        return _ok(channel={"id": self.dm_channel(users[0])})

    def _chat_postMessage(self, args: dict[str, Any]) -> FakeResponse:
        refused = self._check_message("chat.postMessage", args)
        if refused:
            return refused
        channel = str(args["channel"])
        if channel.startswith("U"):
            channel = self.dm_channel(channel)
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
        if trigger in self.used_triggers:
            return self._reject("views.open", "trigger_id used twice", "expired_trigger_id")
        self.used_triggers.add(trigger)
        return self._store_view(args["view"], None)

    def _views_update(self, args: dict[str, Any]) -> FakeResponse:
        view_id = args.get("view_id")
        if view_id not in self.views:
            return self._reject("views.update", f"no view {view_id}", "not_found")
        if args.get("hash") and args["hash"] != self.views[view_id]["hash"]:
            return _error("hash_conflict")
        return self._store_view(args["view"], view_id)

    def _views_publish(self, args: dict[str, Any]) -> FakeResponse:
        view = args["view"]
        if view.get("type") != "home":
            return self._reject("views.publish", "views.publish takes a home view", "invalid_arguments")
        if str(args["user_id"]) not in self.users:
            return _error("invalid_arguments")
        stored = dict(view, id=f"VHOME{args['user_id']}", hash=f"h{next(self._view_ids)}")
        self.home_views[str(args["user_id"])] = stored
        return _ok(view=stored)

    def _store_view(self, view: dict[str, Any], view_id: str | None) -> FakeResponse:
        blocks = view.get("blocks") or []
        if not 1 <= len(blocks) <= 100:
            return self._reject("views", f"{len(blocks)} blocks; a view takes 1 to 100", "invalid_arguments")
        view_id = view_id or f"V{next(self._view_ids):09d}"
        stored = dict(view, id=view_id, hash=f"h{next(self._view_ids)}", state={"values": {}})
        self.views[view_id] = stored
        return _ok(view=stored)

    def _apps_connections_open(self, _args: dict[str, Any]) -> FakeResponse:
        return _ok(url="ws://127.0.0.1:1/link")

    def _response_url(self, path: str, raw: bytes) -> FakeResponse:
        with self._changed:
            body = json.loads(raw or b"{}")
            body["_response_url"] = path
            self.responses.append(body)
            self._changed.notify_all()
        return FakeResponse(200, {"ok": True})

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
