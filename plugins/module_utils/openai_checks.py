"""Checks that prove an OpenAI-compatible vLLM endpoint serves what it should.

Every check is a small function that takes an ``openai.OpenAI`` client and a ``CheckOptions`` and
returns a ``CheckResult`` (name, ok, latency, details, error, diagnosis). The judgement of each
answer lives in pure helpers (``evaluate_*``, ``diagnose_tool_call``, ``classify_reasoning``,
``validate_arguments``) that take plain values or the client's own response objects, so they are
unit-tested with hand-built responses. ``run_checks`` runs the requested checks in order and
returns a ``Report`` that serialises to JSON.

This file runs wherever the module runs (controller or host). It needs the ``openai`` library;
``jsonschema`` is used when importable, otherwise a documented subset validator is used.
"""

from __future__ import annotations

import copy
import json
import ssl
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.llmfleet.serve.plugins.module_utils import endpoint_probes

try:
    import openai
except ImportError:
    openai = None
    OPENAI_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    OPENAI_IMPORT_ERROR = None

try:
    import jsonschema
except ImportError:
    jsonschema = None


CHECKS = ("tls", "models", "completion", "chat", "streaming", "tool_call", "reasoning", "auth", "sampling")
REASONING_PARSERS = ("minimax_m2_append_think", "minimax_m2", "none")

# OpenAI request parameters; any other sampling key (top_k, min_p, repetition_penalty, ...) is a vLLM
# extension and travels in `extra_body`.
OPENAI_SAMPLING_KEYS = frozenset(
    {"temperature", "top_p", "presence_penalty", "frequency_penalty", "seed", "stop", "n"}
)

DEFAULT_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location.",
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
DEFAULT_TOOL_PROMPT = "What is the weather like in San Francisco, CA right now? Use the get_weather tool."
CHAT_PROMPT = "Say hello in one short sentence."
COMPLETION_PROMPT = "The capital of France is"
REASONING_PROMPT = "What is 17 * 23? Think it through briefly, then answer."
WRONG_KEY = "llmfleet-openai-check-wrong-key"
# vLLM rejects top_k below -1; a server that accepts this value never looked at top_k.
INVALID_TOP_K = -7

TOOL_XML_MARKERS = ("<minimax:tool_call>", "<invoke name=", "<invoke ")
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
EXCERPT_CHARS = 240

# Diagnoses, one place so the docs and tests quote the same words.
DIAG_TOOL_PARSER = (
    "tool-call XML (<minimax:tool_call>/<invoke>) came back in `content` and `tool_calls` is empty: "
    "the server runs without `--tool-call-parser minimax_m2` (or with a parser for another model); "
    "start it with `--enable-auto-tool-choice --tool-call-parser minimax_m2`"
)
DIAG_AUTO_TOOL_CHOICE = (
    "the server refuses tool_choice=auto: it runs without `--enable-auto-tool-choice "
    "--tool-call-parser minimax_m2`"
)
DIAG_NO_TOOL_CALL = (
    "the model answered in text without calling the tool; the prompt may not call for it, or the model "
    "is not a tool-calling model"
)
DIAG_CONNECTION_REFUSED = (
    "connection refused: the service is not up (stopped, crashed, or still loading weights: the port "
    "refuses connections until the model is loaded), or it listens on another address or port"
)
DIAG_CONNECT_ERROR = (
    "the endpoint cannot be reached: check the host, port, scheme (http/https), DNS, firewall and TLS "
    "settings in base_url"
)
DIAG_TIMEOUT = (
    "the server accepted the connection but did not answer in time: it may be overloaded, still warming "
    "up (first requests compile kernels), or generating many tokens; raise `timeout` or lower `max_tokens`"
)
DIAG_KEY_REFUSED = (
    "the server refused the configured API key (401): it differs from the server's `--api-key` / "
    "`VLLM_API_KEY`"
)
DIAG_KEY_REQUIRED = "the server requires an API key (401) and none was given: set `api_key`"
DIAG_NOT_ENFORCED = (
    "a request {how} was answered: the server runs without `--api-key` / `VLLM_API_KEY` "
    "although a key is configured, so anyone who reaches the port can use it"
)
DIAG_ROUTES_OPEN = (
    "routes vLLM registers answered without a valid key: vLLM's --api-key guards only some paths; serve "
    "it on loopback behind the front door (endpoint_proxy role), which passes only the allowlisted paths"
)
DIAG_TLS = (
    "the certificate does not verify against {ca}: give the CA that issued it (ca_file, or SSL_CERT_FILE "
    "for clients), or a certificate issued for the address in base_url"
)
DIAG_PATH_NOT_FOUND = (
    "the server answered 404 for the path: base_url must be the API root ending in /v1, "
    "e.g. http://10.0.0.5:8000/v1"
)
DIAG_SERVER_ERROR = "the server failed while answering: read its journal (journalctl -u UNIT)"
DIAG_CUT_OFF_THINKING = (
    "the answer was cut off (finish_reason=length) while the model was still thinking: raise `max_tokens`"
)
DIAG_EMPTY = "the model generated no text; check the chat template and the model files"
DIAG_ONLY_REASONING = (
    "`content` is empty and the whole output went to `reasoning`: the reasoning parser did not find the "
    "end of the thinking (`</think>`), or the model answered only with a tool call, which vLLM's tool "
    "parser drops from `content` when the request offers no tools"
)
DIAG_NO_USAGE = "the response carries no token usage: an OpenAI-compatible server must report it"
DIAG_REASONING_RAW = (
    "`</think>` came back in `content` without `<think>`: the server runs without `--reasoning-parser`; "
    "start it with `--reasoning-parser minimax_m2_append_think` or `minimax_m2`"
)
DIAG_REASONING_ABSENT = (
    "the answer shows no reasoning at all: the model does not think, or its template does not open "
    "<think>; drop `reasoning` from `checks` for models that do not reason"
)
DIAG_REASONING_MISMATCH = (
    "the server behaves like reasoning parser `{seen}`, not the expected `{expected}`: check "
    "`--reasoning-parser` in the service's flags"
)
DIAG_TOP_K_IGNORED = (
    "an invalid top_k ({value}) was accepted: top_k in `extra_body` does not reach vLLM's sampler "
    "(a proxy drops unknown fields, or the server is not vLLM)"
)


