"""What the tiny model's context costs a lab server: a baseline build of the model against the
current one, served side by side in one run by the same vLLM venv.

    .venv/bin/python benchmarks/bench_tiny_context.py --baseline REV [--rounds 3] [--json FILE]

REV is a git revision whose ``lab/tinymodel/build.py`` makes the baseline model. Each round
starts one server per model, alternating (baseline first), with ``lab/serve_tiny.py``'s own
command line (``--max-model-len`` is the model's context) and environment, and measures:

- seconds from start to ``/health`` 200 (the compile cache is warmed by a first, unmeasured
  start of each model);
- the RSS of the server's process tree (its session: API server and engine core) once healthy,
  and its PSS (shared pages counted once).

Only one server runs at a time; each is stopped before the next starts.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine, publish

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lab"))
import serve_tiny as serve  # noqa: E402

SETTLE_S = 2.0  # after /health, for the engine's last allocations


def session_pids(sid: int, proc: Path = Path("/proc")) -> list[int]:
    """The processes of session ``sid`` (a server started with ``setsid`` leads its own)."""
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        # fields after the command name, which is in parentheses and may hold spaces
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid:
            pids.append(int(entry.name))
    return sorted(pids)


def memory_kib(pid: int, proc: Path = Path("/proc")) -> dict[str, int]:
    """Rss and Pss of one process, in KiB (from smaps_rollup); zeros if it is gone."""
    values = {"Rss": 0, "Pss": 0}
    try:
        lines = (proc / str(pid) / "smaps_rollup").read_text().splitlines()
    except OSError:
        return values
    for line in lines:
        key, _, rest = line.partition(":")
        if key in values:
            values[key] = int(rest.split()[0])
    return values


def tree_memory_mib(sid: int, proc: Path = Path("/proc")) -> dict[str, float]:
    """Summed Rss and Pss of a session's processes, in MiB."""
    per_pid = [memory_kib(pid, proc) for pid in session_pids(sid, proc)]
    return {key.lower(): sum(m[key] for m in per_pid) / 1024 for key in ("Rss", "Pss")}


def build_baseline(revision: str, out: Path) -> Path:
    """The model as ``revision``'s builder made it, written by that builder's own command line."""
    source = subprocess.run(
        ["git", "show", f"{revision}:lab/tinymodel/build.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    builder = out / "build_baseline.py"
    builder.write_text(source)
    subprocess.run(
        [sys.executable, str(builder), "--out", str(out / "model")], check=True, stdout=subprocess.DEVNULL
    )
    return out / "model"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_start(venv: Path, model: Path, workdir: Path) -> dict[str, float]:
    port = free_port()
    log_path = workdir / f"vllm-{port}.log"
    process = serve.start(serve.server_argv(venv, model, port), log_path)
    try:
        seconds = serve.wait_healthy(f"http://127.0.0.1:{port}", process.pid, log_path)
        time.sleep(SETTLE_S)
        return {"seconds_to_health": seconds, **tree_memory_mib(process.pid)}
    finally:
        serve.stop(process.pid)
        process.wait(timeout=30)


def ratio(new: list[float], old: list[float]) -> float:
    return statistics.median(new) / statistics.median(old)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="git revision of the baseline builder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="also write the report to this file")
    args = parser.parse_args()

    _, _, venv = serve.prepare()
    current = serve.prepare_model()
    with tempfile.TemporaryDirectory(prefix="bench-tiny-context-") as tmp:
        workdir = Path(tmp)
        models = {"baseline": build_baseline(args.baseline, workdir), "current": current}
        contexts = {name: serve.max_model_len(path) for name, path in models.items()}
        for path in models.values():  # warm the compile cache; not measured
            one_start(venv, path, workdir)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in models}
        for _ in range(args.rounds):
            for name, path in models.items():
                runs[name].append(one_start(venv, path, workdir))
                print(f"{name}: {runs[name][-1]}", file=sys.stderr, flush=True)

    def series(name: str, key: str) -> list[float]:
        return [run[key] for run in runs[name]]

    keys = ("seconds_to_health", "rss", "pss")
    ratios = {key: round(ratio(series("current", key), series("baseline", key)), 3) for key in keys}
    report = {
        "machine": machine(),
        "baseline": args.baseline,
        "contexts": contexts,
        "rounds": args.rounds,
        "runs": runs,
        "current_over_baseline_median": ratios,
    }
    table = [
        "| | baseline | current | current / baseline (medians) |",
        "| --- | --- | --- | --- |",
        f"| context (tokens) | {contexts['baseline']} | {contexts['current']} | |",
    ]
    for key, unit in zip(keys, ("s", "MiB", "MiB"), strict=True):
        old = ", ".join(f"{v:.1f}" for v in series("baseline", key))
        new = ", ".join(f"{v:.1f}" for v in series("current", key))
        table.append(f"| {key} ({unit}) | {old} | {new} | **{ratios[key]:.3f}** |")
    publish(report, args.json, table)


if __name__ == "__main__":
    main()
