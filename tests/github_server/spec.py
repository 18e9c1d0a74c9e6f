"""GitHub's REST description (the subset in ``tests/data/github-rest-api-subset.json``, cut by
``scripts/cut-github-rest-subset``) and everything the loopback server does with it: validating
requests and responses, and completing response payloads.

Validation goes through openapi-core against the unmodified description. The one deliberate extension
is documented in :meth:`SpecValidator.validate_response`: GitHub answers 401/403/404/429/5xx on *any*
endpoint with its generic error body, but the description lists those statuses only on some
operations, so an undocumented error status is checked against the description's own "Basic Error"
schema instead of being rejected.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_schema_validator import OAS30Validator
from werkzeug.datastructures import Headers, ImmutableMultiDict

# Vendored with the tests (its info["x-pttrust-source"] names the npm package, version and sha256 it was
# cut from); scripts/cut-github-rest-subset rebuilds it. parents[1] is tests/.
SPEC_PATH = Path(__file__).resolve().parents[1] / "data" / "github-rest-api-subset.json"

# The description's servers entry; validation always happens as if the request went to api.github.com,
# whatever host and Enterprise prefix (/api/v3) the loopback server listens on.
GITHUB_HOST_URL = "https://api.github.com"

# Statuses GitHub may send from any endpoint (auth, rate limits, abuse detection, outages).
GENERIC_ERROR_STATUSES = {401, 403, 404, 429, 500, 502, 503, 504}


def spec_path() -> Path:
    """The description file; ``PTTRUST_GITHUB_SPEC`` overrides the default location."""
    path = Path(os.environ.get("PTTRUST_GITHUB_SPEC", SPEC_PATH))
    if not path.is_file():
        raise FileNotFoundError(
            f"GitHub REST description not found at {path}: scripts/cut-github-rest-subset writes it "
            "(tests/data/github-rest-api-subset.json); set PTTRUST_GITHUB_SPEC to point elsewhere"
        )
    return path


@functools.lru_cache(maxsize=1)
def load_spec() -> dict:
    return json.loads(spec_path().read_text())


@functools.lru_cache(maxsize=1)
def _openapi() -> OpenAPI:
    # The description itself is GitHub's and known-good; skipping its meta-validation saves a few
    # seconds per test session.
    return OpenAPI.from_dict(load_spec(), config=Config(spec_validator_cls=None))


@functools.lru_cache(maxsize=1)
def basic_error_schema() -> dict:
    """GitHub's "Basic Error" schema, taken from the description (GET /user's 401)."""
    op = load_spec()["paths"]["/user"]["get"]
    return op["responses"]["401"]["content"]["application/json"]["schema"]


def operation(method: str, template: str) -> dict:
    return load_spec()["paths"][template][method.lower()]


def response_schema(method: str, template: str, status: int) -> dict | None:
    resp = operation(method, template)["responses"].get(str(status))
    if not resp or "content" not in resp:
        return None
    return resp["content"]["application/json"]["schema"]


# ---------------------------------------------------------------------------------------------------
# openapi-core adapters


class _Request:
    """openapi-core's Request protocol for one loopback request, re-rooted at api.github.com."""

    def __init__(self, method: str, path: str, query: str, headers: dict, body: bytes | None, content_type: str):
        self.method = method.lower()
        self.host_url = GITHUB_HOST_URL
        self.path = path
        self.body = body or None
        self.content_type = content_type or "application/octet-stream"
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qsl(query, keep_blank_values=True)),
            header=Headers(headers),
            cookie=ImmutableMultiDict(),
        )


@dataclass
class _Response:
    status_code: int
    data: bytes | None
    headers: Headers
    content_type: str


class SpecValidator:
    """Validates one request/response pair; returns human-readable violations (empty = valid)."""

    def __init__(self) -> None:
        self.api = _openapi()

    def validate_request(self, method, path, query, headers, body, content_type) -> list[str]:
        req = _Request(method, path, query, headers, body, content_type)
        try:
            self.api.validate_request(req)
        except Exception as err:  # openapi-core raises a family of exception types
            return [f"request {method} {path}: {_describe(err)}"]
        return []

    def validate_response(
        self,
        method,
        path,
        query,
        req_headers,
        req_body,
        req_content_type,
        status: int,
        body: bytes,
        headers: dict,
        content_type: str,
        template: str,
    ) -> list[str]:
        documented = str(status) in operation(method, template)["responses"]
        if not documented and status in GENERIC_ERROR_STATUSES:
            # Deliberate extension (see module docstring): check the generic error body instead.
            errors = _schema_errors(basic_error_schema(), body)
            return [f"response {status} {method} {path}: {e}" for e in errors]
        req = _Request(method, path, query, req_headers, req_body, req_content_type)
        resp = _Response(status, body or None, Headers(headers), content_type or "application/json")
        try:
            self.api.validate_response(req, resp)
        except Exception as err:
            return [f"response {status} {method} {path}: {_describe(err)}"]
        return []


