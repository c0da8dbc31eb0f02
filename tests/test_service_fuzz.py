"""schemathesis over /openapi.json: generated requests (valid and invalid, with a write token)
never get a 5xx, on every operation."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.service_support import Served

EXAMPLES = 4
"""Examples per operation and generation mode (a fixed budget: the test takes seconds)."""


@pytest.mark.slow
def test_no_generated_request_gets_a_server_error(
    served: Served, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from autopeft.service import create_app

    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    app = create_app(served.url, roots=[served.root], data_dir=data_dir)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    headers = served.auth(served.write)
    seen: list[str] = []
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case) -> None:
                response = case.call(headers=headers)
                seen.append(f"{case.method} {case.path} {response.status_code}")
                assert response.status_code < 500, (case.method, case.formatted_path, response.text)

            try:
                check()
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
    assert len(seen) >= len(operations) * EXAMPLES
    # nothing the generator sent started a study or left a staged file behind
    assert not list((data_dir / "staging").iterdir()) and not list((data_dir / "studies").iterdir())
