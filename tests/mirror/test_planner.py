"""Mirror's own rules: what keeps a member, when a list may be mirrored, the removal guard, and
answers of any shape from Klaviyo."""

from __future__ import annotations

from typing import Any

import pytest

from target_klaviyo.errors import KlaviyoError
from target_klaviyo.klaviyo.paging import next_cursor
from target_klaviyo.mirror.plan_format import ListPlan
from target_klaviyo.mirror.planner import Mirror, member_paging


def test_an_email_seen_in_any_form_keeps_its_member_of_that_list_only():
    mirror = Mirror(("contact", "email"), 0.5, {})
    mirror.keep("V", {"contact": {"email": "  Ada@Example.com "}})
    mirror.keep("V", {"contact": {}})
    mirror.keep("V", {"contact": {"email": 42}})
    mirror.keep("V", {"contact": {"email": "mailto:<Dot@Example.com.>"}})
    assert mirror.kept("V", "ada@example.com")
    assert mirror.kept("V", "ADA@EXAMPLE.COM")
    assert mirror.kept("V", "dot@example.com"), "an address rejected as written is kept as it may be held"
    assert not mirror.kept("C", "ada@example.com")


def test_a_record_that_cannot_be_read_keeps_every_address_in_it():
    mirror = Mirror(("email",), 0.5, {})
    mirror.keep_any(
        "V", {"id": 1, "EMAIL": "Keep@Example.com", "nested": [{"x": "also@example.com"}], "n": 5}
    )
    assert mirror.kept("V", "keep@example.com")
    assert mirror.kept("V", "also@example.com")


def full(mirror: Mirror, stream: str, list_id: str, *emails: str) -> None:
    mirror.fed(stream, stream)
    mirror.routed(stream, list_id)
    mirror.activated(stream)
    for email in emails:
        mirror.record_from(stream)
        mirror.keep(list_id, {"email": email})


def test_a_list_is_mirrored_only_when_every_stream_for_it_arrived_whole():
    mirror = Mirror(("email",), 0.5, {"vip": "V", "vip_b": "V", "other": "O"})
    full(mirror, "vip", "V", "a@b.co")
    assert mirror.lists == ["V", "O"], "a list stream_lists names is this run's even if no stream came"
    assert mirror.why_not("V", 1) == (
        "stream 'vip_b', which stream_lists sends to it, did not appear in this run, so its people may "
        "still be in the segment"
    )
    mirror.fed("vip_b", "vip_b")
    mirror.routed("vip_b", "V")  # its SCHEMA came, and no record
    assert (mirror.why_not("V", 1) or "").startswith("stream 'vip_b' sent no records in this run")
    mirror.record_from("vip_b")
    assert (mirror.why_not("V", 1) or "").startswith("stream 'vip_b' did not arrive as a full extract")
    mirror.activated("vip_b")  # after its records: a resumed full-table sync
    assert (mirror.why_not("V", 1) or "").startswith(
        "stream 'vip_b' sent ACTIVATE_VERSION only after some of its records"
    )
    again = Mirror(("email",), 0.5, {"vip": "V", "vip_b": "V"})
    full(again, "vip", "V", "a@b.co")
    full(again, "vip_b", "V", "b@b.co")
    again.activated("vip_b")  # singer-io taps send it before and after: the one before counts
    assert again.why_not("V", 0) == (
        "Klaviyo accepted none of this run's profiles for it, and mirror never empties a list"
    )
    assert again.why_not("V", 1) is None


def test_two_tap_streams_under_one_name_must_each_arrive_whole():
    mirror = Mirror(("email",), 0.5, {"seg": "V"})
    for source in ("a", "b"):
        mirror.fed(source, "seg")
    mirror.routed("seg", "V")
    mirror.activated("a")
    mirror.record_from("a")
    mirror.record_from("b")  # incremental: no ACTIVATE_VERSION
    assert (mirror.why_not("V", 1) or "").startswith("stream 'b' did not arrive as a full extract")


