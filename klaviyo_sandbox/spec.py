"""Klaviyo's OpenAPI spec (the subset we use), turned into JSON Schema validators.

Both the sandbox (to reject bad requests the way Klaviyo does) and the tests (to
check that every request the target sends, and every response the sandbox gives,
has the shape the spec defines) validate against this one file.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema

SPEC_PATH = Path(__file__).with_name("klaviyo-openapi-subset.json")
OPENAPI_ONLY_KEYWORDS = {"nullable", "example", "discriminator", "x-klaviyo-pre-release"}


@functools.cache
def load_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(SPEC_PATH.read_text())
    return spec


def to_json_schema(schema: dict[str, Any], *, strict: bool) -> dict[str, Any]:
    """Inline ``$ref``s and translate OpenAPI 3.0 ``nullable`` into JSON Schema.

    ``strict`` closes every object that lists its properties, so a field the spec
    does not name is an error, as Klaviyo treats it. Objects that are branches of
    an ``allOf`` stay open, since each branch only sees part of the object.
    """
    components = load_spec()["components"]["schemas"]

    def convert(node: Any, *, in_all_of: bool = False) -> Any:
        if isinstance(node, list):
            return [convert(item, in_all_of=in_all_of) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = components[node["$ref"].rsplit("/", 1)[1]]
            merged = {**copy.deepcopy(target), **{k: v for k, v in node.items() if k != "$ref"}}
            return convert(merged, in_all_of=in_all_of)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in OPENAPI_ONLY_KEYWORDS:
                continue
            if key == "properties":
                out[key] = {name: convert(sub) for name, sub in value.items()}
            elif key == "allOf":
                out[key] = [convert(sub, in_all_of=True) for sub in value]
            else:
                out[key] = convert(value)
        if strict and "properties" in out and not in_all_of:
            out.setdefault("additionalProperties", False)
        if node.get("nullable"):
            out = _allow_null(out)
        return out

    converted: dict[str, Any] = convert(schema)
    return converted


def _allow_null(schema: dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema.get("type"), str):
        widened = {**schema, "type": [schema["type"], "null"]}
        if "enum" in schema:
            widened["enum"] = [*schema["enum"], None]
        return widened
    return {"anyOf": [schema, {"type": "null"}]}


@dataclass(frozen=True)
class SchemaError:
    """The first thing wrong with a document: where (a JSON pointer) and what."""

    pointer: str
    message: str


class SchemaValidator:
    """A fast yes/no check, with a slower second pass that explains a "no"."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._is_valid = fastjsonschema.compile(schema, use_default=False)
        self._explainer = jsonschema.Draft7Validator(schema)

    def first_error(self, document: Any) -> SchemaError | None:
        try:
            self._is_valid(document)
        except fastjsonschema.JsonSchemaException:
            return self._explain(document)
        return None

    def _explain(self, document: Any) -> SchemaError:
        error = jsonschema.exceptions.best_match(self._explainer.iter_errors(document))
        if error is None:
            return SchemaError("/data", "The payload provided in the request is invalid.")
        path = [str(part) for part in error.absolute_path]
        if error.validator == "additionalProperties":
            extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            return SchemaError(
                "/" + "/".join([*path, extra[0]]),
                f"'{extra[0]}' is not a valid field for the resource "
                f"'{_resource_type(document, error.absolute_path)}'.",
            )
        field = path[-1] if path else "data"
        return SchemaError("/" + "/".join(path), _describe(error, field))


def _resource_type(document: Any, path: Iterable[str | int]) -> str:
    """Name the innermost JSON:API resource on ``path``, as Klaviyo's messages do."""
    found = "data"
    node = document
    for part in path:
        if isinstance(node, dict) and isinstance(node.get("type"), str):
            found = node["type"]
        node = node[part]
    return found


def _describe(error: jsonschema.ValidationError, field: str) -> str:
    if error.validator == "required":
        return f"{error.message.split(' ', 1)[0]} is a required field."
    if error.validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"Invalid input: '{field}' must be of type {expected}."
    if error.validator == "enum":
        return f"Invalid input: '{field}' must be one of {error.validator_value}."
    if error.validator in {"maxItems", "minItems", "maximum", "minimum"}:
        return f"Invalid input: '{field}' violates {error.validator} {error.validator_value}."
    return f"Invalid input: '{field}' is not valid ({error.validator})."


def _operation(path: str, method: str) -> dict[str, Any]:
    operation: dict[str, Any] = load_spec()["paths"][path][method]
    return operation


@functools.cache
def request_validator(path: str, method: str) -> SchemaValidator:
    """The strict validator for the body of ``method path`` (spec path template)."""
    body = _operation(path, method)["requestBody"]["content"]["application/vnd.api+json"]
    return SchemaValidator(to_json_schema(body["schema"], strict=True))


@functools.cache
def response_validator(path: str, method: str, status: int) -> SchemaValidator | None:
    """The validator for a response, or None where the spec defines no body."""
    responses = _operation(path, method)["responses"]
    response = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
    if response is None:
        msg = f"the spec defines no {status} response for {method.upper()} {path}"
        raise KeyError(msg)
    if "$ref" in response:
        response = load_spec()["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    content = response.get("content")
    if not content:
        return None
    return SchemaValidator(to_json_schema(content["application/vnd.api+json"]["schema"], strict=False))


def rate_limit(path: str, method: str) -> tuple[str, str]:
    """Klaviyo's published (burst, steady) limits for an operation, e.g. ("10/s", "150/m")."""
    limits = _operation(path, method)["x-klaviyo-ratelimit"]
    return limits["burst"], limits["steady"]


@functools.cache
def query_parameters(path: str, method: str) -> frozenset[str]:
    """The query parameters the spec declares for an operation (``page[size]``, ``filter``, ...)."""
    return frozenset(
        parameter["name"]
        for parameter in _operation(path, method).get("parameters", [])
        if parameter["in"] == "query"
    )
