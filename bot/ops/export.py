"""Streaming exports for the CLI: the requests table and the audit log (JSON lines or CSV)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any

from bot.core.clock import as_utc
from bot.slack.formatting import scope_label
from storage.models import AccessRequest, AuditEvent

AUDIT_COLUMNS = ["time", "request_id", "event", "actor_slack_id", "actor_email", "details"]
REQUEST_COLUMNS = [
    "id",
    "status",
    "account",
    "requester",
    "email",
    "roles",
    "scope",
    "created",
    "decided_by",
    "access_ends_at",
]


def _iso(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat().replace("+00:00", "Z") if moment else None


def audit_record(event: AuditEvent) -> dict[str, Any]:
    return {
        "time": _iso(event.time),
        "request_id": event.request_id,
        "event": event.event,
        "actor_slack_id": event.actor_slack_id,
        "actor_email": event.actor_email,
        "details": event.details or {},
    }


def write_audit(events: Iterable[AuditEvent], out: IO[str], fmt: str) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(AUDIT_COLUMNS)
        for event in events:
            record = audit_record(event)
            writer.writerow(
                [
                    _csv_safe(record[c]) if c != "details" else json.dumps(record[c], sort_keys=True)
                    for c in AUDIT_COLUMNS
                ]
            )
            count += 1
    else:
        for event in events:
            out.write(json.dumps(audit_record(event), ensure_ascii=False, sort_keys=False) + "\n")
            count += 1
    return count


def _csv_safe(value: Any) -> Any:
    """Spreadsheets run cells starting with = + - @ as formulas; user-typed text must not."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return "" if value is None else value


def request_record(request: AccessRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "status": request.status,
        "account": request.account_name,
        "account_id": request.account_id,
        "requester": request.requester_slack_id,
        "email": request.requester_email,
        "roles": request.granted_role_names or request.requested_role_names,
        "access_model": request.access_model or "roles",
        "scope": scope_label(request.zone_names),
        "added_to_existing_member": request.member_added_to,
        "created": _iso(request.created_at),
        "decided_by": request.decided_by_slack_id,
        "decided_at": _iso(request.decided_at),
        "cloudflare_member_id": request.cloudflare_member_id,
        "access_ends_at": _iso(request.access_ends_at),
        "extends": request.extends_request_id,
    }


def request_rows(requests: Iterable[AccessRequest]) -> Iterator[list[str]]:
    for request in requests:
        record = request_record(request)
        yield [
            f"#{record['id']}",
            record["status"],
            record["account"],
            record["requester"],
            record["email"],
            ", ".join(record["roles"]),
            record["scope"],
            record["created"] or "",
            record["decided_by"] or "",
            record["access_ends_at"]
            or ("permanent" if request.granted_role_ids and not request.granted_duration_s else ""),
        ]


def write_requests_table(requests: Iterable[AccessRequest], out: IO[str]) -> int:
    """A fixed-width table, printed as it streams (column widths are capped, not measured)."""
    widths = [6, 9, 24, 12, 30, 30, 24, 20, 12, 20]
    out.write("  ".join(h.upper().ljust(w) for h, w in zip(REQUEST_COLUMNS, widths, strict=True)).rstrip() + "\n")
    count = 0
    for row in request_rows(requests):
        cells = [cell if len(cell) <= w else cell[: w - 1] + "…" for cell, w in zip(row, widths, strict=True)]
        out.write("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() + "\n")
        count += 1
    return count
