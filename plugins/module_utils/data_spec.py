# Copyright: llmfleet developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Check user-written data (model profiles, plan overrides) against a declarative spec.

A :class:`DataSpec` maps each key to a rule, written as an Ansible argument spec: ``type`` (a type
Ansible knows, checked by ansible-core's own ArgumentSpecValidator, or one of the checkers below),
``elements`` and ``choices``. The other keys are ours:

* ``required``: the key must be given;
* ``min`` / ``max``: inclusive bounds of a number; ``above`` / ``below``: exclusive ones;
* ``pattern``: a regular expression the whole (stripped) text must match;
* ``nonempty``: the text must hold more than white space;
* ``options``: the spec of a nested mapping, or of each mapping in a list, checked the same way;
* ``parse``: turns the checked value into what the caller keeps (raises ValueError with a message
  of its own, naming the key);
* ``unique``: the parsed list may not hold an item twice;
* ``must``: what the error message says the value must be or do, when the default phrase, built
  from the type and the bounds, is not enough.

An empty value (None, or ``""``) means "not set". Every error names the data (``where``), the key
and the value, and says what is accepted; an unknown key gets the nearest known one as a suggestion.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.validation import check_type_float, check_type_int

_ANSIBLE_KEYS = ("type", "elements", "choices")


# ---- checkers: lenient ones for values that may come as strings (inventory, extra vars) -------------


def whole_number(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    return check_type_int(value)


def number(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    converted = check_type_float(value)
    if math.isnan(converted):
        raise ValueError("not a number")
    return converted


# ---- checkers: exact ones for data files (YAML gives the type; a string is a mistake) ----------------


def exact_whole_number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise TypeError(f"{value!r} is not a whole number")
    return int(value)


def exact_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def exact_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{value!r} is not true or false")
    return value


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def mapping(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{value!r} is not a mapping")
    return value


def sequence(value: Any) -> list[Any]:
    """A list (or tuple); unlike Ansible's ``list`` type, a string is not split at its commas."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise TypeError(f"{value!r} is not a list")
    return list(value)


_KIND = {
    whole_number: "whole number",
    exact_whole_number: "whole number",
    number: "number",
    exact_number: "number",
    text: "string",
    mapping: "mapping",
    sequence: "list",
    "str": "string",
}


def _must(rule: Mapping[str, Any]) -> str:
    """What a value must be, e.g. 'be a whole number at least 1' (a rule's ``must`` wins)."""
    if "must" in rule:
        return str(rule["must"])
    kind = rule.get("type")
    if kind in ("bool", exact_bool):
        return "be true or false"
    noun = _KIND.get(kind, "value")
    if rule.get("above") == 0 and "max" not in rule and "below" not in rule:
        return f"be a positive {noun}"
    if "above" in rule and "below" in rule:
        return f"be a {noun} above {rule['above']} and below {rule['below']}"
    if "min" in rule and "max" in rule:
        return f"be a {noun} between {rule['min']} and {rule['max']}"
    if "min" in rule:
        return f"be a {noun} at least {rule['min']}"
    if kind is sequence and rule.get("elements") in ("str", text):
        return "be a list of strings"
    return f"be a{'n' if noun[0] in 'aeiou' else ''} {noun}"


def _within(value: Any, rule: Mapping[str, Any]) -> bool:
    if ("min" in rule and value < rule["min"]) or ("max" in rule and value > rule["max"]):
        return False
    if ("above" in rule and value <= rule["above"]) or ("below" in rule and value >= rule["below"]):
        return False
    if "pattern" in rule and not re.fullmatch(rule["pattern"], value.strip()):
        return False
    return not (rule.get("nonempty") and not value.strip())


class DataSpec:
    """The rules of a mapping's keys; converts values to the types the rules name.

    A rule that names one of Ansible's types (or its ``elements``, or ``choices``) is checked by
    ArgumentSpecValidator; a checker of ours (a function) is called directly, as the validator would
    call it, without the validator's deep copy of the data.
    """

    def __init__(self, rules: Mapping[str, Mapping[str, Any]]) -> None:
        self.rules = rules
        by_ansible = {key: rule for key, rule in rules.items() if _names_ansible_types(rule)}
        self._ansible = ArgumentSpecValidator(
            {key: {k: rule[k] for k in _ANSIBLE_KEYS if k in rule} for key, rule in by_ansible.items()}
        )

    def convert(self, values: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The values converted to their types, and whether all of them could be."""
        converted = dict(values)
        for key, value in values.items():
            if key not in self._ansible.argument_spec:
                try:
                    converted[key] = _by_checker(value, self.rules[key])
                except (TypeError, ValueError):
                    return converted, False
        by_ansible = {key: value for key, value in values.items() if key in self._ansible.argument_spec}
        if not by_ansible:
            return converted, True
        result = self._ansible.validate(by_ansible)
        converted.update(result.validated_parameters)
        return converted, not result.error_messages


def _names_ansible_types(rule: Mapping[str, Any]) -> bool:
    kind = rule.get("type", "raw")
    return (
        (isinstance(kind, str) and kind != "raw")
        or isinstance(rule.get("elements"), str)
        or "choices" in rule
    )


def _by_checker(value: Any, rule: Mapping[str, Any]) -> Any:
    kind = rule.get("type", "raw")
    checked = value if kind == "raw" else kind(value)
    if "elements" in rule:
        checked = [rule["elements"](item) for item in checked]
    return checked


def check_mapping(
    data: Mapping[str, Any],
    spec: DataSpec,
    where: str,
    error: Callable[[str], Exception],
    noun: str = "fields",
    unknown_help: str = "",
    path: str = "",
) -> dict[str, Any]:
    """The checked (converted, parsed) values of ``data`` that are set; raises ``error(message)``.

    ``where`` names the data in messages (``model profile qwen3-8b``); ``noun`` and ``unknown_help``
    word the message about unknown keys; ``path`` prefixes the keys of nested data (``cpu.``).
    """
    prefix = f"{where}: " if where else ""
    unknown = sorted(str(key) for key in data if key not in spec.rules)
    if unknown:
        close = [path + m for key in unknown for m in difflib.get_close_matches(key, list(spec.rules), n=1)]
        message = f"{prefix}unknown {noun} {[path + key for key in unknown]}"
        message += f"; did you mean {', '.join(close)}?" if close else ""
        raise error(message + (f"; {unknown_help}" if unknown_help else ""))
    given = {key: value for key, value in data.items() if value is not None and value != ""}
    for key, rule in spec.rules.items():
        if rule.get("required") and key not in given:
            raise error(f"{prefix}{path}{key} is missing; it must {_must(rule)}")
    converted, all_converted = spec.convert(given)
    if not all_converted:
        _raise_type_error(given, spec, f"{prefix}{path}", error)
    return {
        key: _check_value(value, converted[key], spec.rules[key], f"{path}{key}", where, error)
        for key, value in given.items()
    }


def _raise_type_error(
    given: dict[str, Any], spec: DataSpec, where_path: str, error: Callable[[str], Exception]
) -> None:
    """Name the key whose value does not have its type (ArgumentSpecValidator's messages name no data)."""
    for key, value in given.items():
        if not DataSpec({key: spec.rules[key]}).convert({key: value})[1]:
            raise error(f"{where_path}{key} must {_must(spec.rules[key])}, got {value!r}")
    raise error(f"{where_path}{', '.join(given)}: values of the wrong type")  # pragma: no cover


def _check_value(
    value: Any,
    checked: Any,
    rule: Mapping[str, Any],
    label: str,
    where: str,
    error: Callable[[str], Exception],
) -> Any:
    """Bounds, nested mappings, parsing and uniqueness of one converted value."""
    prefix = f"{where}: " if where else ""
    if not _within(checked, rule):
        raise error(f"{prefix}{label} must {_must(rule)}, got {value!r}")
    if "options" in rule:
        nested = rule["options"]
        if isinstance(checked, dict):
            checked = check_mapping(checked, nested, where, error, path=f"{label}.")
        else:
            checked = [
                check_mapping(item, nested, where, error, path=f"{label}[{n}].")
                for n, item in enumerate(checked)
            ]
    if "parse" in rule:
        try:
            checked = rule["parse"](checked)
        except ValueError as exc:
            raise error(f"{prefix}{exc}") from exc
    if rule.get("unique"):
        seen: list[Any] = []
        for item in checked:
            if item in seen:
                raise error(f"{prefix}{label}: {item} is listed twice")
            seen.append(item)
    return checked


__all__ = [
    "DataSpec",
    "check_mapping",
    "exact_bool",
    "exact_number",
    "exact_whole_number",
    "mapping",
    "number",
    "sequence",
    "text",
    "whole_number",
]
