"""Email addresses as ``email-validator`` normalises them, with a shortcut for the usual shape.

``validate_email`` costs tens of microseconds an address. The usual address has a
plain ASCII local part, which is its own normalised form, so only its domain needs
the library, and a domain's verdict does not depend on the local part: the domain
is asked about once (cached), and the address is assembled. Anything else goes to
the library whole.
"""

from __future__ import annotations

import functools
import re

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

# The common shape of an address: an ASCII dot-atom local part.
PLAIN_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
PLAIN_MAX_BYTES = 200  # well under email-validator's 254-byte limits, so they need no check here


def normalize_email(email: str) -> str | EmailNotValidError:
    """The address as ``email-validator`` normalises it, with the IDNA (ASCII) domain, or its error.

    Gives exactly :func:`validate_normalized`'s answer: the common shape (a plain
    ASCII local part, and the address under 200 bytes as written and with its domain
    in ASCII) takes a path that asks ``email-validator`` about each domain once;
    anything else goes to it whole. The library limits the length of every form of
    the address, which a domain checked alone cannot show.
    """
    local, at, domain = email.rpartition("@")
    if (
        at
        and len(email.encode("utf-8", "surrogatepass")) <= PLAIN_MAX_BYTES
        and len(local) <= 64
        and PLAIN_LOCAL_PART.match(local)
        and local.lower() not in CASE_INSENSITIVE_MAILBOX_NAMES
    ):
        ascii_domain = _ascii_domain(domain)
        if ascii_domain is not None and len(local) + 1 + len(ascii_domain) <= PLAIN_MAX_BYTES:
            return f"{local}@{ascii_domain}"
    return validate_normalized(email)


def validate_normalized(email: str) -> str | EmailNotValidError:
    """``email-validator``'s verdict on the whole address (no DNS look-ups)."""
    try:
        valid = validate_email(email, check_deliverability=False)
    except EmailNotValidError as error:
        return error
    return f"{valid.local_part}@{valid.ascii_domain}"


@functools.lru_cache(maxsize=4096)
def _ascii_domain(domain: str) -> str | None:
    """The domain's IDNA form if ``email-validator`` accepts it (a domain's verdict does not
    depend on the local part); None sends the address down the full path."""
    result = validate_normalized(f"a@{domain}")
    return None if isinstance(result, EmailNotValidError) else result[2:]
