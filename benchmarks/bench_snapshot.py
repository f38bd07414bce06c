"""Benchmark model_snapshot against the hub double (run as its own process) with the real hub clients.

Figures, per source (modelscope, huggingface):

- throughput: one shard of --size-mb MB downloaded by the module (a separate process, as Ansible runs it),
  and by the bare client's snapshot_download for comparison (the module also hashes every file it fetched);
- resume saving: the module process is killed when the double has sent half of the shard; the re-run's
  bytes on the wire divided by the shard's size (1.0 would mean starting again, 0.5 is the ideal);
- re-run on the complete snapshot: wall time of the module process, time of the snapshot logic in-process,
  and the snapshot files it opened (only the manifest: no file contents are read).

Run: ``.venv/bin/python benchmarks/bench_snapshot.py [--size-mb 500] [--json out.json]``.
Needs about 3 x size of free space in the temporary directory; everything is removed afterwards.
"""

from __future__ import annotations

import argparse
import builtins
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(REPO_ROOT / ".collections"))

from _common import machine, publish  # noqa: E402
from hubdouble.content import make_model_repo  # noqa: E402
from hubdouble.fixture import HubDouble, hub_env, running_double  # noqa: E402
from hubdouble.snapshot_module import run_module, running_module  # noqa: E402

MODEL = "bench/shard"
MiB = 1024 * 1024
SHARD = "model-00002-of-00002.safetensors"


