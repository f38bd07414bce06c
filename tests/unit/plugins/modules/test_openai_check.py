"""Unit tests for the openai_check module shell: arguments, journal, report file, missing library."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from ansible.module_utils import basic

from ansible_collections.llmfleet.serve.plugins.module_utils import openai_checks as oc
from ansible_collections.llmfleet.serve.plugins.modules import openai_check


@pytest.fixture
def closed_port_url() -> str:
    """A base_url on a local port nothing listens on: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def passing_report(opts: oc.CheckOptions, names: list[str]) -> oc.Report:
    results = [oc.CheckResult(name, True, 0.01, {"served": [opts.model]}) for name in names]
    return oc.Report(opts.base_url, opts.model, results, duration_s=0.01)


def test_argument_spec_matches_documentation(documented_spec):
    spec = documented_spec(openai_check)
    assert spec["api_key"]["no_log"] is True


def test_connection_refused_fails_with_journal_lines(closed_port_url, run_module):
    lines = [f"vllm[812]: line {i}" for i in range(40)]
    result = run_module(
        openai_check,
        {
            "base_url": closed_port_url,
            "model": "MiniMax-M2",
            "api_key": "s3cret",
            "checks": ["models", "chat"],
            "journal_lines": lines,
        },
    )
    assert result["failed"] is True
    assert result["changed"] is False
    report = result["report"]
    assert report["checks"]["models"]["error_kind"] == "connection_refused"
    assert report["checks"]["chat"]["error_kind"] == "not_run"
    assert report["journal"] == {"unit": None, "source": "journal_lines", "lines": lines[-30:]}
    assert oc.DIAG_CONNECTION_REFUSED in result["msg"]
    assert result["msg"].endswith("last journal lines of the service:\n" + "\n".join(lines[-10:]))
    assert "s3cret" not in json.dumps(result)


def test_connection_refused_runs_journalctl_for_the_unit(closed_port_url, run_module, monkeypatch):
    calls: list[list[str]] = []

    def fake_run_command(self, argv, **_kw):
        calls.append(argv)
        return 0, "Nov 25 vllm[1]: Loading weights\nNov 25 vllm[1]: Killed\n", ""

    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, *a, **k: f"/usr/bin/{name}")
    monkeypatch.setattr(basic.AnsibleModule, "run_command", fake_run_command)
    result = run_module(
        openai_check, {"base_url": closed_port_url, "model": "MiniMax-M2", "journal_unit": "vllm.service"}
    )
    assert calls == [["/usr/bin/journalctl", "-u", "vllm.service", "-n", "30", "--no-pager"]]
    assert result["report"]["journal"]["lines"] == [
        "Nov 25 vllm[1]: Loading weights",
        "Nov 25 vllm[1]: Killed",
    ]
    assert "last journal lines of vllm.service:\nNov 25 vllm[1]: Loading weights" in result["msg"]


def test_journal_error_is_reported(closed_port_url, run_module, monkeypatch):
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, *a, **k: None)
    result = run_module(
        openai_check,
        {"base_url": closed_port_url, "model": "M", "checks": ["models"], "journal_unit": "vllm"},
    )
    assert result["report"]["journal"]["error"] == "journalctl is not installed here"


def test_passing_report_is_written_atomically(tmp_path: Path, run_module, monkeypatch):
    monkeypatch.setattr(oc, "run_checks", lambda client, opts, names: passing_report(opts, names))
    target = tmp_path / "report.json"
    result = run_module(
        openai_check,
        {"base_url": "http://10.0.0.5:8000/v1", "model": "MiniMax-M2", "report_path": str(target)},
    )
    assert result.get("failed") is None
    assert result["changed"] is False
    assert result["msg"] == "all 9 checks passed against http://10.0.0.5:8000/v1 (model MiniMax-M2)"
    assert json.loads(target.read_text()) == result["report"]
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left behind


def test_check_mode_runs_checks_but_writes_no_report(tmp_path: Path, run_module, monkeypatch):
    ran: list[list[str]] = []

    def fake_run(client, opts, names):
        ran.append(names)
        return passing_report(opts, names)

    monkeypatch.setattr(oc, "run_checks", fake_run)
    target = tmp_path / "report.json"
    args = {
        "base_url": "http://10.0.0.5:8000/v1",
        "model": "MiniMax-M2",
        "checks": ["models"],
        "report_path": str(target),
        "_ansible_check_mode": True,
    }
    result = run_module(openai_check, args)
    assert ran == [["models"]]
    assert result["report"]["ok"] is True
    assert not target.exists()


def test_missing_report_directory_fails(tmp_path: Path, run_module, monkeypatch):
    monkeypatch.setattr(oc, "run_checks", lambda client, opts, names: passing_report(opts, names))
    target = tmp_path / "nowhere" / "report.json"
    result = run_module(openai_check, {"base_url": "http://h/v1", "model": "M", "report_path": str(target)})
    assert result["failed"] is True
    assert result["msg"] == f"report_path: directory {tmp_path / 'nowhere'} does not exist"


def test_tool_without_name_fails(run_module):
    result = run_module(openai_check, {"base_url": "http://h/v1", "model": "M", "tool": {"parameters": {}}})
    assert result["failed"] is True
    assert result["msg"].startswith("tool: the tool definition has no function name")


def test_missing_openai_names_library_and_remedy(run_module, monkeypatch):
    monkeypatch.setattr(oc, "openai", None)
    monkeypatch.setattr(oc, "OPENAI_IMPORT_ERROR", "ModuleNotFoundError: No module named 'openai'")
    result = run_module(openai_check, {"base_url": "http://h/v1", "model": "M"})
    assert result["failed"] is True
    assert "Failed to import the required Python library (openai)" in result["msg"]
    assert "delegate_to: localhost" in result["msg"]
    assert "ansible_python_interpreter" in result["msg"]
