"""A stateful fake of Cloudflare API v4 (accounts, roles, members, token verify).

It answers with Cloudflare's envelope and error bodies, pages like Cloudflare (per_page 5..50),
validates every request body against Cloudflare's own OpenAPI extract, and can inject faults.
It is as untidy as the real API: role descriptions and user names may be `null`, the
`POST .../members` answer omits `roles` (a known Cloudflare bug), listings may carry members with
a status the bot does not know or that cannot be read at all, `total_pages` may be missing, and a
proxy in front may answer with an HTML error page.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.http import FakeResponse, FakeServer
from tests.schemas import cloudflare_request_errors

SUPER_ADMIN = {
    "id": "33666b9c79b9a5273fc7344ff42f953d",
    "name": "Super Administrator - All Privileges",
    "description": "Can edit any Cloudflare setting, make purchases, update billing, and manage memberships.",
}
ADMIN = {
    "id": "05784afa30c1afe1440e79d9351c7430",
    "name": "Administrator",
    "description": "Can access the full account and edit subscriptions.",
}
ADMIN_RO = {
    "id": "f2b20eaa1a5d4af42b53ac16238c99c7",
    "name": "Administrator Read Only",
    "description": "Can access the full account in read-only mode.",
}
BILLING = {
    "id": "298ce8e7a2ba08b9d18ce0a32bb458ee",
    "name": "Billing",
    "description": "Can edit the account's billing profile and subscriptions.",
}
DNS = {"id": "069fe803647ed3609e93d041d5df6050", "name": "DNS", "description": "Can edit DNS records."}
CACHE_PURGE = {
    "id": "d1c17a97abf0aa371338074955877ba0",
    "name": "Cache Purge",
    "description": None,  # real role listings carry null descriptions
}
DEFAULT_ROLES = [SUPER_ADMIN, ADMIN, ADMIN_RO, BILLING, DNS, CACHE_PURGE]
_PERMISSIONS = {key: {"read": True, "write": False} for key in ("analytics", "billing", "dns", "zones")}


def _hex() -> str:
    return secrets.token_hex(16)


@dataclass
class Fault:
    method: str
    path_pattern: str
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    # When True the request is carried out first and only the answer fails (ambiguous faults);
    # with status 200 the real answer is sent, late.
    after_effect: bool = False
    times: int = 1
    # A proxy's HTML error page instead of Cloudflare's JSON envelope.
    html: bool = False


@dataclass
class RecordedCall:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]
    received_at: float = field(default_factory=time.monotonic)


class FakeCloudflare(FakeServer):
    def __init__(self, *, token: str = "cf-test-token", email: str | None = None, key: str | None = None) -> None:
        super().__init__()
        self.token = token
        self.email = email
        self.key = key
        self.accounts: dict[str, dict[str, Any]] = {}
        self.calls: list[RecordedCall] = []
        self.faults: list[Fault] = []
        self.schema_violations: list[str] = []
        self.account_owned_token = False
        # Listings: whether result_info carries total_pages (the 2024 schema has none), and the
        # largest per_page honoured (a server may answer fewer items per page than asked).
        self.total_pages_in_listings = True
        self.max_per_page = 50
        # Member ids a listing leaves out although GET .../members/{id} still finds them (a lagging index).
        self.hidden_from_listings: set[str] = set()
        self._changed = threading.Condition(self.lock)

    # --- state set-up used by tests ----------------------------------------------------------

    def add_account(
        self, name: str, *, account_id: str | None = None, roles: list[dict[str, Any]] | None = None
    ) -> str:
        account_id = account_id or _hex()
        self.accounts[account_id] = {
            "account": {
                "id": account_id,
                "name": name,
                "type": "standard",
                "settings": {"enforce_twofactor": False},
                "created_on": "2024-01-01T00:00:00Z",
            },
            "roles": [dict(role, permissions=_PERMISSIONS) for role in (roles or DEFAULT_ROLES)],
            "members": {},
        }
        return account_id

    def add_member(self, account_id: str, email: str, role_ids: list[str], *, status: str = "accepted") -> str:
        with self.lock:
            member = self._new_member(account_id, email, role_ids)
            member["status"] = status
            if status == "accepted":
                member["user"]["id"] = _hex()
            return str(member["id"])

    def accept(self, account_id: str, member_id: str) -> None:
        with self.lock:
            member = self.accounts[account_id]["members"][member_id]
            member["status"] = "accepted"
            member["user"].update(id=_hex(), first_name="New", last_name="Member")

    def set_member_roles(self, account_id: str, member_id: str, role_ids: list[str]) -> None:
        """What a Super Admin does in the dashboard: roles and the generated policy change together."""
        with self.lock:
            member = self.accounts[account_id]["members"][member_id]
            fresh = self._new_member(account_id, member["email"], role_ids)
            del self.accounts[account_id]["members"][fresh["id"]]
            member["roles"], member["policies"] = fresh["roles"], fresh["policies"]

    def set_two_factor(self, account_id: str, member_id: str, enabled: bool = True) -> None:
        """The member's user turned 2FA on (or off) in their Cloudflare profile."""
        with self.lock:
            self.accounts[account_id]["members"][member_id]["user"]["two_factor_authentication_enabled"] = enabled

    def enforce_two_factor(self, account_id: str, enforced: bool = True) -> None:
        """The account's `settings.enforce_twofactor`, as a Super Admin sets it in the dashboard."""
        with self.lock:
            self.accounts[account_id]["account"]["settings"]["enforce_twofactor"] = enforced

    def add_raw_member(self, account_id: str, item: dict[str, Any]) -> None:
        """A listing item exactly as given: one the bot cannot read (no id) or an odd shape."""
        with self.lock:
            self.accounts[account_id]["members"][f"raw-{len(self.accounts[account_id]['members'])}"] = item

    def remove(self, account_id: str, member_id: str) -> None:
        with self.lock:
            del self.accounts[account_id]["members"][member_id]

    def members_with_email(self, account_id: str, email: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.accounts[account_id]["members"].values() if m.get("email") == email.lower()]

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def calls_to(self, method: str, pattern: str) -> list[RecordedCall]:
        with self.lock:
            return [c for c in self.calls if c.method == method and re.search(pattern, c.path)]

    def wait_for_call(self, method: str, pattern: str, count: int = 1, timeout: float = 10.0) -> list[RecordedCall]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.calls_to(method, pattern)) >= count, timeout)
            return self.calls_to(method, pattern)

    # --- HTTP ------------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes
    ) -> FakeResponse:
        path = path.removeprefix("/client/v4")
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                return _failure(400, 1001, "Invalid request: malformed JSON")
        with self._changed:
            self.calls.append(RecordedCall(method, path, query, body, headers))
            self._changed.notify_all()
            fault = self._take_fault(method, path)
        if fault and not fault.after_effect:
            return self._fault_response(fault)
        denied = self._authenticate(path, headers)
        if denied:
            return denied
        with self.lock:
            response = self._route(method, path, query, body)
        if fault and fault.status == 200:
            response.delay = fault.delay  # a slow but correct answer
            return response
        if fault:
            return self._fault_response(fault)
        return response

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.method == method and re.search(fault.path_pattern, path):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    @staticmethod
    def _fault_response(fault: Fault) -> FakeResponse:
        if fault.html:
            page = f"<html><head><title>{fault.status} Bad Gateway</title></head><body><center><h1>{fault.status} Bad Gateway</h1></center><hr><center>cloudflare</center></body></html>"
            return FakeResponse(
                fault.status, None, fault.headers, delay=fault.delay, raw=page.encode(), content_type="text/html"
            )
        body = fault.body
        if body is None:
            if fault.status == 429:
                body = {
                    "success": False,
                    "errors": [{"code": 971, "message": "Please wait and consider throttling your request speed"}],
                    "messages": [],
                    "result": None,
                }
            else:
                body = {
                    "success": False,
                    "errors": [{"code": 10001, "message": "Internal server error"}],
                    "messages": [],
                    "result": None,
                }
        return FakeResponse(fault.status, body, fault.headers, delay=fault.delay, drop=fault.drop)

    def _authenticate(self, path: str, headers: dict[str, str]) -> FakeResponse | None:
        authorization = headers.get("authorization")
        if authorization:
            if not authorization.startswith("Bearer "):
                return _failure(400, 6003, "Invalid request headers")
            if authorization.removeprefix("Bearer ") != self.token:
                return _failure(403, 9109, "Invalid access token")
            return None
        if "x-auth-email" in headers or "x-auth-key" in headers:
            if path.endswith("/tokens/verify"):
                return _failure(400, 1001, 'Missing "Authorization" header')
            if headers.get("x-auth-email") != self.email or headers.get("x-auth-key") != self.key:
                return _failure(403, 9103, "Unknown X-Auth-Key or X-Auth-Email")
            return None
        return FakeResponse(
            400,
            {
                "success": False,
                "errors": [{"code": 9106, "message": "Missing X-Auth-Key, X-Auth-Email or Authorization headers"}],
            },
        )

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> FakeResponse:
        if method == "GET" and path == "/user/tokens/verify":
            if self.account_owned_token:
                return _failure(403, 1000, "Invalid API Token")
            return _success(
                {"id": _hex(), "status": "active"},
                messages=[{"code": 10000, "message": "This API Token is valid and active", "type": None}],
            )
        if method == "GET" and path == "/user":
            return _success({"id": _hex(), "email": self.email or "owner@example.com"})
        if method == "GET" and path == "/accounts":
            if self.account_owned_token:
                return _failure(400, 1001, "List accounts endpoint does not support account owned tokens.")
            return self._page([a["account"] for a in self.accounts.values()], query)
        match = re.fullmatch(r"/accounts/([^/]+)(/.*)?", path)
        if not match:
            return _failure(404, 7000, "No route for that URI")
        account_id, rest = match.group(1), match.group(2) or ""
        account = self.accounts.get(account_id)
        if account is None:
            return _failure(403, 9109, "Unauthorized to access requested resource")
        if method == "GET" and rest == "":
            return _success(account["account"])
        if method == "GET" and rest == "/tokens/verify":
            return _success({"id": _hex(), "status": "active"})
        if method == "GET" and rest == "/roles":
            return self._page(account["roles"], query)
        if rest == "/members":
            if method == "GET":
                members = [m for m in account["members"].values() if m.get("id") not in self.hidden_from_listings]
                if query.get("status"):
                    members = [m for m in members if m.get("status") == query["status"]]
                return self._page(members, query)
            if method == "POST":
                return self._create_member(account_id, body)
        member_match = re.fullmatch(r"/members/([^/]+)", rest)
        if member_match:
            member = account["members"].get(member_match.group(1))
            if member is None:
                return _failure(404, 1003, "Member not found")
            if method == "GET":
                return _success(member)
            if method == "DELETE":
                del account["members"][member["id"]]
                return _success({"id": member["id"]})
        return _failure(404, 7000, "No route for that URI")

    def _create_member(self, account_id: str, body: Any) -> FakeResponse:
        violations = cloudflare_request_errors("POST", "/accounts/{account_id}/members", body)
        if violations:
            self.schema_violations.extend(violations)
            return _failure(400, 1001, "Invalid request: " + violations[0])
        if body.get("status") == "accepted":
            return FakeResponse(
                400,
                {
                    "result": [],
                    "success": False,
                    "errors": [
                        {
                            "code": 1001,
                            "message": "Invalid request: automatic verification of new members is not allowed",
                        }
                    ],
                    "messages": [],
                },
            )
        known = {role["id"] for role in self.accounts[account_id]["roles"]}
        if not body["roles"] or any(role_id not in known for role_id in body["roles"]):
            return _failure(400, 1001, "Invalid request: Invalid role assignments found")
        if self.members_with_email(account_id, body["email"]):
            return _failure(400, 1005, "Invalid request: user is already a member of this account")
        member = self._new_member(account_id, body["email"], body["roles"])
        # Cloudflare's answer to the create omits `roles` (a known bug): the bot may rely on the id only.
        return _success({key: value for key, value in member.items() if key != "roles"})

    def _new_member(self, account_id: str, email: str, role_ids: list[str]) -> dict[str, Any]:
        account = self.accounts[account_id]
        roles = [role for role in account["roles"] if role["id"] in role_ids]
        member = {
            "id": _hex(),
            "email": email.lower(),
            "status": "pending",
            "user": {
                "id": "",
                "email": email.lower(),
                "first_name": None,
                "last_name": None,
                "two_factor_authentication_enabled": False,
            },
            "roles": roles,
            "policies": [
                {
                    "id": _hex(),
                    "access": "allow",
                    "permission_groups": [{"id": _hex(), "name": r["name"]} for r in roles],
                    "resource_groups": [{"id": _hex(), "name": f"com.cloudflare.api.account.{account_id}"}],
                }
            ],
        }
        account["members"][member["id"]] = member
        return member

    def _page(self, items: list[Any], query: dict[str, str]) -> FakeResponse:
        try:
            page = max(1, int(query.get("page", "1")))
            per_page = int(query.get("per_page", "20"))
        except ValueError:
            return _failure(400, 1001, "Invalid request: page and per_page must be numbers")
        if not 5 <= per_page <= 50:
            return _failure(400, 1001, "Invalid request: per_page must be between 5 and 50")
        per_page = min(per_page, self.max_per_page)
        start = (page - 1) * per_page
        chunk = items[start : start + per_page]
        info: dict[str, Any] = {"page": page, "per_page": per_page, "count": len(chunk), "total_count": len(items)}
        if self.total_pages_in_listings:
            info["total_pages"] = max(1, -(-len(items) // per_page))
        return FakeResponse(200, {"success": True, "errors": [], "messages": [], "result": chunk, "result_info": info})


def _success(result: Any, *, messages: list[Any] | None = None) -> FakeResponse:
    return FakeResponse(200, {"success": True, "errors": [], "messages": messages or [], "result": result})


def _failure(status: int, code: int, message: str) -> FakeResponse:
    return FakeResponse(
        status, {"success": False, "errors": [{"code": code, "message": message}], "messages": [], "result": None}
    )
