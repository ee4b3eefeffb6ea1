import datetime
import decimal
import json
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from target_klaviyo.records.consent import UNDATED, Consent
from target_klaviyo.records.mapping import MAX_PROFILE_BYTES, ProfileMapper, normalize_phone
from target_klaviyo.records.profile import Profile, Reject
from target_klaviyo.records.values import Unrepresentable
from target_klaviyo.settings.settings import Settings


def mapper(**config) -> ProfileMapper:
    return ProfileMapper(Settings.from_config({"api_key": "k", "list_id": "L", **config}))


def attributes(result) -> dict:
    assert isinstance(result, Profile), result
    return result.resource["attributes"]


def test_email_is_trimmed_and_keyed_in_lower_case():
    profile = mapper().map({"email": "  Ada@Example.COM "})
    assert attributes(profile)["email"] == "Ada@example.com", "the domain is normalised, the local part kept"
    assert profile.key == "ada@example.com"
    assert profile.resource["type"] == "profile"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({}, "missing_email"),
        ({"email": None}, "missing_email"),
        ({"email": "   "}, "missing_email"),
        ({"email": 42}, "invalid_email"),
        ({"email": ["a@example.com"]}, "invalid_email"),
        ({"email": "not-an-email"}, "invalid_email"),
        ({"email": "two@@example.com"}, "invalid_email"),
        ({"email": "a b@example.com"}, "invalid_email"),
    ],
)
def test_bad_emails_are_rejected_with_their_reason(record, reason):
    result = mapper().map(record)
    assert isinstance(result, Reject)
    assert result.reason == reason
    assert "email" in result.detail


def test_email_reached_through_a_dotted_path():
    result = mapper(email_property="contact.email").map({"contact": {"email": "x@example.com", "tier": 1}})
    assert attributes(result)["email"] == "x@example.com"
    assert attributes(result)["properties"] == {"contact": {"tier": 1}}


def test_missing_nested_email_is_missing_not_a_crash():
    assert mapper(email_property="contact.email").map({"contact": "nope"}).reason == "missing_email"


def test_mapped_attributes_and_location():
    result = mapper(
        email_property="Email",
        property_mapping={
            "first_name": "First",
            "external_id": "Id",
            "location.city": "Address.City",
            "location.latitude": "Address.Lat",
        },
    ).map({"Email": "a@example.com", "First": "Ada", "Id": 7, "Address": {"City": "London", "Lat": 51.5}})
    assert attributes(result) == {
        "email": "a@example.com",
        "first_name": "Ada",
        "external_id": "7",
        "location": {"city": "London", "latitude": 51.5},
    }


def test_null_and_empty_values_leave_klaviyo_untouched():
    result = mapper(property_mapping={"first_name": "first", "last_name": "last"}).map(
        {"email": "a@example.com", "first": None, "last": "", "note": None}
    )
    assert attributes(result) == {"email": "a@example.com"}


def test_phone_is_normalised_to_e164():
    result = mapper(property_mapping={"phone_number": "phone"}).map(
        {"email": "a@example.com", "phone": "+1 (415) 555-2671"}
    )
    assert attributes(result)["phone_number"] == "+14155552671"
    assert result.dropped == []


@pytest.mark.parametrize(
    ("phone", "expected"),
    [
        ("070-123 45 67", "+46701234567"),
        ("0046 70 123 45 67", "+46701234567"),  # the international prefix dialled from Sweden
        ("+1 (415) 555-2671", "+14155552671"),  # a + number ignores the default region
        ("08-123 456 78", "+46812345678"),
    ],
)
def test_a_national_number_takes_the_default_phone_region(phone, expected):
    subject = mapper(property_mapping={"phone_number": "phone"}, default_phone_region="se")
    result = subject.map({"email": "a@example.com", "phone": phone})
    assert attributes(result)["phone_number"] == expected
    assert result.dropped == []


def test_a_number_invalid_for_the_default_region_is_dropped_with_the_region_named():
    subject = mapper(property_mapping={"phone_number": "phone"}, default_phone_region="SE")
    result = subject.map({"email": "a@example.com", "phone": "070-12"})
    assert "phone_number" not in attributes(result)
    assert result.dropped[0].reason == "invalid_phone"
    assert "default_phone_region SE" in result.dropped[0].detail


