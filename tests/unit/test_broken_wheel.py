"""Tests for tests/fixtures/broken-wheel: a valid, reproducible wheel that breaks `import vllm` where installed."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "tests" / "fixtures" / "broken-wheel" / "build.py"


def build(out: Path) -> Path:
    result = subprocess.run(
        [sys.executable, str(BUILD), str(out)], capture_output=True, text=True, check=True
    )
    return Path(result.stdout.strip())


def test_same_bytes_every_build(tmp_path):
    first, second = build(tmp_path / "a"), build(tmp_path / "b")
    assert first.name == "llmfleet_e2e_breaks_vllm-1.0.0-py3-none-any.whl"
    assert first.read_bytes() == second.read_bytes()


def test_record_lists_every_file_with_its_hash(tmp_path):
    with zipfile.ZipFile(build(tmp_path)) as wheel:
        names = wheel.namelist()
        record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
        rows = [line.split(",") for line in wheel.read(record_name).decode().splitlines()]
        assert sorted(row[0] for row in rows) == sorted(names)
        for name, digest, size in rows:
            if name == record_name:
                assert (digest, size) == ("", "")
                continue
            content = wheel.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
            assert (digest, size) == (f"sha256={expected}", str(len(content)))


def installed(tmp_path: Path) -> Path:
    """The wheel unpacked into a site-packages folder, with a stub vllm package beside it."""
    site = tmp_path / "site-packages"
    with zipfile.ZipFile(build(tmp_path)) as wheel:
        wheel.extractall(site)
    (site / "vllm").mkdir()
    (site / "vllm" / "__init__.py").write_text("")
    return site


def run_with_site(site: Path, code: str) -> subprocess.CompletedProcess:
    """Run Python with `site` processed as a site-packages folder, so its .pth files run."""
    return subprocess.run(
        [sys.executable, "-S", "-c", f"import site; site.addsitedir({str(site)!r}); {code}"],
        capture_output=True,
        text=True,
        check=False,
    )


def test_installed_wheel_refuses_vllm_and_nothing_else(tmp_path):
    site = installed(tmp_path)
    refused = run_with_site(site, "import vllm")
    assert refused.returncode == 1
    assert "ImportError: llmfleet-e2e-breaks-vllm is installed in this environment" in refused.stderr
    fine = run_with_site(site, "import json; print('ok')")
    assert (fine.returncode, fine.stdout.strip()) == (0, "ok")


def test_without_the_pth_vllm_imports(tmp_path):
    """The refusal comes from the wheel's .pth: the same folder without it imports the stub vllm."""
    site = installed(tmp_path)
    next(site.glob("*.pth")).unlink()
    assert run_with_site(site, "import vllm").returncode == 0
