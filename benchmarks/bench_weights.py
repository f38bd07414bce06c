"""Benchmark the model weights path against the hub double (its own process) and on the test fleet.

    .venv/bin/python benchmarks/bench_weights.py [--size-mb 2048] [--shards 8] [--fleet-size-mb 64]
                                                 [--skip-fleet] [--sources modelscope huggingface] [--json out.json]

Figures:

The repository is model-like: --shards shards of random data (--size-mb in all) and small files.

- throughput: the same files fetched by one plain ``curl`` run (every URL in one process, one after the
  other, redirects followed, no hashing) and by model_snapshot (a process, as Ansible runs it; it also checks every byte
  against the listing's sha256 and writes a manifest; 4 files at a time, its default), each into an empty
  directory. ``ratio`` is curl's wall time over the module's (goal >= 0.8); ``net ratio`` leaves out the
  module's fixed cost (process start, imports, the revision and listing requests), measured by a run that
  fetches only the small files. The double is pinned to the first CPU and the clients to the others, so
  that the double (a Python server on the same machine) and the client under test do not compete for a
  CPU, which a real hub on the network never does; each figure is the best of --rounds runs.
- resume overhead: the module (one worker per shard, so that every shard is under way) is killed once
  the double has sent half of every shard; the re-run's
  bytes on the wire over what was still missing on disk (1.0 is ideal), and its time over the
  uninterrupted run's time for the same bytes plus the fixed cost.
- upstream bytes per fleet: the model_weights role (distribution controller, the default) on a fresh test
  fleet, for 1 and for 3 hosts: bytes the double served over the snapshot's size (1.0 is one download
  for the whole fleet), and the role's wall time. Needs root (lab/fleet.py); skipped with --skip-fleet.

Everything runs in a temporary directory (about 4 x --size-mb of disk) and is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from _common import machine, publish  # noqa: E402
from hubdouble.content import make_model_repo, tree_bytes  # noqa: E402
from hubdouble.fixture import HubDouble, running_double  # noqa: E402
from hubdouble.snapshot_module import run_module, running_module  # noqa: E402

MODEL = "bench/weights"
FLEET_MODEL = "bench/fleet"
FLEET = "bench-weights"
MiB = 1024 * 1024
BIN = Path(sys.executable).parent
CPUS = sorted(os.sched_getaffinity(0))
# The double on the first CPU, everything measured on the others (all of them on a single-CPU machine).
DOUBLE_CPUS = set(CPUS[:1])
CLIENT_CPUS = set(CPUS[1:]) or set(CPUS)


def pin_client() -> None:
    os.sched_setaffinity(0, CLIENT_CPUS)


# ---- curl ------------------------------------------------------------------------------------------------------
def file_url(double: HubDouble, source: str, path: str) -> str:
    if source == "modelscope":
        return f"{double.url}/api/v1/models/{MODEL}/repo?Revision=master&FilePath={quote_plus(path)}"
    return f"{double.url}/{MODEL}/resolve/main/{quote(path)}"


def run_curl(double: HubDouble, source: str, files: list[str], out: Path) -> float:
    out.mkdir(parents=True)
    argv = ["curl", "--silent", "--show-error", "--fail", "--location"]
    for index, path in enumerate(files):
        argv += ["-o", str(out / f"{index}"), file_url(double, source, path)]
    began = time.perf_counter()
    subprocess.run(argv, check=True, preexec_fn=pin_client)
    elapsed = time.perf_counter() - began
    shutil.rmtree(out)
    return elapsed


# ---- resume ----------------------------------------------------------------------------------------------------
def kill_at_half(double: HubDouble, args: dict[str, Any], workdir: Path, shards: dict[str, int]) -> int:
    """Start the module, kill it once the double has sent half of every shard and the client wrote it; return
    the bytes it left on disk (complete and partial files)."""
    double.set_faults(
        {"kind": "stall", "path": "*.safetensors", "after_bytes": min(shards.values()) // 2, "seconds": 300,
         "times": len(shards)}
    )  # fmt: skip
    staging = Path(args["models_root"]) / ".staging"
    on_disk = 0
    with running_module(args, workdir, pin_client):
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            sent = double.file_stats(MODEL)
            if all(sent.get(path, {}).get("bytes", 0) >= size // 2 for path, size in shards.items()):
                time.sleep(1)
                on_disk = sum(
                    p.stat().st_size for p in staging.rglob("*") if p.is_file() and "journal" not in p.name
                )
                break
            time.sleep(0.1)
    double.reset(faults=True)
    return on_disk


def bench_source(source: str, double: HubDouble, repo: Path, workdir: Path, rounds: int) -> dict[str, Any]:
    files = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file())
    shards = {f: (repo / f).stat().st_size for f in files if f.endswith(".safetensors")}
    total = tree_bytes(repo)
    root = workdir / f"models-{source}"
    args = {"model": MODEL, "source": source, "endpoint": double.url, "models_root": str(root)}
    figures: dict[str, Any] = {"source": source, "snapshot_bytes": total}

    curl_times, fixed_times, module_times = [], [], []
    for _round in range(rounds):
        double.reset()
        curl_times.append(run_curl(double, source, files, workdir / "curl"))
        figures["curl_wire_bytes"] = double.stats()["bytes_total"]
        _small, fixed = run_module(dict(args, allow_patterns=["*.json", "*.md"]), workdir, pin_client)
        fixed_times.append(fixed)
        shutil.rmtree(root)
        double.reset()
        result, module_s = run_module(args, workdir, pin_client)
        module_times.append(module_s)
        figures["module_wire_bytes"] = double.stats()["bytes_total"]
        assert result["total_bytes"] == total
        shutil.rmtree(root)
    curl_s, fixed, module_s = min(curl_times), min(fixed_times), min(module_times)
    figures["curl_s"] = round(curl_s, 2)
    figures["curl_MBps"] = round(total / MiB / curl_s, 1)
    figures["module_fixed_s"] = round(fixed, 2)
    figures["module_s"] = round(module_s, 2)
    figures["module_MBps"] = round(total / MiB / module_s, 1)
    figures["ratio"] = round(curl_s / module_s, 2)
    figures["net_ratio"] = round(curl_s / max(module_s - fixed, 1e-6), 2)

    double.reset()
    resume_args = dict(args, workers=len(shards))
    on_disk = kill_at_half(double, resume_args, workdir, shards)
    double.reset()
    _result, rerun_s = run_module(resume_args, workdir, pin_client)
    wire = double.stats()["bytes_total"]
    remainder = total - on_disk
    expected_s = fixed + (module_s - fixed) * remainder / total
    figures["resume_on_disk_bytes"] = on_disk
    figures["resume_wire_bytes"] = wire
    figures["resume_wire_over_remainder"] = round(wire / remainder, 4)
    figures["resume_s"] = round(rerun_s, 2)
    figures["resume_time_over_expected"] = round(rerun_s / expected_s, 2)
    shutil.rmtree(root)
    return figures


# ---- the role on a test fleet ----------------------------------------------------------------------------------
def fleet_create(hosts: int) -> list[dict[str, Any]]:
    spec = {"fleet": FLEET, "hosts": [{"name": f"{FLEET}-{i}", "cpus": str(i % 2)} for i in range(hosts)]}
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "lab" / "fleet.py"), "create", "--spec", "-"],
        input=json.dumps(spec), text=True, capture_output=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)


def fleet_destroy() -> None:
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "lab" / "fleet.py"), "destroy", "--fleet", FLEET],
        capture_output=True, check=False,
    )  # fmt: skip


def run_role(instances: list[dict[str, Any]], limit: int, double: HubDouble, workdir: Path) -> float:
    """The role on the first ``limit`` hosts, with a fresh controller cache and a fresh models root."""
    hosts = {
        i["instance"]: {"ansible_host": i["address"], "ansible_user": i["user"],
                        "ansible_ssh_private_key_file": i["identity_file"]}
        for i in instances[:limit]
    }  # fmt: skip
    group_vars = {
        "model_weights_repo_id": FLEET_MODEL,
        "model_weights_endpoint": double.url,
        "model_weights_controller_cache": str(workdir / f"controller-{limit}"),
        "model_weights_root": f"/srv/bench-weights-{limit}",
    }
    inventory = workdir / f"fleet-{limit}.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts, "vars": group_vars}}))
    playbook = workdir / "weights.yml"
    playbook.write_text(
        "- hosts: all\n  become: true\n  gather_facts: false\n  roles: [llmfleet.serve.model_weights]\n"
    )
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"))
    began = time.perf_counter()
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)],
        cwd=REPO_ROOT, env=env, text=True, capture_output=True, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - began
    if result.returncode != 0:
        raise RuntimeError(
            f"the role failed on {limit} host(s):\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}"
        )
    return elapsed


def bench_fleet(double: HubDouble, repo: Path, workdir: Path) -> list[dict[str, Any]]:
    total = tree_bytes(repo)
    figures = []
    try:
        instances = fleet_create(3)
        for hosts in (1, 3):
            double.reset()
            elapsed = run_role(instances, hosts, double, workdir)
            served = double.stats()["bytes_total"]
            figures.append(
                {
                    "hosts": hosts,
                    "snapshot_bytes": total,
                    "upstream_bytes": served,
                    "upstream_over_snapshot": round(served / total, 3),
                    "role_s": round(elapsed, 1),
                }
            )
    finally:
        fleet_destroy()
    return figures


def table(args: argparse.Namespace, results: list[dict[str, Any]], fleet: list[dict[str, Any]]) -> list[str]:
    title = (
        f"model weights through the hub double: {args.shards} shards, {args.size_mb} MB in all, and small files; "
        f"{os.cpu_count()} CPUs"
    )
    header = (
        f"{'source':<12} {'curl':>12} {'module':>12} {'ratio':>6} {'net ratio':>10} "
        f"{'resume bytes/remainder':>23} {'resume time/expected':>21}"
    )
    throughput = [
        f"{r['source']:<12} {r['curl_MBps']:>7.1f} MB/s {r['module_MBps']:>7.1f} MB/s {r['ratio']:>6.2f} "
        f"{r['net_ratio']:>10.2f} {r['resume_wire_over_remainder']:>23.4f} {r['resume_time_over_expected']:>21.2f}"
        for r in results
    ]
    fleets = [
        f"fleet of {f['hosts']}: upstream {f['upstream_bytes']} bytes for a {f['snapshot_bytes']}-byte snapshot "
        f"({f['upstream_over_snapshot']:.3f} x), role {f['role_s']} s"
        for f in fleet
    ]
    return [title, header, *throughput, *fleets]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=2048, help="size of all shards (default 2048)")
    parser.add_argument("--shards", type=int, default=8, help="number of shards (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="throughput runs, best kept (default 2)")
    parser.add_argument(
        "--fleet-size-mb", type=int, default=64, help="big shard for the fleet runs (default 64)"
    )
    parser.add_argument("--sources", nargs="+", default=["modelscope", "huggingface"])
    parser.add_argument("--skip-fleet", action="store_true", help="no test fleet (no root needed)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-weights-", ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp)
        hubroot = workdir / "hub"
        repo = make_model_repo(
            hubroot, MODEL, "master", shards=args.shards, shard_size=args.size_mb * MiB // args.shards
        )
        fleet_repo = make_model_repo(
            hubroot, FLEET_MODEL, "master", shards=2, shard_size=args.fleet_size_mb * MiB // 2
        )
        with running_double(hubroot, process=True) as double:
            assert double._process is not None
            os.sched_setaffinity(double._process.pid, DOUBLE_CPUS)
            double.warm_up(MODEL, FLEET_MODEL)
            results = [bench_source(source, double, repo, workdir, args.rounds) for source in args.sources]
            fleet = [] if args.skip_fleet else bench_fleet(double, fleet_repo, workdir)

    report = {
        "machine": machine(),
        "double_cpus": sorted(DOUBLE_CPUS),
        "client_cpus": sorted(CLIENT_CPUS),
        "shard_mb": args.size_mb,
        "throughput_and_resume": results,
        "fleet": fleet,
    }
    publish(report, args.json, table(args, results, fleet))
    return 0


if __name__ == "__main__":
    sys.exit(main())
