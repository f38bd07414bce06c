"""The wheelhouse module's shell, with uv and pip replaced by fakes that write what they would."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils import basic

from ansible_collections.llmfleet.serve.plugins.module_utils import wheelhouse as wh
from ansible_collections.llmfleet.serve.plugins.modules import wheelhouse

# name, version, wheel file, content, via
PACKAGES = [
    ("app", "1.0", "app-1.0-py3-none-any.whl", b"app wheel", "-r requirements.in"),
    ("helper", "2.0", "helper-2.0-cp311-cp311-manylinux_2_28_x86_64.whl", b"helper wheel", "app"),
    ("cuda-thing", "3.0", "cuda_thing-3.0-py3-none-any.whl", b"cuda wheel", "app"),
    ("cuda-dep", "0.1", "cuda_dep-0.1-py3-none-any.whl", b"cuda dep wheel", "cuda-thing"),
]


def sha(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


def lock_text(packages=PACKAGES) -> str:
    return "".join(
        f"{name}=={version} \\\n    --hash={sha(content)}\n    # via {via}\n"
        for name, version, _, content, via in packages
    )


class FakeTools:
    """Stands in for module.run_command: records argv, acts like uv and pip."""

    def __init__(self, packages=PACKAGES) -> None:
        self.packages = packages
        self.calls: list[list[str]] = []
        self.fail_on: str | None = None

    def __call__(self, argv, environ_update=None, **_: Any):
        self.calls.append(list(argv))
        if self.fail_on and self.fail_on in argv:
            return 1, "", "error: something went wrong\nhint: look here"
        if argv[1:3] == ["pip", "compile"]:
            Path(argv[argv.index("--output-file") + 1]).write_text(lock_text(self.packages))
        elif "download" in argv:
            assert environ_update == {"PIP_CONFIG_FILE": os.devnull}
            dest = Path(argv[argv.index("--dest") + 1])
            wanted = {e.key for e in wh.parse_lock(Path(argv[-1]).read_text())}
            for name, _, filename, content, _ in self.packages:
                if name in wanted:
                    (dest / filename).write_bytes(content)
        return 0, "", ""

    def named(self, word: str) -> list[list[str]]:
        return [argv for argv in self.calls if word in argv]


@pytest.fixture
def tools(monkeypatch) -> FakeTools:
    fake = FakeTools()
    monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda self, argv, **kw: fake(argv, **kw))
    return fake


@pytest.fixture
def uv(tmp_path) -> str:
    path = tmp_path / "bin" / "uv"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 1\n")
    path.chmod(0o755)
    return str(path)


def args_for(dest: Path, uv: str, **more) -> dict[str, Any]:
    return {"requirements": ["app==1.0"], "dest": str(dest), "uv_path": uv, "exclude": ["cuda-thing"], **more}


def test_argument_spec_matches_documentation(documented_spec):
    documented_spec(wheelhouse)
    yaml.safe_load(wheelhouse.EXAMPLES)
    yaml.safe_load(wheelhouse.RETURN)


def test_check_mode_predicts_and_touches_nothing(tmp_path, uv, tools, run_module):
    dest = tmp_path / "wh"
    result = run_module(wheelhouse, args_for(dest, uv), check_mode=True)
    assert result["changed"] is True
    assert result["would_download"] == 2
    assert result["excluded"] == ["cuda-dep", "cuda-thing"]
    assert not dest.exists()
    assert tools.named("download") == []
    assert len(tools.named("compile")) == 1


def test_build_then_nothing_to_do(tmp_path, uv, tools, run_module):
    dest = tmp_path / "wh"
    first = run_module(wheelhouse, args_for(dest, uv))
    assert first["changed"] is True
    assert (first["downloaded"], first["reused"]) == (2, 0)
    assert sorted(p.name for p in dest.iterdir()) == [
        "app-1.0-py3-none-any.whl",
        "helper-2.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        wh.LOCK_NAME,
        wh.MANIFEST_NAME,
    ]
    lock = wh.parse_lock((dest / wh.LOCK_NAME).read_text())
    assert [(e.pin, e.hashes) for e in lock] == [
        ("app==1.0", (sha(b"app wheel"),)),
        ("helper==2.0", (sha(b"helper wheel"),)),
    ]
    assert first["size_bytes"] == len(b"app wheel") + len(b"helper wheel")
    # pip came from a throwaway venv made with uv, and ran isolated for the target
    assert tools.named("venv")
    download = tools.named("download")[0]
    assert download[download.index("--python-version") + 1] == "3.11"
    assert "--require-hashes" in download
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".wheelhouse-")]

    for check_mode in (True, False):
        again = run_module(wheelhouse, args_for(dest, uv), check_mode=check_mode)
        assert again["changed"] is False
        assert again["key"] == first["key"]
        assert again["packages"] == first["packages"]
    assert len(tools.named("download")) == 1


def test_changed_lock_rebuilds_reusing_unchanged_wheels(tmp_path, uv, tools, run_module):
    dest = tmp_path / "wh"
    first = run_module(wheelhouse, args_for(dest, uv))
    tools.packages = [*PACKAGES[:1], ("helper", "2.1", "helper-2.1-py3-none-any.whl", b"new helper", "app")]
    second = run_module(wheelhouse, args_for(dest, uv))
    assert second["changed"] is True
    assert second["key"] != first["key"]
    assert "the lock changed" in second["reason"]
    assert (second["downloaded"], second["reused"]) == (1, 1)
    assert sorted(p.name for p in dest.glob("*.whl")) == [
        "app-1.0-py3-none-any.whl",
        "helper-2.1-py3-none-any.whl",
    ]


def test_reuse_lock_keeps_the_lock_while_the_request_is_unchanged(tmp_path, uv, tools, run_module):
    dest = tmp_path / "wh"
    first = run_module(wheelhouse, args_for(dest, uv))
    # the index now resolves helper to a new release: a kept lock does not see it
    tools.packages = [*PACKAGES[:1], ("helper", "2.1", "helper-2.1-py3-none-any.whl", b"new helper", "app")]
    kept = run_module(wheelhouse, args_for(dest, uv, reuse_lock=True))
    assert kept["changed"] is False
    assert (kept["key"], kept["excluded"]) == (first["key"], first["excluded"])
    assert len(tools.named("compile")) == 1
    # another request resolves again, even with reuse_lock
    other = run_module(wheelhouse, args_for(dest, uv, reuse_lock=True, requirements=["app==1.0", "helper"]))
    assert other["changed"] is True
    assert len(tools.named("compile")) == 2
    assert "helper-2.1-py3-none-any.whl" in [p.name for p in dest.glob("*.whl")]


def test_given_lock_and_pip_python_skip_resolution_and_venv(tmp_path, uv, tools, run_module):
    lock = tmp_path / "reviewed.lock"
    lock.write_text(lock_text())
    args = {"lock": str(lock), "dest": str(tmp_path / "wh"), "uv_path": uv, "pip_python": "/usr/bin/python3"}
    result = run_module(wheelhouse, args)
    assert result["changed"] is True
    assert tools.named("compile") == []
    assert tools.named("venv") == []
    assert tools.named("download")[0][0] == "/usr/bin/python3"
    assert len(result["packages"]) == 4  # nothing excluded


def test_refuses_a_directory_that_is_not_a_wheelhouse(tmp_path, uv, tools, run_module):
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    result = run_module(wheelhouse, args_for(dest, uv))
    assert result["failed"] is True
    assert "not a wheelhouse made by this module" in result["msg"]
    assert tools.calls == []
    assert (dest / "keep.txt").read_text() == "mine"


def test_resolver_failure_is_reported_with_its_output(tmp_path, uv, tools, run_module):
    tools.fail_on = "compile"
    result = run_module(wheelhouse, args_for(tmp_path / "wh", uv))
    assert result["failed"] is True
    assert result["msg"].startswith("resolving app==1.0 for cp311 x86_64-manylinux_2_36 failed (exit 1)")
    assert "find_links" in result["msg"]
    assert "hint: look here" in result["msg"]
    assert not (tmp_path / "wh").exists()


def test_download_that_misses_a_wheel_fails(tmp_path, uv, tools, run_module, monkeypatch):
    original = tools.__call__

    def lose_helper(argv, **kw):
        rc, out, err = original(argv, **kw)
        if "download" in argv:
            for path in Path(argv[argv.index("--dest") + 1]).glob("helper-*"):
                path.unlink()
        return rc, out, err

    monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda self, argv, **kw: lose_helper(argv, **kw))
    result = run_module(wheelhouse, args_for(tmp_path / "wh", uv))
    assert result["failed"] is True
    assert "no wheel for helper==2.0" in result["msg"]
    assert not (tmp_path / "wh").exists()


def test_missing_uv_is_explained(tmp_path, tools, run_module):
    result = run_module(wheelhouse, args_for(tmp_path / "wh", str(tmp_path / "nope")))
    assert result["failed"] is True
    assert "uv not found" in result["msg"]
    assert "uv_path" in result["msg"]


def test_bad_target_is_refused(tmp_path, uv, tools, run_module):
    result = run_module(wheelhouse, args_for(tmp_path / "wh", uv, python_version="3"))
    assert result["failed"] is True
    assert "python_version" in result["msg"]
    assert tools.calls == []
