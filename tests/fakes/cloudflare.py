"""A stateful fake of Cloudflare API v4: accounts, roles, members, token verify, and the 2026
policies model (permission groups, resource groups, zones).

It answers with Cloudflare's envelope and error bodies, pages like Cloudflare (per_page 5..50),
validates every request body against Cloudflare's own OpenAPI extracts (the 2024 members schema
for role invites, the 2026 IAM schema for everything, around that file's known misfits), and can
inject faults. Members carry `roles` and `policies` kept in step, as Cloudflare keeps them: a
member given roles reads back with one account-wide policy of the matching permission groups, and
one given policies reads back with the legacy roles of its account-wide groups. A member body
with both `roles` and `policies` is refused; so is a permission group on a resource group of the
wrong scope (error 1006, with Cloudflare's `result: []`). An account may lack the policies API
(`without_policies_api`): its IAM paths answer 404.
It is as untidy as the real API: role descriptions and user names may be `null`, the
`POST .../members` answer omits `roles` (a known Cloudflare bug), listings may carry members with
a status the bot does not know or that cannot be read at all, `total_pages` may be missing, and a
proxy in front may answer with an HTML error page.
"""

from __future__ import annotations

import collections
import copy
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.http import FakeResponse, FakeServer
from tests.schemas import cloudflare_iam_request_errors, cloudflare_request_errors

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

ACCOUNT_SCOPE = "com.cloudflare.api.account"
ZONE_SCOPE = "com.cloudflare.api.account.zone"


def _group(group_id: str, name: str, label: str, scopes: str, description: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"label": label, "scopes": scopes, "editable": "false"}
    if description is not None:
        meta["description"] = description
    return {
        "id": group_id,
        "name": name,
        "status": "V",
        "meta": meta,
        "created_on": "2022-03-23T23:47:46.228595Z",
        "modified_on": "2025-01-10T12:00:00.000000Z",
    }