def bare_client(source: str, double: HubDouble, workdir: Path) -> float:
    """The client's own snapshot_download in a fresh process, timed inside that process."""
    module = "modelscope" if source == "modelscope" else "huggingface_hub"
    code = (
        "import sys, time\n"
        f"from {module} import snapshot_download\n"
        "t = time.perf_counter()\n"
        f"snapshot_download({MODEL!r}, local_dir=sys.argv[1], endpoint={double.url!r})\n"
        "print(time.perf_counter() - t)\n"
    )
    home = workdir / "bare-home"
    home.mkdir(exist_ok=True)
    out = subprocess.run(
        [sys.executable, "-c", code, str(workdir / "bare-out")],
        env=hub_env(double, home),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    shutil.rmtree(workdir / "bare-out", ignore_errors=True)
    return float(out.strip().splitlines()[-1])


def kill_at_half(double: HubDouble, args: dict[str, Any], workdir: Path, size: int) -> int:
    """Start the module, kill it once the double has sent half the shard and the client wrote it; return
    the size of the partial file left behind."""
    double.set_faults({"kind": "stall", "path": SHARD, "after_bytes": size // 2, "seconds": 300, "times": 1})
    root = Path(args["models_root"])
    partial_size = 0
    with running_module(args, workdir):
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            partials = list(root.rglob(SHARD + ".incomplete")) if root.exists() else []
            if partials and double.file_bytes(MODEL, SHARD) >= size // 2:
                first = partials[0].stat().st_size
                time.sleep(0.5)
                partial_size = partials[0].stat().st_size
                if partial_size == first:
                    break
            time.sleep(0.1)
    double.reset(faults=True)
    return partial_size


def rerun_in_process(args: dict[str, Any]) -> tuple[float, list[str]]:
    """The snapshot logic on a complete snapshot, in this process, with the files it opens recorded."""
    from ansible_collections.llmfleet.serve.plugins.module_utils import hub_clients
    from ansible_collections.llmfleet.serve.plugins.module_utils import snapshot as sn

    request = sn.SnapshotRequest(
        model=args["model"], models_root=Path(args["models_root"]), revision=args["revision"]
    )
    under = str(Path(args["models_root"]) / "bench")
    opened: list[str] = []
    real_open = builtins.open

    def spy(file, *a, **kw):
        if isinstance(file, (str, os.PathLike)) and os.fspath(file).startswith(under):
            opened.append(Path(os.fspath(file)).name)
        return real_open(file, *a, **kw)

    builtins.open, io.open = spy, spy
    try:
        began = time.perf_counter()
        result = sn.sync_snapshot(
            request,
            lambda home: hub_clients.make_source(args["source"], home, endpoint=args["endpoint"]),
        )
        elapsed = time.perf_counter() - began
    finally:
        builtins.open, io.open = real_open, real_open
    assert not result.changed
    return elapsed, opened


def bench_source(source: str, double: HubDouble, workdir: Path, size: int) -> dict[str, Any]:
    figures: dict[str, Any] = {"source": source}
    root = workdir / f"models-{source}"
    args = {"model": MODEL, "source": source, "endpoint": double.url, "models_root": str(root)}

    figures["bare_client_s"] = round(bare_client(source, double, workdir), 2)
    figures["bare_client_MBps"] = round(size / MiB / figures["bare_client_s"], 1)

    # The module's fixed cost (process start, imports, hub requests): a run that fetches only the small files.
    _small, fixed = run_module(dict(args, allow_patterns=["*.json", "*.md"]), workdir)
    shutil.rmtree(root)
    double.reset()
    result, elapsed = run_module(args, workdir)
    figures["module_fixed_s"] = round(fixed, 2)
    figures["module_download_s"] = round(elapsed, 2)
    figures["module_MBps"] = round(result["total_bytes"] / MiB / elapsed, 1)
    figures["module_net_MBps"] = round(size / MiB / max(elapsed - fixed, 1e-6), 1)
    figures["wire_bytes_first_run"] = double.stats()["bytes_total"]
    commit = result["revision"]

    double.reset()
    result, elapsed = run_module(dict(args, revision=commit), workdir)
    figures["rerun_module_process_s"] = round(elapsed, 2)
    figures["rerun_changed"] = result["changed"]
    figures["rerun_hub_requests"] = double.stats()["requests"]["total"]
    in_process_s, opened = rerun_in_process(dict(args, revision=commit))
    figures["rerun_logic_ms"] = round(in_process_s * 1000, 1)
    figures["rerun_files_opened"] = opened

    shutil.rmtree(root)
    double.reset()
    partial = kill_at_half(double, args, workdir, size)
    double.reset()
    result, elapsed = run_module(args, workdir)
    shard_bytes = double.file_bytes(MODEL, SHARD)
    figures["resume_partial_kept_bytes"] = partial
    figures["resume_second_run_shard_bytes"] = shard_bytes
    figures["resume_second_run_ratio"] = round(shard_bytes / size, 3)
    figures["resume_second_run_s"] = round(elapsed, 2)
    shutil.rmtree(root)
    return figures


def table(size_mb: int, results: list[dict[str, Any]]) -> list[str]:
    title = f"model_snapshot through the hub double, one {size_mb} MB shard (+ 5 small files), {os.cpu_count()} CPUs"
    header = (
        f"{'source':<12} {'bare client':>14} {'module':>14} {'module net':>14} {'resume ratio':>13} "
        f"{'re-run (process)':>17} {'re-run (logic)':>15}  files opened on re-run"
    )
    return [title, header] + [
        f"{r['source']:<12} {r['bare_client_MBps']:>9.1f} MB/s {r['module_MBps']:>9.1f} MB/s "
        f"{r['module_net_MBps']:>9.1f} MB/s {r['resume_second_run_ratio']:>13.3f} "
        f"{r['rerun_module_process_s']:>15.2f} s {r['rerun_logic_ms']:>12.1f} ms  "
        f"{', '.join(r['rerun_files_opened'])}"
        for r in results
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=500, help="size of the big shard (default 500)")
    parser.add_argument("--sources", nargs="+", default=["modelscope", "huggingface"])
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    size = args.size_mb * MiB

    with tempfile.TemporaryDirectory(prefix="bench-snapshot-", ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp)
        hubroot = workdir / "hub"
        make_model_repo(hubroot, MODEL, "master", shards=1, shard_size=MiB, sparse_shard_size=size)
        with running_double(hubroot, process=True) as double:
            double.warm_up(MODEL)
            results = [bench_source(source, double, workdir, size) for source in args.sources]

    report = {
        "machine": machine(),
        "shard_mb": args.size_mb,
        "results": results,
    }
    publish(report, args.json, table(args.size_mb, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
