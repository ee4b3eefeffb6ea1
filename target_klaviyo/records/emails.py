"""Email addresses as ``email-validator`` normalises them, with a shortcut for the usual shape.

``validate_email`` costs tens of microseconds an address. The usual address has a
plain ASCII local part, which is its own normalised form, so only its domain needs
the library, and a domain's verdict does not depend on the local part: the domain
is asked about once (cached), and the address is assembled. Anything else goes to
the library whole.
"""

from __future__ import annotations

import contextlib
import functools
import re
import unicodedata
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

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


# Addresses as they appear in any text (mirror mode's keeping of members, the consent of a record
# that could not be read): what Klaviyo may hold, and where in a record one may be.
MAX_VALUES_SEARCHED = 100_000  # values of one unreadable record searched for emails
# An address inside other text: no spaces, brackets, quotes or separators around its "@".
ADDRESS = re.compile(r"[^\s<>\"'`;,:?()\[\]{}|]+@[^\s<>\"'`;,:?()\[\]{}|]+")
UNDECODED = re.compile("[\udc80-\udcff]")  # bytes the reader could not decode as UTF-8
INVISIBLE = re.compile("[\u200b-\u200f\u2060\ufeff\u00ad]")  # zero-width and soft-hyphen characters


def texts_with_at(value: Any) -> Iterator[str]:
    """Every text in ``value`` that may hold an address, searched breadth first (so a long array
    deep inside cannot use up the search before the fields above it), at most MAX_VALUES_SEARCHED."""
    pending, budget = deque([value]), MAX_VALUES_SEARCHED
    while pending and budget:
        item = pending.popleft()
        budget -= 1
        if isinstance(item, Mapping):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and "@" in item:
            yield item


def address_forms(value: str) -> set[str]:
    """An address in every form Klaviyo may hold it: as written, each address inside it
    (``Name <a@b.c>``, ``mailto:a@b.c?subject=x``, quoted, with invisible characters, a trailing
    dot), in Unicode NFC, and normalised (an IDN domain in ASCII). Both sides of the comparison,
    the records' addresses and the members', are read so."""
    text = value.strip()
    if not text:
        return set()
    if UNDECODED.search(text):
        # Bytes that were not UTF-8 (kept as surrogates by the reader): most often Latin-1 or
        # Windows-1252 from an old source. The address may be held with those bytes read so,
        # with the text around them as decoded, or without them.
        found = address_forms(UNDECODED.sub(lambda byte: chr(ord(byte.group()) - 0xDC00), text))
        found |= address_forms(UNDECODED.sub("", text))
        with contextlib.suppress(UnicodeError):
            raw = text.encode("utf-8", "surrogateescape")
            for encoding in ("cp1252", "latin-1"):
                with contextlib.suppress(UnicodeError):
                    found |= address_forms(raw.decode(encoding))
        return found
    forms = {text, *(match.rstrip(".") for match in ADDRESS.findall(INVISIBLE.sub("", text)))}
    for form in list(forms):
        if "@" in form:
            forms.add(unicodedata.normalize("NFC", form))
            with contextlib.suppress(UnicodeError, ValueError):
                normalized = normalize_email(form)
                if isinstance(normalized, str):
                    forms.add(normalized)
    return forms