def test_the_guard_allows_exactly_the_setting_of_the_list_before_the_run():
    mirror = Mirror(("email",), 0.5, {})
    assert mirror.refusal(ListPlan("V", members_before=10, members=15, remove=["x"] * 5)) is None
    refusal = mirror.refusal(ListPlan("V", members_before=10, members=15, remove=["x"] * 6))
    assert refusal == (
        "Mirroring list V would remove 6 of the 10 members it had before this run (60%), more than "
        "mirror_max_removal_fraction (50%): nothing was removed from it; check that the input holds the "
        "whole segment, or raise the setting."
    )
    assert ListPlan("V", members_before=0).share == 0.0
    assert ListPlan("V", members_before=0, remove=["x"]).share == 1.0


class Pages:
    """A client that answers each GET with the next of ``pages``."""

    def __init__(self, *pages: Any) -> None:
        self.pages = list(pages)

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.pages.pop(0)


def page(*members: Any, cursor: str | None = None) -> dict[str, Any]:
    links = {"next": f"http://k/api/lists/V/profiles?page%5Bcursor%5D={cursor}"} if cursor else {}
    return {"data": list(members), "links": links}


def member(profile_id: str, email: Any) -> dict[str, Any]:
    return {"type": "profile", "id": profile_id, "attributes": {"email": email}}


def test_members_without_an_email_are_kept_and_counted_and_pages_are_followed():
    mirror = Mirror(("email",), 0.5, {})
    mirror.keep("V", {"email": "a@b.co"})
    client = Pages(
        page(member("P1", "a@b.co"), member("P2", None), cursor="c2"),
        page(
            member("P3", "left@b.co"),
            {"type": "profile", "id": "P4", "attributes": {}},
            member("P3", "left@b.co"),
        ),
    )
    plan = mirror.plan(client, "V")  # type: ignore[arg-type]
    assert plan.remove == ["P3"]
    assert plan.without_email == 2
    assert plan.members == 5


@pytest.mark.parametrize(
    "answer",
    [
        {"data": "nope"},
        [],
        {"data": [{"id": "P1", "attributes": "a string"}]},
        {"data": [{"id": "../L2", "attributes": {"email": "x@b.co"}}]},
        {"data": [{"attributes": {"email": "x@b.co"}}]},
        {"data": [7]},
    ],
)
def test_an_answer_of_any_other_shape_is_one_sentence_and_removes_nothing(answer):
    mirror = Mirror(("email",), 0.5, {})
    with pytest.raises(KlaviyoError, match="nothing will be removed") as raised:
        mirror.plan(Pages(answer), "V")  # type: ignore[arg-type]
    assert "\n" not in str(raised.value)


def test_a_repeated_cursor_is_refused_and_odd_links_end_the_paging():
    mirror = Mirror(("email",), 0.5, {})
    with pytest.raises(KlaviyoError, match="a page it had already given"):
        mirror.plan(Pages(page(cursor="c"), page(cursor="c")), "V")  # type: ignore[arg-type]
    assert next_cursor({"links": "a string"}, member_paging("/api/lists/V/profiles")) is None
    assert next_cursor({"links": {"next": 5}}, member_paging("/api/lists/V/profiles")) is None
    # Found by the thirteenth hostile review: a link that is no URL at all ended in a traceback.
    unclosed = {"links": {"next": "https://[a.klaviyo.com/api/lists/V/profiles?page%5Bcursor%5D=abc"}}
    assert next_cursor(unclosed, member_paging("/api/lists/V/profiles")) is None
    assert (
        next_cursor(
            {"links": {"next": "http://k/x?page%5Bcursor%5D=abc"}}, member_paging("/api/lists/V/profiles")
        )
        == "abc"
    )


