"""Klaviyo's official Python SDK (klaviyo-api) against the sandbox: every endpoint the sandbox
serves, called the way users' own code calls Klaviyo, with the SDK's ``test_host``."""

from __future__ import annotations

import time
from typing import Any

import pytest
from klaviyo_api import KlaviyoAPI
from support import API_KEY, LIST_ID


@pytest.fixture
def klaviyo(sandbox) -> KlaviyoAPI:
    return KlaviyoAPI(API_KEY, max_delay=1, max_retries=1, test_host=sandbox.url)


def as_dict(answer: Any) -> dict:
    """The SDK answers with its models or with dicts, depending on options: compare as dicts."""
    return answer if isinstance(answer, dict) else answer.to_dict()


def profile(email: str, **attributes: Any) -> dict:
    return {"type": "profile", "attributes": {"email": email, **attributes}}


def import_job(*profiles: dict) -> dict:
    return {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {"profiles": {"data": list(profiles)}},
            "relationships": {"lists": {"data": [{"type": "list", "id": LIST_ID}]}},
        }
    }


def wait_until_complete(klaviyo: KlaviyoAPI, job_id: str) -> dict:
    for _ in range(100):
        job = as_dict(klaviyo.Profiles.get_bulk_import_profiles_job(job_id))
        if job["data"]["attributes"]["status"] == "complete":
            return job
        time.sleep(0.05)
    raise AssertionError("the job did not complete")


def test_lists_and_their_members(klaviyo, sandbox):
    assert as_dict(klaviyo.Lists.get_list(LIST_ID))["data"]["id"] == LIST_ID
    created = as_dict(
        klaviyo.Profiles.create_or_update_profile({"data": profile("sdk@example.com", first_name="S")})
    )
    profile_id = created["data"]["id"]
    members = {"data": [{"type": "profile", "id": profile_id}]}
    klaviyo.Lists.add_profiles_to_list(LIST_ID, members)
    page = as_dict(klaviyo.Lists.get_profiles_for_list(LIST_ID, page_size=100, fields_profile=["email"]))
    assert [member["attributes"]["email"] for member in page["data"]] == ["sdk@example.com"]
    klaviyo.Lists.remove_profiles_from_list(LIST_ID, members)
    assert as_dict(klaviyo.Lists.get_profiles_for_list(LIST_ID))["data"] == []


def test_bulk_import_jobs_their_listing_and_their_errors(klaviyo, sandbox_factory):
    sandbox = sandbox_factory(fail_domains=("bounce.example.net",))
    klaviyo = KlaviyoAPI(API_KEY, max_delay=1, max_retries=1, test_host=sandbox.url)
    job = as_dict(
        klaviyo.Profiles.bulk_import_profiles(
            import_job(profile("a@example.com"), profile("b@bounce.example.net"))
        )
    )
    job_id = job["data"]["id"]
    done = wait_until_complete(klaviyo, job_id)
    assert done["data"]["attributes"]["failed_count"] == 1
    second = as_dict(klaviyo.Profiles.bulk_import_profiles(import_job(profile("c@example.com"))))["data"][
        "id"
    ]
    wait_until_complete(klaviyo, second)
    listing = as_dict(klaviyo.Profiles.get_bulk_import_profiles_jobs())
    assert [item["id"] for item in listing["data"]] == [job_id, second]
    newest_first = as_dict(klaviyo.Profiles.get_bulk_import_profiles_jobs(sort="-created_at"))
    assert [item["id"] for item in newest_first["data"]] == [second, job_id]
    queued = as_dict(klaviyo.Profiles.get_bulk_import_profiles_jobs(filter='equals(status,"queued")'))
    assert queued["data"] == []
    errors = as_dict(klaviyo.Profiles.get_errors_for_bulk_import_profiles_job(job_id))
    assert len(errors["data"]) == 1


def test_subscriptions_with_historical_consent(klaviyo, sandbox):
    body = {
        "data": {
            "type": "profile-subscription-bulk-create-job",
            "attributes": {
                "historical_import": True,
                "profiles": {
                    "data": [
                        {
                            "type": "profile",
                            "attributes": {
                                "email": "consent@example.com",
                                "subscriptions": {
                                    "email": {
                                        "marketing": {
                                            "consent": "SUBSCRIBED",
                                            "consented_at": "2024-01-01T00:00:00Z",
                                        }
                                    }
                                },
                            },
                        }
                    ]
                },
            },
            "relationships": {"list": {"data": {"type": "list", "id": LIST_ID}}},
        }
    }
    klaviyo.Profiles.bulk_subscribe_profiles(body)
    page = as_dict(
        klaviyo.Lists.get_profiles_for_list(
            LIST_ID, additional_fields_profile=["subscriptions"], filter='equals(email,"consent@example.com")'
        )
    )
    [member] = page["data"]
    assert member["attributes"]["subscriptions"]["email"]["marketing"]["consent"] == "SUBSCRIBED"
