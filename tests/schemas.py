"""Validators built from the vendors' own schemas in ../shared."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from openapi_schema_validator import OAS30WriteValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SHARED = Path(__file__).resolve().parents[2] / "shared"


@cache
def _cloudflare_spec() -> dict[str, Any]:
    return json.loads((SHARED / "cloudflare-openapi-members.json").read_text())


@cache
def _slack_spec() -> dict[str, Any]:
    return json.loads((SHARED / "slack-web-openapi-subset.json").read_text())


def cloudflare_request_errors(method: str, path_template: str, body: Any) -> list[str]:
    """Messages for every way `body` breaks the operation's requestBody schema (empty: valid)."""
    spec = _cloudflare_spec()
    operation = spec["paths"][path_template][method.lower()]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    registry: Registry[Any] = Registry().with_resource("", Resource.from_contents(spec, default_specification=DRAFT4))
    validator = OAS30WriteValidator({**schema, "components": spec["components"]}, registry=registry)
    return [error.message for error in validator.iter_errors(body)]


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
    schema = json.loads((SHARED / "slack-manifest-schema.json").read_text())
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in Draft7Validator(schema).iter_errors(manifest)]