@pytest.mark.parametrize(
    "bookmark",
    [
        {"scn": 123},
        {"token": {"_data": "x"}},
        {"current_log_version": 7},
        {"replication_key_signpost": "2026"},
        {"oplog_ts_time": 1, "oplog_ts_inc": 2},
        {"bookmark": "2026-12-01"},
        {"last_replication_method": "LOG_BASED"},
        "2026-12-01",
        {"partitions": [{"context": {}, "replication_key": "x"}]},
        ["2024-01-01T00:00:00Z"],
        {"version": 1, "partitions": ["2024-01-01T00:00:00Z"]},
        {"version": 1, "SystemModstamp": "2026-11-01T00:00:00Z"},
    ],
)
def test_an_incremental_bookmark_of_any_tap_outweighs_activate_version(bookmark):
    mirror = Mirror(("email",), 0.5, {})
    full(mirror, "vip", "V", "a@b.co")
    mirror.state({"bookmarks": {"db-vip": bookmark}})
    assert (mirror.why_not("V", 1) or "").startswith("stream 'vip' has an incremental bookmark")


@pytest.mark.parametrize(
    "key", ["ORA_ROWSCN", "last_id_fetched", "last_evaluated_key", "last_pk_fetched", "xmin"]
)
def test_a_bookmark_of_an_interrupted_full_table_sync_before_the_records_is_a_resume(key):
    mirror = Mirror(("email",), 0.5, {})
    mirror.state({"bookmarks": {"vip": {key: 5, "version": 1}}})  # before the SCHEMA, too
    full(mirror, "vip", "V", "a@b.co")
    assert (mirror.why_not("V", 1) or "").startswith("stream 'vip' resumes an interrupted full-table sync")
    again = Mirror(("email",), 0.5, {})
    full(again, "vip", "V", "a@b.co")
    again.state({"bookmarks": {"vip": {key: 5, "version": 1}}})  # progress after records: a normal sync
    assert again.why_not("V", 1) is None


def test_a_member_read_twice_is_kept_if_any_reading_keeps_it():
    """Paging over a list that changes can give a profile twice, with an old and a new email."""
    mirror = Mirror(("email",), 0.5, {})
    mirror.keep("V", {"email": "b@b.co"})
    client = Pages(
        page(member("P2", "b.old@b.co"), member("P3", "gone@b.co"), cursor="c2"),
        page(member("P2", "b@b.co"), member("P4", "a@b.co"), member("P4", None), member("P3", "gone@b.co")),
    )
    plan = mirror.plan(client, "V")  # type: ignore[arg-type]
    assert plan.remove == ["P3"], "P2 and P4 are kept: one of their readings keeps them"


def test_a_state_that_keeps_its_bookmarks_at_the_top_level_is_read_too():
    mirror = Mirror(("email",), 0.5, {})
    full(mirror, "vip", "V", "a@b.co")
    mirror.state({"currently_syncing": "vip", "vip": {"updated_at": "2024-01-01T00:00:00Z"}})
    assert (mirror.why_not("V", 1) or "").startswith("stream 'vip' has an incremental bookmark")
    whole = Mirror(("email",), 0.5, {})
    full(whole, "vip", "V", "a@b.co")
    whole.state({"bookmarks": {"vip": {}, "other": {"replication_key": "x"}}})  # the SDK's full table
    assert whole.why_not("V", 1) is None


@pytest.mark.parametrize("value", [{"bookmarks": [{"vip": {"updated_at": "x"}}]}, ["vip"], "vip", 5])
def test_a_state_whose_bookmarks_are_not_an_object_leaves_every_list_as_it_is(value):
    """Found by the hostile review of issue 16: such a STATE was ignored, so a list was mirrored."""
    mirror = Mirror(("email",), 0.5, {})
    full(mirror, "vip", "V", "a@b.co")
    mirror.state(value)
    assert (mirror.why_not("V", 1) or "").startswith("the tap's STATE holds bookmarks that are not an object")
    mirror.state({"bookmarks": {}})  # a later readable STATE does not take the doubt back
    assert mirror.why_not("V", 1) is not None
