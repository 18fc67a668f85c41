"""schemathesis over the whole OpenAPI document of a real `vidgate serve`, bounded for CI.

Driven through its CLI: one run covers every operation in all four phases (the document's
examples, coverage of its boundaries, fuzzing, and stateful sequences along the links it
infers, e.g. create a key then revoke it) and prints each failure with a curl line that
reproduces it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import GatewayProcess

pytestmark = pytest.mark.e2e

# Every check is on: schemathesis's default, as `--checks all` would override the per-operation
# setting below (object_level_authorization acts only with two users configured; this run has one).
# - not_a_server_error: 503 is the documented answer of a busy database or an unavailable
#   upstream. Any other 5xx is a server error, and status_code_conformance still fails a 503 on a
#   route that does not list it.
# - positive_data_acceptance: any schema-valid request is accepted, because the document states
#   the rules the services check (a text-to-video prompt that is not blank, an Idempotency-Key of
#   1-255 printable characters, a key title that is not blank). It is off for one operation only:
#   DELETE /api/v1/keys/{key_id} of the caller's own key is a 400 by a business rule (a key
#   cannot revoke itself) that depends on who calls, which no schema can state. And for
#   GET /api/v1/account/usage: `from` and `to` valid alone are refused together when `from` is
#   not before `to` or they span more than 366 days, and a day that matches the date pattern
#   may not exist (2026-02-30): rules across parameters or of the calendar, not of a schema.
#   And for the keys API's create and update: `models` must name models of the catalogue and
#   `expires_at` must be in the future, rules of the configuration and of the clock.
# - positive_data_acceptance also takes a 402 as a right answer: it depends on state, not on
#   the request (the fuzzer may give its own key a budget, then spend it), like 409 and 429.
# - /api/v1/admin/...: this run's key is not an admin key, and the 403 comes before any parameter
#   is read, so a few cases show it is documented (test_admin_api.py tests what they do).
# - GET /api/v1/videos/{task_id}/events is a live stream: of a task that never moves (no worker
#   here) it stays open, so schemathesis reads its first event rather than 20 or the whole
#   request timeout.
CONFIG = """
[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "503"]

[[operations]]
include-path = "/api/v1/keys/{key_id}"
include-method = "DELETE"
checks.positive_data_acceptance.enabled = false

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "402", "403", "404", "409", "429", "5xx"]

[[operations]]
include-path-regex = "^/api/v1/(admin/accounts/[^/]+/)?keys(/[^/]+)?$"
include-method-regex = "^(POST|PATCH)$"
checks.positive_data_acceptance.enabled = false

[[operations]]
include-path = "/api/v1/account/usage"
include-method = "GET"
checks.positive_data_acceptance.enabled = false

[[operations]]
include-path = "/api/v1/videos/{task_id}/events"
max-stream-events = 1

[[operations]]
include-path-regex = "^/api/v1/admin/"
generation.max-examples = 5
phases.coverage.enabled = false
"""

# Limits out of the fuzzer's way, so that its requests reach the handlers rather than a 429 or
# a 402; no worker, so that the tasks it creates are not rendered on the CI machine's 2 cores.
FUZZ_SETTINGS = {
    "VIDGATE_RATE_LIMIT_PER_SECOND": "100000",
    "VIDGATE_RATE_LIMIT_BURST": "100000",
    "VIDGATE_MAX_CONCURRENT_JOBS": "100000",
    "VIDGATE_INITIAL_CREDITS": "1000000000",
}

MAX_EXAMPLES = 50  # per operation and phase: about 15 s for the whole run here
TIME_LIMIT_S = 180  # 35-65 s here with 40 operations; room for a loaded CI machine


def test_the_api_matches_its_openapi_document_under_fuzzing(tmp_path: Path) -> None:
    server = GatewayProcess(
        tmp_path / "gateway", env=FUZZ_SETTINGS, serve_args=("--no-worker",)
    ).start()
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    try:
        result = subprocess.run(
            [
                sys.executable, "-m", "schemathesis.cli",
                "--config-file", str(config), "--no-color",
                "run", f"{server.base_url}/openapi.json",
                "--header", f"Authorization: Bearer {server.api_key}",
                "--max-examples", str(MAX_EXAMPLES),
                "--seed", "20261201",  # the same cases on every run, so a failure reproduces
                "--workers", "1",
                "--request-timeout", "10",
                "--generation-database", "none",  # nothing written into the checkout
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=TIME_LIMIT_S,
        )  # fmt: skip
    finally:
        server.stop()
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-8000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", report)
    tested = re.search(r"Tested: (\d+)", report)
    assert selected, report[-8000:]
    assert tested, report[-8000:]
    assert selected.group(1) == selected.group(2) == tested.group(1), "some operations untested"
    assert int(tested.group(1)) >= 10
    assert "Traceback" not in server.log()