def _schema_errors(schema: dict, body: bytes) -> list[str]:
    try:
        data = json.loads(body or b"null")
    except ValueError as err:
        return [f"body is not JSON: {err}"]
    return [e.message for e in OAS30Validator(schema).iter_errors(data)]


def _describe(err: Exception) -> str:
    # openapi-core nests the useful jsonschema messages in __cause__ / schema_errors.
    parts = [f"{type(err).__name__}: {err}"]
    cause = err.__cause__
    while cause is not None:
        parts.append(str(cause))
        for sub in getattr(cause, "schema_errors", ()) or ():
            parts.append(f"{'/'.join(map(str, sub.absolute_path))}: {sub.message}")
        cause = cause.__cause__
    return " | ".join(p[:400] for p in parts)


# ---------------------------------------------------------------------------------------------------
# Completing payloads

_MISSING = object()


def fill(schema: dict, value: Any = _MISSING) -> Any:
    """``value`` completed with every property ``schema`` requires and ``value`` lacks.

    The server only models the fields that matter (ids, shas, lines, bodies, URLs PyGithub follows);
    GitHub's objects require dozens more (avatar URLs, node ids, ...). Those get neutral placeholders
    derived from the schema (null where nullable), so each payload is complete by construction and the
    fields the server does set are still checked by the response validation.
    """
    schema = schema or {}
    if "allOf" in schema:
        merged: dict = {"type": "object", "properties": {}, "required": []}
        for part in schema["allOf"]:
            merged["properties"].update(part.get("properties", {}))
            merged["required"] += part.get("required", [])
        return fill(merged, value)
    options = schema.get("oneOf") or schema.get("anyOf")
    if options:
        return fill(_pick_option(options, value), value)
    if value is None:
        return None
    typ = schema.get("type") or ("object" if "properties" in schema else None)
    if value is _MISSING:
        if schema.get("nullable"):
            return None
        if "enum" in schema:
            return schema["enum"][0]
        if typ == "object":
            value = {}
        else:
            return _placeholder(schema, typ)
    if typ == "object" and isinstance(value, dict):
        props = schema.get("properties", {})
        out = dict(value)
        for name in schema.get("required", []):
            if name not in out:
                out[name] = fill(props.get(name, {}))
        for name, sub in list(out.items()):
            if name in props and isinstance(sub, (dict, list)):
                out[name] = fill(props[name], sub)
        return out
    if typ == "array" and isinstance(value, list):
        return [fill(schema.get("items", {}), v) for v in value]
    return value


def _pick_option(options: list[dict], value: Any) -> dict:
    non_null = [o for o in options if o.get("type") != "null" and not o.get("nullable")]
    if value is _MISSING or value is None:
        nullable = [o for o in options if o.get("type") == "null" or o.get("nullable")]
        return nullable[0] if nullable and value is None else (non_null or options)[0]
    if isinstance(value, dict):
        # The option that names the most of the given keys (e.g. a user vs. an enterprise account).
        objects = [o for o in options if "properties" in o] or options
        return max(objects, key=lambda o: len(set(value) & set(o.get("properties", {}))))
    kinds = {str: "string", bool: "boolean", int: "integer", float: "number", list: "array"}
    want = kinds.get(type(value))
    return next((o for o in options if o.get("type") == want), options[0])


def _placeholder(schema: dict, typ: str | None) -> Any:
    if typ == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return "2024-01-01T00:00:00Z"
        if fmt in ("uri", "uri-template", "url"):
            return "https://github.invalid/placeholder"
        if fmt == "email":
            return "placeholder@example.invalid"
        return ""
    if typ == "integer":
        return int(schema.get("minimum", 0))
    if typ == "number":
        return 0.0
    if typ == "boolean":
        return False
    if typ == "array":
        return []
    return None


def completed(method: str, template: str, status: int, value: Any) -> Any:
    """``value`` completed against the documented response schema of one operation."""
    schema = response_schema(method, template, status)
    return fill(copy.deepcopy(schema), value) if schema else value
