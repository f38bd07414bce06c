"""Make `ansible_collections.llmfleet.serve` and the lab's scripts (lab/: fleet, serve_tiny) importable
from a plain checkout, and load the
expected-skips audit (scripts/audit_tests.py): with CI or LLMFLEET_STRICT_SKIPS set, or with
--strict-skips, a skip that tests/expected_skips.yml does not name fails the session."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO / ".collections", REPO / "scripts", REPO / "lab"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

pytest_plugins = ["audit_tests"]
