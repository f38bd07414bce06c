# Copyright: llmfleet developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What a host serves, read from its unit, and the rollout's report: per host, from -> to, the batch,
each step's result and time, rolled back or not and why; with the table printed at the end."""

from __future__ import annotations

import hashlib
import json
import shlex
from typing import Any

from ansible_collections.llmfleet.serve.plugins.module_utils.service_args import parse_flags

NOTHING = {
    "release": "",
    "revision": "",
    "flags": "",
    "runtime_path": "",
    "model_path": "",
    "served_model_name": "",
}


def served_state(unit_text: str) -> dict[str, str]:
    """The release id, model revision and flags digest a vLLM unit written by vllm_service runs, with the
    paths of the runtime release and of the model's snapshot."""
    release, argv = "", []
    for line in (unit_text or "").splitlines():
        if line.startswith("Environment=LLMFLEET_RELEASE="):
            release = line.partition("=")[2].partition("=")[2].strip()
        elif line.startswith("ExecStart="):
            argv = shlex.split(line.partition("=")[2].replace("%%", "%").replace("$$", "$"))
    if not argv:
        return dict(NOTHING)
    server_args = argv[argv.index("--model") :] if "--model" in argv else argv[1:]
    flags = parse_flags(server_args)
    model_path = flags.get("--model") or ""
    return {
        "release": release,
        "revision": model_path.rstrip("/").rsplit("/", 1)[-1].replace("--", "/"),
        "flags": flags_digest(server_args),
        "runtime_path": argv[0].rsplit("/bin/", 1)[0] if "/bin/" in argv[0] else "",
        "model_path": model_path,
        "served_model_name": flags.get("--served-model-name") or model_path,
    }


def flags_digest(server_args: list[str]) -> str:
    """A short digest of the server's flags, the model path left out (its revision is reported apart)."""
    flags = parse_flags(server_args)
    flags.pop("--model", None)
    return hashlib.sha256(json.dumps(sorted(flags.items())).encode()).hexdigest()[:12]


def record_host(report: dict[str, Any], host: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The report with the host's entry set; a report of another manifest starts over."""
    if report.get("manifest_digest") != entry["manifest_digest"]:
        report = {"manifest": entry["manifest"], "manifest_digest": entry["manifest_digest"], "hosts": {}}
    hosts = dict(report.get("hosts", {}))
    hosts[host] = {key: value for key, value in entry.items() if key not in ("manifest", "manifest_digest")}
    return {
        **report,
        "hosts": dict(sorted(hosts.items(), key=lambda item: (item[1].get("batch", 0), item[0]))),
    }


def is_done(report: dict[str, Any], host: str, manifest_digest: str, serving: dict[str, str]) -> bool:
    """Whether the host verified this manifest in an earlier run and still serves what it verified."""
    entry = report.get("hosts", {}).get(host, {}) if report.get("manifest_digest") == manifest_digest else {}
    return entry.get("result") == "verified" and entry.get("to") == serving


def passed(report: dict[str, Any], manifest_digest: str) -> bool:
    """Whether the report is of this manifest and every host in it verified it."""
    hosts = report.get("hosts", {})
    return (
        report.get("manifest_digest") == manifest_digest
        and bool(hosts)
        and all(entry.get("result") in ("verified", "already verified") for entry in hosts.values())
    )


def _state(state: dict[str, str]) -> str:
    if not state.get("release"):
        return "(nothing)"
    return f"{state['release']} {state.get('revision', '?')} flags {state.get('flags', '?')}"


def report_table(report: dict[str, Any]) -> list[str]:
    """One line per host, in batch order: batch, host, result, from -> to, and why it was rolled back."""
    lines = [
        f"release {report.get('manifest', {}).get('name', '?')} ({report.get('manifest_digest', '')[:12]})"
    ]
    for host, entry in report.get("hosts", {}).items():
        seconds = sum(step.get("seconds", 0) for step in entry.get("steps", []))
        line = (
            f"batch {entry.get('batch', '?')}  {host}  {entry.get('result', '?')}  "
            f"{_state(entry.get('from', {}))} -> {_state(entry.get('to', {}))}  {seconds:.0f} s"
        )
        if entry.get("rolled_back"):
            line += f"  rolled back: {entry.get('reason', '')}"
        lines.append(line)
    return lines
