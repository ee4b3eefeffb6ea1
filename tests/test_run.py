from target_klaviyo.jobs import PendingProfile
from target_klaviyo.run import Admission, ExportRun
from target_klaviyo.settings import Settings


def export_run(**config) -> ExportRun:
    return ExportRun(Settings.from_config({"api_key": "k", "list_id": "L", "dry_run": True, **config}), None)


def item(run: ExportRun, email: str, **fields) -> PendingProfile:
    return PendingProfile(run.mapper.map({"email": email, **fields}), "s", {"email": email})


def test_limit_counts_distinct_profiles_only():
    run = export_run(max_profiles_per_run=2)
    assert run.admit("a") is Admission.NEW
    assert run.admit("a") is Admission.REPEAT
    assert run.admit("b") is Admission.NEW
    assert run.admit("c") is Admission.OVER_LIMIT
    assert run.admit("b") is Admission.REPEAT
    assert run.limit_reached
    assert run.report.distinct_profiles == 2


def test_zero_means_no_limit():
    run = export_run(max_profiles_per_run=0)
    assert all(run.admit(str(i)) is Admission.NEW for i in range(1000))


def test_later_record_wins_and_earlier_is_counted_as_deduplicated():
    run = export_run()
    first = item(run, "a@example.com", plan="free")
    later = item(run, "A@Example.com", plan="pro")
    run.hold(first, run.admit(first.profile.key))
    run.hold(later, run.admit(later.profile.key))
    assert run.report.deduplicated == 1
    assert list(run._pending.values()) == [later]


def test_a_profile_already_sent_is_sent_again_and_counted():
    run = export_run()
    first = item(run, "a@example.com", plan="free")
    run.hold(first, run.admit(first.profile.key))
    run.send_pending()
    again = item(run, "a@example.com", plan="pro")
    run.hold(again, run.admit(again.profile.key))
    run.send_pending()
    assert run.report.sent_again == 1
    assert run.report.deduplicated == 0
    assert run.report.exported == 2
    assert run.report.distinct_profiles == 1


def test_limit_error_explains_the_way_out():
    message = str(export_run(max_profiles_per_run=5).limit_error())
    assert "max_profiles_per_run (5 distinct profiles)" in message
    assert "on_limit_exceeded to truncate" in message
