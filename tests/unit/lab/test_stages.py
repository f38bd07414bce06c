"""scripts/stages.py: the stage list covers every molecule scenario, prefetches are waited for,
a failure stops the run and is named in the table. No test looks at how long anything took."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def _load():
    spec = importlib.util.spec_from_file_location("llmfleet_stages", REPO / "scripts" / "stages.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


stages = _load()


def sh(script: str) -> tuple[str, ...]:
    return ("sh", "-c", script)


# ---- the plan -----------------------------------------------------------------------------------
def test_every_scenario_of_the_repository_has_a_stage():
    listed = stages.listed_scenarios(REPO / "Makefile")
    stages.check_scenarios(listed, stages.scenario_dirs(REPO))
    names = [stage.name for stage in stages.plan(listed)]
    assert [f"molecule {name}" for name in stages.scenario_dirs(REPO)] == sorted(
        name for name in names if name.startswith("molecule ")
    )


def test_a_new_scenario_that_no_stage_runs_is_refused(tmp_path):
    for name in ("default", "e2e", "gpu"):
        (tmp_path / "molecule" / name).mkdir(parents=True)
        (tmp_path / "molecule" / name / "molecule.yml").write_text("---\n")
    (tmp_path / "molecule" / "_shared").mkdir()  # no molecule.yml: not a scenario
    assert stages.scenario_dirs(tmp_path) == ["default", "e2e", "gpu"]
    with pytest.raises(stages.PlanError, match="scenarios that no stage runs: gpu"):
        stages.check_scenarios(["default", "e2e"], stages.scenario_dirs(tmp_path))


@pytest.mark.parametrize(
    ("listed", "message"),
    [(["default", "gone"], "names no scenario directory: gone"), (["default", "default"], "repeats default")],
)
def test_a_list_that_does_not_match_the_directories_is_refused(listed, message):
    with pytest.raises(stages.PlanError, match=message):
        stages.check_scenarios(listed, ["default"])


def test_the_scenario_list_is_read_across_continuation_lines(tmp_path):
    makefile = tmp_path / "Makefile"
    makefile.write_text("X := 1\nMOLECULE_SCENARIOS := default \\\n  e2e\n\nall:\n\techo\n")
    assert stages.listed_scenarios(makefile) == ["default", "e2e"]
    makefile.write_text("all:\n")
    with pytest.raises(stages.PlanError, match="sets no MOLECULE_SCENARIOS"):
        stages.listed_scenarios(makefile)


def test_the_plan_runs_one_stage_per_scenario_and_waits_only_where_needed():
    plan = stages.plan(["default", "e2e", "gpu"])
    assert [stage.name for stage in plan] == [
        "bootstrap",
        "lint",
        "verify steps",
        "unit",
        "collection build",
        "integration",
        "molecule default",
        "molecule e2e",
        "molecule gpu",
    ]
    by_name = {stage.name: stage for stage in plan}
    assert by_name["molecule gpu"].argv == ("molecule", "test", "-s", "gpu")
    assert by_name["lint"].needs == by_name["unit"].needs == ()
    assert "cuda wheelhouse" in by_name["molecule gpu"].needs
    assert "lab venv and model" in by_name["molecule e2e"].needs
    assert stages.needed_prefetches(plan) == ["base root", "lab venv and model", "cuda wheelhouse"]
    # without a gpu scenario nothing waits for the CUDA wheelhouse, so it is not fetched
    assert "cuda wheelhouse" not in stages.needed_prefetches(stages.plan(["default", "e2e"]))
    assert set(stages.needed_prefetches(plan)) <= set(stages.PREFETCH_TARGETS)


def test_every_pytest_run_audits_its_skips_and_every_scenario_its_verify_step():
    by_name = {stage.name: stage for stage in stages.plan(["default", "gpu"])}
    assert by_name["verify steps"].argv[-3:] == ("scenarios", "default", "gpu")
    assert Path(by_name["verify steps"].argv[1]) == REPO / "scripts" / "audit_tests.py"
    for name in ("unit", "collection build", "integration", "molecule default", "molecule gpu"):
        assert by_name[name].env["LLMFLEET_STRICT_SKIPS"] == "1", name
    # testinfra runs inside molecule, outside tests/: molecule/conftest.py loads the audit there
    conftest = (REPO / "molecule" / "conftest.py").read_text()
    assert 'pytest_plugins = ["audit_tests"]' in conftest
    assert by_name["lint"].env == by_name["bootstrap"].env == {}


def test_a_stage_sets_its_variables_over_the_ones_it_inherits():
    env = {"PYTEST_ADDOPTS": "-x", "LLMFLEET_STRICT_SKIPS": "0", "HOME": "/root", "PATH": "/usr/bin"}
    merged = stages.stage_environ(stages.STRICT_SKIPS, env)
    assert merged == {
        "PYTEST_ADDOPTS": "-x",
        "LLMFLEET_STRICT_SKIPS": "1",
        "HOME": "/root",
        "PATH": f"{REPO / '.venv' / 'bin'}:/usr/bin",
    }


def test_the_venv_comes_first_on_path_even_behind_a_launcher_that_put_its_own_python_first():
    """A pyenv shim running this script puts its Python's bin (with a pytest lacking testinfra) first."""
    venv_bin = str(REPO / ".venv" / "bin")
    inherited = {"PATH": f"/root/.pyenv/versions/3.12.1/bin:{venv_bin}:/usr/bin"}
    path = stages.stage_environ({}, inherited)["PATH"].split(":")
    assert path == [venv_bin, "/root/.pyenv/versions/3.12.1/bin", "/usr/bin"]


