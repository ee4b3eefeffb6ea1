"""Held profiles and their rounds, with a typed fake delivery: what it holds back is sent next round."""

from __future__ import annotations

from target_klaviyo.delivery.batch import PendingProfile
from target_klaviyo.records.profile import Reject
from target_klaviyo.run.admission import Admission
from target_klaviyo.run.batcher import Batcher
from target_klaviyo.run.run import ExportRun
from target_klaviyo.settings.settings import Settings


class OneAtATime:
    """A :class:`~target_klaviyo.delivery.port.Delivery` that sends one profile a round and holds the rest."""

    keeps_attributes = False

    def __init__(self) -> None:
        self.rounds: list[list[str]] = []
        self.waits = 0

    def send(self, pending: list[PendingProfile], full: int | None) -> list[PendingProfile]:
        self.rounds.append([item.key for item in pending[:1]])
        return pending[1:]

    def raise_failure(self) -> None:
        """Nothing fails."""

    def wait(self) -> None:
        self.waits += 1

    def abandon(self, grace: float | None) -> None:
        """Nothing is in flight."""

    def close(self) -> None:
        """Nothing is held."""


def pending(run: ExportRun, email: str) -> PendingProfile:
    record = {"email": email}
    profile = run.mapper.map(record)
    assert not isinstance(profile, Reject)
    return PendingProfile.of(profile, "s", record, run.outcomes.open_record(), list_id="L")


def test_what_the_delivery_holds_back_goes_in_a_later_round_until_none_is_left() -> None:
    run = ExportRun(Settings.from_config({"api_key": "k", "list_id": "L", "dry_run": True}))
    delivery = OneAtATime()
    batcher = Batcher(delivery, run.outcomes)
    for email in ["a@x.io", "b@x.io", "c@x.io"]:
        batcher.hold(pending(run, email), Admission.NEW)
    batcher.send_all_and_wait()
    assert delivery.rounds == [["a@x.io"], ["b@x.io"], ["c@x.io"]]
    assert delivery.waits == 3
    assert batcher.held() == []


def test_a_later_record_replaces_the_held_one_and_is_counted_as_merged() -> None:
    run = ExportRun(Settings.from_config({"api_key": "k", "list_id": "L", "dry_run": True}))
    batcher = Batcher(OneAtATime(), run.outcomes)
    batcher.hold(pending(run, "a@x.io"), Admission.NEW)
    later = pending(run, "a@x.io")
    batcher.hold(later, Admission.REPEAT)
    assert batcher.held() == [later]
    assert run.report.deduplicated == 1
    assert run.report.sent_again == 0
