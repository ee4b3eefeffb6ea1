"""The profiles waiting to be sent, one per person and list, handed to the delivery in rounds.

Streams are drained separately by the SDK, but they all feed one set of held
profiles, so that the later record for an email wins even when the two records
came from different streams. Runs on the reading thread only.
"""

from __future__ import annotations

from target_klaviyo.delivery.batch import PendingProfile
from target_klaviyo.delivery.port import Delivery
from target_klaviyo.run.admission import Admission
from target_klaviyo.run.outcomes import Outcomes


class Batcher:
    def __init__(self, delivery: Delivery, outcomes: Outcomes) -> None:
        self._delivery = delivery
        self._outcomes = outcomes
        self._pending: dict[tuple[str, str], PendingProfile] = {}

    def held(self) -> list[PendingProfile]:
        """The profiles waiting for the next send, in the order they were first held."""
        return list(self._pending.values())

    def hold(self, item: PendingProfile, admission: Admission) -> None:
        """Keep a profile for the next send; a later record for the same email replaces it."""
        replaced = self._pending.get((item.list_id, item.key))
        if replaced is not None:
            item.verdict = item.verdict or replaced.verdict
            self._outcomes.replaced(replaced.epoch)
        elif admission is Admission.REPEAT:
            self._outcomes.sent_again()
        self._pending[item.list_id, item.key] = item

    def withdraw(self, list_id: str, key: str) -> bool:
        """Drop the held profile of this person for this list, if it is still held (not yet sent):
        a later record said it need not be sent after all. The dropped one counts as merged."""
        held = self._pending.pop((list_id, key), None)
        if held is None:
            return False
        if held.verdict:
            self._outcomes.sent_as(list_id, held.verdict, -1)  # not sent after all
        self._outcomes.replaced(held.epoch)
        return True

    def send(self, full: int | None = None) -> None:
        """Hand the held profiles to the delivery; what it holds back waits for a later send.

        With ``full`` (a drain because the batch is full) the delivery makes jobs of that size.
        """
        pending, self._pending = list(self._pending.values()), {}
        if not pending:
            return
        for item in self._delivery.send(pending, full):
            self._pending[item.list_id, item.key] = item

    def send_all_and_wait(self) -> None:
        """Send every held profile and wait until all are final.

        A round can hold some back: people whose earlier record was in a job still running,
        or who go to several lists (one list a round). Every round sends at least one record
        of each person, so the rounds end.
        """
        while True:
            self.send()
            self._delivery.wait()
            if not self._pending:
                return
