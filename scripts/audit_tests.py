#!/usr/bin/env python3
"""Whether the tests really ran: expected skips, and a verify step in every molecule scenario.

As a pytest plugin (tests/conftest.py loads it; molecule's testinfra runs load it with
``-p audit_tests`` and this directory on PYTHONPATH): when ``CI`` or ``LLMFLEET_STRICT_SKIPS`` is
set, or with ``--strict-skips``, the session fails when

- a test skips that no entry of tests/expected_skips.yml names, or
- an entry does not skip the number of tests it says (``skips``, default 1) although the session
  ran its whole file; an entry with ``conditional`` (when the test runs instead) may skip none, or
- an entry names a file or a test function that does not exist.

As a command, ``audit_tests.py scenarios [NAME ...]`` reads each molecule scenario (the base
config .config/molecule/config.yml, then its molecule.yml) and fails unless its verify step runs
something: ``verify`` is in the test sequence and the verifier is enabled; with the ansible
verifier the verify playbook exists (molecule only warns "Missing playbook" and goes on) and
reaches at least one assert task; with testinfra the tests directory holds a test function
(molecule skips verify with "no tests found" otherwise).
"""

from __future__ import annotations

import ast
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
EXPECTED_SKIPS = REPO / "tests" / "expected_skips.yml"
BASE_CONFIG = REPO / ".config" / "molecule" / "config.yml"
STRICT_ENV = "LLMFLEET_STRICT_SKIPS"
ENTRY_KEYS = {"id", "reason", "skips", "conditional"}


class AuditError(ValueError):
    """A file this module reads is not what it should be."""


