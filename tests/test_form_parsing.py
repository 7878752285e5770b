"""The form decoder behind every slash command and click reads exactly what `parse_qsl` reads."""

from __future__ import annotations

import json
import random
from urllib.parse import parse_qsl, quote, quote_plus, urlencode

import pytest

from bot.slack.bolt_request import _parse_form, _unquote_plus, parse_slack_body

#: Characters that make percent-decoding and its quoted-printable stand-in disagree when mixed up:
#: raw and escaped separators, stray `%`, line breaks, non-ASCII text, NUL.
_ALPHABET = "ab=&%+ \n\r\tZ9é€😀%%2F3dgzx_.-~*;\x00"


def _bodies(seed: int, count: int) -> list[str]:
    rnd = random.Random(seed)
    bodies = []
    for _ in range(count):
        text = "".join(rnd.choice(_ALPHABET) for _ in range(rnd.randint(0, 14)))
        # As typed (malformed more often than not), and as a client would encode it.
        bodies += [text, urlencode({text: text}), quote(text), "payload=" + quote_plus(text), f"a={text}&b=%{text}"]
    return bodies


def test_any_body_reads_as_parse_qsl_reads_it() -> None:
    for body in _bodies(seed=15, count=10_000):
        assert _parse_form(body) == dict(parse_qsl(body, keep_blank_values=True)), body


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("text=a%3Db", {"text": "a=b"}),  # an escaped separator stays text
        ("text=100%", {"text": "100%"}),  # a trailing `%` is kept, not dropped
        ("text=%zz%4", {"text": "%zz%4"}),  # escapes that are not two hex digits are kept
        ("text=a=b", {"text": "a=b"}),  # a raw `=` in a value
        ("text=%C3%A9+%F0%9F%98%80", {"text": "é 😀"}),  # UTF-8 across escapes, `+` a space
        ("text=%C3x", {"text": "\ufffdx"}),  # a broken sequence reads as parse_qsl reads it
        ("text=a%0D%0Ab", {"text": "a\r\nb"}),
        ("text=line%0A%3D%0A", {"text": "line\n=\n"}),
        ("flag&&text=", {"flag": "", "text": ""}),
    ],
)
def test_edges_of_the_c_decoder(body: str, expected: dict[str, str]) -> None:
    assert _parse_form(body) == expected == dict(parse_qsl(body, keep_blank_values=True))


def test_a_click_as_slack_sends_it_is_decoded_in_c() -> None:
    """The point of the decoder: a real payload (the message's blocks, non-ASCII names) never falls
    back to `unquote`'s one escape at a time."""
    payload = {
        "type": "block_actions",
        "message": {
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"*Zoë* {n} — ok"}} for n in range(40)]
        },
        "actions": [{"action_id": "request_approve", "value": "17"}],
    }
    encoded = quote_plus(json.dumps(payload))
    assert _unquote_plus(encoded) == json.dumps(payload)
    assert parse_slack_body(f"payload={encoded}", "application/x-www-form-urlencoded") == payload
