"""A BoltRequest that does not lose slash commands whose text contains the word "payload".

slack_bolt's body parser treats any form body containing the substring `payload` as an
interactivity payload; without a `payload` field it returns `{}` and the command is dropped
(`/cf-access request Acme DNS payload debugging`). We parse the form ourselves and only take the
`payload` field when it is really there.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt.context.context import BoltContext
from slack_bolt.request import BoltRequest
from slack_bolt.request.internals import build_context


def parse_slack_body(raw_body: str, content_type: str | None) -> dict[str, Any]:
    if not raw_body:
        return {}
    if content_type == "application/json" or raw_body.lstrip().startswith("{"):
        parsed: dict[str, Any] = json.loads(raw_body)
        return parsed
    form = dict(parse_qsl(raw_body, keep_blank_values=True))
    if "payload" in form:
        payload: dict[str, Any] = json.loads(form["payload"])
        return payload
    return form


class SlackRequest(BoltRequest):
    def __init__(self, *, body: str, query: Any = None, headers: Any = None) -> None:
        super().__init__(body=body, query=query, headers=headers, mode="http")
        parsed = parse_slack_body(self.raw_body, self.content_type)
        if parsed != self.body:
            self.body = parsed
            self.context = build_context(BoltContext({}), self.body)

    def to_copyable(self) -> BoltRequest:
        return SlackRequest(body=self.raw_body, query=self.query, headers=self.headers)
