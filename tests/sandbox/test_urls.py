"""Every route is an operation of Klaviyo's spec, and implements only query parameters it declares."""

from __future__ import annotations

import pytest

from klaviyo_sandbox import spec
from klaviyo_sandbox.exceptions import MethodNotAllowed, NoSuchEndpoint
from klaviyo_sandbox.responses import Request
from klaviyo_sandbox.urls import ROUTES, resolve


def request(method: str, path: str) -> Request:
    return Request(method, path, {}, {}, {}, None, b"", "http://127.0.0.1")


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: f"{route.method} {route.spec_path}")
def test_each_route_is_a_spec_operation_and_implements_only_declared_parameters(route):
    assert route.method.lower() in spec.load_spec()["paths"][route.spec_path]
    assert route.query <= spec.query_parameters(route.spec_path, route.method.lower())


def test_resolving_fills_the_path_parameters_with_or_without_a_trailing_slash():
    for path in ("/api/profile-bulk-import-jobs/J1", "/api/profile-bulk-import-jobs/J1/"):
        asked = request("GET", path)
        assert resolve(asked).spec_path == "/api/profile-bulk-import-jobs/{job_id}"
        assert asked.params == {"job_id": "J1"}


def test_a_known_path_with_another_method_is_405_and_an_unknown_path_404():
    with pytest.raises(MethodNotAllowed):
        resolve(request("PUT", "/api/lists/L1"))
    with pytest.raises(NoSuchEndpoint):
        resolve(request("GET", "/api/nothing-here"))
