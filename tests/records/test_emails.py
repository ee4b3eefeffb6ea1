"""The email shortcut gives exactly email-validator's verdict (hypothesis and a fixed corpus)."""

from email_validator import EmailNotValidError
from hypothesis import given
from hypothesis import strategies as st

from target_klaviyo.records.emails import normalize_email, validate_normalized

ATEXT = "abcXYZ0189!#$%&'*+/=?^_`{|}~-"
ODD_DOMAINS = [
    "example.com", "EXAMPLE.COM", "sub.example.co.uk", "localhost", "x.test", "a.invalid", "b.local",
    "123.com", "1.2.3.4", "[127.0.0.1]", "xn--bcher-kva.de", "bücher.de", "a..b", "-a.com", "a-.com",
    "a.c", "a.123", "é.com", "exa mple.com", "a_b.com", "x" * 63 + ".com", "x" * 64 + ".com",
    ".".join(["abcdefghij"] * 25) + ".com", ".".join(["x" * 60] * 4) + ".com", "x" * 40 + ".com",
    "example.com.", "", "ex@mple.com", "例え.jp", "mail.onion",
    ".".join(["ü" * 20] * 5) + ".de", ".".join(["例" * 15] * 4) + ".jp",
]  # fmt: skip
local_parts = st.one_of(
    st.text(alphabet=ATEXT + ".", max_size=70),
    st.sampled_from(
        ["Postmaster", "ABUSE", "a", "a.b", ".a", "a.", "a..b", "x" * 64, "x" * 65, "é", "a b", '"a"']
    ),
)
domains = st.one_of(st.sampled_from(ODD_DOMAINS), st.text(alphabet="abcxyz019-.", max_size=70))


@given(local=local_parts, domain=domains)
def test_the_email_fast_path_gives_exactly_email_validators_verdict(local, domain):
    email = f"{local}@{domain}"
    fast, slow = normalize_email(email), validate_normalized(email)
    if isinstance(slow, EmailNotValidError):
        assert isinstance(fast, EmailNotValidError)
        assert str(fast) == str(slow)
    else:
        assert fast == slow


def test_the_email_fast_path_on_a_fixed_corpus():
    for local in ["a", "Postmaster", "x" * 64, "x" * 65, "x" * 60 + ".abc", "a.b+c", "é", "a" * 40]:
        for domain in ODD_DOMAINS:
            email = f"{local}@{domain}"
            fast, slow = normalize_email(email), validate_normalized(email)
            assert (str(fast) if isinstance(fast, EmailNotValidError) else fast) == (
                str(slow) if isinstance(slow, EmailNotValidError) else slow
            ), email
