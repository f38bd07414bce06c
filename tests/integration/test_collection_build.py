"""`ansible-galaxy collection build` makes a tarball that installs and works like the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(argv: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, cwd=cwd, env=env, text=True, capture_output=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_built_collection_installs_and_runs(tmp_path):
    run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), str(REPO)], REPO)
    [tarball] = tmp_path.glob("llmfleet-serve-*.tar.gz")
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    assert "galaxy.yml" not in names and "MANIFEST.json" in names
    assert not [
        n for n in names if n.startswith(("tests/", "molecule/", "lab/", ".cache", ".collections", ".venv"))
    ]
    assert "roles/preflight/meta/argument_specs.yml" in names

    installed = tmp_path / "collections"
    # --force: the checkout itself may be on the configured collections path (bootstrap links it).
    run(
        [str(BIN / "ansible-galaxy"), "collection", "install", "--force", "-p", str(installed), str(tarball)],
        tmp_path,
    )

    # Outside the checkout, with only the installed copy on the collections path.
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(installed),
        "ANSIBLE_CONFIG": str(workdir / "none.cfg"),
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    inventory = workdir / "hosts.yml"
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"ctl": host}}}))
    playbook = workdir / "play.yml"
    play = {"name": "Use the installed collection", "hosts": "all", "gather_facts": False}
    playbook.write_text(yaml.safe_dump([{**play, "roles": [{"role": "llmfleet.serve.preflight"}]}]))
    result = run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)], workdir, env)
    assert "failed=0" in result.stdout
    listed = run([str(BIN / "ansible-doc"), "-t", "filter", "-l", "llmfleet.serve"], workdir, env).stdout
    assert "llmfleet.serve.preflight_var_errors" in listed or "preflight_var_errors" in listed
