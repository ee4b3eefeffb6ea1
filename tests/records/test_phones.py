"""The phone shortcut gives exactly phonenumbers' verdict (hypothesis and a corpus of every region)."""

from __future__ import annotations

from types import SimpleNamespace

import phonenumbers
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE, _number_type_helper

from target_klaviyo.records.phones import LIBRARY, _shortcut, _validity, e164, library_e164


def example_numbers() -> list[phonenumbers.PhoneNumber]:
    """phonenumbers' example number of every type in every region and non-geographic code."""
    numbers = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in PhoneNumberType.values():
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                numbers.append(number)
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        number = phonenumbers.example_number_for_non_geo_entity(code)
        if number is not None:
            numbers.append(number)
    return numbers


EXAMPLES = example_numbers()
WRITTEN = sorted(
    {
        phonenumbers.format_number(number, style)
        for number in EXAMPLES
        for style in (PhoneNumberFormat.E164, PhoneNumberFormat.INTERNATIONAL)
    }
)
SEPARATORS = " ().-"


def variants(written: str) -> list[str]:
    """A written number, and near misses: one digit more, one less, the last one changed."""
    return [written, written + "7", written[:-1], written[:-1] + str((int(written[-1]) + 1) % 10)]


CORPUS = [variant for written in WRITTEN for variant in variants(written)]


def test_the_corpus_covers_every_country_code():
    assert {number.country_code for number in EXAMPLES} == set(COUNTRY_CODE_TO_REGION_CODE)
    assert len(CORPUS) > 5_000


def test_the_shortcut_gives_phonenumbers_verdict_on_the_corpus():
    different = [phone for phone in CORPUS if e164(phone) != library_e164(phone)]
    assert different == []


def test_the_shortcut_decides_most_of_the_corpus_itself():
    """Otherwise the two tests above would pass by handing everything to the library."""
    decided = [phone for phone in CORPUS if _shortcut(phone) is not LIBRARY]
    valid = [phone for phone in decided if _shortcut(phone) is not None]
    assert len(decided) > 0.8 * len(CORPUS)
    assert len(valid) > 0.3 * len(CORPUS)


@pytest.mark.parametrize(
    "phone",
    [
        "+1 703-555-0143",  # NANP: the United States, first of 25 regions
        "+1 (416) 555-0199",  # NANP: Canada, found by validity after the United States
        "+1 268 464 1234",  # NANP: Antigua, found by leading digits
        "+44 20 7946 0958",
        "+44 (0) 20 7946 0958",  # national prefix: the library strips it
        "+39 06 6982 1234",  # Italy: a leading zero that is kept
        "+54 9 11 1234 5678",  # Argentina: a mobile prefix the library rewrites
        "+52 1 55 1234 5678",  # Mexico: an old mobile prefix
        "+800 1234 5678",  # non-geographic
        "+7 912 345-67-89",  # Russia and Kazakhstan share +7
        "+1.415.555.2671",
        "+999 1234567",
        "+12",
        "+1 1 703 555 0143",
    ],
)
def test_the_shortcut_on_numbers_that_take_the_libraries_branches(phone):
    assert e164(phone) == library_e164(phone)


country_codes = st.sampled_from(sorted(COUNTRY_CODE_TO_REGION_CODE))


@st.composite
def written_numbers(draw: st.DrawFn) -> str:
    """A plus, a country code, digits and separators: the shape the shortcut takes."""
    code = draw(country_codes)
    body = draw(st.text(alphabet="0123456789" * 3 + SEPARATORS, min_size=1, max_size=18))
    return f"+{code}{draw(st.sampled_from(['', ' ', '-', ' (']))}{body}"


@st.composite
def mutated_examples(draw: st.DrawFn) -> str:
    written = list(draw(st.sampled_from(WRITTEN)))
    for _ in range(draw(st.integers(0, 3))):
        position = draw(st.integers(1, len(written)))
        change = draw(st.sampled_from(["insert", "replace", "delete"]))
        char = draw(st.sampled_from("0123456789" + SEPARATORS))
        if change == "insert":
            written.insert(position, char)
        elif position < len(written):
            if change == "replace":
                written[position] = char
            else:
                del written[position]
    return "".join(written)


@given(
    phone=st.one_of(
        written_numbers(), mutated_examples(), st.from_regex(r"\+[0-9 ().-]{0,24}", fullmatch=True)
    )
)
@example(phone="+1 201-555-0123")
@example(phone="+33 6 12 34 56 78")
def test_the_shortcut_gives_phonenumbers_verdict(phone):
    assert e164(phone) == library_e164(phone)


# Validity per region, on made-up metadata: the two rules today's metadata never exercises
# (a pattern that admits a length the description does not list, and a mobile pattern equal
# to fixed line's with other lengths) still give the library's verdict.

PATTERNS = ["[2-9]\\d{5,8}", "7\\d{6}", "(?:80|90)\\d{4,6}", "\\d{7,9}", "[1-5]\\d{6,7}"]
descriptions = st.one_of(
    st.none(),
    st.builds(
        phonenumbers.PhoneNumberDesc,
        national_number_pattern=st.sampled_from(PATTERNS),
        possible_length=st.lists(st.integers(6, 10), max_size=3, unique=True).map(tuple),
    ),
)


@st.composite
def made_up_metadata(draw: st.DrawFn) -> SimpleNamespace:
    fields = {name: draw(descriptions) for name in DESCRIPTION_FIELDS}
    fields["general_desc"] = draw(
        st.one_of(
            st.just(phonenumbers.PhoneNumberDesc(national_number_pattern="\\d{5,11}")), descriptions
        ).filter(lambda desc: desc is not None)
    )
    if draw(st.booleans()) and fields["fixed_line"] is not None:
        pattern = fields["fixed_line"].national_number_pattern
        lengths = draw(st.lists(st.integers(6, 10), max_size=3, unique=True).map(tuple))
        fields["mobile"] = phonenumbers.PhoneNumberDesc(
            national_number_pattern=pattern, possible_length=lengths
        )
        fields["same_mobile_and_fixed_line_pattern"] = True
    else:
        fields["same_mobile_and_fixed_line_pattern"] = False
    return SimpleNamespace(**fields)


DESCRIPTION_FIELDS = [
    "premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail",
    "fixed_line", "mobile",
]  # fmt: skip


def made_up(same_mobile: bool = False, **descriptions: tuple[str, tuple[int, ...]]) -> SimpleNamespace:
    fields = dict.fromkeys(DESCRIPTION_FIELDS)
    for name, (pattern, lengths) in descriptions.items():
        fields[name] = phonenumbers.PhoneNumberDesc(national_number_pattern=pattern, possible_length=lengths)
    return SimpleNamespace(**fields, same_mobile_and_fixed_line_pattern=same_mobile)


ANY = ("\\d{5,11}", ())


@given(metadata=made_up_metadata(), national=st.text(alphabet="0123456789", min_size=6, max_size=10))
# The pattern admits 7 digits, the description lists only 8.
@example(metadata=made_up(general_desc=ANY, fixed_line=("\\d{7,9}", (8,))), national="1234567")
# Mobile has fixed line's pattern (so the library never tries it) but other lengths.
@example(
    metadata=made_up(True, general_desc=ANY, fixed_line=("7\\d{6}", (8,)), mobile=("7\\d{6}", (7,))),
    national="7123456",
)
def test_validity_per_region_is_the_libraries_number_type_check(metadata, national):
    expected = _number_type_helper(national, metadata) != PhoneNumberType.UNKNOWN
    assert _validity(metadata)(national) == expected
