"""Logging set-up: human text or one JSON object per line, with known secrets masked."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

# uvicorn adds `color_message`, a copy of the message with terminal colour codes.
_STANDARD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


# A response_url (https://hooks.slack.com/commands/…, /actions/…) lets whoever holds it post into
# the conversation for 30 minutes. Bolt and slack_sdk log request bodies and webhook URLs at DEBUG.
_HOOK_URL = re.compile(r"https?://hooks\.slack(?:-gov)?\.com/[^\s'\"<>,)}\]]+")
_HOOK_URL_ENCODED = re.compile(r"https?%3A%2F%2Fhooks\.slack(?:-gov)?\.com%2F(?:(?!%22|%27)[^\s&'\"])+", re.IGNORECASE)
# `response_url` as a dict repr, JSON or form field: 'response_url': '…', "response_url": "…", response_url=…
_RESPONSE_URL_FIELD = re.compile(r"""(response_url['"]?\s*[:=]\s*['"]?)[^'"\s,&}\]]+""")
# …and inside a URL-encoded `payload=` form field: response_url%22%3A%20%22…%22
_RESPONSE_URL_ENCODED = re.compile(r"(response_url%22%3A(?:%20|\+)*%22)(?:(?!%22)[^\s&'\"])+", re.IGNORECASE)
_ANY_URL = re.compile(r"https?://[^\s'\"<>,)}\]]+")
# slack_sdk's WebhookClient only ever calls response_urls and incoming webhooks: every URL it logs is one.
_WEBHOOK_LOGGERS = ("slack_sdk.webhook",)
MASK = "***"


def redact_response_urls(text: str, *, all_urls: bool = False) -> str:
    """Masks response_urls and Slack webhook URLs; with `all_urls`, every URL in `text`."""
    if all_urls:
        text = _ANY_URL.sub(MASK, text)
    if "hooks.slack" in text:
        text = _HOOK_URL_ENCODED.sub(MASK, _HOOK_URL.sub("https://hooks.slack.com/" + MASK, text))
    if "response_url" in text:
        text = _RESPONSE_URL_ENCODED.sub(r"\1" + MASK, _RESPONSE_URL_FIELD.sub(r"\1" + MASK, text))
    return text


class RedactSecrets(logging.Filter):
    """Replaces every configured secret, and every response_url, with `***` in the final message."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def _scrub(self, text: str, *, all_urls: bool = False) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return redact_response_urls(text, all_urls=all_urls)

    def filter(self, record: logging.LogRecord) -> bool:
        all_urls = record.name.startswith(_WEBHOOK_LOGGERS)
        record.msg = self._scrub(record.getMessage(), all_urls=all_urls)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self._scrub(record.exc_text, all_urls=all_urls)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        extras = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRS and not key.startswith("_")
        }
        base = super().format(record)
        if extras:
            base += " " + " ".join(f"{key}={json.dumps(value, default=str)}" for key, value in extras.items())
        return base


def configure_logging(*, level: str, fmt: str, secrets: Iterable[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party loggers print through the same handler, so JSON mode stays one object per line.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "apscheduler", "slack_bolt", "slack_sdk"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # slack_sdk's WebClient formats a debug line of every request body (blocks and all) whenever its
    # own logger's level is unset, before logging drops it: give that logger the level in force.
    logging.getLogger("slack_sdk.web.base_client").setLevel(level)
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
