"""A BoltRequest that does not lose slash commands whose text contains the word "payload".

slack_bolt's body parser treats any form body containing the substring `payload` as an
interactivity payload; without a `payload` field it returns `{}` and the command is dropped
(`/cf-access request Acme DNS payload debugging`). We parse the form ourselves and only take the
`payload` field when it is really there.

Parsing is strict: a body that is not a JSON object (or a form whose `payload` is not one) raises
`ValueError`, which the HTTP server answers with 400 instead of letting Bolt fail deeper in.
"""

from __future__ import annotations

import binascii
import json
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt.request import BoltRequest
from slack_bolt.request.internals import build_normalized_headers, extract_content_type


def _json_object(text: str) -> dict[str, Any]:
    try:
        parsed = json.loads(text)
    except RecursionError as error:  # "[[[[…" nested past the interpreter's limit
        raise ValueError("JSON nested too deeply") from error
    if not isinstance(parsed, dict):
        raise ValueError(f"expected a JSON object, got {type(parsed).__name__}")
    return parsed


def parse_slack_body(raw_body: str, content_type: str | None) -> dict[str, Any]:
    if not raw_body:
        return {}
    if content_type == "application/json" or raw_body.lstrip().startswith("{"):
        return _json_object(raw_body)
    form = _parse_form(raw_body)
    if "payload" in form:
        return _json_object(form["payload"])
    return form


def _parse_form(body: str) -> dict[str, str]:
    """`dict(parse_qsl(body, keep_blank_values=True))`, decoded in C when the body is what Slack sends.

    A click's payload carries the whole message, percent-encoded: a few thousand escapes, which
    `unquote` decodes one at a time in Python (a tenth of a click's CPU). Quoted-printable's `=XX`
    is the same escape, and `binascii` decodes it in C. It differs from percent-decoding only where
    a well-formed form body never goes: a raw `=` in a value, line breaks, a `%` not followed by two
    hex digits (dropped or kept differently); any of those, or non-ASCII text, takes `parse_qsl`."""
    form: dict[str, str] = {}
    for pair in body.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        decoded_name, decoded_value = _unquote_plus(name), _unquote_plus(value)
        if decoded_name is None or decoded_value is None:
            return dict(parse_qsl(body, keep_blank_values=True))
        form[decoded_name] = decoded_value
    return form


def _unquote_plus(text: str) -> str | None:
    """`unquote_plus(text)`, or None where the quoted-printable decoder would read it differently."""
    if "%" not in text and "+" not in text:
        return text
    if not text.isascii() or "=" in text or "\n" in text or "\r" in text:
        return None
    decoded = binascii.a2b_qp(text.replace("+", " ").replace("%", "="))
    # Each well-formed escape turns three characters into one byte. With no `=`, CR or LF in the
    # text (checked above), a malformed one shortens it by less: by one at the end, else by none.
    if len(decoded) != len(text) - 2 * text.count("%"):
        return None
    return decoded.decode("utf-8", "replace")


class SlackRequest(BoltRequest):
    def __init__(self, *, body: str, query: Any = None, headers: Any = None) -> None:
        # Our strict parse first: malformed bodies fail here with ValueError, before Bolt's parser.
        parsed = parse_slack_body(body, extract_content_type(build_normalized_headers(headers)))
        # Bolt takes a parsed body only outside HTTP mode; hand it ours rather than let it decode the
        # same bytes again (a click's payload carries the whole message: most of the ack's CPU),
        # then restore the raw body, which Bolt's own signature check reads, and the mode.
        super().__init__(body=parsed, query=query, headers=headers, mode="socket_mode")
        self.raw_body = body
        self.mode = "http"

    def to_copyable(self) -> BoltRequest:
        return SlackRequest(body=self.raw_body, query=self.query, headers=self.headers)
