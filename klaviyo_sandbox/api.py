"""What each sandbox endpoint does, independent of HTTP plumbing.

Every handler takes a parsed :class:`Request` and returns a :class:`Response` or
raises :class:`ApiError`, which the server turns into a JSON:API ``errors[]`` body.
Behaviour follows Klaviyo's revision 2026-07-15 for the endpoints target-klaviyo uses.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import msgspec
import phonenumbers

from klaviyo_sandbox.store import IDENTIFIERS, Job, SandboxStore, iso

MAX_PROFILES_PER_JOB = 10_000
MAX_JOB_BYTES = 5_000_000
MAX_PROFILE_BYTES = 100_000
MAX_RELATIONSHIP_IDS = 1000
MAX_SUBSCRIPTION_PROFILES = 1000
MAX_PAGE_SIZE = 100
MAX_ERRORS_PER_RESPONSE = 100
EMAIL = re.compile(
    r"^(?!\.)(?!.*\.\.)[^\s@\"(),:;<>\[\\\]]{1,64}(?<!\.)@(?=.{1,253}$)(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}$"
)
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
COUNTRY_CODES = frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
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


class ApiError(Exception):
    """A Klaviyo error response: status, ``code`` and a sentence, with its source."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        pointer: str | None = None,
        parameter: str | None = None,
        headers: dict[str, str] | None = None,
        more: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.headers = headers or {}
        first = error_object(status, code, detail, pointer=pointer, parameter=parameter)
        self.errors = [first, *(more or [])]


TITLES = {
    400: "Invalid input.",
    401: "Authentication credentials were not provided.",
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    405: "Method not allowed.",
    413: "Request entity too large.",
    415: "Unsupported media type.",
    429: "Request was throttled.",
}


def error_object(
    status: int, code: str, detail: str, *, pointer: str | None = None, parameter: str | None = None
) -> dict[str, Any]:
    source: dict[str, str] = {}
    if pointer is not None:
        source["pointer"] = pointer
    if parameter is not None:
        source["parameter"] = parameter
    return {
        "id": str(uuid.uuid4()),
        "status": status,
        "code": code,
        "title": TITLES.get(status, "A server error occurred."),
        "detail": detail,
        "source": source,
        "links": {},
        "meta": {},
    }


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


@dataclass
class SandboxOptions:
    """What a sandbox instance allows and how it behaves; see ``klaviyo-sandbox serve --help``."""

    api_key: str
    lists: dict[str, str] = field(default_factory=dict)
    job_delay: float = 0.2
    fail_domains: frozenset[str] = frozenset()
    refuse_domains: frozenset[str] = frozenset()
    cancel_domains: frozenset[str] = frozenset()
    # At most this many list members a page, whatever page[size] asks: a client must follow
    # links.next rather than count on full pages (Klaviyo promises only "at most page[size]").
    page_limit: int | None = None


