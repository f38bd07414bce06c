#!/usr/bin/env python3
"""Run every test as timed stages, with the long downloads and builds prefetched in the background.

    python3 scripts/stages.py [--json .cache/stages.json] [--logs .cache/stages]

The stages run one after another and stop at the first failure: bootstrap, lint, verify steps,
unit, collection build, integration, then one stage per molecule scenario, in the order of the
Makefile's MOLECULE_SCENARIOS (which must name every directory under molecule/ with a molecule.yml).

Every test must run: "verify steps" fails when a scenario's verify would check nothing, and the
pytest runs (unit, collection build, integration, and the testinfra verifiers inside molecule)
fail on a skip that tests/expected_skips.yml does not name (scripts/audit_tests.py).

Once bootstrap is done, the prefetches that the planned stages need start in the background
(their output goes to <logs>/prefetch-<name>.log): the test fleet's base root, the lab's vLLM
venv and model, and the CUDA wheelhouse of the gpu scenario. A stage first waits for the ones it
needs. A failed prefetch fails nothing by itself: the stage that needs it builds it again and
reports what goes wrong. Prefetches still running when a stage fails are stopped.

At the end, also after a failure, a table of wall-clock times is printed and written as JSON.
Runs on the system's Python 3.11 (before bootstrap has made .venv), standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

REPO = Path(__file__).resolve().parents[1]
MAKE = ("make", "--no-print-directory")

# The background jobs, by name: the make target that runs each one.
PREFETCH_TARGETS = {
    "base root": "prefetch-root",
    "lab venv and model": "prefetch-lab",
    "cuda wheelhouse": "prefetch-cuda",
}
# Every scenario boots test hosts from the base root; these need more.
SCENARIO_NEEDS = {
    "e2e": ("lab venv and model",),  # the tiny model, and the CPU wheelhouse the lab venv comes from
    "gpu": ("cuda wheelhouse",),
}
# Prefetches start once this stage has passed (they run from the environment it makes).
START_PREFETCH_AFTER = "bootstrap"
# The pytest runs fail on a skip that tests/expected_skips.yml does not name (tests/conftest.py and,
# for molecule's testinfra verifiers, molecule/conftest.py load the audit).
VENV_BIN = REPO / ".venv" / "bin"
VENV_PYTHON = VENV_BIN / "python"
AUDIT = REPO / "scripts" / "audit_tests.py"
STRICT_SKIPS = {"LLMFLEET_STRICT_SKIPS": "1"}


class PlanError(RuntimeError):
    """The stage list does not match the repository."""


@dataclass(frozen=True)
class Stage:
    name: str
    argv: tuple[str, ...]
    needs: tuple[str, ...] = ()  # names of prefetches to wait for
    env: dict[str, str] = field(default_factory=dict)  # set for the stage's command


@dataclass
class Result:
    name: str
    kind: str  # stage or prefetch
    status: str = "not run"  # ok, failed (exit N), not run; prefetches also: running, stopped
    seconds: float | None = None
    started_at: float | None = None  # seconds since the run began
    waited: dict[str, float] = field(default_factory=dict)  # stage: prefetch name -> seconds waited
    log: str | None = None


# ---- the plan ---------------------------------------------------------------------------------
def listed_scenarios(makefile: Path) -> list[str]:
    """The words of ``MOLECULE_SCENARIOS := ...`` (continuation lines included)."""
    text = makefile.read_text().replace("\\\n", " ")
    match = re.search(r"^MOLECULE_SCENARIOS\s*:?=(.*)$", text, re.MULTILINE)
    if not match:
        raise PlanError(f"{makefile} sets no MOLECULE_SCENARIOS")
    return match.group(1).split()


def scenario_dirs(repo: Path) -> list[str]:
    """Every molecule scenario of the repository: the directories under molecule/ with a molecule.yml."""
    return sorted(path.parent.name for path in (repo / "molecule").glob("*/molecule.yml"))


def check_scenarios(listed: list[str], present: list[str]) -> None:
    problems = []
    if missing := sorted(set(present) - set(listed)):
        problems.append(
            f"scenarios that no stage runs: {', '.join(missing)} (add them to MOLECULE_SCENARIOS)"
        )
    if unknown := sorted(set(listed) - set(present)):
        problems.append(f"MOLECULE_SCENARIOS names no scenario directory: {', '.join(unknown)}")
    if repeated := sorted({name for name in listed if listed.count(name) > 1}):
        problems.append(f"MOLECULE_SCENARIOS repeats {', '.join(repeated)}")
    if problems:
        raise PlanError("; ".join(problems))


def plan(scenarios: list[str]) -> list[Stage]:
    def make(target: str) -> tuple[str, ...]:
        return (*MAKE, target)

    stages = [
        Stage("bootstrap", make("bootstrap")),
        Stage("lint", make("lint")),
        Stage("verify steps", (str(VENV_PYTHON), str(AUDIT), "scenarios", *scenarios)),
        Stage("unit", make("unit"), env=STRICT_SKIPS),
        Stage("collection build", make("build"), env=STRICT_SKIPS),
        Stage("integration", make("integration"), ("base root", "lab venv and model"), STRICT_SKIPS),
    ]
    stages += [
        Stage(
            f"molecule {name}",
            ("molecule", "test", "-s", name),
            ("base root", *SCENARIO_NEEDS.get(name, ())),
            STRICT_SKIPS,
        )
        for name in scenarios
    ]
    return stages


def stage_environ(env: dict[str, str], environ: dict[str, str]) -> dict[str, str]:
    """The environment of a stage's command: ``environ`` with ``env`` set, the project's venv first on PATH.

    On a fresh clone the venv does not exist yet when `make test` starts this script, so `python3`
    may be a pyenv shim, which puts its own Python's bin first on PATH: molecule would then run that
    Python's pytest, without testinfra, for its verifiers.
    """
    path = [entry for entry in environ.get("PATH", "").split(os.pathsep) if entry and entry != str(VENV_BIN)]
    return {**environ, **env, "PATH": os.pathsep.join([str(VENV_BIN), *path])}


def needed_prefetches(stages: list[Stage]) -> list[str]:
    """The prefetches some stage waits for, in the order they are first needed."""
    return list(dict.fromkeys(need for stage in stages for need in stage.needs))


# ---- running ----------------------------------------------------------------------------------
class Prefetch:
    """A background job in its own process group, its output in a log file."""

    def __init__(self, name: str, argv: tuple[str, ...], log: Path, clock: Callable[[], float]):
        self.clock = clock
        self.started = clock()
        self.result = Result(name, "prefetch", "running", started_at=self.started, log=str(log))
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0
            )
        # Its own time ends when it exits, not when a stage first asks for it.
        self.ended: float | None = None
        threading.Thread(target=self._note_end, daemon=True).start()

    def _note_end(self) -> None:
        self.process.wait()
        self.ended = self.clock()

    def wait(self) -> Result:
        if self.result.status == "running":
            code = self.process.wait()
            self._finish("ok" if code == 0 else f"failed (exit {code})")
        return self.result

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            self._finish("stopped")
        else:
            self.wait()

    def _finish(self, status: str) -> None:
        self.result.status = status
        ended = self.ended if self.ended is not None and status != "stopped" else self.clock()
        self.result.seconds = ended - self.started


def tail(path: str, lines: int = 20) -> str:
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])


def run(
    stages: list[Stage],
    prefetches: dict[str, tuple[str, ...]],
    logs: Path,
    out: TextIO = sys.stdout,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[Result], list[Result]]:
    """Run ``stages`` in order, with ``prefetches`` (name -> argv) in the background.

    Returns the stage results and the prefetch results.
    """
    begin = clock()

    def now() -> float:
        return clock() - begin

    results = [Result(stage.name, "stage") for stage in stages]
    running: dict[str, Prefetch] = {}
    try:
        for stage, result in zip(stages, results, strict=True):
            for need in stage.needs:
                if need in running:
                    waited_from = now()
                    done = running[need].wait()
                    result.waited[need] = now() - waited_from
                    if done.status != "ok":
                        print(
                            f"stages: prefetch {need} {done.status}; {stage.name} builds it itself", file=out
                        )
                        print(tail(done.log), file=out)
            print(f"stages: {stage.name}: {' '.join(stage.argv)}", file=out, flush=True)
            result.started_at = now()
            code = subprocess.run(
                stage.argv, check=False, env=stage_environ(stage.env, dict(os.environ))
            ).returncode
            result.seconds = now() - result.started_at
            result.status = "ok" if code == 0 else f"failed (exit {code})"
            if code != 0:
                break
            if stage.name == START_PREFETCH_AFTER:
                for name, argv in prefetches.items():
                    running[name] = Prefetch(name, argv, logs / f"prefetch-{slug(name)}.log", now)
    finally:
        for prefetch in running.values():
            prefetch.stop()
    return results, [prefetch.result for prefetch in running.values()]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# ---- the report -------------------------------------------------------------------------------
def failed_stage(stages: list[Result]) -> str | None:
    return next((result.name for result in stages if result.status.startswith("failed")), None)


def table(stages: list[Result], prefetches: list[Result], total: float) -> str:
    def seconds(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}"

    rows = [("stage", "result", "seconds", "notes")]
    for result in stages:
        waits = [f"waited {seconds(s)} s for {name}" for name, s in result.waited.items() if s >= 0.05]
        rows.append((result.name, result.status, seconds(result.seconds), "; ".join(waits)))
    for result in prefetches:
        note = f"background, from {seconds(result.started_at)} s; log {result.log}"
        rows.append((f"prefetch {result.name}", result.status, seconds(result.seconds), note))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [
        f"{name:<{widths[0]}}  {status:<{widths[1]}}  {secs:>{widths[2]}}  {notes}".rstrip()
        for name, status, secs, notes in rows
    ]
    failed = failed_stage(stages)
    verdict = f"FAILED at stage {failed}" if failed else "all stages passed"
    lines.append(f"total {total:.1f} s ({total / 60:.1f} min): {verdict}")
    return "\n".join(lines)


def report(stages: list[Result], prefetches: list[Result], total: float) -> dict:
    return {
        "total_seconds": round(total, 1),
        "failed_stage": failed_stage(stages),
        "stages": [asdict(result) for result in stages],
        "prefetches": [asdict(result) for result in prefetches],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--json", type=Path, default=REPO / ".cache" / "stages.json", help="where to write the times"
    )
    parser.add_argument("--logs", type=Path, default=REPO / ".cache" / "stages", help="prefetch logs")
    args = parser.parse_args(argv)
    # A terminated run (a CI timeout) still stops its prefetches: they run in process groups of their own.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        scenarios = listed_scenarios(REPO / "Makefile")
        check_scenarios(scenarios, scenario_dirs(REPO))
    except PlanError as exc:
        print(f"stages: {exc}", file=sys.stderr)
        return 2
    stages = plan(scenarios)
    prefetches = {name: (*MAKE, PREFETCH_TARGETS[name]) for name in needed_prefetches(stages)}
    begin = time.monotonic()
    stage_results, prefetch_results = run(stages, prefetches, args.logs)
    total = time.monotonic() - begin
    print("\n" + table(stage_results, prefetch_results, total), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report(stage_results, prefetch_results, total), indent=2) + "\n")
    return 1 if failed_stage(stage_results) else 0


if __name__ == "__main__":
    sys.exit(main())
