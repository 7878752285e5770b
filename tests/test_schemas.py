"""The schema validators accept what Cloudflare's own clients send and refuse what Cloudflare would,
despite the vendored IAM schema's known misfits (tests/vendor/README.md)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.schemas import cloudflare_iam_request_errors, cloudflare_request_errors

MEMBERS = "/accounts/{account_id}/members"
MEMBER = "/accounts/{account_id}/members/{member_id}"
RESOURCE_GROUPS = "/accounts/{account_id}/iam/resource_groups"
ADMIN_ROLE = "05784afa30c1afe1440e79d9351c7430"
POLICY = {
    "access": "allow",
    "permission_groups": [{"id": "c8fed203ed3043cba015a93ad1616f1f"}],
    "resource_groups": [{"id": "82e64a83756745bbbb1c9c2701bf816b"}],
}
ZONE_GROUP = {
    "name": "zones",
    "scope": {"key": "com.cloudflare.api.account.acc", "objects": [{"key": "com.cloudflare.api.account.zone.z1"}]},
}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", MEMBERS, {"email": "a@example.com", "roles": [ADMIN_ROLE]}),
        ("POST", MEMBERS, {"email": "a@example.com", "policies": [POLICY]}),
        ("POST", MEMBERS, {"email": "a@example.com", "policies": [POLICY], "status": "pending"}),
        ("PUT", MEMBER, {"policies": [POLICY, {**POLICY, "access": "deny"}]}),
        ("PUT", MEMBER, {"roles": [{"id": ADMIN_ROLE}]}),
        ("DELETE", MEMBER, None),
        ("DELETE", MEMBER, {}),
        ("POST", RESOURCE_GROUPS, ZONE_GROUP),
    ],
)
def test_iam_accepts_what_the_official_clients_send(method: str, path: str, body: Any) -> None:
    assert cloudflare_iam_request_errors(method, path, body) == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", MEMBERS, {"policies": [POLICY]}),
        ("POST", MEMBERS, {"email": "a@example.com", "policies": [{**POLICY, "access": "maybe"}]}),
        ("POST", MEMBERS, {"email": "a@example.com", "policies": [{**POLICY, "id": "f267e341"}]}),
        ("POST", MEMBERS, {"email": "a@example.com", "policies": [POLICY], "roles": [ADMIN_ROLE]}),
        ("POST", MEMBERS, {"email": "a@example.com", "roles": [ADMIN_ROLE], "status": "maybe"}),
        ("PUT", MEMBER, {"roles": [ADMIN_ROLE]}),
        ("PUT", MEMBER, {"roles": [{}]}),
        ("PUT", MEMBER, {"policies": [{"access": "allow"}]}),
        ("PUT", MEMBER, {"policies": [POLICY], "roles": [{"id": ADMIN_ROLE}]}),
        ("PUT", MEMBER, {}),
        ("PUT", MEMBER, []),
        ("DELETE", MEMBER, {"email": "a@example.com"}),
        ("POST", RESOURCE_GROUPS, {"scope": ZONE_GROUP["scope"]}),
    ],
)
def test_iam_refuses_what_cloudflare_would(method: str, path: str, body: Any) -> None:
    assert cloudflare_iam_request_errors(method, path, body) != []


def test_members_schema_still_checks_role_invites() -> None:
    assert cloudflare_request_errors("POST", MEMBERS, {"email": "a@example.com", "roles": [ADMIN_ROLE]}) == []
    assert cloudflare_request_errors("POST", MEMBERS, {"roles": [ADMIN_ROLE]}) != []