# ---- the expected skips ---------------------------------------------------------------------------
def _glob(pattern: str) -> re.Pattern[str]:
    """``*`` matches anything; everything else, ``[`` of a parametrized id included, is literal."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


@dataclass(frozen=True)
class ExpectedSkip:
    id: str  # a pytest node id, relative to the rootdir; * matches anything
    reason: str
    skips: int = 1  # how many tests it names skip in a session that runs its whole file
    conditional: str | None = None  # when the tests run instead (then none may skip)

    @property
    def path(self) -> str:
        return self.id.split("::", 1)[0]

    @property
    def function(self) -> str:
        """The test function part of the id (no class, no parameters)."""
        return self.id.split("::")[-1].split("[", 1)[0]

    def matches(self, nodeid: str) -> bool:
        return _glob(self.id).fullmatch(nodeid) is not None


def parse_expected_skips(data: Any, source: str) -> list[ExpectedSkip]:
    """The entries of an expected-skips list; every problem of every entry in one AuditError."""
    if not isinstance(data, list):
        raise AuditError(f"{source}: expected a list of entries, got {type(data).__name__}")
    entries, problems = [], []
    for number, item in enumerate(data, 1):
        where = f"{source}: entry {number}"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected a mapping with id and reason, got {item!r}")
            continue
        where += f" ({item.get('id', 'no id')})"
        wrong = []
        if unknown := sorted(set(item) - ENTRY_KEYS):
            wrong.append(f"unknown keys {', '.join(unknown)} (allowed: {', '.join(sorted(ENTRY_KEYS))})")
        if not isinstance(item.get("id"), str) or "::" not in item["id"]:
            wrong.append(f"id must be a node id, path::test, got {item.get('id')!r}")
        if not isinstance(item.get("reason"), str) or not item["reason"].strip():
            wrong.append("reason must say why the test skips")
        skips = item.get("skips", 1)
        if not isinstance(skips, int) or isinstance(skips, bool) or skips < 1:
            wrong.append(f"skips must be a count of at least 1, got {skips!r}")
        conditional = item.get("conditional")
        if conditional is not None and (not isinstance(conditional, str) or not conditional.strip()):
            wrong.append(f"conditional must say when the test runs instead, got {conditional!r}")
        if wrong:
            problems.append(f"{where}: {'; '.join(wrong)}")
        else:
            entries.append(ExpectedSkip(item["id"], item["reason"].strip(), skips, conditional))
    if problems:
        raise AuditError("\n".join(problems))
    return entries


def load_expected_skips(path: Path) -> list[ExpectedSkip]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise AuditError(f"{path}: {exc}") from exc
    return parse_expected_skips(data, str(path))


def defined_tests(path: Path) -> list[str]:
    """The names of the test functions and methods (``test*``) defined in a Python file."""
    tree = ast.parse(path.read_text(), str(path))
    return [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    ]


def stale_entries(entries: Iterable[ExpectedSkip], rootdir: Path) -> list[str]:
    """Entries that name a file or a test function that is not there (renamed, removed)."""
    problems = []
    for entry in entries:
        path = rootdir / entry.path
        if not path.is_file():
            problems.append(f"{entry.id}: listed as an expected skip, but {path} does not exist")
        elif not any(_glob(entry.function).fullmatch(name) for name in defined_tests(path)):
            problems.append(f"{entry.id}: listed as an expected skip, but {path} defines no {entry.function}")
    return problems


@dataclass
class Session:
    """What one pytest session did, by node id."""

    roots: list[str]  # the paths it collected whole, relative to the rootdir ("." for all)
    skipped: dict[str, str] = field(default_factory=dict)  # node id -> skip reason
    ran: set[str] = field(default_factory=set)
    deselected: set[str] = field(default_factory=set)

    def covers(self, path: str) -> bool:
        return any(
            root == "." or path == root or path.startswith(root.rstrip("/") + "/") for root in self.roots
        )


def skip_problems(entries: list[ExpectedSkip], session: Session, list_name: str) -> list[str]:
    """Skips that no entry names, and entries whose tests did not skip as the entry says."""
    problems = []
    counted = dict.fromkeys(entries, 0)
    for nodeid, reason in sorted(session.skipped.items()):
        entry = next((entry for entry in entries if entry.matches(nodeid)), None)
        if entry is None:
            problems.append(
                f"{nodeid} skipped ({reason}), and {list_name} does not expect it: "
                "give it what it needs here, or list it with the reason"
            )
        else:
            counted[entry] += 1
    for entry, count in counted.items():
        if not session.covers(entry.path) or any(entry.matches(n) for n in session.deselected):
            continue  # the session did not run all the tests the entry names
        if count == entry.skips or (count == 0 and entry.conditional):
            continue
        ran = sorted(nodeid for nodeid in session.ran if entry.matches(nodeid))
        problem = f"{entry.id}: {list_name} expects {entry.skips} skip(s) ({entry.reason}), {count} skipped"
        if ran and count < entry.skips:
            problem += f"; ran instead: {', '.join(ran[:5])}{' ...' if len(ran) > 5 else ''}"
        problems.append(problem + "; correct the entry, or remove it if the test no longer skips")
    return problems


def session_roots(args: Iterable[str], invocation_dir: Path, rootdir: Path) -> list[str]:
    """The paths given to pytest without a ``::`` selector, relative to the rootdir."""
    roots = []
    for arg in args:
        if "::" in arg:
            continue
        path = (invocation_dir / arg).resolve()
        if path == rootdir.resolve():
            roots.append(".")
        elif path.is_relative_to(rootdir.resolve()):
            roots.append(path.relative_to(rootdir.resolve()).as_posix())
    return roots


# ---- the pytest plugin ----------------------------------------------------------------------------
def strict_requested(option: bool, environ: Mapping[str, str]) -> bool:
    def set_(name: str) -> bool:
        return environ.get(name, "").strip().lower() not in ("", "0", "false", "no")

    return option or set_("CI") or set_(STRICT_ENV)


def pytest_addoption(parser) -> None:
    group = parser.getgroup("expected skips")
    group.addoption(
        "--strict-skips",
        action="store_true",
        help=f"fail on a skip the expected-skips list does not name (also with CI or {STRICT_ENV} set)",
    )
    group.addoption("--expected-skips", default=str(EXPECTED_SKIPS), help="the expected-skips list (YAML)")


def pytest_configure(config) -> None:
    if config.option.collectonly or not strict_requested(config.getoption("strict_skips"), os.environ):
        return
    import pytest

    path = Path(config.getoption("expected_skips")).resolve()
    try:
        entries = load_expected_skips(path)
    except AuditError as exc:
        raise pytest.UsageError(str(exc)) from exc
    roots = session_roots(config.args, config.invocation_params.dir, config.rootpath)
    config.pluginmanager.register(
        SkipAudit(entries, path, config.rootpath.resolve(), roots), "audit_tests_session"
    )


class SkipAudit:
    def __init__(self, entries: list[ExpectedSkip], path: Path, rootdir: Path, roots: list[str]):
        self.entries = entries
        self.list_name = path.relative_to(rootdir).as_posix() if path.is_relative_to(rootdir) else str(path)
        self.stale = stale_entries(entries, rootdir)
        self.session = Session(roots)
        self.problems: list[str] = []

    def pytest_deselected(self, items) -> None:
        self.session.deselected.update(item.nodeid for item in items)

    def pytest_runtest_logreport(self, report) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            self.session.skipped[report.nodeid] = reason.removeprefix("Skipped: ")
        elif report.when == "call" or report.failed:
            self.session.ran.add(report.nodeid)

    def pytest_sessionfinish(self, session) -> None:
        self.problems = self.stale + skip_problems(self.entries, self.session, self.list_name)
        if self.problems and session.exitstatus == 0:
            session.exitstatus = 1

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.problems:
            terminalreporter.section(f"skips not as {self.list_name} expects", sep="=", red=True, bold=True)
            for problem in self.problems:
                terminalreporter.line(problem)


# ---- the molecule scenarios -----------------------------------------------------------------------
ASSERT_MODULES = {"assert", "ansible.builtin.assert", "ansible.legacy.assert"}
INCLUDE_TASKS = {
    f"{prefix}{name}" for prefix in ("", "ansible.builtin.") for name in ("include_tasks", "import_tasks")
}
IMPORT_PLAYBOOK = {"import_playbook", "ansible.builtin.import_playbook"}
TASK_SECTIONS = ("pre_tasks", "tasks", "post_tasks", "handlers")
# What molecule assumes when neither the base config nor molecule.yml says otherwise.
MOLECULE_DEFAULTS = {
    "verifier": {"name": "ansible", "enabled": True, "directory": "tests"},
    "ansible": {"playbooks": {"verify": "verify.yml"}},
    "scenario": {"test_sequence": ["verify"]},
}


def merge(base: dict, override: dict) -> dict:
    """Molecule's merge: mappings merge key by key, anything else (lists too) is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) or {}


