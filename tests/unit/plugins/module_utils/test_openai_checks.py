"""Unit tests for the endpoint checks, with hand-built openai response objects and a recording client."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import openai
import pytest
from openai.types import Completion, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from ansible_collections.llmfleet.serve.plugins.module_utils import openai_checks as oc

try:
    import httpx2 as httpx
except ImportError:  # openai releases before httpx2
    import httpx

MODEL = "MiniMax-M2"
USAGE = {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}
WEATHER_ARGS = {"location": "San Francisco, CA", "unit": "celsius"}
TOOL_XML = (
    '<minimax:tool_call>\n<invoke name="get_weather">\n'
    '<parameter name="location">San Francisco, CA</parameter>\n'
    '<parameter name="unit">celsius</parameter>\n</invoke>\n</minimax:tool_call>'
)


# --- builders -------------------------------------------------------------------------------------


def chat_response(
    content: str | None = "Hello there!",
    *,
    reasoning: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str = "stop",
    usage: dict[str, int] | None = USAGE,
) -> ChatCompletion:
    message: dict[str, Any] = {"role": "assistant", "content": content, "reasoning": reasoning}
    if tool_calls is not None:
        message["tool_calls"] = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for i, c in enumerate(tool_calls)
        ]
    data: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "finish_reason": finish_reason, "message": message}],
    }
    if usage is not None:
        data["usage"] = usage
    return ChatCompletion.model_validate(data)


def completion_response(text: str = " Paris.", usage: dict[str, int] | None = USAGE) -> Completion:
    data: dict[str, Any] = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "finish_reason": "stop", "text": text, "logprobs": None}],
    }
    if usage is not None:
        data["usage"] = usage
    return Completion.model_validate(data)


def models_response(*ids: str) -> SimpleNamespace:
    return SimpleNamespace(
        data=[
            Model.model_validate(
                {
                    "id": i,
                    "object": "model",
                    "created": 1,
                    "owned_by": "vllm",
                    "max_model_len": 4096,
                    "root": "/m",
                }
            )
            for i in ids
        ]
    )


def chunk(content: str | None = None, *, reasoning: str | None = None, finish: str | None = None, usage=None):
    choices = []
    if content is not None or reasoning is not None or finish is not None:
        delta = {"role": "assistant", "content": content, "reasoning": reasoning}
        choices = [{"index": 0, "delta": delta, "finish_reason": finish}]
    data: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "choices": choices,
    }
    if usage is not None:
        data["usage"] = usage
    return ChatCompletionChunk.model_validate(data)


def status_error(status: int, body: Any) -> openai.APIStatusError:
    """An error as the SDK raises it: `body` is the `error` member of the JSON body, when there is one."""
    request = httpx.Request("POST", "http://10.0.0.5:8000/v1/chat/completions")
    response = httpx.Response(status, request=request, json=body)
    cls = {400: openai.BadRequestError, 401: openai.AuthenticationError, 404: openai.NotFoundError}.get(
        status, openai.InternalServerError if status >= 500 else openai.APIStatusError
    )
    inner = body.get("error", body) if isinstance(body, dict) else body
    return cls(f"Error code: {status} - {body}", response=response, body=inner)


def refused_error() -> openai.APIConnectionError:
    request = httpx.Request("GET", "http://10.0.0.5:8000/v1/models")
    exc = openai.APIConnectionError(request=request)
    exc.__cause__ = ConnectionRefusedError(111, "Connection refused")
    return exc


def vllm_not_found(model: str) -> openai.APIStatusError:
    return status_error(
        404,
        {"error": {"message": f"The model `{model}` does not exist.", "type": "NotFoundError", "code": 404}},
    )


class FakeClient:
    """Records every request; answers with a value, an exception, or a function of the request."""

    def __init__(self, **handlers: Any):
        self.handlers = {"models": models_response(MODEL), **handlers}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.models = SimpleNamespace(list=lambda **kw: self._call("models", kw))
        self.completions = SimpleNamespace(create=lambda **kw: self._call("completions", kw))
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=lambda **kw: self._call("chat", kw)))

    def _call(self, kind: str, kwargs: dict[str, Any]) -> Any:
        self.calls.append((kind, kwargs))
        handler = self.handlers[kind]
        result = handler(kwargs) if callable(handler) else handler
        if isinstance(result, BaseException):
            raise result
        return result


class FakeStream:
    def __init__(self, chunks: list[Any]):
        self.chunks = chunks
        self.closed = False

    def __iter__(self):
        return iter(self.chunks)

    def close(self) -> None:
        self.closed = True


class StepClock:
    """A clock that advances by `step` seconds on every reading."""

    def __init__(self, step: float = 0.5):
        self.now = 100.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def opts(**kw: Any) -> oc.CheckOptions:
    return oc.CheckOptions(model=MODEL, base_url="http://10.0.0.5:8000/v1", **kw)


# --- request building -----------------------------------------------------------------------------


def test_top_k_goes_to_extra_body_and_openai_params_stay_top_level():
    kwargs = oc.request_kwargs(opts(sampling={"temperature": 1.0, "top_p": 0.95, "top_k": 20, "min_p": None}))
    assert kwargs == {
        "model": MODEL,
        "max_tokens": 512,
        "temperature": 1.0,
        "top_p": 0.95,
        "extra_body": {"top_k": 20},
    }


def test_no_extra_body_without_extensions():
    assert "extra_body" not in oc.request_kwargs(opts(sampling={"temperature": 0.2}))


# --- tool-call diagnosis --------------------------------------------------------------------------


def test_diagnose_tool_call_xml_in_content_names_the_missing_parser():
    message = chat_response("<think>\nweather</think>\n" + TOOL_XML).choices[0].message
    assert oc.diagnose_tool_call(message) == oc.DIAG_TOOL_PARSER
    assert "--tool-call-parser minimax_m2" in oc.DIAG_TOOL_PARSER


def test_diagnose_tool_call_plain_text_is_not_the_parser():
    message = chat_response("It is sunny.").choices[0].message
    assert oc.diagnose_tool_call(message) == oc.DIAG_NO_TOOL_CALL


def test_diagnose_tool_call_parsed_call_needs_no_diagnosis():
    args = json.dumps(WEATHER_ARGS)
    message = chat_response(None, tool_calls=[{"name": "get_weather", "arguments": args}]).choices[0].message
    assert oc.diagnose_tool_call(message) is None


def test_evaluate_tool_call_accepts_valid_call_and_returns_parsed_arguments():
    args = json.dumps(WEATHER_ARGS)
    response = chat_response(
        None, tool_calls=[{"name": "get_weather", "arguments": args}], finish_reason="tool_calls"
    )
    details = oc.evaluate_tool_call(response.choices[0].message, oc.DEFAULT_TOOL, "tool_calls")
    assert details["arguments"] == WEATHER_ARGS
    assert details["schema_errors"] == []
    assert details["calls"] == [{"name": "get_weather", "arguments": args}]


def test_evaluate_tool_call_xml_in_content_fails_with_parser_diagnosis():
    message = chat_response("<think>\n</think>\n" + TOOL_XML).choices[0].message
    with pytest.raises(oc.CheckFailed) as info:
        oc.evaluate_tool_call(message, oc.DEFAULT_TOOL, "stop")
    assert info.value.error == "no parsed tool call in the answer"
    assert info.value.diagnosis == oc.DIAG_TOOL_PARSER
    assert "<minimax:tool_call>" in info.value.details["content_excerpt"]


@pytest.mark.parametrize(
    ("arguments", "expected_error"),
    [
        ({"unit": "celsius"}, "'location' is a required property"),
        ({"location": "Paris", "unit": "kelvin"}, "'kelvin' is not one of ['celsius', 'fahrenheit']"),
        ({"location": 42}, "42 is not of type 'string'"),
    ],
)
def test_evaluate_tool_call_arguments_against_schema_fail(arguments, expected_error):
    calls = [{"name": "get_weather", "arguments": json.dumps(arguments)}]
    message = chat_response(None, tool_calls=calls).choices[0].message
    with pytest.raises(oc.CheckFailed) as info:
        oc.evaluate_tool_call(message, oc.DEFAULT_TOOL, "tool_calls")
    assert expected_error in info.value.error
    assert info.value.details["arguments"] == arguments


def test_evaluate_tool_call_non_json_arguments_fail():
    calls = [{"name": "get_weather", "arguments": '{"location": "Paris"'}]
    message = chat_response(None, tool_calls=calls).choices[0].message
    with pytest.raises(oc.CheckFailed, match="are not JSON"):
        oc.evaluate_tool_call(message, oc.DEFAULT_TOOL, "tool_calls")


def test_evaluate_tool_call_other_tool_name_fails():
    calls = [{"name": "get_time", "arguments": "{}"}]
    message = chat_response(None, tool_calls=calls).choices[0].message
    with pytest.raises(oc.CheckFailed, match=r"calls \['get_time'\], not `get_weather`"):
        oc.evaluate_tool_call(message, oc.DEFAULT_TOOL, "tool_calls")


def test_normalize_tool_accepts_bare_function():
    tool = oc.normalize_tool({"name": "lookup", "parameters": {"type": "object"}})
    assert tool == {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    with pytest.raises(ValueError, match="no function name"):
        oc.normalize_tool({"function": {"parameters": {}}})


# --- schema validation (jsonschema and the subset fallback) -----------------------------------------

SCHEMA = oc.DEFAULT_TOOL["function"]["parameters"]
SCHEMA_CASES = [
    (WEATHER_ARGS, []),
    ({"location": "Paris"}, []),
    ({"unit": "celsius"}, ["$: 'location' is a required property"]),
    ({"location": "Paris", "unit": "kelvin"}, ["$.unit: 'kelvin' is not one of ['celsius', 'fahrenheit']"]),
    (["Paris"], ["$: ['Paris'] is not of type 'object'"]),
]


@pytest.mark.parametrize(("arguments", "errors"), SCHEMA_CASES)
def test_validate_arguments_with_jsonschema(arguments, errors):
    assert oc.validate_arguments(arguments, SCHEMA) == errors


@pytest.mark.parametrize(("arguments", "errors"), SCHEMA_CASES)
def test_validate_arguments_subset_agrees_on_verdict(monkeypatch, arguments, errors):
    monkeypatch.setattr(oc, "jsonschema", None)
    found = oc.validate_arguments(arguments, SCHEMA)
    assert bool(found) == bool(errors)
    assert len(found) == len(errors)


def test_subset_validator_messages_and_keywords():
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": ["integer", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "mode": {"const": "fast"},
        },
        "required": ["n"],
        "additionalProperties": False,
    }
    assert oc.subset_validate({"n": None, "tags": ["a"], "mode": "fast"}, schema) == []
    assert oc.subset_validate({"n": True, "tags": ["a", 3], "mode": "slow", "x": 1}, schema) == [
        "$.n: True is not of type integer or null",
        "$.tags[1]: 3 is not of type string",
        "$.mode: 'slow' is not 'fast'",
        "$: additional property 'x' is not allowed",
    ]


def test_invalid_tool_schema_is_reported():
    errors = oc.validate_arguments({"location": "x"}, {"type": "objekt"})
    assert len(errors) == 1
    assert errors[0].startswith("the tool's own schema is invalid:")


# --- reasoning ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            {"content": "<think>\n17*23 is 391.\n</think>\n\n391", "reasoning": None},
            "minimax_m2_append_think",
        ),
        ({"content": "\n\n391", "reasoning": "17*23 is 391."}, "minimax_m2"),
        ({"content": None, "reasoning": "17*23 is"}, "minimax_m2"),
        ({"content": "391", "reasoning_content": "17*23 is 391."}, "minimax_m2"),
        ({"content": "17*23 is 391.\n</think>\n\n391"}, "none"),
        ({"content": "391"}, "none"),
    ],
)
def test_classify_reasoning(message, expected):
    chat = ChatCompletion.model_validate(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": MODEL,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", **message}}],
        }
    )
    assert oc.classify_reasoning(chat.choices[0].message) == expected


def test_evaluate_reasoning_reports_behaviour_and_excerpts():
    message = chat_response("\n\n391", reasoning="17*23 is 391.").choices[0].message
    seen, details = oc.evaluate_reasoning(message, "minimax_m2")
    assert seen == "minimax_m2"
    assert details["reasoning_excerpt"] == "17*23 is 391."
    assert details["content_has_think_close"] is False


def test_evaluate_reasoning_mismatch_fails():
    message = chat_response("<think>\nhmm\n</think>\n391").choices[0].message
    with pytest.raises(oc.CheckFailed) as info:
        oc.evaluate_reasoning(message, "minimax_m2")
    assert info.value.error == "reasoning output looks like `minimax_m2_append_think`, expected `minimax_m2`"
    assert "--reasoning-parser" in info.value.diagnosis
    assert info.value.details["behaves_like"] == "minimax_m2_append_think"


def test_evaluate_reasoning_raw_think_close_means_no_parser():
    message = chat_response("hmm\n</think>\n391").choices[0].message
    with pytest.raises(oc.CheckFailed) as info:
        oc.evaluate_reasoning(message, None)
    assert info.value.diagnosis == oc.DIAG_REASONING_RAW


def test_evaluate_reasoning_without_any_thinking_fails_unless_none_expected():
    message = chat_response("391").choices[0].message
    with pytest.raises(oc.CheckFailed) as info:
        oc.evaluate_reasoning(message, None)
    assert info.value.diagnosis == oc.DIAG_REASONING_ABSENT
    assert oc.evaluate_reasoning(message, "none")[0] == "none"


# --- text answers ---------------------------------------------------------------------------------


def test_evaluate_text_answer_ok():
    response = chat_response("Hello there!")
    details = oc.evaluate_text_answer("Hello there!", response.usage, "stop", None)
    assert details == {
        "text_excerpt": "Hello there!",
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
    }


def test_evaluate_text_answer_empty_fails():
    with pytest.raises(oc.CheckFailed, match="empty answer") as info:
        oc.evaluate_text_answer("  \n", chat_response().usage, "stop", None)
    assert info.value.diagnosis == oc.DIAG_EMPTY


def test_evaluate_text_answer_cut_off_while_thinking_says_raise_max_tokens():
    with pytest.raises(oc.CheckFailed) as info:
        oc.evaluate_text_answer(None, chat_response().usage, "length", "Let me think about")
    assert info.value.diagnosis == oc.DIAG_CUT_OFF_THINKING


def test_evaluate_text_answer_only_reasoning_says_where_the_answer_went():
    """As vLLM 0.32 answers with the minimax_m2 parsers when the model's answer is a tool call."""
    with pytest.raises(oc.CheckFailed, match="whole output is in `reasoning`") as info:
        oc.evaluate_text_answer(None, chat_response().usage, "stop", "I will call the weather tool.")
    assert info.value.diagnosis == oc.DIAG_ONLY_REASONING
    assert info.value.details["reasoning_excerpt"] == "I will call the weather tool."