@pytest.mark.parametrize("phone", ["415-555-2671", "+1 555", "+999 1234567", "call me", "+44 7700 900461"])
def test_invalid_phone_is_dropped_but_the_profile_goes(phone):
    result = mapper(property_mapping={"phone_number": "phone"}).map(
        {"email": "a@example.com", "phone": phone}
    )
    assert "phone_number" not in attributes(result)
    assert [reject.reason for reject in result.dropped] == ["invalid_phone"]


def test_normalize_phone_without_country_code_is_refused():
    assert isinstance(normalize_phone("4155552671"), Reject)


def test_object_in_a_text_attribute_is_dropped_and_reported():
    result = mapper(property_mapping={"first_name": "name"}).map({"email": "a@example.com", "name": {"a": 1}})
    assert "first_name" not in attributes(result)
    assert result.dropped[0].reason == "invalid_attribute"


def test_unmapped_properties_keep_types_and_skip_sdc_metadata():
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    result = mapper(property_mapping={"first_name": "first"}).map(
        {
            "email": "a@example.com",
            "first": "Ada",
            "signed_up": when,
            "birthday": datetime.date(1990, 5, 6),
            "ltv": decimal.Decimal("12.50"),
            "orders": decimal.Decimal(3),
            "tags": ["vip", "beta"],
            "address": {"city": "London", "since": when},
            "_sdc_extracted_at": when,
        }
    )
    assert attributes(result)["properties"] == {
        "signed_up": "2026-01-02T03:04:05+00:00",
        "birthday": "1990-05-06",
        "ltv": 12.5,
        "orders": 3,
        "tags": ["vip", "beta"],
        "address": {"city": "London", "since": "2026-01-02T03:04:05+00:00"},
    }
    json.dumps(result.resource)


def test_nested_mapping_leaves_the_rest_of_the_object_as_properties():
    result = mapper(property_mapping={"location.city": "address.city"}).map(
        {"email": "a@example.com", "address": {"city": "Paris", "street": "Rue X"}}
    )
    assert attributes(result)["location"] == {"city": "Paris"}
    assert attributes(result)["properties"] == {"address": {"street": "Rue X"}}


def test_custom_properties_none_and_list():
    record = {"email": "a@example.com", "plan": "pro", "ltv": 3, "secret": "x"}
    assert "properties" not in attributes(mapper(custom_properties="none").map(record))
    assert attributes(mapper(custom_properties=["plan", "ltv", "absent"]).map(record))["properties"] == {
        "plan": "pro",
        "ltv": 3,
    }


def test_profile_over_100_kb_is_rejected():
    result = mapper().map({"email": "a@example.com", "blob": "x" * MAX_PROFILE_BYTES})
    assert isinstance(result, Reject)
    assert result.reason == "profile_too_large"


def test_encoded_form_is_the_compact_json_of_the_resource():
    result = mapper().map({"email": "a@example.com", "n": 1})
    assert json.loads(result.encoded) == result.resource


# Identity and numbers


def test_unicode_forms_of_one_address_are_one_key_and_sent_normalised():
    nfc = mapper().map({"email": "Jos\u00e9@B\u00fccher.de"})
    nfd = mapper().map({"email": "jose\u0301@xn--bcher-kva.de"})
    assert nfc.key == nfd.key == "jos\u00e9@xn--bcher-kva.de"
    assert attributes(nfc)["email"] == "Jos\u00e9@xn--bcher-kva.de"


@pytest.mark.parametrize(
    "value",
    [Decimal("1e5000"), Decimal("1e999999999"), Decimal("NaN"), Decimal("-Infinity"), float("inf"), 10**400],
)
def test_numbers_json_cannot_hold_reject_the_record(value):
    reject = mapper().map({"email": "a@example.com", "score": value})
    assert isinstance(reject, Reject)
    assert reject.reason == "unrepresentable_number"
    assert reject.detail.startswith("The property 'score' holds a number")


def test_a_large_but_representable_number_is_sent():
    profile = mapper().map({"email": "a@example.com", "score": Decimal("1e300"), "n": 10**300})
    assert attributes(profile)["properties"]["score"] == 10**300


# The compiled property mapping does exactly what following the paths does

