"""Schemathesis against ``/api/v1/openapi.json`` of a running ``regulator serve``:
valid and invalid requests on every documented operation, with valid tokens of every
role; the API never answers a 5xx it does not document."""

from __future__ import annotations

from collections import Counter
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.core.result import Ok

from tests.faults.conftest import TOKENS, FaultCounts, ServiceFactory

EXAMPLES = 25  # per operation, per mode and role: the whole test stays under a minute


def narrowed(document: dict[str, Any]) -> dict[str, Any]:
    """The served document with ``mmg`` narrowed to the served MMG (negative mode still
    sends others), so generated bodies get past the MMG lookup into the deeper code."""
    any_mmg = {"type": "string", "enum": ["nimes"]}
    schemas = document["components"]["schemas"]
    for name in ("ReferralIn", "VisitIn"):
        schemas[name]["properties"]["mmg"] = any_mmg
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "mmg":
                    parameter["schema"] = {"enum": ["nimes", "metz", "inconnue"]}
    return document


def documented(operation: APIOperation[Any, Any, Any, Any]) -> set[int]:
    """The statuses the operation documents (a 503 "no targets configured" is one)."""
    return {int(code) for code in operation.definition.raw["responses"] if code.isdigit()}


def streams(operation: APIOperation[Any, Any, Any, Any]) -> bool:
    """An event stream never ends: its auth and filters are tested in tests/integration."""
    ok = operation.definition.raw["responses"].get("200", {})
    return "text/event-stream" in ok.get("content", {})


def has_inputs(operation: APIOperation[Any, Any, Any, Any]) -> bool:
    raw = operation.definition.raw
    return bool(raw.get("parameters") or raw.get("requestBody"))


def fuzz(
    operation: APIOperation[Any, Any, Any, Any],
    mode: GenerationMode,
    base_url: str,
    headers: dict[str, str],
    statuses: Counter[int],
    failures: list[str],
) -> None:
    allowed = documented(operation)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case[Any]) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=10)
        statuses[response.status_code] += 1
        if response.status_code >= 500 and response.status_code not in allowed:
            failures.append(
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:200]}"
            )
        assert response.status_code < 500 or response.status_code in allowed

    run()


def test_openapi_operations_never_answer_5xx(
    service_factory: ServiceFactory, fault_counts: FaultCounts
) -> None:
    service = service_factory()
    service.start()
    schema = schemathesis.openapi.from_dict(narrowed(service.get_json("/api/v1/openapi.json")))
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    assert len(operations) >= 10
    for operation in operations:
        if streams(operation):
            continue
        modes = [GenerationMode.POSITIVE]
        if has_inputs(operation):  # nothing to make invalid otherwise
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            for role in ("admin", "desk", "regulator"):
                headers = {"Authorization": f"Bearer {TOKENS[role]}"}
                fuzz(operation, mode, service.base_url, headers, statuses, failures)
    fault_counts.requests_sent = sum(statuses.values())
    fault_counts.notes.append(
        f"{len(operations)} operations; statuses "
        + ", ".join(f"{code}×{n}" for code, n in sorted(statuses.items()))
    )
    assert not failures, failures[:5]
    assert "Traceback" not in service.log()
    service.stop()