class SandboxApi:
    def __init__(self, store: SandboxStore, options: SandboxOptions) -> None:
        self.store = store
        self.options = options
        for list_id, name in options.lists.items():
            store.ensure_list(list_id, name)

    # Lists

    def get_list(self, request: Request) -> Response:
        found = self._require_list(request.params["id"])
        url = f"{request.base_url}/api/lists/{found['id']}/"
        attributes = {
            "name": found["name"],
            "created": found["created"],
            "updated": found["created"],
            "opt_in_process": "single_opt_in",
        }
        if "profile_count" in request.query.get("additional-fields[list]", ""):
            attributes["profile_count"] = self.store.count_members(found["id"])
        return Response(
            200,
            {
                "data": {"type": "list", "id": found["id"], "attributes": attributes, "links": {"self": url}},
                "links": {"self": url},
            },
        )

    def list_profiles(self, request: Request) -> Response:
        list_id = self._require_list(request.params["id"])["id"]
        size = min(page_size(request.query), self.options.page_limit or MAX_PAGE_SIZE)
        after = decode_cursor(request.query.get("page[cursor]"))
        emails = email_filter(request.query.get("filter"))
        rows = self.store.members(list_id, after, size + 1, emails)
        url = f"{request.base_url}/api/lists/{list_id}/profiles/"
        links = {"self": url}
        if len(rows) > size:
            rows = rows[:size]
            links["next"] = f"{url}?page[size]={size}&page[cursor]={encode_cursor(rows[-1]['cursor'])}"
        fields = request.query.get("fields[profile]")
        with_subscriptions = "subscriptions" in request.query.get("additional-fields[profile]", "").split(",")
        data = [
            member_resource(row, request.base_url, fields.split(",") if fields else None, with_subscriptions)
            for row in rows
        ]
        return Response(200, {"data": data, "links": links})

    def add_list_members(self, request: Request) -> Response:
        list_id, profile_ids = self._relationship_ids(request)
        existing = self.store.existing_profile_ids(profile_ids)
        for position, profile_id in enumerate(profile_ids):
            if profile_id not in existing:
                raise ApiError(
                    404,
                    "not_found",
                    f"A profile with id {profile_id} does not exist.",
                    pointer=f"/data/{position}/id",
                )
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
            raise ApiError(
                400,
                "invalid",
                f"A maximum of {MAX_RELATIONSHIP_IDS} profiles can be given per request.",
                pointer="/data",
            )
        return list_id, [item["id"] for item in data]

    def _require_list(self, list_id: str) -> dict[str, Any]:
        found = self.store.get_list(list_id)
        if found is None:
            raise ApiError(404, "not_found", f"A list with id {list_id} does not exist.", parameter="id")
        return found

    # Bulk profile import jobs

    def create_import_job(self, request: Request) -> Response:
        job_data = request.body["data"]
        profiles = job_data["attributes"]["profiles"]["data"]
        if len(profiles) > MAX_PROFILES_PER_JOB:
            raise ApiError(
                400,
                "invalid",
                f"A maximum of {MAX_PROFILES_PER_JOB} profiles can be imported per request; "
                f"{len(profiles)} were given.",
                pointer="/data/attributes/profiles/data",
            )
        list_ids = [item["id"] for item in job_data.get("relationships", {}).get("lists", {}).get("data", [])]
        for position, list_id in enumerate(list_ids):
            if self.store.get_list(list_id) is None:
                raise ApiError(
                    404,
                    "not_found",
                    f"A list with id {list_id} does not exist.",
                    pointer=f"/data/relationships/lists/data/{position}/id",
                )
        raise_profile_errors(
            [
                error
                for position, profile in enumerate(profiles)
                for error in profile_errors(
                    profile,
                    f"/data/attributes/profiles/data/{position}",
                    refuse_domains=self.options.refuse_domains,
                )
            ]
        )
        failures = {
            position: self._processing_failure(position, profile)
            for position, profile in enumerate(profiles)
            if email_domain(profile["attributes"]) in self.options.fail_domains
        }
        cancel = any(email_domain(p["attributes"]) in self.options.cancel_domains for p in profiles)
        job = self.store.create_job(
            list_ids, [p["attributes"] for p in profiles], failures, self.options.job_delay, cancel=cancel
        )
        return Response(
            202,
            {"data": job_resource(job, request.base_url), "links": {"self": job_url(job, request.base_url)}},
        )

    def _processing_failure(self, position: int, profile: dict[str, Any]) -> dict[str, Any]:
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
        jobs = [job for _, job in self.store.jobs(0, 10**9)]
        statuses = status_filter(request.query.get("filter"))
        if statuses is not None:
            jobs = [job for job in jobs if job.status(now) in statuses]
        order = request.query.get("sort", "created_at")
        if order not in {"created_at", "-created_at"}:
            raise ApiError(400, "invalid", "sort must be created_at or -created_at.", parameter="sort")
        if order == "-created_at":
            jobs.reverse()
        page = jobs[start : start + size]
        url = f"{request.base_url}/api/profile-bulk-import-jobs/"
        links = {"self": url}
        if start + size < len(jobs):
            links["next"] = f"{url}?page[size]={size}&page[cursor]={encode_cursor(start + size)}"
        data = [job_resource(job, request.base_url) for job in page]
        return Response(200, {"data": data, "links": links})

    def list_import_errors(self, request: Request) -> Response:
        job = self._require_job(request.params["id"])
        size = page_size(request.query)
        after = decode_cursor(request.query.get("page[cursor]"), default=-1)
        rows = self.store.import_errors(job.id, after, size + 1)
        url = f"{job_url(job, request.base_url)}import-errors/"
        links = {"self": url}
        if len(rows) > size:
            rows = rows[:size]
            links["next"] = f"{url}?page[size]={size}&page[cursor]={encode_cursor(rows[-1][0])}"
        data = [
            {
                "type": "import-error",
                "id": error["id"],
                "attributes": {
                    key: error[key] for key in ("code", "title", "detail", "source", "original_payload")
                },
            }
            for _, error in rows
        ]
        return Response(200, {"data": data, "links": links})

    def _require_job(self, job_id: str) -> Job:
        job = self.store.get_job(job_id)
        if job is None:
            raise ApiError(
                404,
                "not_found",
                f"A profile bulk import job with id {job_id} does not exist.",
                parameter="id",
            )
        return job

    # Single profiles and subscriptions

    def import_profile(self, request: Request) -> Response:
        raise_profile_errors(profile_errors(request.body["data"], "/data"))
        profile_id, created = self.store.upsert_profile(request.body["data"]["attributes"])
        stored = self.store.get_profile(profile_id)
        assert stored is not None
        url = f"{request.base_url}/api/profiles/{profile_id}/"
        attributes = {
            **{key: stored["attributes"].get(key) for key in MEMBER_ATTRIBUTES},
            "created": stored["created"],
            "updated": stored["updated"],
        }
        return Response(
            201 if created else 200,
            {
                "data": {
                    "type": "profile",
                    "id": profile_id,
                    "attributes": attributes,
                    "links": {"self": url},
                },
                "links": {"self": url},
            },
        )

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
            raise ApiError(
                400,
                "invalid",
                f"A maximum of {MAX_SUBSCRIPTION_PROFILES} profiles can be subscribed per request.",
                pointer="/data/attributes/profiles/data",
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


# Helpers shared by the handlers


def profile_errors(
    profile: dict[str, Any],
    pointer: str,
    identifiers: tuple[str, ...] = IDENTIFIERS,
    refuse_domains: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """What Klaviyo would reject in one profile, beyond the schema: size, identity, email, phone."""
    attributes = profile.get("attributes") or {}
    if len(msgspec.json.encode(profile)) > MAX_PROFILE_BYTES:
        return [
            error_object(
                400, "invalid", f"A profile may be at most {MAX_PROFILE_BYTES} bytes.", pointer=pointer
            )
        ]
    if not any(attributes.get(key) for key in identifiers):
        names = ", ".join(identifiers)
        return [
            error_object(
                400,
                "invalid",
                f"A profile needs at least one identifier ({names}).",
                pointer=f"{pointer}/attributes",
            )
        ]
    errors = []
    email = attributes.get("email")
    if email is not None and (not is_valid_email(email) or email_domain(attributes) in refuse_domains):
        errors.append(
            error_object(400, "invalid", "Invalid email address.", pointer=f"{pointer}/attributes/email")
        )
    if attributes.get("phone_number") is not None and not is_e164(attributes["phone_number"]):
        errors.append(
            error_object(
                400,
                "invalid",
                "Invalid phone number format (Example of a valid phone number: +13239169023).",
                pointer=f"{pointer}/attributes/phone_number",
            )
        )
    return errors


def raise_profile_errors(errors: list[dict[str, Any]]) -> None:
    """Fail the whole request, as Klaviyo does, naming (up to 100 of) the bad profiles."""
    if errors:
        first, *more = errors[:MAX_ERRORS_PER_RESPONSE]
        raise ApiError(400, first["code"], first["detail"], pointer=first["source"]["pointer"], more=more)


def consent_problem(consented_at: str | None, historical: bool) -> str | None:
    """What Klaviyo says of a profile's ``consented_at`` in a request with this ``historical_import``."""
    if not historical:
        if consented_at is not None:
            return "consented_at may only be given when historical_import is true."
        return None
    if consented_at is None:
        return "consented_at is required for every profile when historical_import is true."
    try:
        moment = datetime.fromisoformat(consented_at.replace("Z", "+00:00"))
    except ValueError:
        return "consented_at must be a date-time."
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    if moment > datetime.now(timezone.utc):
        return "consented_at must be in the past for a historical import."
    return None


def is_valid_email(email: str) -> bool:
    """Email syntax as a mail server would accept it: a local part, an ``@``, a dotted domain.

    A compiled pattern rather than ``email-validator``: the sandbox checks 10,000
    addresses per job and must stay much faster than the target it serves (the
    target itself validates with ``email-validator`` before sending).
    """
    return EMAIL.match(email) is not None


def is_e164(phone: str) -> bool:
    """``+``, a country calling code that exists, and at most 15 digits in all."""
    if not E164.match(phone):
        return False
    return any(int(phone[1 : 1 + length]) in COUNTRY_CODES for length in (1, 2, 3))


def email_domain(attributes: dict[str, Any]) -> str | None:
    email = attributes.get("email")
    return email.rsplit("@", 1)[-1].lower() if isinstance(email, str) else None


def page_size(query: dict[str, str]) -> int:
    raw = query.get("page[size]", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise ApiError(
            400,
            "invalid",
            f"page[size] must be an integer between 1 and {MAX_PAGE_SIZE}.",
            parameter="page[size]",
        )
    return int(raw)


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(str(position).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, default: int = 0) -> int:
    if not cursor:
        return default
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        raise ApiError(
            400, "invalid", "page[cursor] is not a cursor this API returned.", parameter="page[cursor]"
        ) from None


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


QUOTED = re.compile(r"""\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')\s*(?:,|$)""")
JOB_STATUSES = {"queued", "processing", "complete", "cancelled"}


def filter_values(text: str | None, field: str) -> list[str] | None:
    """The values of ``equals(field,"a")`` or ``any(field,["a","b"])``, the one field an endpoint filters on."""
    if text is None:
        return None
    match = re.match(rf"^(equals|any)\({field},\s*(.*)\)$", text.strip(), re.DOTALL)
    values = match.group(2).strip() if match else ""
    if match and match.group(1) == "any":
        values = values[1:-1] if values.startswith("[") and values.endswith("]") else "\x00"
    found = []
    position = 0
    while match and position < len(values):
        item = QUOTED.match(values, position)
        if item is None:
            break
        found.append(item.group(1) if item.group(1) is not None else item.group(2))
        position = item.end()
    if not match or position < len(values) or not found or (match.group(1) == "equals" and len(found) > 1):
        raise ApiError(
            400,
            "invalid",
            f'filter must be equals({field},"...") or any({field},["...", ...]) on this endpoint.',
            parameter="filter",
        )
    return found


def email_filter(text: str | None) -> list[str] | None:
    """The emails a list-members filter names, in lower case (emails compare case-blind)."""
    emails = filter_values(text, "email")
    return None if emails is None else [email.lower() for email in emails]


def status_filter(text: str | None) -> set[str] | None:
    """The job statuses a job-listing filter names."""
    statuses = filter_values(text, "status")
    if statuses is not None and not set(statuses) <= JOB_STATUSES:
        raise ApiError(
            400,
            "invalid",
            'filter must be equals(status,"...") or any(status,[...]) with job statuses.',
            parameter="filter",
        )
    return None if statuses is None else set(statuses)


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


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    spec_path: str
    handler: Callable[[SandboxApi, Request], Response]
    has_body: bool
    query: frozenset[str]  # the query parameters the handler implements (of those the spec declares)


def _route(
    method: str, spec_path: str, handler: Callable[[SandboxApi, Request], Response], *query: str
) -> Route:
    pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", spec_path) + "/?$")
    return Route(method, pattern, spec_path, handler, method in {"POST", "PATCH", "DELETE"}, frozenset(query))


PAGES = ("page[size]", "page[cursor]")


ROUTES = (
    _route("GET", "/api/lists/{id}", SandboxApi.get_list, "additional-fields[list]"),
    _route(
        "GET",
        "/api/lists/{id}/profiles",
        SandboxApi.list_profiles,
        *PAGES,
        "fields[profile]",
        "additional-fields[profile]",
        "filter",
    ),
    _route("POST", "/api/lists/{id}/relationships/profiles", SandboxApi.add_list_members),
    _route("DELETE", "/api/lists/{id}/relationships/profiles", SandboxApi.remove_list_members),
    _route("GET", "/api/profile-bulk-import-jobs", SandboxApi.list_import_jobs, *PAGES, "filter", "sort"),
    _route("POST", "/api/profile-bulk-import-jobs", SandboxApi.create_import_job),
    _route("GET", "/api/profile-bulk-import-jobs/{job_id}", SandboxApi.get_import_job),
    _route("GET", "/api/profile-bulk-import-jobs/{id}/import-errors", SandboxApi.list_import_errors, *PAGES),
    _route("POST", "/api/profile-import", SandboxApi.import_profile),
    _route("POST", "/api/profile-subscription-bulk-create-jobs", SandboxApi.subscribe_profiles),
)
