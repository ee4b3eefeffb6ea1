"""Whether a stream's schema has a record path: absent only when the schema says so."""

from __future__ import annotations

import pytest

from target_klaviyo.records.schema_paths import closest, has_path

CONTACT = {"type": "object", "properties": {"email": {"type": "string"}}}


@pytest.mark.parametrize(
    "contact",
    [
        {"anyOf": [{"$ref": "#/definitions/c"}, {"type": "null"}]},
        {"oneOf": [{"allOf": [CONTACT]}, {"type": "null"}]},
        {"anyOf": [CONTACT, {"type": "null"}]},
        {"type": ["object", "null"], "properties": {"email": {"type": "string"}}},
        {},
        {"type": "object", "additionalProperties": True, "properties": {}},
        {"type": "object"},
    ],
)
def test_a_path_the_schema_may_hold_is_never_called_absent(contact):
    schema = {"type": "object", "properties": {"contact": contact}, "definitions": {"c": CONTACT}}
    assert has_path(schema, ("contact", "email"))


@pytest.mark.parametrize(
    "contact",
    [
        {"anyOf": [{"type": "object", "properties": {"phone": {}}}, {"type": "null"}]},
        {"type": "string"},
        {"type": "object", "properties": {"phone": {}}, "additionalProperties": False},
    ],
)
def test_a_path_the_schema_rules_out_is_absent(contact):
    assert not has_path({"type": "object", "properties": {"contact": contact}}, ("contact", "email"))


def test_the_closest_path_prefers_the_same_name_in_another_case():
    schema = {"type": "object", "properties": {"EmailAddress": {}, "Contact": {"properties": {"Phone": {}}}}}
    assert closest(schema, ("emailaddress",)) == "EmailAddress"
    assert closest(schema, ("contact", "phone")) == "Contact.Phone"
    assert closest(schema, ("zzz",)) is None
