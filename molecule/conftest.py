"""Molecule's testinfra verifiers run pytest on molecule/<scenario>/tests: load the expected-skips
audit there too (scripts/audit_tests.py), as tests/conftest.py does for the repository's own tests."""

import sys
from pathlib import Path

SCRIPTS = str(Path(__file__).resolve().parents[1] / "scripts")
if SCRIPTS not in sys.path:
    sys.path.insert(0, SCRIPTS)

pytest_plugins = ["audit_tests"]
