"""Start the hub double for tests: in a thread (fast, default) or as a subprocess (own GIL, killable).

Use from a conftest::

    from hubdouble.fixture import hub_double  # noqa: F401  (registers the fixture)

The fixture yields a :class:`HubDouble` serving a fresh temporary root on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .server import HubDoubleServer

REPO_ROOT = Path(__file__).resolve().parents[2]


class HubDouble:
    """Handle on a running double: its URL, its content root and its control endpoints."""

    def __init__(self, url: str, root: Path) -> None:
        self.url = url
        self.root = root
        self._server: HubDoubleServer | None = None
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------
    @classmethod
    def start_thread(cls, root: Path, host: str = "127.0.0.1", cdn_url: str | None = None) -> HubDouble:
        server = HubDoubleServer((host, 0), root, cdn_url=cdn_url)
        double = cls(server.url, root)
        double._server = server
        double._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        double._thread.start()
        return double

    @classmethod
    def start_process(
        cls, root: Path, host: str = "127.0.0.1", extra_args: list[str] | None = None
    ) -> HubDouble:
        with tempfile.TemporaryDirectory() as tmp:
            port_file = Path(tmp) / "port"
            argv = [sys.executable, "-m", "tests.hubdouble.server", "--root", str(root), "--host", host]
            argv += ["--port", "0", "--port-file", str(port_file), *(extra_args or [])]
            process = subprocess.Popen(argv, cwd=REPO_ROOT, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 20
            while not (port_file.exists() and port_file.read_text()):
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    raise RuntimeError("hub double did not start")
                time.sleep(0.05)
            port = int(port_file.read_text())
        double = cls(f"http://{host}:{port}", root)
        double._process = process
        double.wait_ready()
        return double

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def wait_ready(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._call("GET", "health")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def warm_up(self, *repo_ids: str, timeout: float = 600) -> None:
        """Have the double hash these repositories now, not in a measurement: it hashes a repository once,
        on the first request that lists it."""
        for repo_id in repo_ids:
            url = f"{self.url}/api/models/{repo_id}/revision/main"
            with urllib.request.urlopen(url, timeout=timeout) as response:
                assert json.loads(response.read())["sha"]

    # -- control -------------------------------------------------------------------------------------------
    def _call(self, method: str, what: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/_double/{what}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "stats")

    def reset(self, faults: bool = True) -> None:
        self._call("POST", "reset", {"faults": faults})

    def set_faults(self, *faults: dict[str, Any], append: bool = False) -> list[dict[str, Any]]:
        return self._call("POST", "faults", {"faults": list(faults), "append": append})["faults"]

    def set_tokens(
        self, tokens: dict[str, str], private: list[str] | None = None, accounts: list[str] | None = None
    ) -> None:
        """``tokens``: each repository's token (the repository is gated, or private when ``private`` lists it);
        ``accounts``: further tokens the hub knows, which see no restricted repository."""
        self._call("POST", "auth", {"tokens": tokens, "private": private or [], "accounts": accounts or []})

    # -- counters ------------------------------------------------------------------------------------------
    def file_stats(self, repo_id: str) -> dict[str, dict[str, Any]]:
        return self.stats()["files"].get(repo_id, {})

    def file_bytes(self, repo_id: str, path: str | None = None) -> int:
        files = self.file_stats(repo_id)
        if path is not None:
            return files.get(path, {}).get("bytes", 0)
        return sum(entry["bytes"] for entry in files.values())

    def file_requests(self, repo_id: str) -> dict[str, int]:
        return {
            path: entry["requests"] for path, entry in self.file_stats(repo_id).items() if entry["requests"]
        }


@contextlib.contextmanager
def running_double(root: Path, process: bool = False) -> Iterator[HubDouble]:
    """A double serving ``root`` for the duration of the ``with`` block."""
    double = HubDouble.start_process(root) if process else HubDouble.start_thread(root)
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture
def hub_double(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubDouble]:
    with running_double(tmp_path_factory.mktemp("hubroot")) as double:
        yield double


def hub_env(double: HubDouble, home: Path) -> dict[str, str]:
    """Environment for a real client process pointed at the double, writing only under ``home``."""
    env = dict(os.environ)
    env.update(
        {
            "HOME": str(home),
            "MODELSCOPE_ENDPOINT": double.url,
            "MODELSCOPE_CACHE": str(home / "modelscope-cache"),
            "HF_ENDPOINT": double.url,
            "HF_HOME": str(home / "hf-home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }
    )
    return env