@dataclass
class CheckOptions:
    """What the checks ask of the endpoint."""

    model: str
    base_url: str = ""
    api_key: str | None = None
    timeout: float = 120.0
    max_tokens: int = 512
    sampling: dict[str, Any] = field(default_factory=dict)
    tool: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_TOOL))
    tool_prompt: str | None = None
    expect_reasoning_parser: str | None = None
    ca_file: str | None = None
    cert_warn_days: int = 30
    # vLLM's registered routes ({path: [methods]}) the auth check probes, and the paths served without a key
    probe_routes: Mapping[str, Iterable[str]] | None = None
    public_paths: tuple[str, ...] = ("/health",)


@dataclass
class CheckResult:
    """The outcome of one check; `error_kind` is a stable machine-readable category of `error`."""

    name: str
    ok: bool
    latency_s: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    diagnosis: str | None = None
    error_kind: str | None = None
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "skipped": self.skipped,
            "latency_s": None if self.latency_s is None else round(self.latency_s, 4),
            "details": self.details,
            "error": self.error,
            "error_kind": self.error_kind,
            "diagnosis": self.diagnosis,
        }


@dataclass
class Report:
    """All check results against one endpoint."""

    base_url: str
    model: str
    results: list[CheckResult]
    duration_s: float = 0.0
    journal: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok]

    @property
    def reasoning_parser(self) -> str | None:
        for r in self.results:
            if r.name == "reasoning" and "behaves_like" in r.details:
                return r.details["behaves_like"]
        return None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ok": self.ok,
            "base_url": self.base_url,
            "model": self.model,
            "checks_run": [r.name for r in self.results],
            "failed": [r.name for r in self.failed],
            "reasoning_parser": self.reasoning_parser,
            "duration_s": round(self.duration_s, 3),
            "checks": {r.name: r.to_dict() for r in self.results},
        }
        if self.journal is not None:
            data["journal"] = self.journal
        return data

    def summary(self) -> str:
        """One message for a person: which checks failed and why."""
        if self.ok:
            return f"all {len(self.results)} checks passed against {self.base_url} (model {self.model})"
        parts = []
        for r in self.failed:
            if r.error_kind == "not_run":
                continue
            text = f"{r.name}: {r.error}"
            if r.diagnosis:
                text += f" -> {r.diagnosis}"
            parts.append(text)
        not_run = [r.name for r in self.failed if r.error_kind == "not_run"]
        if not_run:
            parts.append(f"not run: {', '.join(not_run)}")
        head = f"{len(self.failed)} of {len(self.results)} checks failed against {self.base_url} "
        return head + f"(model {self.model}): " + "; ".join(parts)


