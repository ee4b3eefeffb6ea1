"""One email per phone number and external id: in the run, and against what the ledger says is held."""

from __future__ import annotations

import pytest

from target_klaviyo.ledger.digest import identifier_of, person_of
from target_klaviyo.records.mapping import ProfileMapper
from target_klaviyo.run.admission import Admissions
from target_klaviyo.settings.settings import Settings

NUMBER = "+14155552671"


def admissions(**config) -> tuple[Admissions, ProfileMapper]:
    settings = Settings.from_config(
        {
            "api_key": "k",
            "list_id": "L",
            "dry_run": True,
            "property_mapping": {"phone_number": "phone", "external_id": "ref"},
            **config,
        }
    )
    mapper = ProfileMapper(settings)
    return Admissions(settings, mapper), mapper


def kept(admitted: Admissions, mapper: ProfileMapper, email: str, **fields) -> list[str]:
    profile, _ = admitted.one_person_per_phone(
        mapper.map({"email": email, **fields}), person_of(email.lower())
    )
    return sorted(name for name in ("phone_number", "external_id") if name in profile.resource["attributes"])


def test_a_number_given_to_another_email_in_the_run_is_left_out():
    admitted, mapper = admissions()
    assert kept(admitted, mapper, "a@example.com", phone=NUMBER, ref="r1") == ["external_id", "phone_number"]
    assert kept(admitted, mapper, "b@example.com", phone=NUMBER, ref="r1") == []
    assert kept(admitted, mapper, "A@example.com", phone=NUMBER, ref="r1") == ["external_id", "phone_number"]


@pytest.mark.parametrize(("field", "attribute"), [("phone", "phone_number"), ("ref", "external_id")])
def test_what_the_ledger_says_another_person_holds_is_left_out_with_a_reason_that_names_it(field, attribute):
    admitted, mapper = admissions()
    value = NUMBER if field == "phone" else "r1"
    admitted.held_before([[(identifier_of(attribute, value), person_of("a@example.com"))]])
    profile, identifiers = admitted.one_person_per_phone(
        mapper.map({"email": "b@example.com", field: value}), person_of("b@example.com")
    )
    assert identifiers == bytes(32)
    assert attribute not in profile.resource["attributes"]
    (dropped,) = profile.dropped
    assert (
        "is already another email's, in this run or (the ledger says) since an earlier run" in dropped.detail
    )
    assert kept(admitted, mapper, "a@example.com", **{field: value}) == [attribute]


def test_a_number_the_ledger_gives_two_people_is_nobodys():
    admitted, mapper = admissions()
    number = identifier_of("phone_number", NUMBER)
    admitted.held_before([[(number, person_of("a@example.com"))], [(number, person_of("b@example.com"))]])
    assert kept(admitted, mapper, "a@example.com", phone=NUMBER) == []
    assert kept(admitted, mapper, "b@example.com", phone=NUMBER) == []


def test_a_damaged_claim_is_a_type_error():
    admitted, _ = admissions()
    with pytest.raises(TypeError):
        admitted.held_before([[("not bytes", None)]])  # type: ignore[list-item]


def test_the_values_kept_are_returned_as_the_ledger_names_them():
    admitted, mapper = admissions()
    profile, identifiers = admitted.one_person_per_phone(
        mapper.map({"email": "a@example.com", "ref": 7}), person_of("a@example.com")
    )
    assert profile.resource["attributes"]["external_id"] == "7"
    assert identifiers == bytes(16) + identifier_of("external_id", "7")


def test_the_ledger_is_read_once_when_the_first_profile_is_checked_and_before_it():
    admitted, mapper = admissions()
    reads: list[str] = []

    def read() -> None:
        reads.append("read")
        admitted.held_before([[(identifier_of("phone_number", NUMBER), person_of("a@example.com"))]])

    admitted.held_later(read)
    assert reads == [], "nothing is read while no profile is checked (an unchanged run reads nothing)"
    assert kept(admitted, mapper, "b@example.com", phone=NUMBER) == []
    assert kept(admitted, mapper, "a@example.com", phone=NUMBER) == ["phone_number"]
    assert reads == ["read"]
