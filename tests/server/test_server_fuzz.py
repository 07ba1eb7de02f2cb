"""Property-based fuzzing of the server against its own OpenAPI document.

Schemathesis generates requests (valid and invalid) for every operation; the
server must never answer 5xx and every answer must match the documented
schema. Bounded: few examples per operation, derandomized, one shared server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from kaizenctl.server.testing import RunningServer, running_server


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[RunningServer]:
    with running_server() as live:
        yield live


@pytest.fixture(scope="module")
def fuzz_token(fuzz_server: RunningServer) -> str:
    form = {"username": fuzz_server.email, "password": fuzz_server.password}
    token: str = httpx.post(f"{fuzz_server.url}/api/v1/auth/login", data=form).json()[
        "access_token"
    ]
    return token


def test_no_server_errors_and_schema_conformance(
    fuzz_server: RunningServer, fuzz_token: str
) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {fuzz_token}"}
    failures: list[str] = []
    # get_all_operations yields Ok | Err; an Err (unloadable operation) raises on .ok().
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 25  # every endpoint of the contract is documented

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(headers=headers, timeout=10)
            case.validate_response(
                response, checks=[not_a_server_error, response_schema_conformance]
            )

        try:
            check()
        except Exception as exc:  # collect all operations' failures, then report
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    # The fuzzer really talked to the server: hundreds of requests, mostly rejected.
    statuses = [entry.status for entry in fuzz_server.request_log()]
    assert len(statuses) > 200
    assert all(status < 500 for status in statuses)
