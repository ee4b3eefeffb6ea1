"""The JSON:API resources the sandbox answers with, drawn from what the models hold."""

from __future__ import annotations

import time
from typing import Any

from klaviyo_sandbox.models.database import iso
from klaviyo_sandbox.models.jobs import Job

MEMBER_ATTRIBUTES = (
    "email",
    "phone_number",
    "external_id",
    "first_name",
    "last_name",
    "organization",
    "locale",
    "title",
    "image",
    "location",
    "properties",
)


def list_resource(found: dict[str, Any], base_url: str, profile_count: int | None) -> dict[str, Any]:
    """A list; ``profile_count`` only when asked for (``additional-fields[list]``)."""
    attributes: dict[str, Any] = {
        "name": found["name"],
        "created": found["created"],
        "updated": found["created"],
        "opt_in_process": "single_opt_in",
    }
    if profile_count is not None:
        attributes["profile_count"] = profile_count
    url = f"{base_url}/api/lists/{found['id']}/"
    return {"type": "list", "id": found["id"], "attributes": attributes, "links": {"self": url}}


def profile_resource(
    stored: dict[str, Any], base_url: str, fields: list[str] | None = None
) -> dict[str, Any]:
    """A profile as ``POST /api/profile-import`` and ``GET /api/profiles`` return it; ``fields``
    (``fields[profile]``) keeps only those attributes."""
    attributes = {
        **{key: stored["attributes"].get(key) for key in MEMBER_ATTRIBUTES},
        "created": stored["created"],
        "updated": stored["updated"],
    }
    if fields is not None:
        attributes = {key: value for key, value in attributes.items() if key in fields}
    url = f"{base_url}/api/profiles/{stored['id']}/"
    return {"type": "profile", "id": stored["id"], "attributes": attributes, "links": {"self": url}}


def member_resource(
    row: dict[str, Any], base_url: str, fields: list[str] | None = None, with_subscriptions: bool = False
) -> dict[str, Any]:
    """A member as a profile resource; ``fields`` (``fields[profile]``) keeps only those attributes
    and ``joined_group_at``, which the spec requires of every member."""
    attributes = {key: row["attributes"].get(key) for key in MEMBER_ATTRIBUTES}
    attributes.update(created=row["created"], updated=row["updated"], joined_group_at=row["joined_group_at"])
    if with_subscriptions:
        marketing = email_marketing(row["email_marketing"], row["suppressions"])
        attributes["subscriptions"] = {"email": {"marketing": marketing}}
    if fields is not None:
        attributes = {
            key: value for key, value in attributes.items() if key in fields or key == "joined_group_at"
        }
    return {
        "type": "profile",
        "id": row["id"],
        "attributes": attributes,
        "links": {"self": f"{base_url}/api/profiles/{row['id']}/"},
    }


def email_marketing(consent: dict[str, Any] | None, suppressions: list[dict[str, Any]]) -> dict[str, Any]:
    """A profile's email marketing consent as Klaviyo describes it (``subscriptions.email.marketing``).

    Each suppression has its own timestamp, which need not be ``last_updated`` (that
    dates the consent): global ones are ``suppression``, those from one list
    ``list_suppressions``.
    """
    suppression = [
        {"reason": item["reason"], "timestamp": item["timestamp"]}
        for item in suppressions
        if item["list_id"] is None
    ]
    list_suppressions = [item for item in suppressions if item["list_id"] is not None]
    if consent is None:
        return {
            "can_receive_email_marketing": False,
            "consent": "NEVER_SUBSCRIBED",
            "suppression": suppression,
            "list_suppressions": list_suppressions,
        }
    unsubscribed = consent["consent"] == "UNSUBSCRIBED"
    return {
        "can_receive_email_marketing": not unsubscribed and not suppression,
        "consent": consent["consent"],
        "consent_timestamp": consent["consented_at"] or consent["recorded_at"],
        "last_updated": consent["recorded_at"],
        "method": "PREFERENCE_PAGE" if unsubscribed else "API",
        "suppression": suppression,
        "list_suppressions": list_suppressions,
    }


def job_url(job: Job, base_url: str) -> str:
    return f"{base_url}/api/profile-bulk-import-jobs/{job.id}/"


def job_resource(job: Job, base_url: str) -> dict[str, Any]:
    now = time.time()
    status = job.status(now)
    complete = status == "complete"
    attributes = {
        "status": status,
        "created_at": iso(job.created_at),
        "total_count": job.total_count,
        "completed_count": job.total_count - job.failed_count if complete else 0,
        "failed_count": job.failed_count,
        "completed_at": iso(job.completed_at) if job.completed_at else None,
        "expires_at": iso(job.created_at + 7 * 86400),
        "started_at": iso((job.created_at + job.due_at) / 2) if status != "queued" else None,
    }
    lists = [{"type": "list", "id": list_id} for list_id in job.list_ids]
    return {
        "type": "profile-bulk-import-job",
        "id": job.id,
        "attributes": attributes,
        "relationships": {"lists": {"data": lists}},
        "links": {"self": job_url(job, base_url)},
    }


def import_error_resource(error: dict[str, Any]) -> dict[str, Any]:
    """One of a job's import errors, as stored when the job was created."""
    return {
        "type": "import-error",
        "id": error["id"],
        "attributes": {key: error[key] for key in ("code", "title", "detail", "source", "original_payload")},
    }