def scenario_config(scenario_dir: Path, base_config: Path | None) -> dict:
    config = merge(MOLECULE_DEFAULTS, _read_yaml(base_config) if base_config else {})
    config = merge(config, _read_yaml(scenario_dir / "molecule.yml"))
    provisioner = config.get("provisioner") or {}
    if "playbooks" in provisioner:  # the legacy key, which molecule moves over ansible.playbooks
        config["ansible"] = {**config["ansible"], "playbooks": provisioner["playbooks"]}
    return config


def _include_target(task: dict) -> str | None:
    for key in INCLUDE_TASKS & set(task):
        value = task[key]
        target = value.get("file") if isinstance(value, dict) else value
        if isinstance(target, str) and "{{" not in target:
            return target
    return None


def _tasks_asserts(tasks: Any, here: Path, seen: set[Path]) -> int:
    count = 0
    for task in tasks if isinstance(tasks, list) else []:
        if not isinstance(task, dict):
            continue
        count += bool(ASSERT_MODULES & set(task))
        for section in ("block", "rescue", "always"):
            count += _tasks_asserts(task.get(section), here, seen)
        if (target := _include_target(task)) is not None:
            count += count_asserts(here / target, seen, playbook=False)
    return count


def count_asserts(path: Path, seen: set[Path] | None = None, playbook: bool = True) -> int:
    """The assert tasks a playbook (or tasks file) reaches, through blocks, task includes and
    imported playbooks whose path is not templated; each file is counted once."""
    seen = set() if seen is None else seen
    path = path.resolve()
    if path in seen or not path.is_file():
        return 0
    seen.add(path)
    data = _read_yaml(path)
    if not playbook:
        return _tasks_asserts(data, path.parent, seen)
    count = 0
    for play in data if isinstance(data, list) else []:
        if not isinstance(play, dict):
            continue
        for key in IMPORT_PLAYBOOK & set(play):
            if isinstance(play[key], str) and "{{" not in play[key]:
                count += count_asserts(path.parent / play[key], seen)
        for section in TASK_SECTIONS:
            count += _tasks_asserts(play.get(section), path.parent, seen)
    return count


def testinfra_files(directory: Path) -> Iterator[Path]:
    """The files molecule's testinfra verifier runs: test_*.py anywhere under the directory."""
    return (path for path in sorted(directory.rglob("test_*.py")) if path.is_file())


def scenario_problems(scenario_dir: Path, base_config: Path | None = BASE_CONFIG) -> list[str]:
    """Why the scenario's verify step would run nothing (an empty list when it runs something)."""
    name = scenario_dir.name
    try:
        config = scenario_config(scenario_dir, base_config)
    except (OSError, yaml.YAMLError) as exc:
        return [f"molecule {name}: cannot read its configuration: {exc}"]
    verifier = config["verifier"]
    sequence = config["scenario"].get("test_sequence") or []
    if "verify" not in sequence:
        return [f"molecule {name}: scenario.test_sequence has no verify step ({', '.join(sequence)})"]
    if verifier.get("enabled") is False:
        return [f"molecule {name}: verifier.enabled is false, so verify checks nothing"]
    if verifier["name"] == "ansible":
        playbook = scenario_dir / config["ansible"]["playbooks"]["verify"]
        if not playbook.is_file():
            return [
                f"molecule {name}: the verify playbook {playbook} does not exist "
                "(molecule only warns 'Missing playbook' and skips verify)"
            ]
        if not count_asserts(playbook):
            return [f"molecule {name}: the verify playbook {playbook} reaches no assert task"]
        return []
    if verifier["name"] == "testinfra":
        directory = scenario_dir / verifier["directory"]
        if not any(defined_tests(path) for path in testinfra_files(directory)):
            return [
                f"molecule {name}: no test function in {directory}/test_*.py "
                "(molecule skips verify with 'no tests found')"
            ]
        return []
    return [f"molecule {name}: unknown verifier {verifier['name']!r}"]


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "scenarios":
        print("usage: audit_tests.py scenarios [NAME ...]", file=sys.stderr)
        return 2
    names = argv[1:] or sorted(path.parent.name for path in (REPO / "molecule").glob("*/molecule.yml"))
    problems = [problem for name in names for problem in scenario_problems(REPO / "molecule" / name)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"every scenario verifies something: {', '.join(names)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
