"""Validators built from the vendors' own schemas, vendored in tests/vendor/ so a clone stands alone."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from openapi_schema_validator import OAS30WriteValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

VENDOR = Path(__file__).resolve().parent / "vendor"

# Every file this module reads; tests/test_standalone.py checks they all exist in the repository.
CLOUDFLARE_MEMBERS = VENDOR / "cloudflare-openapi-members.json"
CLOUDFLARE_IAM = VENDOR / "cloudflare-openapi-iam.json"
SLACK_WEB = VENDOR / "slack-web-openapi-subset.json"
SLACK_MANIFEST = VENDOR / "slack-manifest-schema.json"
SCHEMA_FILES = (CLOUDFLARE_MEMBERS, CLOUDFLARE_IAM, SLACK_WEB, SLACK_MANIFEST)

MEMBER_PATH = "/accounts/{account_id}/members/{member_id}"


@cache
def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _cloudflare_spec() -> dict[str, Any]:
    return _load(CLOUDFLARE_MEMBERS)


def _slack_spec() -> dict[str, Any]:
    return _load(SLACK_WEB)


@cache
def _cloudflare_iam_spec() -> dict[str, Any]:
    """The IAM schema with its policy `id` requirement dropped (misfit 1 of the file's x-caveats).

    `iam_create_member_policy` requires `id` yet marks it read-only, and the validator does not see
    `readOnly` through `$ref`, so every policies body would fail; real clients never send the id.
    """
    spec = copy.deepcopy(_load(CLOUDFLARE_IAM))
    spec["components"]["schemas"]["iam_create_member_policy"]["required"] = [
        "access",
        "permission_groups",
        "resource_groups",
    ]
    return spec


def _body_errors(spec: dict[str, Any], schema: dict[str, Any], body: Any) -> list[str]:
    registry: Registry[Any] = Registry().with_resource("", Resource.from_contents(spec, default_specification=DRAFT4))
    validator = OAS30WriteValidator({**schema, "components": spec["components"]}, registry=registry)
    return [error.message for error in validator.iter_errors(body)]


def cloudflare_request_errors(method: str, path_template: str, body: Any) -> list[str]:
    """Messages for every way `body` breaks the operation's requestBody schema (empty: valid)."""
    spec = _cloudflare_spec()
    operation = spec["paths"][path_template][method.lower()]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    return _body_errors(spec, schema, body)


# The roles form of PUT member: role objects carrying only their id (misfit 2: `iam_role` demands
# name, description and permissions, which are read-only and which no client sends).
_PUT_ROLES = {
    "type": "object",
    "required": ["roles"],
    "properties": {
        "roles": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id"],
                "properties": {"id": {"$ref": "#/components/schemas/iam_role_components-schemas-identifier"}},
            },
        }
    },
}


def cloudflare_iam_request_errors(method: str, path_template: str, body: Any) -> list[str]:
    """Like `cloudflare_request_errors`, against the 2026 IAM schema (members with policies,
    resource groups), validated around the schema's known misfits rather than editing the file:

    - a policy needs no `id` (see `_cloudflare_iam_spec`);
    - PUT member: the `oneOf` cannot be checked as written (its roles branch has no `required`, so
      it matches anything); the branch is picked by key and only that branch is validated;
    - POST member with both `roles` and `policies` matches both branches and stays rejected, as the
      official clients reject it;
    - DELETE member declares an empty JSON body: no body or `{}` is valid.
    """
    spec = _cloudflare_iam_spec()
    operation = spec["paths"][path_template][method.lower()]
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return [] if body in (None, {}) else [f"{method.upper()} {path_template} takes no body, got {body!r}"]
    if method.upper() == "PUT" and path_template == MEMBER_PATH:
        if not isinstance(body, dict):
            return [f"{body!r} is not of type 'object'"]
        forms = [key for key in ("roles", "policies") if key in body]
        if len(forms) != 1:
            return [f"a member update carries exactly one of 'roles' or 'policies', got {forms or 'neither'}"]
        if forms == ["policies"]:
            schema = {"$ref": "#/components/schemas/iam_update-member-with-policies"}
        else:
            schema = _PUT_ROLES
    return _body_errors(spec, schema, body)


def slack_required_arguments(method: str) -> set[str]:
    """Arguments Slack's OpenAPI spec marks required for `method`, less the token."""
    path = _slack_spec()["paths"][f"/{method}"]
    operation = next(iter(path.values()))
    return {
        parameter["name"]
        for parameter in operation.get("parameters", [])
        if parameter.get("required") and parameter["name"] != "token"
    }


def slack_known_arguments(method: str) -> set[str]:
    path = _slack_spec()["paths"].get(f"/{method}")
    if path is None:
        return set()
    operation = next(iter(path.values()))
    return {parameter["name"] for parameter in operation.get("parameters", [])}


def manifest_errors(manifest: dict[str, Any]) -> list[str]:
    schema = _load(SLACK_MANIFEST)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in Draft7Validator(schema).iter_errors(manifest)]