class CheckFailed(Exception):
    """Raised inside a check to fail it with an error, a diagnosis and the details gathered so far."""

    def __init__(self, error: str, diagnosis: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(error)
        self.error = error
        self.diagnosis = diagnosis
        self.details = details or {}


# ---------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------


def excerpt(text: str | None, limit: int = EXCERPT_CHARS) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[:limit] + "..."


def split_sampling(sampling: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split sampling settings into OpenAI request arguments and vLLM extensions for `extra_body`."""
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in (sampling or {}).items():
        if value is None:
            continue
        (kwargs if key in OPENAI_SAMPLING_KEYS else extra)[key] = value
    return kwargs, extra


def request_kwargs(opts: CheckOptions, sampling: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Arguments shared by every generation request: model, max_tokens, sampling, extra_body."""
    kwargs, extra = split_sampling(opts.sampling if sampling is None else sampling)
    kwargs.update(model=opts.model, max_tokens=opts.max_tokens)
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


def _field(obj: Any, name: str) -> Any:
    """A declared or extra attribute of an openai response object (vLLM adds fields like `reasoning`)."""
    value = getattr(obj, name, None)
    if value is None:
        extra = getattr(obj, "model_extra", None) or {}
        value = extra.get(name)
    return value


def message_reasoning(message: Any) -> str | None:
    """The reasoning text vLLM split off the content (`reasoning`, or `reasoning_content` before 0.32)."""
    for name in ("reasoning", "reasoning_content"):
        value = _field(message, name)
        if value:
            return value
    return None


def usage_dict(usage: Any) -> dict[str, int] | None:
    if usage is None:
        return None
    keys = ("prompt_tokens", "completion_tokens", "total_tokens")
    return {k: getattr(usage, k) for k in keys if getattr(usage, k, None) is not None}


def has_tool_call_xml(text: str | None) -> bool:
    return bool(text) and any(marker in text for marker in TOOL_XML_MARKERS)


def diagnose_tool_call(message: Any) -> str | None:
    """Why a message that should hold a tool call does not, when it can be told from the message."""
    if _field(message, "tool_calls"):
        return None
    if has_tool_call_xml(message.content) or has_tool_call_xml(message_reasoning(message)):
        return DIAG_TOOL_PARSER
    return DIAG_NO_TOOL_CALL


def classify_reasoning(message: Any) -> str:
    """Which MiniMax reasoning parser the server behaves like, judged from one chat message.

    - ``minimax_m2``: the thinking was moved to the ``reasoning`` field;
    - ``minimax_m2_append_think``: ``content`` starts with ``<think>`` (the thinking stays in content);
    - ``none``: neither (no reasoning parser, or a model that does not think).
    """
    if message_reasoning(message):
        return "minimax_m2"
    if (message.content or "").lstrip().startswith(THINK_OPEN):
        return "minimax_m2_append_think"
    return "none"


def evaluate_reasoning(message: Any, expected: str | None) -> tuple[str, dict[str, Any]]:
    """Classify the message; raise CheckFailed when the behaviour is missing or not the expected one."""
    seen = classify_reasoning(message)
    content = message.content or ""
    reasoning = message_reasoning(message)
    details: dict[str, Any] = {
        "behaves_like": seen,
        "expected": expected,
        "content_has_think_open": THINK_OPEN in content,
        "content_has_think_close": THINK_CLOSE in content,
        "reasoning_field_chars": len(reasoning or ""),
        "reasoning_excerpt": excerpt(reasoning),
        "content_excerpt": excerpt(content),
    }
    if expected is not None and seen != expected:
        diagnosis = DIAG_REASONING_MISMATCH.format(seen=seen, expected=expected)
        if seen == "none" and THINK_CLOSE in content:
            diagnosis += "; " + DIAG_REASONING_RAW
        raise CheckFailed(f"reasoning output looks like `{seen}`, expected `{expected}`", diagnosis, details)
    if expected is None and seen == "none":
        if THINK_CLOSE in content:
            raise CheckFailed("raw `</think>` in content: no reasoning parser", DIAG_REASONING_RAW, details)
        raise CheckFailed("no reasoning in the answer", DIAG_REASONING_ABSENT, details)
    return seen, details


def answer_details(text: str | None, usage: Any, finish_reason: str | None, reasoning: str | None) -> dict:
    """What a completion/chat answer looked like, for the report."""
    details: dict[str, Any] = {
        "text_excerpt": excerpt(text),
        "finish_reason": finish_reason,
        "usage": usage_dict(usage),
    }
    if reasoning:
        details["reasoning_excerpt"] = excerpt(reasoning)
    return details


def evaluate_text_answer(
    text: str | None, usage: Any, finish_reason: str | None, reasoning: str | None
) -> dict[str, Any]:
    """Details of a completion/chat answer; CheckFailed when it is empty or lacks token usage."""
    details = answer_details(text, usage, finish_reason, reasoning)
    if not (text or "").strip():
        if reasoning and finish_reason == "length":
            raise CheckFailed(
                "empty answer: only reasoning, cut off at max_tokens", DIAG_CUT_OFF_THINKING, details
            )
        if reasoning:
            raise CheckFailed(
                "empty answer: the whole output is in `reasoning`", DIAG_ONLY_REASONING, details
            )
        raise CheckFailed("empty answer", DIAG_EMPTY, details)
    if usage is None:
        raise CheckFailed("no token usage in the response", DIAG_NO_USAGE, details)
    if not getattr(usage, "completion_tokens", 0):
        raise CheckFailed(
            f"token usage reports {getattr(usage, 'completion_tokens', None)} completion tokens",
            DIAG_NO_USAGE,
            details,
        )
    return details


# --- JSON schema --------------------------------------------------------------------------------

_SUBSET_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def subset_validate(instance: Any, schema: Mapping[str, Any], path: str = "$") -> list[str]:
    """Validate with a small subset of JSON Schema, used when `jsonschema` is not importable.

    Supported keywords: ``type`` (a name or a list of names), ``enum``, ``const``, ``properties``,
    ``required``, ``additionalProperties: false`` and ``items`` (a single schema). Other keywords are
    ignored, so this validator can accept what full JSON Schema would refuse, never the reverse.
    """
    errors: list[str] = []
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_SUBSET_TYPES.get(n, lambda _v: True)(instance) for n in names):
            return [f"{path}: {instance!r} is not of type {' or '.join(names)}"]
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{path}: {instance!r} is not one of {schema['enum']!r}")
    if "const" in schema and instance != schema["const"]:
        errors.append(f"{path}: {instance!r} is not {schema['const']!r}")
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        errors += [
            f"{path}: {k!r} is a required property" for k in schema.get("required", []) if k not in instance
        ]
        for key, value in instance.items():
            if key in props:
                errors += subset_validate(value, props[key], f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: additional property {key!r} is not allowed")
    if isinstance(instance, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(instance):
            errors += subset_validate(item, schema["items"], f"{path}[{i}]")
    return errors


def validate_arguments(arguments: Any, schema: Mapping[str, Any]) -> list[str]:
    """Errors of `arguments` against a tool's JSON schema (empty when valid)."""
    if jsonschema is None:
        return subset_validate(arguments, schema)
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return [f"the tool's own schema is invalid: {exc.message}"]
    errors = sorted(cls(schema).iter_errors(arguments), key=lambda e: list(e.absolute_path))
    return [
        "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path) + f": {e.message}"
        for e in errors
    ]


def tool_function(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    """The `function` part of an OpenAI tool definition (accepts the bare function too)."""
    return tool.get("function", tool)


def normalize_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A full OpenAI tool definition from either `{type, function}` or a bare `{name, parameters}`."""
    function = dict(tool_function(tool))
    if not function.get("name"):
        raise ValueError("the tool definition has no function name")
    function.setdefault("parameters", {"type": "object", "properties": {}})
    return {"type": "function", "function": function}


def evaluate_tool_call(message: Any, tool: Mapping[str, Any], finish_reason: str | None) -> dict[str, Any]:
    """Details of the tool call in `message`; CheckFailed unless it calls `tool` with valid arguments."""
    function = tool_function(tool)
    name = function["name"]
    calls = _field(message, "tool_calls") or []
    details: dict[str, Any] = {"finish_reason": finish_reason, "tool": name, "calls": []}
    for call in calls:
        fn = call.function
        details["calls"].append({"name": fn.name, "arguments": fn.arguments})
    if not calls:
        details["content_excerpt"] = excerpt(message.content)
        raise CheckFailed("no parsed tool call in the answer", diagnose_tool_call(message), details)
    matching = [c for c in calls if c.function.name == name]
    if not matching:
        names = [c.function.name for c in calls]
        raise CheckFailed(
            f"the answer calls {names}, not `{name}`",
            "the model called a tool that was not offered: the tool parser mis-read the output",
            details,
        )
    raw = matching[0].function.arguments
    try:
        arguments = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise CheckFailed(
            f"the arguments of `{name}` are not JSON: {exc}",
            "the tool parser produced malformed arguments",
            details,
        ) from None
    details["arguments"] = arguments
    errors = validate_arguments(arguments, function.get("parameters") or {})
    details["schema_errors"] = errors
    if errors:
        raise CheckFailed(
            f"the arguments of `{name}` do not match its schema: {'; '.join(errors)}",
            "the parsed arguments break the tool's JSON schema (wrong names, types or values)",
            details,
        )
    return details


# --- streaming ----------------------------------------------------------------------------------


@dataclass
class StreamTrace:
    """What a streamed answer looked like: monotonic arrival times of the chunks that carried output."""

    started: float
    ended: float
    arrivals: list[float] = field(default_factory=list)
    chunks_total: int = 0
    text: str = ""
    reasoning: str = ""
    completion_tokens: int | None = None
    finish_reason: str | None = None


def evaluate_stream(trace: StreamTrace) -> dict[str, Any]:
    """Streaming figures (TTFT, tokens/s, chunks); CheckFailed unless the output came in several chunks.

    Arrival times are reported but not judged: a fast decoder (a small model, or a server that got
    ahead of the client) legitimately delivers many chunks within a millisecond, which timing alone
    cannot tell from a proxy that held them back.
    """
    n = len(trace.arrivals)
    total = trace.ended - trace.started
    tokens = trace.completion_tokens if trace.completion_tokens is not None else n
    details: dict[str, Any] = {
        "chunk_count": n,
        "chunks_total": trace.chunks_total,
        "completion_tokens": tokens,
        "tokens_counted_from": "usage" if trace.completion_tokens is not None else "chunks",
        "ttft_s": round(trace.arrivals[0] - trace.started, 4) if n else None,
        "total_s": round(total, 4),
        "tokens_per_s": round(tokens / total, 2) if total > 0 else None,
        "decode_tokens_per_s": None,
        "finish_reason": trace.finish_reason,
        "text_excerpt": excerpt(trace.text),
    }
    if trace.reasoning:
        details["reasoning_excerpt"] = excerpt(trace.reasoning)
    if n >= 2:
        spread = trace.arrivals[-1] - trace.arrivals[0]
        details["first_to_last_chunk_s"] = round(spread, 4)
        if spread > 0 and tokens > 1:
            details["decode_tokens_per_s"] = round((tokens - 1) / spread, 2)
    if n == 0:
        raise CheckFailed("the stream carried no output", DIAG_EMPTY, details)
    if n == 1:
        diagnosis = (
            "the model produced a single token: raise `max_tokens`"
            if tokens <= 1
            else "the whole answer came in one chunk: something between client and server buffers the "
            "stream (a proxy without streaming support), or the server does not stream"
        )
        raise CheckFailed("not incremental: the answer arrived in 1 chunk", diagnosis, details)
    return details


# --- auth ---------------------------------------------------------------------------------------


def evaluate_auth(api_key: str | None, outcomes: Mapping[str, int]) -> dict[str, Any]:
    """Judge HTTP statuses of `/v1/models` requests made with the right key, none, and a wrong one.

    `outcomes` maps "configured_key" / "no_key" / "wrong_key" to the status code each request got.
    """
    details: dict[str, Any] = {"key_configured": api_key is not None, "statuses": dict(outcomes)}
    if api_key is None:
        if outcomes.get("no_key") == 401:
            raise CheckFailed("401 without a key", DIAG_KEY_REQUIRED, details)
        details["enforced"] = False
        details["note"] = "no api_key given: nothing to enforce; the endpoint answers without a key"
        return details
    if outcomes.get("configured_key") == 401:
        raise CheckFailed("the configured key is refused (401)", DIAG_KEY_REFUSED, details)
    for probe, how in (("no_key", "without a key"), ("wrong_key", "with a wrong key")):
        status = outcomes.get(probe)
        if status != 401:
            details["enforced"] = False
            raise CheckFailed(
                f"a request {how} got {status}, expected 401",
                DIAG_NOT_ENFORCED.format(how=how) if status and status < 400 else None,
                details,
            )
    details["enforced"] = True
    return details


# --- errors -------------------------------------------------------------------------------------


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes, outermost first (httpx wraps the socket error a few levels down)."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and all(cur is not seen for seen in chain):
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    return chain


def api_error_message(exc: Any) -> str:
    """The server's own error message (vLLM: {"error": {"message": ...}}), else the exception text."""
    body = getattr(exc, "body", None)
    if isinstance(body, str) and body:
        return body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        if body.get("detail"):
            return str(body["detail"])
    return str(exc)


def diagnose_served_name(model: str, served: list[str] | None) -> str:
    """The diagnosis for a model name the server does not serve, naming those it does."""
    listed = "(the served models could not be listed)" if served is None else ", ".join(served) or "nothing"
    return (
        f"the served name differs from the one asked ({model!r}); the server serves: {listed}. "
        "Set `model` to the served name, or `--served-model-name` on the server"
    )


def served_model_ids(client: Any) -> list[str]:
    return [m.id for m in client.models.list().data]


def describe_error(
    exc: BaseException, opts: CheckOptions, served_names: Callable[[], list[str] | None]
) -> tuple[str, str, str | None]:
    """(error_kind, error, diagnosis) for an exception raised by the openai client."""
    if openai is None or not isinstance(exc, openai.OpenAIError):
        return "exception", f"{type(exc).__name__}: {exc}", None
    if isinstance(exc, openai.APITimeoutError):
        return "timeout", f"no answer within {opts.timeout} s", DIAG_TIMEOUT
    if isinstance(exc, openai.APIConnectionError):
        chain = _exception_chain(exc)
        error = f"cannot connect to {opts.base_url}: {chain[-1]}"
        if any(isinstance(e, ConnectionRefusedError) or "Connection refused" in str(e) for e in chain):
            return "connection_refused", error, DIAG_CONNECTION_REFUSED
        return "connection_error", error, DIAG_CONNECT_ERROR
    if not isinstance(exc, openai.APIStatusError):
        return "api_error", f"{type(exc).__name__}: {exc}", None
    status = exc.status_code
    message = api_error_message(exc)
    error = f"HTTP {status}: {message}"
    if status == 401:
        return "unauthorized", error, DIAG_KEY_REFUSED if opts.api_key else DIAG_KEY_REQUIRED
    if status == 404:
        if "model" in message.lower() or opts.model in message:
            return "model_not_found", error, diagnose_served_name(opts.model, served_names())
        return "not_found", error, DIAG_PATH_NOT_FOUND
    if status == 400:
        low = message.lower()
        if "tool choice" in low:
            return "bad_request", error, DIAG_AUTO_TOOL_CHOICE
        if "context length" in low or "max_tokens" in low:
            return "bad_request", error, "the request does not fit the model's context: lower `max_tokens`"
        return "bad_request", error, None
    if status >= 500:
        return "server_error", error, DIAG_SERVER_ERROR
    return "http_error", error, None


# ---------------------------------------------------------------------------------------------
# Checks: each takes a client and options and returns details, or raises CheckFailed / an API error
# ---------------------------------------------------------------------------------------------


def check_models(client: Any, opts: CheckOptions) -> dict[str, Any]:
    models = client.models.list().data
    ids = [m.id for m in models]
    details: dict[str, Any] = {"served": ids}
    match = next((m for m in models if m.id == opts.model), None)
    if match is None:
        raise CheckFailed(
            f"{opts.model!r} is not among the served models: {ids}",
            diagnose_served_name(opts.model, ids),
            details,
        )
    for extra in ("max_model_len", "root", "owned_by"):
        value = _field(match, extra)
        if value is not None:
            details[extra] = value
    return details


def check_completion(client: Any, opts: CheckOptions) -> dict[str, Any]:
    response = client.completions.create(prompt=COMPLETION_PROMPT, **request_kwargs(opts))
    choice = response.choices[0]
    return evaluate_text_answer(choice.text, response.usage, choice.finish_reason, None)


def _chat(
    client: Any, opts: CheckOptions, prompt: str, sampling: Mapping[str, Any] | None = None, **overrides: Any
) -> Any:
    kwargs = request_kwargs(opts, sampling)
    kwargs.update(overrides)
    return client.chat.completions.create(messages=[{"role": "user", "content": prompt}], **kwargs)


def check_chat(client: Any, opts: CheckOptions) -> dict[str, Any]:
    response = _chat(client, opts, CHAT_PROMPT)
    choice = response.choices[0]
    message = choice.message
    return evaluate_text_answer(
        message.content, response.usage, choice.finish_reason, message_reasoning(message)
    )


def collect_stream(stream: Iterable[Any], started: float, clock: Callable[[], float]) -> StreamTrace:
    """Read a chat completion stream, timing each chunk that carries output (text, reasoning, tool call)."""
    trace = StreamTrace(started=started, ended=started)
    for chunk in stream:
        now = clock()
        trace.chunks_total += 1
        usage = getattr(chunk, "usage", None)
        if usage is not None and getattr(usage, "completion_tokens", None) is not None:
            trace.completion_tokens = usage.completion_tokens
        for choice in chunk.choices or []:
            delta = choice.delta
            text = delta.content or ""
            reasoning = message_reasoning(delta) or ""
            if text or reasoning or delta.tool_calls:
                trace.arrivals.append(now)
            trace.text += text
            trace.reasoning += reasoning
            if choice.finish_reason:
                trace.finish_reason = choice.finish_reason
    trace.ended = clock()
    return trace


def check_streaming(client: Any, opts: CheckOptions, clock: Callable[[], float] = time.monotonic) -> dict:
    started = clock()
    stream = _chat(client, opts, CHAT_PROMPT, stream=True, stream_options={"include_usage": True})
    try:
        trace = collect_stream(stream, started, clock)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return evaluate_stream(trace)


def check_tool_call(client: Any, opts: CheckOptions) -> dict[str, Any]:
    tool = normalize_tool(opts.tool)
    name = tool["function"]["name"]
    prompt = opts.tool_prompt or (
        DEFAULT_TOOL_PROMPT if name == "get_weather" else f"Call the {name} tool now with suitable arguments."
    )
    response = _chat(client, opts, prompt, tools=[tool], tool_choice="auto")
    choice = response.choices[0]
    return evaluate_tool_call(choice.message, tool, choice.finish_reason)


def check_reasoning(client: Any, opts: CheckOptions) -> dict[str, Any]:
    response = _chat(client, opts, REASONING_PROMPT)
    _, details = evaluate_reasoning(response.choices[0].message, opts.expect_reasoning_parser)
    return details


def _status_of(call: Callable[[], Any]) -> int:
    """HTTP status of a request: 200 when it succeeds, the error's status when the server refuses it."""
    try:
        call()
    except openai.APIStatusError as exc:
        return exc.status_code
    return 200


def _omit_header() -> Any:
    omit = getattr(openai, "Omit", None)
    if omit is None:  # older SDKs kept it private
        from openai._types import Omit as omit
    return omit()


def check_auth(client: Any, opts: CheckOptions) -> dict[str, Any]:
    outcomes = {
        "no_key": _status_of(lambda: client.models.list(extra_headers={"Authorization": _omit_header()}))
    }
    if opts.api_key is not None:
        outcomes["configured_key"] = _status_of(client.models.list)
        wrong = {"Authorization": f"Bearer {WRONG_KEY}"}
        outcomes["wrong_key"] = _status_of(lambda: client.models.list(extra_headers=wrong))
    details = evaluate_auth(opts.api_key, outcomes)
    if opts.probe_routes:
        details["routes"] = check_routes(client, opts)
    return details


def check_routes(client: Any, opts: CheckOptions) -> dict[str, dict[str, int]]:
    """Every route vLLM registers, but the public ones, must be refused without a key and with a wrong one."""
    root = opts.base_url.rstrip("/").removesuffix("/v1")
    targets = endpoint_probes.probe_targets(opts.probe_routes or {}, opts.public_paths)
    with make_http_client(opts) as http:

        def send(method: str, path: str, headers: dict[str, str]) -> int:
            body = {} if method in ("POST", "PUT", "PATCH") else None
            return http.request(method, root + path, headers=headers, json=body).status_code

        statuses = endpoint_probes.probe_routes(send, targets, WRONG_KEY)
    leaks = endpoint_probes.judge_probes(statuses)
    if leaks:
        raise CheckFailed(
            f"{len(leaks)} probe(s) answered: {'; '.join(leaks)}", DIAG_ROUTES_OPEN, {"routes": statuses}
        )
    return statuses


def check_tls(client: Any, opts: CheckOptions) -> dict[str, Any]:
    """The endpoint's certificate verifies against `ca_file` (else the system store) for the address in
    base_url; a warning when it has fewer than `cert_warn_days` days left."""
    if not opts.base_url.startswith("https://"):
        return {"verified": False, "note": "not HTTPS: nothing to verify"}
    try:
        seen = endpoint_probes.fetch_certificate(opts.base_url, opts.ca_file, min(opts.timeout, 30))
    except ssl.SSLError as exc:
        raise CheckFailed(f"TLS: {exc}", DIAG_TLS.format(ca=opts.ca_file or "the system store")) from exc
    details = endpoint_probes.judge_certificate(seen["cert"], opts.cert_warn_days)
    details["protocol"] = seen["version"]
    return details


def check_sampling(client: Any, opts: CheckOptions) -> dict[str, Any]:
    sampling = dict(opts.sampling)
    sampling.setdefault("top_k", 20)
    kwargs, extra = split_sampling(sampling)
    response = _chat(client, opts, CHAT_PROMPT, sampling=sampling)
    choice = response.choices[0]
    # Accepted is what this check proves; whether the answer is any good is the chat check's business.
    details = answer_details(
        choice.message.content, response.usage, choice.finish_reason, message_reasoning(choice.message)
    )
    details.update(sent=kwargs, extra_body=extra)
    # Proof that extra_body reaches vLLM's sampler: an out-of-range top_k must be refused.
    invalid = dict(sampling, top_k=INVALID_TOP_K)
    status = _status_of(lambda: _chat(client, opts, CHAT_PROMPT, sampling=invalid, max_tokens=1))
    details["invalid_top_k_status"] = status
    if status != 400:
        raise CheckFailed(
            f"a request with top_k={INVALID_TOP_K} got {status}, expected 400",
            DIAG_TOP_K_IGNORED.format(value=INVALID_TOP_K) if status == 200 else None,
            details,
        )
    return details


CHECK_FUNCTIONS: dict[str, Callable[[Any, CheckOptions], dict[str, Any]]] = {
    "tls": check_tls,
    "models": check_models,
    "completion": check_completion,
    "chat": check_chat,
    "streaming": check_streaming,
    "tool_call": check_tool_call,
    "reasoning": check_reasoning,
    "auth": check_auth,
    "sampling": check_sampling,
}
UNREACHABLE_KINDS = ("connection_refused", "connection_error")


def run_check(
    name: str, client: Any, opts: CheckOptions, clock: Callable[[], float] = time.monotonic
) -> CheckResult:
    """Run one check, turning its failure or the client's exception into a CheckResult."""
    started = clock()
    try:
        details = CHECK_FUNCTIONS[name](client, opts)
    except CheckFailed as exc:
        return CheckResult(
            name, False, clock() - started, exc.details, exc.error, exc.diagnosis, error_kind="check_failed"
        )
    except Exception as exc:  # an API error, or an answer shaped unlike any OpenAI response
        latency = clock() - started

        def names() -> list[str] | None:
            try:
                return served_model_ids(client)
            except Exception:
                return None

        kind, error, diagnosis = describe_error(exc, opts, names)
        return CheckResult(name, False, latency, {}, error, diagnosis, error_kind=kind)
    # nothing to enforce, or no TLS to verify
    skipped = (name == "auth" and opts.api_key is None) or (
        name == "tls" and not opts.base_url.startswith("https://")
    )
    return CheckResult(name, True, clock() - started, details, skipped=skipped)


def run_checks(
    client: Any,
    opts: CheckOptions,
    names: Iterable[str] = CHECKS,
    clock: Callable[[], float] = time.monotonic,
) -> Report:
    """Run the named checks in the canonical order; after an unreachable endpoint the rest are not run."""
    wanted = set(names)
    unknown = wanted - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; choose from {list(CHECKS)}")
    started = clock()
    results: list[CheckResult] = []
    unreachable: CheckResult | None = None
    for name in (n for n in CHECKS if n in wanted):
        if unreachable is not None:
            results.append(
                CheckResult(
                    name,
                    False,
                    error=f"not run: the endpoint is unreachable (see check '{unreachable.name}')",
                    error_kind="not_run",
                    skipped=True,
                )
            )
            continue
        result = run_check(name, client, opts, clock)
        if result.error_kind in UNREACHABLE_KINDS:
            unreachable = result
        results.append(result)
    return Report(opts.base_url, opts.model, results, duration_s=clock() - started)


def make_client(opts: CheckOptions) -> Any:
    """An openai client for the endpoint: no retries (each failure is reported as it happened)."""
    if openai is None:
        raise RuntimeError("the openai library is not importable")
    # vLLM ignores the key when it runs without --api-key, but the SDK insists on one.
    return openai.OpenAI(
        base_url=opts.base_url,
        api_key=opts.api_key or "EMPTY",
        timeout=opts.timeout,
        max_retries=0,
        http_client=make_http_client(opts) if opts.ca_file else None,
    )


def make_http_client(opts: CheckOptions) -> Any:
    """An HTTP client that trusts `ca_file` when given, else what the environment says (SSL_CERT_FILE)."""
    verify = ssl.create_default_context(cafile=opts.ca_file) if opts.ca_file else True
    return openai.DefaultHttpxClient(verify=verify, timeout=opts.timeout)
