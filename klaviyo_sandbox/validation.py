"""What Klaviyo refuses in a request beyond its schema: sizes, identifiers, emails, phones, consent."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

import msgspec
import phonenumbers

from klaviyo_sandbox.exceptions import InvalidProfiles, error_object
from klaviyo_sandbox.models.profiles import IDENTIFIERS

MAX_PROFILES_PER_JOB = 10_000
MAX_JOB_BYTES = 5_000_000
MAX_PROFILE_BYTES = 100_000
MAX_RELATIONSHIP_IDS = 1000
MAX_SUBSCRIPTION_PROFILES = 1000
MAX_ERRORS_PER_RESPONSE = 100
EMAIL = re.compile(
    r"^(?!\.)(?!.*\.\.)[^\s@\"(),:;<>\[\\\]]{1,64}(?<!\.)@(?=.{1,253}$)(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}$"
)
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
COUNTRY_CODES = frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


def profile_errors(
    profile: dict[str, Any],
    pointer: str,
    identifiers: tuple[str, ...] = IDENTIFIERS,
    refuse_domains: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """What Klaviyo would reject in one profile, beyond the schema: size, identity, email, phone."""
    attributes = profile.get("attributes") or {}
    if len(msgspec.json.encode(profile)) > MAX_PROFILE_BYTES:
        return [
            error_object(
                400, "invalid", f"A profile may be at most {MAX_PROFILE_BYTES} bytes.", pointer=pointer
            )
        ]
    if not any(attributes.get(key) for key in identifiers):
        names = ", ".join(identifiers)
        return [
            error_object(
                400,
                "invalid",
                f"A profile needs at least one identifier ({names}).",
                pointer=f"{pointer}/attributes",
            )
        ]
    errors = []
    email = attributes.get("email")
    if email is not None and (not is_valid_email(email) or email_domain(attributes) in refuse_domains):
        errors.append(
            error_object(400, "invalid", "Invalid email address.", pointer=f"{pointer}/attributes/email")
        )
    if attributes.get("phone_number") is not None and not is_e164(attributes["phone_number"]):
        errors.append(
            error_object(
                400,
                "invalid",
                "Invalid phone number format (Example of a valid phone number: +13239169023).",
                pointer=f"{pointer}/attributes/phone_number",
            )
        )
    return errors


def raise_profile_errors(errors: list[dict[str, Any]]) -> None:
    """Fail the whole request, as Klaviyo does, naming (up to 100 of) the bad profiles."""
    if errors:
        raise InvalidProfiles(errors[:MAX_ERRORS_PER_RESPONSE])


def consent_problem(consented_at: str | None, historical: bool) -> str | None:
    """What Klaviyo says of a profile's ``consented_at`` in a request with this ``historical_import``."""
    if not historical:
        if consented_at is not None:
            return "consented_at may only be given when historical_import is true."
        return None
    if consented_at is None:
        return "consented_at is required for every profile when historical_import is true."
    try:
        moment = datetime.fromisoformat(consented_at.replace("Z", "+00:00"))
    except ValueError:
        return "consented_at must be a date-time."
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    if moment > datetime.now(timezone.utc):
        return "consented_at must be in the past for a historical import."
    return None


def is_valid_email(email: str) -> bool:
    """Email syntax as a mail server would accept it: a local part, an ``@``, a dotted domain.

    A compiled pattern rather than ``email-validator``: the sandbox checks 10,000
    addresses per job and must stay much faster than the target it serves (the
    target itself validates with ``email-validator`` before sending).
    """
    return EMAIL.match(email) is not None


def is_e164(phone: str) -> bool:
    """``+``, a country calling code that exists, and at most 15 digits in all."""
    if not E164.match(phone):
        return False
    return any(int(phone[1 : 1 + length]) in COUNTRY_CODES for length in (1, 2, 3))


def email_domain(attributes: dict[str, Any]) -> str | None:
    email = attributes.get("email")
    return email.rsplit("@", 1)[-1].lower() if isinstance(email, str) else None
