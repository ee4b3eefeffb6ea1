"""The one pointer parser, and the one sentence for a key without the scopes it needs."""

import pytest

from target_klaviyo.errors import ErrorDetail, KlaviyoApiError, KlaviyoError
from target_klaviyo.klaviyo.refused import dig, lacks_scopes, profile_position, scopes_needed, split_refused


def refusal(status: int, *pointers: str | None) -> KlaviyoApiError:
    return KlaviyoApiError("POST", "/x", status, [ErrorDetail("invalid", "bad", p) for p in pointers])


@pytest.mark.parametrize(
    ("pointer", "position"),
    [
        ("/data/attributes/profiles/data/2", 2),
        ("/data/attributes/profiles/data/02/attributes/email", 2),
        ("/data/attributes/profiles/data/3", None),  # beyond the three sent
        ("/data/attributes/profiles/data/1x", None),
        ("/data/attributes/list", None),
        (None, None),
        (5, None),
    ],
)
def test_a_pointer_names_a_profile_sent_or_none(pointer, position):
    assert profile_position(pointer, 3) == position


def test_the_refused_are_split_from_the_rest_with_klaviyos_words():
    error = refusal(
        400, "/data/attributes/profiles/data/1/attributes/email", "/data/attributes/profiles/data/1"
    )
    refused, rest = split_refused(error, ["a", "b", "c"])
    assert refused == {1: "invalid: bad (/data/attributes/profiles/data/1/attributes/email)"}
    assert rest == ["a", "c"]


@pytest.mark.parametrize(
    "error",
    [
        refusal(400, "/data/attributes/profiles/data/0", "/data/attributes/list"),
        refusal(400, "/data/attributes/profiles/data/9"),
        refusal(409, "/data/attributes/profiles/data/0"),
        refusal(400),
    ],
)
def test_anything_but_a_400_naming_profiles_sent_is_raised_as_it_is(error):
    with pytest.raises(KlaviyoApiError) as raised:
        split_refused(error, ["a", "b"])
    assert raised.value is error


def test_the_scopes_sentence():
    assert str(lacks_scopes(403, "read list L", "sync_mode mirror", ["lists:read", "profiles:read"])) == (
        "Klaviyo refused to read list L (403): sync_mode mirror needs the lists:read and profiles:read scopes."
    )
    assert str(lacks_scopes(401, "subscribe", "the API key", ["subscriptions:write"], " for x")) == (
        "Klaviyo refused to subscribe (401): the API key needs the subscriptions:write scope for x."
    )


def test_scopes_needed_turns_only_a_401_or_403_into_the_sentence():
    sentence = r"^Klaviyo refused to read \(403\): m needs the a scope\.$"
    with pytest.raises(KlaviyoError, match=sentence), scopes_needed("read", "m", ["a"]):
        raise refusal(403)
    with pytest.raises(KlaviyoApiError, match="answered 500"), scopes_needed("read", "m", ["a"]):
        raise refusal(500)


def test_dig():
    assert dig({"a": {"b": 1}}, "a", "b") == 1
    assert dig({"a": [1]}, "a", "b") is None
    assert dig(None, "a") is None
