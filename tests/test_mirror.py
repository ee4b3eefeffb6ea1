"""Mirror's own rules: what keeps a member, when a list may be mirrored, the removal guard."""

from __future__ import annotations

from target_klaviyo.mirror import ListPlan, Mirror


def test_an_email_seen_in_any_form_keeps_its_member_of_that_list_only():
    mirror = Mirror(("contact", "email"), 0.5)
    mirror.saw("vip", "V", {"contact": {"email": "  Ada@Example.com "}})
    mirror.saw("vip", "V", {"contact": {}})
    mirror.saw("vip", "V", {"contact": {"email": 42}})
    assert mirror.kept("V", "ada@example.com")
    assert mirror.kept("V", "ADA@EXAMPLE.COM")
    assert not mirror.kept("C", "ada@example.com")
    assert not mirror.kept("V", None)


def test_a_list_is_mirrored_only_after_full_extracts_of_every_stream_that_fed_it():
    mirror = Mirror(("email",), 0.5)
    mirror.routed("vip", "V")
    mirror.routed("vip_changes", "V")
    mirror.routed("other", "O")
    assert mirror.lists == ["V", "O"]
    assert mirror.why_not("V") == (
        "no records for it were read in this run, and mirror never empties a list",
        False,
    )
    mirror.full_extract("vip")
    mirror.saw("vip", "V", {"email": "a@b.co"})
    reason, fails = mirror.why_not("V") or ("", False)
    assert reason.startswith("none of this run's records for it could be sent")
    mirror.sent("V")
    assert mirror.why_not("V") is None, "a stream with no records this run does not make the list partial"
    mirror.saw("vip_changes", "V", {"email": "b@b.co"})
    reason, fails = mirror.why_not("V") or ("", False)
    assert fails
    assert reason.startswith("stream 'vip_changes' did not arrive as a full extract")


def test_the_guard_allows_exactly_the_setting_of_the_list_before_the_run():
    mirror = Mirror(("email",), 0.5)
    assert mirror.refusal(ListPlan("V", members_before=10, members=15, remove=["x"] * 5)) is None
    refusal = mirror.refusal(ListPlan("V", members_before=10, members=15, remove=["x"] * 6))
    assert refusal == (
        "Mirroring list V would remove 6 of the 10 members it had before this run (60%), more than "
        "mirror_max_removal_fraction (50%): nothing was removed from it; check that the input holds the "
        "whole segment, or raise the setting."
    )
    assert ListPlan("V", members_before=0).share == 0.0
    assert ListPlan("V", members_before=0, remove=["x"]).share == 1.0