MAPPINGS = [
    {
        "first_name": "FirstName",
        "phone_number": "Phone",
        "location.city": "Address.City",
        "external_id": "Id",
    },
    {"location.latitude": "geo.lat", "location.longitude": "geo.lon", "title": "Address"},
    {"last_name": "a.b.c", "organization": "a.b", "location.zip": "a"},
]
values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.decimals(allow_nan=True),
        st.text(max_size=8),
        st.sampled_from(["", " ", "+1 703-555-0143", "+44 20 7946 0958", "070-123 45 67"]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "c", "lat", "lon", "City", "x"]), children, max_size=3),
    ),
    max_leaves=8,
)
records = st.dictionaries(
    st.sampled_from(["FirstName", "Phone", "Address", "Id", "geo", "a", "email", "_sdc_x", "other"]),
    values,
    max_size=7,
).map(lambda record: {**record, "email": "a@example.com"})


@given(mapping=st.sampled_from(MAPPINGS), record=records, region=st.sampled_from([None, "SE"]))
@example(
    mapping=MAPPINGS[0],
    record={
        "email": "a@example.com",
        "FirstName": "",
        "Phone": " +44 20 7946 0958",
        "Address": {"City": ""},
        "Id": 7,
    },
    region=None,
)
@example(mapping=MAPPINGS[0], record={"email": "a@example.com", "Phone": "070-123 45 67"}, region="SE")
@example(
    mapping=MAPPINGS[1],
    record={"email": "a@example.com", "geo": {"lat": Decimal("1e400"), "lon": "x"}},
    region=None,
)
def test_the_compiled_mapping_is_the_interpreted_one(mapping, record, region):
    subject = mapper(property_mapping=mapping, default_phone_region=region)
    compiled: tuple[dict, list] = ({}, [])
    interpreted: tuple[dict, list] = ({}, [])
    outcomes = []
    for fill, (attributes, dropped) in [
        (subject._compiled_attributes, compiled),
        (subject._interpret_attributes, interpreted),
    ]:
        try:
            fill(record, attributes, dropped)
            outcomes.append(None)
        except Unrepresentable as error:
            outcomes.append(str(error))
    assert outcomes[0] == outcomes[1]
    if outcomes[0] is None:
        assert json.dumps(compiled[0]) == json.dumps(interpreted[0])
        assert compiled[1] == interpreted[1]


@pytest.mark.parametrize(
    ("record", "consent"),
    [
        (
            {"ok": True, "at": "2024-01-02T03:04:05+01:00"},
            Consent("2024-01-02T02:04:05+00:00", "2024-01-02T02:04:05+00:00"),
        ),
        ({"ok": True}, UNDATED),
        ({"ok": " True ", "at": ""}, UNDATED),
        ({"ok": "2023-01-01"}, Consent("2023-01-01T00:00:00+00:00", "2022-12-31T10:00:00+00:00")),
        ({"ok": False, "at": "2024-01-02T03:04:05Z"}, None),
        ({"ok": "false"}, None),
        ({"ok": None}, None),
        ({"ok": "   "}, None),
        ({}, None),
    ],
)
def test_consent_is_read_from_the_record(record, consent):
    profile = mapper(consent_property="ok", consented_at_property="at").map({"email": "a@b.co", **record})
    assert isinstance(profile, Profile)
    assert profile.consent == consent
    assert profile.dropped == []
    assert "ok" not in profile.resource["attributes"].get("properties", {})
    assert "at" not in profile.resource["attributes"].get("properties", {})


def test_a_bad_consent_date_drops_the_consent_not_the_profile():
    profile = mapper(consent_property="ok", consented_at_property="at").map(
        {"email": "a@b.co", "ok": True, "at": "last tuesday"}
    )
    assert isinstance(profile, Profile)
    assert profile.consent is None
    [dropped] = profile.dropped
    assert dropped.reason == "invalid_consent"
    assert dropped.detail.startswith("consented_at_property 'at' is not an ISO 8601 date-time")
    assert "tuesday" not in dropped.detail


def test_epoch_zero_drops_the_consent_with_one_sentence_and_the_profile_still_goes():
    profile = mapper(consent_property="ok").map({"email": "a@b.co", "ok": "1970-01-01T00:00:00Z"})
    assert isinstance(profile, Profile)
    assert profile.consent is None
    [dropped] = profile.dropped
    assert dropped.reason == "invalid_consent"
    assert dropped.detail.count(". ") == 0
    assert dropped.detail.endswith("the profile was exported without a subscription.")
