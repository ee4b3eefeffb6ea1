"""What each sandbox endpoint does, independent of HTTP plumbing.

Every handler takes a parsed :class:`Request` and returns a :class:`Response` or
raises an :class:`~klaviyo_sandbox.exceptions.ApiError`, which the server turns into
a JSON:API ``errors[]`` body. The handlers check what Klaviyo checks, ask the models
(:mod:`klaviyo_sandbox.models`) to act, and answer with resources
(:mod:`klaviyo_sandbox.resources`). Behaviour follows Klaviyo's revision 2026-07-15
for the endpoints target-klaviyo uses; :mod:`klaviyo_sandbox.urls` routes to them.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from klaviyo_sandbox.exceptions import (
    InvalidFilter,
    InvalidSort,
    JobNotFound,
    ListNotFound,
    ProfileNotFound,
    TooManyProfiles,
    error_object,
)
from klaviyo_sandbox.models import Job, SandboxStore
from klaviyo_sandbox.queries import (
    MAX_PAGE_SIZE,
    decode_cursor,
    filter_values,
    member_filter,
    page_links,
    page_size,
    status_filter,
)
from klaviyo_sandbox.resources import (
    import_error_resource,
    job_resource,
    job_url,
    list_resource,
    member_resource,
    profile_resource,
)
from klaviyo_sandbox.settings import SandboxSettings
from klaviyo_sandbox.validation import (
    MAX_PROFILES_PER_JOB,
    MAX_RELATIONSHIP_IDS,
    MAX_SUBSCRIPTION_PROFILES,
    consent_problem,
    email_domain,
    profile_errors,
    raise_profile_errors,
)

JOB_ORDERS = ("created_at", "-created_at")


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw_body: bytes
    base_url: str


@dataclass
class Response:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


class SandboxApi:
    """The endpoints' handlers, over one store; creating it creates the lists the settings name."""

    def __init__(self, store: SandboxStore, settings: SandboxSettings) -> None:
        self.store = store
        self.settings = settings
        for list_id, name in settings.lists.items():
            store.ensure_list(list_id, name)

    # Lists

    def get_list(self, request: Request) -> Response:
        found = self._require_list(request.params["id"])
        asked = "profile_count" in request.query.get("additional-fields[list]", "")
        data = list_resource(
            found, request.base_url, self.store.count_members(found["id"]) if asked else None
        )
        return Response(200, {"data": data, "links": data["links"]})

    def list_profiles(self, request: Request) -> Response:
        list_id = self._require_list(request.params["id"])["id"]
        size = min(page_size(request.query), self.settings.page_limit or MAX_PAGE_SIZE)
        after = decode_cursor(request.query.get("page[cursor]"))
        emails, joined = member_filter(request.query.get("filter"))
        if request.query.get("sort", "joined_group_at") != "joined_group_at":
            raise InvalidSort(("joined_group_at",))  # members are kept in the order they joined
        rows = self.store.members(list_id, after, size + 1, emails, joined)
        more = len(rows) > size
        rows = rows[:size]
        url = f"{request.base_url}/api/lists/{list_id}/profiles/"
        kept: dict[str, str] = {
            name: request.query[name] for name in ("filter", "sort") if name in request.query
        }
        links = page_links(url, size, rows[-1]["cursor"] if more else None, kept)
        fields = request.query.get("fields[profile]")
        with_subscriptions = "subscriptions" in request.query.get("additional-fields[profile]", "").split(",")
        data = [
            member_resource(row, request.base_url, fields.split(",") if fields else None, with_subscriptions)
            for row in rows
        ]
        return Response(200, {"data": data, "links": links})

    # Profiles

    def get_profiles(self, request: Request) -> Response:
        """Profiles by id (``filter=any(id,[...])`` or ``equals(id,"...")``), in the order asked; an id
        that names no profile is left out, as Klaviyo does."""
        text = request.query.get("filter")
        if text is None:
            raise InvalidFilter('this sandbox reads profiles only by id: filter=any(id,["..."]).')
        ids = list(dict.fromkeys(filter_values(text, "id") or []))
        size = page_size(request.query)
        start = decode_cursor(request.query.get("page[cursor]"))
        found = [stored for stored in map(self.store.get_profile, ids[start : start + size]) if stored]
        more = start + size < len(ids)
        url = f"{request.base_url}/api/profiles/"
        links = page_links(url, size, start + size if more else None, request.query)
        fields = request.query.get("fields[profile]")
        data = [
            profile_resource(stored, request.base_url, fields.split(",") if fields else None)
            for stored in found
        ]
        return Response(200, {"data": data, "links": links})

    def add_list_members(self, request: Request) -> Response:
        list_id, profile_ids = self._relationship_ids(request)
        existing = self.store.existing_profile_ids(profile_ids)
        for position, profile_id in enumerate(profile_ids):
            if profile_id not in existing:
                raise ProfileNotFound(profile_id, pointer=f"/data/{position}/id")
        self.store.add_members(list_id, profile_ids)
        return Response(204)

    def remove_list_members(self, request: Request) -> Response:
        list_id, profile_ids = self._relationship_ids(request)
        self.store.remove_members(list_id, profile_ids)
        return Response(204)

    def _relationship_ids(self, request: Request) -> tuple[str, list[str]]:
        list_id = self._require_list(request.params["id"])["id"]
        data = request.body["data"]
        if len(data) > MAX_RELATIONSHIP_IDS:
            raise TooManyProfiles(MAX_RELATIONSHIP_IDS, "given", pointer="/data")
        return list_id, [item["id"] for item in data]

    def _require_list(self, list_id: str) -> dict[str, Any]:
        found = self.store.get_list(list_id)
        if found is None:
            raise ListNotFound(list_id, parameter="id")
        return found

    # Bulk profile import jobs

    def create_import_job(self, request: Request) -> Response:
        job_data = request.body["data"]
        profiles = job_data["attributes"]["profiles"]["data"]
        if len(profiles) > MAX_PROFILES_PER_JOB:
            raise TooManyProfiles(
                MAX_PROFILES_PER_JOB,
                "imported",
                pointer="/data/attributes/profiles/data",
                given=len(profiles),
            )
        list_ids = [item["id"] for item in job_data.get("relationships", {}).get("lists", {}).get("data", [])]
        for position, list_id in enumerate(list_ids):
            if self.store.get_list(list_id) is None:
                raise ListNotFound(list_id, pointer=f"/data/relationships/lists/data/{position}/id")
        raise_profile_errors(
            [
                error
                for position, profile in enumerate(profiles)
                for error in profile_errors(
                    profile,
                    f"/data/attributes/profiles/data/{position}",
                    refuse_domains=self.settings.refuse_domains,
                )
            ]
        )
        failures = {
            position: self._processing_failure(position, profile)
            for position, profile in enumerate(profiles)
            if email_domain(profile["attributes"]) in self.settings.fail_domains
        }
        cancel = any(email_domain(p["attributes"]) in self.settings.cancel_domains for p in profiles)
        job = self.store.import_jobs.create(
            list_ids, [p["attributes"] for p in profiles], failures, self.settings.job_delay, cancel=cancel
        )
        return Response(
            202,
            {"data": job_resource(job, request.base_url), "links": {"self": job_url(job, request.base_url)}},
        )

    def _processing_failure(self, position: int, profile: dict[str, Any]) -> dict[str, Any]:
        """The import error a profile at a ``fail_domains`` domain will have when its job is done."""
        return {
            "id": str(uuid.uuid4()),
            "code": "invalid",
            "title": "Invalid profile.",
            "detail": "The profile could not be imported: its email domain does not accept mail.",
            "source": {"pointer": f"/data/attributes/profiles/data/{position}"},
            "original_payload": profile,
        }

    def get_import_job(self, request: Request) -> Response:
        job = self._require_job(request.params["job_id"])
        return Response(
            200,
            {"data": job_resource(job, request.base_url), "links": {"self": job_url(job, request.base_url)}},
        )

    def list_import_jobs(self, request: Request) -> Response:
        """Bulk import jobs in cursor pages (``page[size]`` up to 100), by ``created_at`` or
        ``-created_at`` (``sort``), optionally only those of some statuses (``filter``)."""
        size = page_size(request.query)
        start = decode_cursor(request.query.get("page[cursor]"))
        now = time.time()
        jobs = [job for _, job in self.store.import_jobs.page(0, 10**9)]
        statuses = status_filter(request.query.get("filter"))
        if statuses is not None:
            jobs = [job for job in jobs if job.status(now) in statuses]
        order = request.query.get("sort", "created_at")
        if order not in JOB_ORDERS:
            raise InvalidSort(JOB_ORDERS)
        if order == "-created_at":
            jobs.reverse()
        page = jobs[start : start + size]
        url = f"{request.base_url}/api/profile-bulk-import-jobs/"
        links = page_links(url, size, start + size if start + size < len(jobs) else None)
        data = [job_resource(job, request.base_url) for job in page]
        return Response(200, {"data": data, "links": links})

    def list_import_errors(self, request: Request) -> Response:
        job = self._require_job(request.params["id"])
        size = page_size(request.query)
        after = decode_cursor(request.query.get("page[cursor]"), default=-1)
        rows = self.store.import_jobs.import_errors(job.id, after, size + 1)
        more = len(rows) > size
        rows = rows[:size]
        links = page_links(
            f"{job_url(job, request.base_url)}import-errors/", size, rows[-1][0] if more else None
        )
        return Response(200, {"data": [import_error_resource(error) for _, error in rows], "links": links})

    def _require_job(self, job_id: str) -> Job:
        job = self.store.import_jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    # Single profiles and subscriptions

    def import_profile(self, request: Request) -> Response:
        raise_profile_errors(profile_errors(request.body["data"], "/data"))
        profile_id, created = self.store.upsert_profile(request.body["data"]["attributes"])
        stored = self.store.get_profile(profile_id)
        assert stored is not None
        data = profile_resource(stored, request.base_url)
        return Response(201 if created else 200, {"data": data, "links": data["links"]})

    def subscribe_profiles(self, request: Request) -> Response:
        """Email marketing consent: recorded per profile (``klaviyo-sandbox members`` shows it).

        As Klaviyo documents: at most 1,000 profiles; ``consented_at`` only in a
        ``historical_import``, where every profile needs one, in the past.
        """
        data = request.body["data"]
        attributes = data["attributes"]
        profiles = attributes["profiles"]["data"]
        list_id = data["relationships"]["list"]["data"]["id"]
        self._require_list(list_id)
        if len(profiles) > MAX_SUBSCRIPTION_PROFILES:
            raise TooManyProfiles(
                MAX_SUBSCRIPTION_PROFILES, "subscribed", pointer="/data/attributes/profiles/data"
            )
        historical = bool(attributes.get("historical_import"))
        errors = []
        people = []
        for position, profile in enumerate(profiles):
            pointer = f"/data/attributes/profiles/data/{position}"
            identity = {
                key: profile["attributes"][key]
                for key in ("email", "phone_number")
                if profile["attributes"].get(key)
            }
            errors += profile_errors({"attributes": identity}, pointer, identifiers=("email", "phone_number"))
            marketing = ((profile["attributes"].get("subscriptions") or {}).get("email") or {}).get(
                "marketing"
            ) or {}
            consented_at = marketing.get("consented_at")
            problem = consent_problem(consented_at, historical)
            if problem is not None:
                errors.append(
                    error_object(
                        400,
                        "invalid",
                        problem,
                        pointer=f"{pointer}/attributes/subscriptions/email/marketing/consented_at",
                    )
                )
            people.append((identity, consented_at))
        raise_profile_errors(errors)
        self.store.subscribe(list_id, people, historical=historical, source=attributes.get("custom_source"))
        return Response(202)
