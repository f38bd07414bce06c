"""scripts/audit_tests.py: a skip that tests/expected_skips.yml does not name fails a strict pytest
session, so does an entry whose tests do not skip as it says; a molecule scenario whose verify
would check nothing is named."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import audit_tests as audit
import pytest

REPO = Path(__file__).resolve().parents[3]
LIST = "tests/expected_skips.yml"


def entry(id_: str, skips: int = 1, conditional: str | None = None) -> audit.ExpectedSkip:
    return audit.ExpectedSkip(id_, "why", skips, conditional)


# ---- the list -------------------------------------------------------------------------------------
def test_the_repository_list_names_existing_tests_each_with_a_reason():
    entries = audit.load_expected_skips(audit.EXPECTED_SKIPS)
    assert entries and all(item.reason for item in entries)
    assert audit.stale_entries(entries, REPO) == []


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"id": "tests/a.py::test_x"}, "reason must say why"),
        ({"id": "tests/a.py::test_x", "reason": "  "}, "reason must say why"),
        ({"id": "tests/a.py", "reason": "r"}, "id must be a node id"),
        ({"id": "tests/a.py::test_x", "reason": "r", "skips": 0}, "skips must be a count"),
        ({"id": "tests/a.py::test_x", "reason": "r", "skips": True}, "skips must be a count"),
        ({"id": "tests/a.py::test_x", "reason": "r", "conditional": ""}, "conditional must say when"),
        ({"id": "tests/a.py::test_x", "reason": "r", "why": "typo"}, "unknown keys why"),
        ("tests/a.py::test_x", "expected a mapping"),
    ],
)
def test_an_entry_without_a_reason_or_with_a_wrong_key_is_refused(item, message):
    with pytest.raises(audit.AuditError, match=message) as err:
        audit.parse_expected_skips([{"id": "tests/ok.py::test_ok", "reason": "r"}, item], "skips.yml")
    assert "skips.yml: entry 2" in str(err.value)


def test_a_list_that_is_not_a_list_is_refused():
    with pytest.raises(audit.AuditError, match="expected a list of entries, got dict"):
        audit.parse_expected_skips({"id": "x"}, "skips.yml")


def test_an_entry_naming_a_renamed_test_or_a_removed_file_is_stale(tmp_path):
    (tmp_path / "test_a.py").write_text(
        "def test_kept():\n    pass\n\nclass TestB:\n    def test_m(self):\n        pass\n"
    )
    entries = [
        entry("test_a.py::test_kept"),
        entry("test_a.py::TestB::test_m[x]"),
        entry("test_a.py::test_k*"),
    ]
    assert audit.stale_entries(entries, tmp_path) == []
    problems = audit.stale_entries([entry("test_a.py::test_renamed"), entry("gone.py::test_x")], tmp_path)
    assert problems == [
        f"test_a.py::test_renamed: listed as an expected skip, but {tmp_path}/test_a.py defines no test_renamed",
        f"gone.py::test_x: listed as an expected skip, but {tmp_path}/gone.py does not exist",
    ]


def test_a_star_matches_anything_and_brackets_are_literal():
    cpu = entry("m/t.py::test_*[ansible://nvd-cpu]")
    assert cpu.matches("m/t.py::test_driver[ansible://nvd-cpu]")
    assert not cpu.matches("m/t.py::test_driver[ansible://nvd-hgx8]")
    assert not entry("m/t.py::test_[ab]").matches("m/t.py::test_a")
    assert (cpu.path, cpu.function) == ("m/t.py", "test_*")


# ---- a session's skips ----------------------------------------------------------------------------
NVD = "molecule/nvidia_driver/tests/test_nvidia_driver.py"
NVD_ENTRIES = [
    entry(f"{NVD}::test_*[ansible://nvd-cpu]", 10),
    entry(f"{NVD}::test_nothing[ansible://nvd-*]", 2),
]


def nvd_session(cpu_skips: int) -> audit.Session:
    session = audit.Session(roots=["molecule/nvidia_driver/tests/test_nvidia_driver.py"])
    for number in range(cpu_skips):
        session.skipped[f"{NVD}::test_{number}[ansible://nvd-cpu]"] = "CPU host"
    for host in ("nvd-hgx8", "nvd-rtx4"):
        session.skipped[f"{NVD}::test_nothing[ansible://{host}]"] = "GPU host"
    session.ran.add(f"{NVD}::test_nothing[ansible://nvd-cpu]")
    return session


def test_the_skips_by_design_pass_when_each_entry_skips_its_count():
    assert audit.skip_problems(NVD_ENTRIES, nvd_session(10), LIST) == []


def test_one_skip_more_or_less_than_the_entry_says_is_reported():
    expected = f"{NVD}::test_*[ansible://nvd-cpu]: {LIST} expects 10 skip(s) (why), {{}} skipped; {{}}"
    fix = "correct the entry, or remove it if the test no longer skips"
    assert audit.skip_problems(NVD_ENTRIES, nvd_session(11), LIST) == [expected.format(11, fix)]
    ran = f"ran instead: {NVD}::test_nothing[ansible://nvd-cpu]; "
    assert audit.skip_problems(NVD_ENTRIES, nvd_session(9), LIST) == [expected.format(9, ran + fix)]


def test_an_unexpected_skip_is_reported_with_its_reason():
    session = audit.Session(roots=["tests/integration"], skipped={"tests/integration/t.py::test_x": "no uv"})
    assert audit.skip_problems([], session, LIST) == [
        f"tests/integration/t.py::test_x skipped (no uv), and {LIST} does not expect it: "
        "give it what it needs here, or list it with the reason"
    ]


def test_an_expected_skip_that_ran_is_reported_unless_conditional():
    session = audit.Session(roots=["."], ran={"tests/t.py::test_x"})
    problems = audit.skip_problems([entry("tests/t.py::test_x")], session, LIST)
    assert problems == [
        f"tests/t.py::test_x: {LIST} expects 1 skip(s) (why), 0 skipped; ran instead: tests/t.py::test_x; "
        "correct the entry, or remove it if the test no longer skips"
    ]
    assert audit.skip_problems([entry("tests/t.py::test_x", conditional="with X set")], session, LIST) == []


def test_an_entry_outside_the_session_or_partly_deselected_is_not_counted():
    outside = audit.Session(roots=["tests/unit"], ran={"tests/integration/t.py::test_x"})
    assert audit.skip_problems([entry("tests/integration/t.py::test_x")], outside, LIST) == []
    deselected = audit.Session(roots=["tests"], deselected={"tests/t.py::test_x"})
    assert audit.skip_problems([entry("tests/t.py::test_x")], deselected, LIST) == []


def test_session_roots_are_the_whole_paths_given_relative_to_the_rootdir(tmp_path):
    scenario = tmp_path / "molecule" / "s"
    roots = audit.session_roots(
        ["tests/test_a.py", "tests/test_b.py::test_x", "/elsewhere", "../.."], scenario, tmp_path
    )
    assert roots == ["molecule/s/tests/test_a.py", "."]


@pytest.mark.parametrize(
    ("option", "environ", "strict"),
    [
        (False, {}, False),
        (False, {"CI": ""}, False),
        (False, {"CI": "false"}, False),
        (False, {"CI": "true"}, True),
        (False, {"LLMFLEET_STRICT_SKIPS": "1"}, True),
        (False, {"LLMFLEET_STRICT_SKIPS": "0"}, False),
        (True, {}, True),
    ],
)
def test_strict_when_ci_or_asked(option, environ, strict):
    assert audit.strict_requested(option, environ) is strict


# ---- the plugin in a real pytest session ----------------------------------------------------------
TESTS = """
    import pytest

    def test_runs():
        pass

    @pytest.mark.skip(reason="needs a GPU")
    def test_gpu():
        pass

    @pytest.mark.parametrize("host", ["cpu", "gpu"])
    def test_host(host):
        if host == "cpu":
            pytest.skip("CPU host")
