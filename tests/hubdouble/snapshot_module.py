"""The model_snapshot module as its own process, the way Ansible runs it (its arguments in a JSON file)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE = "ansible_collections.llmfleet.serve.plugins.modules.model_snapshot"


def module_process(
    args: dict[str, Any], workdir: Path, preexec_fn: Callable[[], None] | None = None
) -> subprocess.Popen[bytes]:
    """Start the module with ``workdir/home`` as its home, in a session of its own (kill it with killpg)."""
    args_file = workdir / f"args-{time.monotonic_ns()}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / ".collections"), HOME=str(workdir / "home"))
    return subprocess.Popen(
        [sys.executable, "-m", MODULE, str(args_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )


@contextlib.contextmanager
def running_module(
    args: dict[str, Any], workdir: Path, preexec_fn: Callable[[], None] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """The module as its own process while the ``with`` block runs; killed, with all it started, at its end."""
    process = module_process(args, workdir, preexec_fn)
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def module_result(
    args: dict[str, Any], workdir: Path, preexec_fn: Callable[[], None] | None = None
) -> tuple[dict[str, Any], str, float]:
    """The module's result, failed or not, the end of its stderr, and its wall time."""
    began = time.perf_counter()
    process = module_process(args, workdir, preexec_fn)
    out, err = process.communicate()
    return json.loads(out), err.decode()[-2000:], time.perf_counter() - began


def run_module(
    args: dict[str, Any], workdir: Path, preexec_fn: Callable[[], None] | None = None
) -> tuple[dict[str, Any], float]:
    """The module's result and its wall time; a failed run raises RuntimeError with the end of its stderr."""
    result, err, elapsed = module_result(args, workdir, preexec_fn)
    if result.get("failed"):
        raise RuntimeError(f"module failed: {result.get('msg')}\n{err}")
    return result, elapsed
