"""A BoltRequest that does not lose slash commands whose text contains the word "payload".

slack_bolt's body parser treats any form body containing the substring `payload` as an
interactivity payload; without a `payload` field it returns `{}` and the command is dropped
(`/cf-access request Acme DNS payload debugging`). We parse the form ourselves and only take the
`payload` field when it is really there.

Parsing is strict: a body that is not a JSON object (or a form whose `payload` is not one) raises
`ValueError`, which the HTTP server answers with 400 instead of letting Bolt fail deeper in.
"""

from __future__ import annotations

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
    form = dict(parse_qsl(raw_body, keep_blank_values=True))
    if "payload" in form:
        return _json_object(form["payload"])
    return form


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