"""


def run_pytest(tmp_path: Path, listed: str, *args: str, **environ: str) -> subprocess.CompletedProcess:
    """pytest on a small test file in tmp_path, with the audit loaded as molecule's testinfra runs load it."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_some.py").write_text(textwrap.dedent(TESTS))
    (tmp_path / "skips.yml").write_text(listed)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", audit.STRICT_ENV, "PYTEST_ADDOPTS")}
    env.update(PYTHONPATH=str(REPO / "scripts"), **environ)
    argv = [sys.executable, "-m", "pytest", "-p", "audit_tests", "-p", "no:cacheprovider"]
    argv += ["--expected-skips", "skips.yml", "test_some.py", *args]
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)


BOTH_LISTED = textwrap.dedent("""
    - id: test_some.py::test_gpu
      reason: the test host has no GPU
    - id: test_some.py::test_host[cpu]
      reason: only the GPU host is checked
""")


def test_a_session_with_only_listed_skips_passes(tmp_path):
    result = run_pytest(tmp_path, BOTH_LISTED, CI="true")
    assert result.returncode == 0, result.stdout
    assert "2 passed, 2 skipped" in result.stdout


def test_an_unlisted_skip_fails_a_strict_session_and_only_a_strict_one(tmp_path):
    only_gpu = BOTH_LISTED.split("- id: test_some.py::test_host")[0]
    result = run_pytest(tmp_path, only_gpu, **{audit.STRICT_ENV: "1"})
    assert result.returncode == 1, result.stdout
    assert "skips not as skips.yml expects" in result.stdout
    assert (
        "test_some.py::test_host[cpu] skipped (CPU host), and skips.yml does not expect it" in result.stdout
    )
    assert run_pytest(tmp_path, only_gpu).returncode == 0
    assert run_pytest(tmp_path, only_gpu, "--strict-skips").returncode == 1


