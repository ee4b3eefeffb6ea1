"""Phone numbers to E.164, with exactly ``phonenumbers``' verdict and a shortcut for the usual shape.

``phonenumbers.parse`` and ``is_valid_number`` cost tens of microseconds a number,
more than the rest of a record's mapping together. Most numbers in customer data
are international numbers written with digits, spaces, hyphens, dots and
parentheses (``+1 703-555-0143``, ``+447700900461``). For those the shortcut does
what ``phonenumbers`` does, in the same order, with the library's own metadata,
and checks validity with one regular expression per region compiled once from
that metadata. Anything else, and every case where the library would take a
branch the shortcut does not reproduce (a national prefix, a non-geographic
country code), goes to the library itself. A leading zero after the country code
(Italy's ``+39 06...``) is kept, as the library keeps it.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable

import phonenumbers
from phonenumbers import PhoneMetadata
from phonenumbers.phonenumberutil import (  # type: ignore[attr-defined]  # re-exported, not in __all__
    COUNTRY_CODE_TO_REGION_CODE,
    REGION_CODE_FOR_NON_GEO_ENTITY,
)

# A plus, a digit that starts a country code, then digits and the usual separators.
PLAIN_INTERNATIONAL = re.compile(r"\+[1-9][0-9 ().-]{0,38}[0-9]\Z")
NOT_DIGITS = re.compile(r"[^0-9]")
MIN_NATIONAL = 2  # phonenumbers' _MIN_LENGTH_FOR_NSN
MAX_NATIONAL = 17  # phonenumbers' _MAX_LENGTH_FOR_NSN
MAX_COUNTRY_CODE = 3  # phonenumbers' _MAX_LENGTH_COUNTRY_CODE


class Undecided(enum.Enum):
    """The shortcut's answer when the library must decide."""

    LIBRARY = "library"


LIBRARY = Undecided.LIBRARY


def e164(phone: str) -> str | None:
    """The number in E.164 form, or None if ``phonenumbers`` finds it invalid or cannot parse it."""
    fast = _shortcut(phone)
    return library_e164(phone) if fast is LIBRARY else fast


def library_e164(phone: str, region: str | None = None) -> str | None:
    """``phonenumbers``' own verdict: parsed (with ``region`` for a national number), valid, as E.164."""
    try:
        parsed = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _shortcut(phone: str) -> str | Undecided | None:
    if not PLAIN_INTERNATIONAL.match(phone):
        return LIBRARY
    digits = NOT_DIGITS.sub("", phone)
    if len(digits) <= MIN_NATIONAL:
        return LIBRARY
    # The country code: the shortest prefix that is one (phonenumbers' _extract_country_code).
    for size in range(1, MAX_COUNTRY_CODE + 1):
        code = int(digits[:size])
        if code in COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return LIBRARY
    national = digits[size:]
    plan = _plan(code)
    if plan is None or not MIN_NATIONAL <= len(national) <= MAX_NATIONAL:
        return LIBRARY
    national_prefix, regions = plan
    if national_prefix is not None and national_prefix.match(national):
        return LIBRARY  # the library would try to strip a national prefix or carrier code
    # phonenumbers' region_code_for_number, then is_valid_number_for_region on that region.
    for leading_digits, is_valid in regions:
        if leading_digits is not None:
            if leading_digits.match(national):
                return f"+{code}{national}" if is_valid(national) else None
        elif is_valid(national):
            return f"+{code}{national}"
    return None


@functools.cache
def _plan(
    code: int,
) -> tuple[re.Pattern[str] | None, list[tuple[re.Pattern[str] | None, Callable[[str], bool]]]] | None:
    """For a country code: the main region's national prefix pattern, and per region (in the
    library's order) its leading digits and validity check. None sends the number to the library."""
    regions = COUNTRY_CODE_TO_REGION_CODE[code]
    if REGION_CODE_FOR_NON_GEO_ENTITY in regions:
        return None
    main = PhoneMetadata.metadata_for_region(regions[0], None)
    if main is None:
        return None
    prefix = main.national_prefix_for_parsing
    plan = []
    for region in regions:
        metadata = PhoneMetadata.metadata_for_region(region, None)
        if metadata is None:
            continue
        leading = re.compile(metadata.leading_digits) if metadata.leading_digits is not None else None
        plan.append((leading, _validity(metadata)))
    return (re.compile(prefix) if prefix else None), plan


def _validity(metadata: PhoneMetadata) -> Callable[[str], bool]:
    """phonenumbers' ``_number_type_helper(number, metadata) != UNKNOWN`` as one or two regexes.

    The library checks the general description, then each number type in turn, each
    as "its possible lengths, if it lists any, include the number's length, and its
    pattern matches the whole number". A number is valid when the general check and
    any type's check pass; the types become alternatives of one pattern, each with
    its lengths as a look-ahead. Mobile is only tried when its pattern differs from
    fixed line's, as in the library.
    """
    kinds = [
        metadata.premium_rate,
        metadata.toll_free,
        metadata.shared_cost,
        metadata.voip,
        metadata.personal_number,
        metadata.pager,
        metadata.uan,
        metadata.voicemail,
        metadata.fixed_line,
    ]
    if not metadata.same_mobile_and_fixed_line_pattern:
        kinds.append(metadata.mobile)
    alternatives = [_described(desc) for desc in kinds if desc is not None and desc.national_number_pattern]
    general = metadata.general_desc
    if not alternatives or general is None or not general.national_number_pattern:
        return lambda national: False
    general_pattern = re.compile(_described(general))
    any_type = re.compile("|".join(alternatives))
    return lambda national: bool(general_pattern.fullmatch(national) and any_type.fullmatch(national))


def _described(desc: phonenumbers.PhoneNumberDesc) -> str:
    lengths = desc.possible_length or ()
    length_check = f"(?=(?:{'|'.join(f'.{{{n}}}' for n in sorted(set(lengths)))})\\Z)" if lengths else ""
    return f"(?:{length_check}(?:{desc.national_number_pattern}))"