def test_evaluate_text_answer_without_usage_fails():
    with pytest.raises(oc.CheckFailed, match="no token usage") as info:
        oc.evaluate_text_answer("Hello", None, "stop", None)
    assert info.value.diagnosis == oc.DIAG_NO_USAGE


def test_evaluate_text_answer_zero_completion_tokens_fails():
    usage = chat_response(usage={"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}).usage
    with pytest.raises(oc.CheckFailed, match="reports 0 completion tokens"):
        oc.evaluate_text_answer("Hello", usage, "stop", None)


# --- streaming ------------------------------------------------------------------------------------


def test_evaluate_stream_figures():
    trace = oc.StreamTrace(
        started=10.0, ended=12.0, arrivals=[10.5, 11.0, 11.5, 12.0], chunks_total=6, text="Hello there!"
    )
    trace.completion_tokens = 4
    details = oc.evaluate_stream(trace)
    assert details["ttft_s"] == 0.5
    assert details["chunk_count"] == 4
    assert details["chunks_total"] == 6
    assert details["tokens_per_s"] == 2.0
    assert details["decode_tokens_per_s"] == 2.0
    assert details["first_to_last_chunk_s"] == 1.5
    assert details["tokens_counted_from"] == "usage"


def test_evaluate_stream_single_chunk_is_not_incremental():
    trace = oc.StreamTrace(started=10.0, ended=11.0, arrivals=[11.0], chunks_total=2, text="Hello there!")
    trace.completion_tokens = 9
    with pytest.raises(oc.CheckFailed, match="not incremental: the answer arrived in 1 chunk") as info:
        oc.evaluate_stream(trace)
    assert "buffers the stream" in info.value.diagnosis


def test_evaluate_stream_single_token_asks_for_more_tokens():
    trace = oc.StreamTrace(started=10.0, ended=11.0, arrivals=[11.0], chunks_total=2, text="Hi")
    trace.completion_tokens = 1
    with pytest.raises(oc.CheckFailed) as info:
        oc.evaluate_stream(trace)
    assert "max_tokens" in info.value.diagnosis


def test_evaluate_stream_fast_chunks_are_incremental():
    """Real vLLM on CPU delivered the tiny model's 13 chunks within 1.5 ms: that is a stream, not a buffer."""
    arrivals = [0.0305 + i * 0.000125 for i in range(13)]
    trace = oc.StreamTrace(started=0.0, ended=0.0341, arrivals=arrivals, chunks_total=16, text="x" * 13)
    trace.completion_tokens = 14
    details = oc.evaluate_stream(trace)
    assert details["chunk_count"] == 13
    assert details["ttft_s"] == 0.0305
    assert details["first_to_last_chunk_s"] == 0.0015
    assert details["decode_tokens_per_s"] == 8666.67


def test_evaluate_stream_empty_fails():
    with pytest.raises(oc.CheckFailed, match="no output"):
        oc.evaluate_stream(oc.StreamTrace(started=0.0, ended=1.0, chunks_total=1))


def test_check_streaming_reads_chunks_usage_and_reasoning():
    stream = FakeStream(
        [
            chunk(""),  # the role-only first chunk carries no output
            chunk(reasoning="Greet"),
            chunk("Hello"),
            chunk(" there", finish="stop"),
            chunk(usage={"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}),
        ]
    )
    client = FakeClient(chat=stream)
    details = oc.check_streaming(client, opts(sampling={"top_k": 20}), clock=StepClock(0.5))
    _, request = client.calls[0]
    assert request["stream"] is True
    assert request["stream_options"] == {"include_usage": True}
    assert request["extra_body"] == {"top_k": 20}
    assert stream.closed
    # clock readings: start 100.5, chunks 101.0 .. 103.0, end 103.5
    assert details["chunk_count"] == 3
    assert details["chunks_total"] == 5
    assert details["ttft_s"] == 1.0
    assert details["completion_tokens"] == 3
    assert details["total_s"] == 3.0
    assert details["tokens_per_s"] == 1.0
    assert details["text_excerpt"] == "Hello there"
    assert details["reasoning_excerpt"] == "Greet"
    assert details["finish_reason"] == "stop"


def test_check_streaming_one_chunk_fails():
    stream = FakeStream([chunk("Hello there, friend!", finish="stop"), chunk(usage=USAGE)])
    with pytest.raises(oc.CheckFailed, match="not incremental"):
        oc.check_streaming(FakeClient(chat=stream), opts(), clock=StepClock())


# --- auth -----------------------------------------------------------------------------------------


def test_evaluate_auth_enforced():
    details = oc.evaluate_auth("k", {"no_key": 401, "configured_key": 200, "wrong_key": 401})
    assert details["enforced"] is True


def test_evaluate_auth_open_server_with_key_configured_fails():
    with pytest.raises(oc.CheckFailed, match="without a key got 200, expected 401") as info:
        oc.evaluate_auth("k", {"no_key": 200, "configured_key": 200, "wrong_key": 200})
    assert "without `--api-key`" in info.value.diagnosis
    assert info.value.details["enforced"] is False


def test_evaluate_auth_wrong_key_accepted_fails():
    with pytest.raises(oc.CheckFailed, match="with a wrong key got 200"):
        oc.evaluate_auth("k", {"no_key": 401, "configured_key": 200, "wrong_key": 200})


def test_evaluate_auth_configured_key_refused_fails():
    with pytest.raises(oc.CheckFailed) as info:
        oc.evaluate_auth("k", {"no_key": 401, "configured_key": 401, "wrong_key": 401})
    assert info.value.diagnosis == oc.DIAG_KEY_REFUSED


def test_evaluate_auth_without_configured_key():
    assert oc.evaluate_auth(None, {"no_key": 200})["enforced"] is False
    with pytest.raises(oc.CheckFailed) as info:
        oc.evaluate_auth(None, {"no_key": 401})
    assert info.value.diagnosis == oc.DIAG_KEY_REQUIRED


def _server_with_key(key: str | None):
    """A models handler that answers like vLLM with `--api-key key` (or without one)."""

    def handler(kwargs: dict[str, Any]) -> Any:
        auth = (kwargs.get("extra_headers") or {}).get("Authorization", f"Bearer {key}")
        if key is not None and auth != f"Bearer {key}":
            return status_error(401, {"error": "Unauthorized"})
        return models_response(MODEL)

    return handler


def test_check_auth_against_enforcing_server():
    client = FakeClient(models=_server_with_key("s3cret"))
    details = oc.check_auth(client, opts(api_key="s3cret"))
    assert details["statuses"] == {"no_key": 401, "configured_key": 200, "wrong_key": 401}
    omitted = client.calls[0][1]["extra_headers"]["Authorization"]
    assert isinstance(omitted, openai.Omit)
    assert client.calls[2][1]["extra_headers"] == {"Authorization": f"Bearer {oc.WRONG_KEY}"}


def test_check_auth_200_without_key_when_key_configured_fails():
    result = oc.run_check("auth", FakeClient(models=_server_with_key(None)), opts(api_key="s3cret"))
    assert not result.ok
    assert result.error == "a request without a key got 200, expected 401"
    assert result.details["statuses"]["no_key"] == 200


def test_auth_probe_headers_as_the_real_sdk_sends_them():
    """The SDK really drops the Authorization header for the no-key probe and sends the wrong key."""
    seen: list[str | None] = []

    def handle(request):
        seen.append(request.headers.get("authorization"))
        if request.headers.get("authorization") != "Bearer s3cret":
            return httpx.Response(401, json={"error": "Unauthorized"})
        return httpx.Response(200, json={"object": "list", "data": []})

    client = openai.OpenAI(
        base_url="http://vllm.test/v1",
        api_key="s3cret",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handle)),
    )
    details = oc.check_auth(client, opts(api_key="s3cret"))
    assert seen == [None, "Bearer s3cret", f"Bearer {oc.WRONG_KEY}"]
    assert details["enforced"] is True


def test_auth_is_skipped_without_a_configured_key():
    result = oc.run_check("auth", FakeClient(models=_server_with_key(None)), opts())
    assert result.ok and result.skipped
    assert result.details["enforced"] is False


# --- API errors -----------------------------------------------------------------------------------


def test_connection_refused_is_diagnosed():
    kind, error, diagnosis = oc.describe_error(refused_error(), opts(), lambda: None)
    assert kind == "connection_refused"
    assert error == "cannot connect to http://10.0.0.5:8000/v1: [Errno 111] Connection refused"
    assert diagnosis == oc.DIAG_CONNECTION_REFUSED


def test_other_connection_error():
    exc = openai.APIConnectionError(request=httpx.Request("GET", "http://nohost/v1/models"))
    exc.__cause__ = OSError("Name or service not known")
    kind, _, diagnosis = oc.describe_error(exc, opts(), lambda: None)
    assert (kind, diagnosis) == ("connection_error", oc.DIAG_CONNECT_ERROR)


def test_timeout_is_diagnosed():
    exc = openai.APITimeoutError(request=httpx.Request("GET", "http://h/v1/models"))
    kind, error, diagnosis = oc.describe_error(exc, opts(timeout=30), lambda: None)
    assert (kind, error, diagnosis) == ("timeout", "no answer within 30 s", oc.DIAG_TIMEOUT)


def test_404_model_lists_served_names():
    kind, error, diagnosis = oc.describe_error(vllm_not_found("minimax-m2"), opts(), lambda: ["MiniMax-M2"])
    assert kind == "model_not_found"
    assert error == "HTTP 404: The model `minimax-m2` does not exist."
    assert "the server serves: MiniMax-M2" in diagnosis


def test_404_model_when_the_names_cannot_be_listed():
    _, _, diagnosis = oc.describe_error(vllm_not_found("minimax-m2"), opts(), lambda: None)
    assert "the server serves: (the served models could not be listed)." in diagnosis


def test_404_path_means_wrong_base_url():
    kind, _, diagnosis = oc.describe_error(status_error(404, {"detail": "Not Found"}), opts(), lambda: [])
    assert (kind, diagnosis) == ("not_found", oc.DIAG_PATH_NOT_FOUND)


@pytest.mark.parametrize(("api_key", "diagnosis"), [("k", oc.DIAG_KEY_REFUSED), (None, oc.DIAG_KEY_REQUIRED)])
def test_401_depends_on_configured_key(api_key, diagnosis):
    kind, error, got = oc.describe_error(
        status_error(401, {"error": "Unauthorized"}), opts(api_key=api_key), list
    )
    assert (kind, error, got) == ("unauthorized", "HTTP 401: Unauthorized", diagnosis)


def test_400_auto_tool_choice_names_the_flags():
    msg = '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
    exc = status_error(400, {"error": {"message": msg, "type": "BadRequestError", "code": 400}})
    assert oc.describe_error(exc, opts(), list)[2] == oc.DIAG_AUTO_TOOL_CHOICE


def test_500_points_at_the_journal():
    exc = status_error(500, {"error": {"message": "EngineCore died", "code": 500}})
    assert oc.describe_error(exc, opts(), list) == (
        "server_error",
        "HTTP 500: EngineCore died",
        oc.DIAG_SERVER_ERROR,
    )


# --- checks with a recording client ---------------------------------------------------------------


def test_check_models_ok_reports_served_model_facts():
    details = oc.check_models(FakeClient(), opts())
    assert details == {"served": [MODEL], "max_model_len": 4096, "root": "/m", "owned_by": "vllm"}


def test_check_models_wrong_served_name_lists_names():
    result = oc.run_check("models", FakeClient(models=models_response("minimax", "other")), opts())
    assert not result.ok
    assert result.error == "'MiniMax-M2' is not among the served models: ['minimax', 'other']"
    assert result.diagnosis == oc.diagnose_served_name("MiniMax-M2", ["minimax", "other"])
    assert "the server serves: minimax, other." in result.diagnosis


def test_check_completion_ok_and_request():
    client = FakeClient(completions=completion_response(" Paris."))
    details = oc.check_completion(client, opts(max_tokens=64))
    assert details["text_excerpt"] == " Paris."
    assert details["usage"]["completion_tokens"] == 9
    assert client.calls[0][1]["prompt"] == oc.COMPLETION_PROMPT
    assert client.calls[0][1]["max_tokens"] == 64


def test_check_completion_empty_fails():
    result = oc.run_check("completion", FakeClient(completions=completion_response("")), opts())
    assert (result.ok, result.error, result.error_kind) == (False, "empty answer", "check_failed")


def test_check_chat_without_usage_fails():
    result = oc.run_check("chat", FakeClient(chat=chat_response("Hi!", usage=None)), opts())
    assert not result.ok
    assert result.diagnosis == oc.DIAG_NO_USAGE


def test_check_chat_404_lists_served_names():
    client = FakeClient(chat=vllm_not_found("minimax-m2"), models=models_response("MiniMax-M2"))
    result = oc.run_check("chat", client, oc.CheckOptions(model="minimax-m2", base_url="http://h/v1"))
    assert result.error_kind == "model_not_found"
    assert "the server serves: MiniMax-M2" in result.diagnosis


def test_check_tool_call_sends_tool_and_accepts_parsed_call():
    args = json.dumps(WEATHER_ARGS)
    client = FakeClient(chat=chat_response(None, tool_calls=[{"name": "get_weather", "arguments": args}]))
    details = oc.check_tool_call(client, opts())
    request = client.calls[0][1]
    assert request["tools"] == [oc.DEFAULT_TOOL]
    assert request["tool_choice"] == "auto"
    assert request["messages"][0]["content"] == oc.DEFAULT_TOOL_PROMPT
    assert details["arguments"] == WEATHER_ARGS


def test_check_tool_call_xml_in_content_fails_with_parser_diagnosis():
    result = oc.run_check("tool_call", FakeClient(chat=chat_response("</think>\n" + TOOL_XML)), opts())
    assert not result.ok
    assert result.diagnosis == oc.DIAG_TOOL_PARSER


def test_check_tool_call_custom_tool_and_prompt():
    tool = {"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}
    client = FakeClient(chat=chat_response(None, tool_calls=[{"name": "add", "arguments": '{"a": "one"}'}]))
    result = oc.run_check("tool_call", client, opts(tool=tool))
    assert client.calls[0][1]["messages"][0]["content"] == "Call the add tool now with suitable arguments."
    assert not result.ok
    assert result.details["schema_errors"] == ["$.a: 'one' is not of type 'integer'"]


def test_check_reasoning_expectation():
    client = FakeClient(chat=chat_response("\n\n391", reasoning="17*23 = 391"))
    assert oc.check_reasoning(client, opts())["behaves_like"] == "minimax_m2"
    result = oc.run_check("reasoning", client, opts(expect_reasoning_parser="minimax_m2_append_think"))
    assert not result.ok
    assert result.details["behaves_like"] == "minimax_m2"


def _vllm_sampler(kwargs: dict[str, Any]) -> Any:
    top_k = kwargs.get("extra_body", {}).get("top_k", 0)
    if top_k < -1:
        return status_error(
            400, {"error": {"message": f"top_k must be 0 (disable), or at least 1, got {top_k}."}}
        )
    return chat_response("Hello!")


def test_check_sampling_sends_top_k_in_extra_body_and_proves_it_is_read():
    client = FakeClient(chat=_vllm_sampler)
    details = oc.check_sampling(client, opts(sampling={"temperature": 1.0, "top_p": 0.95}))
    first, second = client.calls[0][1], client.calls[1][1]
    assert first["extra_body"] == {"top_k": 20}
    assert (first["temperature"], first["top_p"]) == (1.0, 0.95)
    assert second["extra_body"] == {"top_k": oc.INVALID_TOP_K}
    assert second["max_tokens"] == 1
    assert details["invalid_top_k_status"] == 400
    assert details["extra_body"] == {"top_k": 20}


def test_check_sampling_fails_when_top_k_is_ignored():
    result = oc.run_check("sampling", FakeClient(chat=chat_response("Hello!")), opts())
    assert not result.ok
    assert result.error == f"a request with top_k={oc.INVALID_TOP_K} got 200, expected 400"
    assert "does not reach vLLM's sampler" in result.diagnosis


def test_check_sampling_judges_acceptance_not_the_answer():
    client = FakeClient(chat=lambda kw: _vllm_sampler(kw) if kw["max_tokens"] == 1 else chat_response(None))
    details = oc.check_sampling(client, opts())
    assert details["text_excerpt"] is None
    assert details["invalid_top_k_status"] == 400


def test_check_sampling_refused_valid_top_k_fails():
    client = FakeClient(chat=status_error(400, {"error": {"message": "Unknown field top_k"}}))
    result = oc.run_check("sampling", client, opts())
    assert (result.ok, result.error_kind, result.error) == (
        False,
        "bad_request",
        "HTTP 400: Unknown field top_k",
    )


# --- the runner -----------------------------------------------------------------------------------


def _healthy_client(api_key: str | None = "s3cret") -> FakeClient:
    args = json.dumps(WEATHER_ARGS)

    def chat(kwargs: dict[str, Any]) -> Any:
        if kwargs.get("stream"):
            return FakeStream([chunk("Hel"), chunk("lo"), chunk("!", finish="stop"), chunk(usage=USAGE)])
        if kwargs.get("tools"):
            return chat_response(None, tool_calls=[{"name": "get_weather", "arguments": args}])
        return _vllm_sampler(kwargs) if "extra_body" in kwargs else chat_response("391", reasoning="17*23")

    return FakeClient(models=_server_with_key(api_key), completions=completion_response(), chat=chat)


def test_run_checks_all_pass_and_report_serialises():
    report = oc.run_checks(_healthy_client(), opts(api_key="s3cret"))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True
    assert data["failed"] == []
    assert data["checks_run"] == list(oc.CHECKS)
    assert data["reasoning_parser"] == "minimax_m2"
    assert data["checks"]["tool_call"]["details"]["arguments"] == WEATHER_ARGS
    assert data["checks"]["auth"]["details"]["enforced"] is True
    assert report.summary().startswith("all 9 checks passed against http://10.0.0.5:8000/v1")


def test_run_checks_subset_in_canonical_order():
    report = oc.run_checks(_healthy_client(), opts(api_key="s3cret"), ["tool_call", "models"])
    assert [r.name for r in report.results] == ["models", "tool_call"]


def test_run_checks_unknown_name():
    with pytest.raises(ValueError, match=r"unknown checks \['tools'\]"):
        oc.run_checks(FakeClient(), opts(), ["tools"])


def test_run_checks_unreachable_endpoint_stops_after_first_failure():
    refused = refused_error()
    client = FakeClient(models=refused, chat=refused, completions=refused)
    report = oc.run_checks(client, opts(), ["models", "chat", "tool_call"])
    assert len(client.calls) == 1
    models, chat, tool_call = report.results
    assert models.error_kind == "connection_refused"
    assert (chat.error_kind, chat.skipped, tool_call.error_kind) == ("not_run", True, "not_run")
    summary = report.summary()
    assert summary.startswith(
        "3 of 3 checks failed against http://10.0.0.5:8000/v1 (model MiniMax-M2): models:"
    )
    assert oc.DIAG_CONNECTION_REFUSED in summary
    assert summary.endswith("not run: chat, tool_call")


def test_run_checks_failure_summary_carries_diagnoses():
    client = _healthy_client()
    client.handlers["chat"] = chat_response("</think>\n" + TOOL_XML)
    report = oc.run_checks(client, opts(api_key="s3cret"), ["chat", "tool_call"])
    assert [r.name for r in report.failed] == ["tool_call"]
    assert f"tool_call: no parsed tool call in the answer -> {oc.DIAG_TOOL_PARSER}" in report.summary()
    assert report.to_dict()["reasoning_parser"] is None


def test_unexpected_answer_shape_is_a_failed_check_not_a_crash():
    result = oc.run_check("chat", FakeClient(chat=SimpleNamespace(choices=[])), opts())
    assert (result.ok, result.error_kind) == (False, "exception")
    assert result.error.startswith("IndexError")