def test_a_listed_test_that_runs_fails_the_session(tmp_path):
    listed = BOTH_LISTED + "- id: test_some.py::test_runs\n  reason: it used to need a GPU\n"
    result = run_pytest(tmp_path, listed, "--strict-skips")
    assert result.returncode == 1, result.stdout
    assert "test_some.py::test_runs: skips.yml expects 1 skip(s)" in result.stdout
    assert "ran instead: test_some.py::test_runs" in result.stdout
    conditional = listed + "  conditional: runs where a GPU is present\n"
    assert run_pytest(tmp_path, conditional, "--strict-skips").returncode == 0


def test_a_list_entry_without_a_reason_stops_a_strict_session(tmp_path):
    result = run_pytest(tmp_path, "- id: test_some.py::test_gpu\n", "--strict-skips")
    assert result.returncode == 4  # usage error
    assert "entry 1 (test_some.py::test_gpu): reason must say why the test skips" in result.stderr


# ---- the molecule scenarios -----------------------------------------------------------------------
def test_every_scenario_of_the_repository_verifies_something():
    scenarios = sorted(path.parent for path in (REPO / "molecule").glob("*/molecule.yml"))
    assert len(scenarios) >= 6
    assert {path.name: audit.scenario_problems(path) for path in scenarios} == {
        path.name: [] for path in scenarios
    }


BASE = """
verifier:
  name: testinfra
  directory: tests
scenario:
  test_sequence: [create, converge, verify, destroy]
"""
ANSIBLE = "verifier:\n  name: ansible\n"
ASSERT = "- name: Check\n  ansible.builtin.assert:\n    that: [true]\n"
NO_ASSERT = "- name: Look\n  ansible.builtin.command: ls\n  changed_when: false\n"


def scenario(tmp_path: Path, molecule_yml: str, files: dict[str, str]) -> list[str]:
    (tmp_path / "base.yml").write_text(BASE)
    directory = tmp_path / "molecule" / "fake"
    for name, text in {"molecule.yml": molecule_yml, **files}.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    return audit.scenario_problems(directory, tmp_path / "base.yml")


def play(tasks: str, section: str = "tasks") -> str:
    return f"- name: Verify\n  hosts: all\n  {section}:\n" + textwrap.indent(tasks, "    ")


def test_a_missing_verify_playbook_is_reported(tmp_path):
    problems = scenario(tmp_path, ANSIBLE + "ansible:\n  playbooks:\n    verify: checks.yml\n", {})
    assert problems == [
        f"molecule fake: the verify playbook {tmp_path}/molecule/fake/checks.yml does not exist "
        "(molecule only warns 'Missing playbook' and skips verify)"
    ]
    # without ansible.playbooks.verify molecule looks for verify.yml
    assert "molecule/fake/verify.yml does not exist" in scenario(tmp_path, ANSIBLE, {})[0]


