"""The one cursor pager: what it requests, and what each reader's rules make of odd paging."""

import pytest

from target_klaviyo.errors import KlaviyoError
from target_klaviyo.klaviyo.paging import Paging, next_cursor, pages


def link(cursor: str) -> dict:
    return {"links": {"next": f"https://a.klaviyo.com/api/x?page%5Bsize%5D=2&page%5Bcursor%5D={cursor}"}}


STRICT = Paging(
    fault=lambda what: KlaviyoError(f"odd: {what}"),
    repeated="repeated",
    endless="endless",
    links_not_object="links",
    next_not_text="next",
    no_cursor="cursor",
    most_pages=3,
)
LENIENT = Paging(fault=lambda what: KlaviyoError(f"odd: {what}"), repeated="repeated")


def test_each_next_page_is_asked_for_with_its_cursor_and_the_first_params():
    answers = [link("b"), link("c"), {"data": []}]
    asked = []

    def fetch(params):
        asked.append(params)
        return answers[len(asked) - 1]

    assert list(pages(fetch, {"page[size]": 2}, STRICT)) == answers
    assert asked == [
        {"page[size]": 2},
        {"page[size]": 2, "page[cursor]": "b"},
        {"page[size]": 2, "page[cursor]": "c"},
    ]


@pytest.mark.parametrize(
    ("page", "fault"),
    [
        ({"links": "a string"}, "links"),
        ({"links": {"next": 5}}, "next"),
        ({"links": {"next": "https://a.klaviyo.com/api/x"}}, "cursor"),
    ],
)
def test_odd_paging_stops_a_strict_reader_and_ends_a_lenient_one(page, fault):
    with pytest.raises(KlaviyoError, match=f"odd: {fault}$"):
        next_cursor(page, STRICT)
    assert next_cursor(page, LENIENT) is None


def test_no_links_and_a_null_next_are_the_last_page_for_every_reader():
    for paging in (STRICT, LENIENT):
        assert next_cursor({"data": []}, paging) is None
        assert next_cursor({"links": {"next": None}}, paging) is None
        assert next_cursor([1], paging) is None


def test_a_cursor_given_twice_and_too_many_pages_are_refused():
    with pytest.raises(KlaviyoError, match="odd: repeated"):
        list(pages(lambda params: link("same"), {}, LENIENT))
    cursors = iter("abcdef")
    with pytest.raises(KlaviyoError, match="odd: endless"):
        list(pages(lambda params: link(next(cursors)), {}, STRICT))
