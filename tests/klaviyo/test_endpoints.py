"""Every endpoint in the loader's table is one the committed spec subset describes, as it describes it."""

import re
from pathlib import Path

import pytest

from klaviyo_sandbox import spec
from target_klaviyo.klaviyo.endpoints import ENDPOINTS, Endpoint

LOADER = Path(__file__).parents[2] / "target_klaviyo"


def _per(rate: str, unit: str) -> int:
    count, per = rate.split("/")
    assert per == unit, f"a rate per {per}, not per {unit}"
    return int(count)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda endpoint: f"{endpoint.method} {endpoint.path}")
def test_the_spec_has_the_endpoint_with_its_rates(endpoint: Endpoint):
    operations = spec.load_spec()["paths"].get(endpoint.path, {})
    assert endpoint.method.lower() in operations, "the spec subset has no such operation"
    burst, steady = spec.rate_limit(endpoint.path, endpoint.method.lower())
    assert endpoint.burst_per_second == _per(burst, "s")
    assert endpoint.steady_per_minute == _per(steady, "m")
    assert list(endpoint.scopes) == operations[endpoint.method.lower()]["x-klaviyo-scopes"]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda endpoint: f"{endpoint.method} {endpoint.path}")
def test_page_sizes_are_within_the_spec(endpoint: Endpoint):
    parameters = spec.load_spec()["paths"][endpoint.path][endpoint.method.lower()].get("parameters", [])
    size = next((p for p in parameters if p["name"] == "page[size]"), None)
    if endpoint.page_size == 0:
        return
    assert size is not None, "a page size for an endpoint that does not page"
    assert {"page[cursor]", "page[size]"} <= spec.query_parameters(endpoint.path, endpoint.method.lower())
    assert size["schema"]["minimum"] <= endpoint.page_size <= size["schema"]["maximum"]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda endpoint: f"{endpoint.method} {endpoint.path}")
def test_a_paced_endpoint_stays_within_its_steady_and_burst_rates(endpoint: Endpoint):
    if endpoint.interval is None:
        return
    assert endpoint.interval * endpoint.steady_per_minute > 60
    assert endpoint.interval * endpoint.burst_per_second > 1


# The connection check still names its list's path; it is to use endpoints.LIST (then this goes).
def test_no_other_module_of_the_loader_writes_an_api_path():
    for module in LOADER.rglob("*.py"):
        if module.name == "endpoints.py":
            continue
        code = re.sub(r'"""[\s\S]*?"""', "", module.read_text(encoding="utf-8"))  # docstrings may name them
        assert '"/api/' not in code, module