@pytest.mark.parametrize(
    "verify",
    ["", "---\n[]\n", "- name: Verify\n  hosts: all\n  tasks: []\n", play(NO_ASSERT)],
    ids=["empty file", "no play", "no task", "no assert"],
)
def test_an_empty_verify_playbook_is_reported(tmp_path, verify):
    assert scenario(tmp_path, ANSIBLE, {"verify.yml": verify}) == [
        f"molecule fake: the verify playbook {tmp_path}/molecule/fake/verify.yml reaches no assert task"
    ]


@pytest.mark.parametrize(
    "files",
    [
        {"verify.yml": play(ASSERT)},
        {"verify.yml": play(ASSERT, "post_tasks")},
        {
            "verify.yml": play(
                f"- name: Checks\n  block:\n    - name: Look\n      ansible.builtin.debug:\n  rescue:\n{textwrap.indent(ASSERT, '    ')}"
            )
        },
        {
            "verify.yml": play("- name: Checks\n  ansible.builtin.include_tasks: tasks/checks.yml\n"),
            "tasks/checks.yml": ASSERT,
        },
        {
            "verify.yml": play("- ansible.builtin.import_tasks:\n    file: ../shared/checks.yml\n"),
            "../shared/checks.yml": ASSERT,
        },
        {
            "verify.yml": "- name: Shared\n  ansible.builtin.import_playbook: other.yml\n",
            "other.yml": play(ASSERT),
        },
    ],
    ids=["tasks", "post_tasks", "block", "include_tasks", "import_tasks file", "import_playbook"],
)
def test_an_assert_is_found_through_blocks_includes_and_imports(tmp_path, files):
    assert scenario(tmp_path, ANSIBLE, files) == []


def test_a_templated_include_and_a_cycle_are_not_followed(tmp_path):
    files = {
        "verify.yml": play(
            "- ansible.builtin.include_tasks: '{{ where }}/checks.yml'\n- ansible.builtin.include_tasks: loop.yml\n"
        ),
        "checks.yml": ASSERT,
        "loop.yml": "- ansible.builtin.include_tasks: loop.yml\n",
    }
    assert "reaches no assert task" in scenario(tmp_path, ANSIBLE, files)[0]


def test_a_testinfra_scenario_without_a_test_function_is_reported(tmp_path):
    message = f"molecule fake: no test function in {tmp_path}/molecule/fake/tests/test_*.py (molecule skips verify with 'no tests found')"
    assert scenario(tmp_path, "---\n", {}) == [message]
    assert scenario(tmp_path, "---\n", {"tests/test_hosts.py": "def helper(host):\n    pass\n"}) == [message]
    assert scenario(tmp_path, "---\n", {"tests/hosts_check.py": "def test_x(host):\n    pass\n"}) == [message]
    assert scenario(tmp_path, "---\n", {"tests/sub/test_hosts.py": "def test_x(host):\n    pass\n"}) == []


@pytest.mark.parametrize(
    ("molecule_yml", "message"),
    [
        ("scenario:\n  test_sequence: [create, converge, destroy]\n", "test_sequence has no verify step"),
        ("verifier:\n  enabled: false\n", "verifier.enabled is false"),
        ("verifier:\n  name: goss\n", "unknown verifier 'goss'"),
    ],
)
def test_a_scenario_that_never_verifies_is_reported(tmp_path, molecule_yml, message):
    problems = scenario(tmp_path, molecule_yml, {"tests/test_x.py": "def test_x(host):\n    pass\n"})
    assert len(problems) == 1 and message in problems[0]


def test_the_legacy_provisioner_playbooks_key_is_read_as_molecule_reads_it(tmp_path):
    legacy = ANSIBLE + "provisioner:\n  playbooks:\n    verify: checks.yml\n"
    assert "checks.yml does not exist" in scenario(tmp_path, legacy, {"verify.yml": play(ASSERT)})[0]
    assert scenario(tmp_path, legacy, {"checks.yml": play(ASSERT)}) == []


def test_the_command_names_the_scenario_and_fails(tmp_path, capsys):
    assert audit.main(["scenarios", "default", "e2e"]) == 0
    assert "every scenario verifies something: default, e2e" in capsys.readouterr().out
    assert audit.main(["scenarios", "no_such_scenario"]) == 1
    assert "molecule no_such_scenario: cannot read its configuration" in capsys.readouterr().err
    assert audit.main([]) == 2