def test_the_prefetch_targets_exist_in_the_makefile():
    text = (REPO / "Makefile").read_text()
    for target in stages.PREFETCH_TARGETS.values():
        assert f"\n{target}:" in text


# ---- running ------------------------------------------------------------------------------------
def run(plan, prefetches, tmp_path):
    out = io.StringIO()
    results, fetched = stages.run(plan, prefetches, tmp_path / "logs", out=out)
    return results, fetched, out.getvalue()


def test_a_stage_starts_only_once_the_prefetch_it_needs_is_done(tmp_path):
    flag = tmp_path / "fetched"
    plan = [
        stages.Stage("bootstrap", sh("true")),
        stages.Stage("lint", sh("true")),
        stages.Stage("integration", sh(f"test -f {flag}"), ("root",)),
    ]
    results, fetched, _ = run(plan, {"root": sh(f"sleep 0.3; touch {flag}")}, tmp_path)
    assert [r.status for r in results] == ["ok", "ok", "ok"]
    assert [(r.name, r.status) for r in fetched] == [("root", "ok")]
    assert set(results[2].waited) == {"root"}
    assert fetched[0].seconds is not None and fetched[0].started_at is not None


def test_a_stage_command_runs_with_the_stage_environment(tmp_path):
    plan = [
        stages.Stage("unit", sh('test "$STAGE_PROBE" = 1'), env={"STAGE_PROBE": "1"}),
        stages.Stage("lint", sh('test -z "$STAGE_PROBE"')),  # only for the stage that sets it
    ]
    results, _, _ = run(plan, {}, tmp_path)
    assert [r.status for r in results] == ["ok", "ok"]


def test_a_failed_prefetch_does_not_fail_the_run(tmp_path):
    plan = [stages.Stage("bootstrap", sh("true")), stages.Stage("integration", sh("true"), ("root",))]
    results, fetched, out = run(plan, {"root": sh("echo no mirror; exit 3")}, tmp_path)
    assert [r.status for r in results] == ["ok", "ok"]
    assert fetched[0].status == "failed (exit 3)"
    assert "prefetch root failed (exit 3); integration builds it itself" in out
    assert "no mirror" in out  # the tail of its log


def test_a_failed_stage_stops_the_run_and_the_prefetches(tmp_path):
    plan = [
        stages.Stage("bootstrap", sh("true")),
        stages.Stage("lint", sh("exit 2")),
        stages.Stage("molecule gpu", sh("true"), ("cuda",)),
    ]
    results, fetched, _ = run(plan, {"cuda": sh("sleep 60")}, tmp_path)
    assert [r.status for r in results] == ["ok", "failed (exit 2)", "not run"]
    assert fetched[0].status == "stopped"
    assert stages.failed_stage(results) == "lint"


def test_nothing_is_prefetched_when_bootstrap_fails(tmp_path):
    plan = [stages.Stage("bootstrap", sh("exit 1")), stages.Stage("integration", sh("true"), ("root",))]
    results, fetched, _ = run(plan, {"root": sh("true")}, tmp_path)
    assert [r.status for r in results] == ["failed (exit 1)", "not run"]
    assert fetched == []


# ---- the report ---------------------------------------------------------------------------------
def test_the_table_and_the_json_name_the_failed_stage(tmp_path):
    results = [
        stages.Result("bootstrap", "stage", "ok", 1.5),
        stages.Result("integration", "stage", "failed (exit 1)", 300.0, waited={"root": 12.0}),
        stages.Result("molecule e2e", "stage"),
    ]
    fetched = [stages.Result("root", "prefetch", "ok", 50.0, started_at=1.3, log="/logs/prefetch-root.log")]
    text = stages.table(results, fetched, 400.0)
    lines = text.splitlines()
    assert lines[0].split() == ["stage", "result", "seconds", "notes"]
    assert lines[1].split() == ["bootstrap", "ok", "1.5"]
    assert "waited 12.0 s for root" in lines[2]
    assert lines[3].split() == ["molecule", "e2e", "not", "run"]
    assert lines[4].startswith("prefetch root") and "log /logs/prefetch-root.log" in lines[4]
    assert lines[-1].endswith("FAILED at stage integration")
    data = json.loads(json.dumps(stages.report(results, fetched, 400.0)))
    assert data["failed_stage"] == "integration"
    assert [s["name"] for s in data["stages"]] == ["bootstrap", "integration", "molecule e2e"]
    assert data["prefetches"][0]["status"] == "ok"


def test_a_passing_run_says_so():
    text = stages.table([stages.Result("unit", "stage", "ok", 3.0)], [], 3.0)
    assert text.splitlines()[-1].endswith("all stages passed")


def test_a_prefetch_takes_the_time_until_it_exits_not_until_a_stage_asks_for_it(tmp_path):
    now = [10.0]
    job = stages.Prefetch("x", ("true",), tmp_path / "x.log", lambda: now[0])
    job.process.wait()
    for _ in range(500):  # the watcher notes the end right after the exit
        if job.ended is not None:
            break
        time.sleep(0.01)
    now[0] = 500.0  # a long stage later
    assert job.wait().seconds == 0.0