# Permission groups have ids of their own (legacy role ids are not permission group ids). The legacy
# roles' groups carry their names; "Cache Purge" exists only as a legacy role, the Domain groups
# (zone-scoped) only as permission groups. Some descriptions are missing, as in real listings.
PG_SUPER_ADMIN = _group(
    "9b1a7a2c4e3f4d5c8b6a0f1e2d3c4b5a",
    SUPER_ADMIN["name"],
    "all_privileges",
    ACCOUNT_SCOPE,
    "Can edit any Cloudflare setting, make purchases, update billing, and manage memberships.",
)
PG_ADMIN = _group("a4c1e9d27b3f4e8a9c0d1b2e3f4a5b6c", "Administrator", "admin", ACCOUNT_SCOPE, ADMIN["description"])
PG_ADMIN_RO = _group(
    "b5d2f0e38c4a5f9b0d1e2c3f4a5b6c7d", "Administrator Read Only", "admin_readonly", ACCOUNT_SCOPE, None
)
PG_BILLING = _group("c6e3a1f49d5b6a0c1e2f3d4a5b6c7d8e", "Billing", "billing", ACCOUNT_SCOPE, BILLING["description"])
PG_DNS = _group("d7f4b2a50e6c7b1d2f3a4e5b6c7d8e9f", "DNS", "dns", ACCOUNT_SCOPE, "Can edit DNS records.")
PG_DOMAIN_ADMIN = _group(
    "e8a5c3b61f7d8c2e3a4b5f6c7d8e9f0a",
    "Domain Administrator",
    "domain_admin",
    ZONE_SCOPE,
    "Can access the full zone and edit its settings.",
)
PG_DOMAIN_ADMIN_RO = _group(
    "f9b6d4c7208e9d3f4b5c6a7d8e9f0a1b", "Domain Administrator Read Only", "domain_admin_readonly", ZONE_SCOPE, None
)
PG_DOMAIN_DNS = _group(
    "0a1c7e5d839f0e4a5c6d7b8e9f0a1b2c", "Domain DNS", "domain_dns", ZONE_SCOPE, "Can edit the zone's DNS records."
)
DEFAULT_PERMISSION_GROUPS = [
    PG_SUPER_ADMIN,
    PG_ADMIN,
    PG_ADMIN_RO,
    PG_BILLING,
    PG_DNS,
    PG_DOMAIN_ADMIN,
    PG_DOMAIN_ADMIN_RO,
    PG_DOMAIN_DNS,
]
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
        # A resource group's `scope`: one object (the 2026 schema) or an array (the SDKs, 2024).
        self.scope_as_array = False
        self._changed = threading.Condition(self.lock)

    # --- state set-up used by tests ----------------------------------------------------------

    def add_account(
        self,
        name: str,
        *,
        account_id: str | None = None,
        roles: list[dict[str, Any]] | None = None,
        permission_groups: list[dict[str, Any]] | None = None,
        policies_api: bool = True,
    ) -> str:
        account_id = account_id or _hex()
        account_wide = {
            "id": _hex(),
            "name": f"com.cloudflare.api.account.{account_id}",
            "meta": {"editable": "false"},
            "scope": {"key": f"com.cloudflare.api.account.{account_id}", "objects": [{"key": "*"}]},
        }
        self.accounts[account_id] = {
            "account": {
                "id": account_id,
                "name": name,
                "type": "standard",
                "settings": {"enforce_twofactor": False},
                "created_on": "2024-01-01T00:00:00Z",
            },
            "roles": [dict(role, permissions=_PERMISSIONS) for role in (roles or DEFAULT_ROLES)],
            "permission_groups": copy.deepcopy(permission_groups or DEFAULT_PERMISSION_GROUPS),
            "resource_groups": {account_wide["id"]: account_wide},
            "zones": {},
            "members": {},
            "policies_api": policies_api,
        }
        return account_id

    def without_policies_api(self, account_id: str) -> None:
        """An account whose `.../iam/...` paths answer 404 (the policies API is not there)."""
        with self.lock:
            self.accounts[account_id]["policies_api"] = False

    def add_zone(self, account_id: str, name: str) -> str:
        with self.lock:
            zone_id = _hex()
            account = self.accounts[account_id]
            account["zones"][zone_id] = {
                "id": zone_id,
                "name": name.lower(),
                "status": "active",
                "paused": False,
                "type": "full",
                "account": {"id": account_id, "name": account["account"]["name"]},
                "created_on": "2024-02-01T00:00:00Z",
            }
            return zone_id

    def add_resource_group(self, account_id: str, zone_ids: list[str], *, name: str = "") -> str:
        """A zone resource group made outside the bot (in the dashboard or by another tool)."""
        with self.lock:
            return str(self._new_resource_group(account_id, name or f"group-{_hex()[:8]}", zone_ids)["id"])

    def account_wide_group(self, account_id: str) -> dict[str, Any]:
        with self.lock:
            return next(
                group
                for group in self.accounts[account_id]["resource_groups"].values()
                if group["name"] == f"com.cloudflare.api.account.{account_id}"
            )

    def resource_groups(self, account_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.accounts[account_id]["resource_groups"].values())

    def add_member(
        self,
        account_id: str,
        email: str,
        role_ids: list[str] | None = None,
        *,
        status: str = "accepted",
        policies: list[dict[str, Any]] | None = None,
    ) -> str:
        """A member with legacy roles, or with policies in the request shape (ids only)."""
        with self.lock:
            member = self._new_member(account_id, email, role_ids, policies)
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
            self._set_access(account_id, member, role_ids, None)

    def set_member_policies(self, account_id: str, member_id: str, policies: list[dict[str, Any]]) -> None:
        """Policies in the request shape (ids only); the legacy roles follow."""
        with self.lock:
            member = self.accounts[account_id]["members"][member_id]
            self._set_access(account_id, member, None, policies)

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
            limited = self._over_rate_limit()
            fault = None if limited else self._take_fault(method, path)
        if limited:
            return limited
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

    def limit_rate(self, calls: int, window: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Enforce Cloudflare's rate limit, scaled down: at most `calls` per rolling `window` seconds;
        past it, 429 code 971 with `Retry-After`, and every call refused until the window frees.
        `clock` (seconds): a test shares its fake time with the bot's budget, so nothing sleeps."""
        with self.lock:
            self.rate_limit = (calls, window)
            self._rate_clock = clock
            self._accepted_at: collections.deque[float] = collections.deque()
            self.rate_limited = 0

    def _over_rate_limit(self) -> FakeResponse | None:
        """Under `self.lock`: a 429 when this call would exceed the limit (refused calls do not count)."""
        limit = getattr(self, "rate_limit", None)
        if limit is None:
            return None
        calls, window = limit
        now = self._rate_clock()
        while self._accepted_at and self._accepted_at[0] <= now - window:
            self._accepted_at.popleft()
        if len(self._accepted_at) < calls:
            self._accepted_at.append(now)
            return None
        self.rate_limited += 1
        retry_after = max(1, math.ceil(self._accepted_at[0] + window - now))
        return FakeResponse(
            429,
            {
                "success": False,
                "errors": [{"code": 971, "message": "Please wait and consider throttling your request speed"}],
                "messages": [],
                "result": None,
            },
            {"Retry-After": str(retry_after)},
        )

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
        if method == "GET" and path == "/zones":
            return self._zones(query)
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
        if rest.startswith("/iam/"):
            return self._iam(method, account_id, path, rest, query, body)
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
            if method == "PUT":
                return self._update_member(account_id, member, body)
            if method == "DELETE":
                del account["members"][member["id"]]
                return _success({"id": member["id"]})
        return _failure(404, 7000, "No route for that URI")

    # --- the policies model ---------------------------------------------------------------------

    def _iam(
        self, method: str, account_id: str, path: str, rest: str, query: dict[str, str], body: Any
    ) -> FakeResponse:
        account = self.accounts[account_id]
        if not account["policies_api"]:
            return _failure(404, 7003, f"Could not route to {path}, perhaps your object identifier is invalid?")
        if method == "GET" and rest == "/iam/permission_groups":
            groups = [
                group
                for group in account["permission_groups"]
                if all(
                    not query.get(field) or str(value) == query[field]
                    for field, value in (
                        ("id", group["id"]),
                        ("name", group["name"]),
                        ("label", group["meta"].get("label")),
                    )
                )
            ]
            return self._page(groups, query)
        group_match = re.fullmatch(r"/iam/permission_groups/([^/]+)", rest)
        if method == "GET" and group_match:
            found = next((g for g in account["permission_groups"] if g["id"] == group_match.group(1)), None)
            return _success(found) if found else _failure(404, 1003, "Permission group not found")
        if rest == "/iam/resource_groups":
            if method == "GET":
                # The 2026 listing has no paging: every group in one answer, no result_info.
                groups = [
                    self._shown_group(group)
                    for group in account["resource_groups"].values()
                    if (not query.get("id") or group["id"] == query["id"])
                    and (not query.get("name") or group["name"] == query["name"])
                ]
                return _success(groups)
            if method == "POST":
                return self._create_resource_group(account_id, body)
        resource_match = re.fullmatch(r"/iam/resource_groups/([^/]+)", rest)
        if method == "GET" and resource_match:
            found = account["resource_groups"].get(resource_match.group(1))
            return _success(self._shown_group(found)) if found else _failure(404, 1003, "Resource group not found")
        return _failure(404, 7000, "No route for that URI")

    def _shown_group(self, group: dict[str, Any]) -> dict[str, Any]:
        return {**group, "scope": [group["scope"]]} if self.scope_as_array else dict(group)

    def _create_resource_group(self, account_id: str, body: Any) -> FakeResponse:
        violations = cloudflare_iam_request_errors("POST", "/accounts/{account_id}/iam/resource_groups", body)
        if violations:
            self.schema_violations.extend(violations)
            return _failure(400, 1001, "Invalid request: " + violations[0])
        scope = body["scope"]
        if scope["key"] != f"com.cloudflare.api.account.{account_id}":
            return _failure(400, 1001, "Invalid request: the scope key is not this account")
        keys = [item["key"] for item in scope["objects"]]
        if not keys:
            return _failure(400, 1001, "Invalid request: the number of scope objects should not be zero")
        zones = self.accounts[account_id]["zones"]
        zone_ids = [key.removeprefix("com.cloudflare.api.account.zone.") for key in keys]
        if any(not key.startswith("com.cloudflare.api.account.zone.") for key in keys) or any(
            zone_id not in zones for zone_id in zone_ids
        ):
            return _failure(400, 1001, "Invalid request: unknown scope object")
        return _success(self._shown_group(self._new_resource_group(account_id, body["name"], zone_ids)))

    def _new_resource_group(self, account_id: str, name: str, zone_ids: list[str]) -> dict[str, Any]:
        group = {
            "id": _hex(),
            "name": name,
            "meta": {"editable": "true"},
            "scope": {
                "key": f"com.cloudflare.api.account.{account_id}",
                "objects": [{"key": f"com.cloudflare.api.account.zone.{zone_id}"} for zone_id in zone_ids],
            },
        }
        self.accounts[account_id]["resource_groups"][group["id"]] = group
        return group

    def _zones(self, query: dict[str, str]) -> FakeResponse:
        account = self.accounts.get(query.get("account.id", ""))
        if account is None and query.get("account.id"):
            return self._page([], query)
        accounts = [account] if account is not None else list(self.accounts.values())
        zones = [zone for acc in accounts for zone in acc["zones"].values()]
        if query.get("name"):
            zones = [zone for zone in zones if zone["name"] == query["name"].lower()]
        return self._page(sorted(zones, key=lambda zone: zone["name"]), query)

    def _expanded_policies(
        self, account_id: str, policies: list[dict[str, Any]]
    ) -> list[dict[str, Any]] | FakeResponse:
        """Request-shaped policies as a member reads back (groups expanded), or the error to answer."""
        account = self.accounts[account_id]
        groups = {group["id"]: group for group in account["permission_groups"]}
        resources = account["resource_groups"]
        expanded = []
        for policy in policies:
            wanted = [ref["id"] for ref in policy["permission_groups"]]
            scopes = [ref["id"] for ref in policy["resource_groups"]]
            if any(group_id not in groups for group_id in wanted) or not wanted:
                return _failure(400, 1001, "Invalid request: Invalid permission group assignments found")
            if any(group_id not in resources for group_id in scopes) or not scopes:
                return _failure(400, 1001, "Invalid request: Invalid resource group assignments found")
            for group_id in wanted:
                for resource_id in scopes:
                    on_account = resources[resource_id]["scope"]["objects"] == [{"key": "*"}]
                    if (groups[group_id]["meta"].get("scopes") == ZONE_SCOPE) == on_account:
                        return FakeResponse(
                            400,
                            {
                                "result": [],
                                "success": False,
                                "errors": [
                                    {
                                        "code": 1006,
                                        "message": "Unknown error when processing member, please try again. Error: "
                                        "invalid permission group and resource group combination",
                                    }
                                ],
                                "messages": [],
                            },
                        )
            expanded.append(
                {
                    "id": _hex(),
                    "access": policy["access"],
                    "permission_groups": [
                        {key: groups[group_id][key] for key in ("id", "name", "meta")} for group_id in wanted
                    ],
                    "resource_groups": [self._shown_group(resources[resource_id]) for resource_id in scopes],
                }
            )
        return expanded

    def _set_access(
        self,
        account_id: str,
        member: dict[str, Any],
        role_ids: list[str] | None,
        policies: list[dict[str, Any]] | None,
    ) -> FakeResponse | None:
        """Roles or policies, and the other kept in step, as Cloudflare does."""
        account = self.accounts[account_id]
        account_wide = self.account_wide_group(account_id)
        groups_by_name = {group["name"]: group for group in account["permission_groups"]}
        roles_by_name = {role["name"]: role for role in account["roles"]}
        if role_ids is not None:
            roles = [role for role in account["roles"] if role["id"] in role_ids]
            member["roles"] = roles
            member["policies"] = [
                {
                    "id": _hex(),
                    "access": "allow",
                    "permission_groups": [
                        {
                            key: value
                            for key, value in groups_by_name[role["name"]].items()
                            if key in ("id", "name", "meta")
                        }
                        if role["name"] in groups_by_name
                        else {"id": role["id"], "name": role["name"], "meta": {}}
                        for role in roles
                    ],
                    "resource_groups": [self._shown_group(account_wide)],
                }
            ]
            return None
        assert policies is not None
        expanded = self._expanded_policies(account_id, policies)
        if isinstance(expanded, FakeResponse):
            return expanded
        member["policies"] = expanded
        roles = []
        for policy in expanded:
            on_account = any(group["id"] == account_wide["id"] for group in policy["resource_groups"])
            if policy["access"] != "allow" or not on_account:
                continue  # zone-scoped and deny policies have no legacy role
            for group in policy["permission_groups"]:
                role = roles_by_name.get(group["name"]) or {
                    "id": group["id"],
                    "name": group["name"],
                    "description": group["meta"].get("description"),
                    "permissions": {},
                }
                if role not in roles:
                    roles.append(role)
        member["roles"] = roles
        return None

    # --- members -------------------------------------------------------------------------------

    def _member_body_refused(self, method: str, template: str, account_id: str, body: Any) -> FakeResponse | None:
        violations = cloudflare_iam_request_errors(method, template, body)
        if isinstance(body, dict) and "roles" in body and "policies" not in body and method == "POST":
            violations += cloudflare_request_errors(method, template, body)
        if violations:
            self.schema_violations.extend(violations)
            return _failure(400, 1001, "Invalid request: " + violations[0])
        if "policies" in body and not self.accounts[account_id]["policies_api"]:
            return _failure(400, 1001, "Invalid request: policies are not available for this account")
        if "roles" in body:
            known = {role["id"] for role in self.accounts[account_id]["roles"]}
            ids = [role if isinstance(role, str) else role["id"] for role in body["roles"]]
            if (method == "POST" and not ids) or any(role_id not in known for role_id in ids):
                return _failure(400, 1001, "Invalid request: Invalid role assignments found")
        return None

    def _create_member(self, account_id: str, body: Any) -> FakeResponse:
        refused = self._member_body_refused("POST", "/accounts/{account_id}/members", account_id, body)
        if refused:
            return refused
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
        if self.members_with_email(account_id, body["email"]):
            return _failure(400, 1005, "Invalid request: user is already a member of this account")
        member = self._blank_member(body["email"])
        refused = self._set_access(account_id, member, body.get("roles"), body.get("policies"))
        if refused:
            return refused
        self.accounts[account_id]["members"][member["id"]] = member
        # Cloudflare's answer to the create omits `roles` (a known bug): the bot may rely on the id only.
        return _success({key: value for key, value in member.items() if key != "roles"})

    def _update_member(self, account_id: str, member: dict[str, Any], body: Any) -> FakeResponse:
        refused = self._member_body_refused("PUT", "/accounts/{account_id}/members/{member_id}", account_id, body)
        if refused:
            return refused
        role_ids = [role["id"] for role in body["roles"]] if "roles" in body else None
        updated = copy.deepcopy(member)
        refused = self._set_access(account_id, updated, role_ids, body.get("policies"))
        if refused:
            return refused
        member.update(updated)
        return _success(member)

    @staticmethod
    def _blank_member(email: str) -> dict[str, Any]:
        return {
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
            "roles": [],
            "policies": [],
        }

    def _new_member(
        self,
        account_id: str,
        email: str,
        role_ids: list[str] | None,
        policies: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        member = self._blank_member(email)
        refused = self._set_access(account_id, member, role_ids if policies is None else None, policies)
        assert refused is None, refused.body if refused else None
        self.accounts[account_id]["members"][member["id"]] = member
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
