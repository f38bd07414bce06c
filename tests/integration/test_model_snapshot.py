"""model_snapshot end to end: the module, the real modelscope and huggingface_hub clients, and the hub double.

Every scenario runs for both hub sources. The module runs in-process (its `main`, with patched arguments)
where the test needs to watch it (files opened, free space faked), as a separate process where the test
kills it half-way, and once through `ansible localhost -m` as a user runs it. The double counts requests and
bytes per file, so "fetched once", "only that file again" and "the remainder" are measured on the wire.

Run: ``.venv/bin/pytest tests/integration/test_model_snapshot.py`` (about a minute; one test moves 2 x 200 MB).
"""

from __future__ import annotations

import builtins
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS = REPO_ROOT / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

# The clients read part of their settings at import: keep them out of the home directory from the start.
_CLIENT_HOME = Path(tempfile.mkdtemp(prefix="model-snapshot-clients-"))
os.environ.update(
    {
        "HF_HOME": str(_CLIENT_HOME / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_XET": "1",
        "MODELSCOPE_HOME": str(_CLIENT_HOME / "ms"),
        "TQDM_DISABLE": "1",
    }
)

from ansible.module_utils.testing import patch_module_args  # noqa: E402
from hubdouble.content import flip_byte, make_model_repo, tree_bytes, write_random  # noqa: E402
from hubdouble.fixture import HubDouble, running_double  # noqa: E402
from hubdouble.snapshot_module import running_module  # noqa: E402

from ansible_collections.llmfleet.serve.plugins.module_utils import snapshot as sn  # noqa: E402
from ansible_collections.llmfleet.serve.plugins.modules import model_snapshot  # noqa: E402

MODEL = "acme/tiny"
SOURCES = ["modelscope", "huggingface"]
BIG = 200 * 1024 * 1024
MiB = 1024 * 1024


@pytest.fixture(scope="module", autouse=True)
def _remove_client_home() -> Iterator[None]:
    yield
    shutil.rmtree(_CLIENT_HOME, ignore_errors=True)


@pytest.fixture
def hub_double(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubDouble]:
    with running_double(tmp_path_factory.mktemp("hubroot")) as double:
        yield double


@pytest.fixture
def repo(hub_double: HubDouble) -> Path:
    return make_model_repo(hub_double.root, MODEL, "master", shards=3, shard_size=3 * MiB)


def args_for(double: HubDouble, source: str, root: Path, **extra: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "model": MODEL,
        "source": source,
        "endpoint": double.url,
        "models_root": str(root),
    }
    args.update(extra)
    return args


def run_module(
    args: dict[str, Any], capsys: pytest.CaptureFixture[str], check: bool = False
) -> dict[str, Any]:
    module_args = dict(args, _ansible_check_mode=check)
    with patch_module_args(module_args), pytest.raises(SystemExit):
        model_snapshot.main()
    out = capsys.readouterr().out
    return json.loads(out)


def repo_files(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def snapshot_files(path: str) -> dict[str, bytes]:
    files = repo_files(Path(path))
    files.pop(sn.MANIFEST_NAME)
    return files


class OpenSpy:
    """Records files opened under a directory (builtins.open and io.open, which Path.open uses)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, under: Path) -> None:
        self.under = str(under)
        self.opened: list[str] = []
        real_open = builtins.open

        def spy(file, *a, **kw):
            if isinstance(file, (str, os.PathLike)) and os.fspath(file).startswith(self.under):
                self.opened.append(os.fspath(file)[len(self.under) + 1 :])
            return real_open(file, *a, **kw)

        monkeypatch.setattr(builtins, "open", spy)
        monkeypatch.setattr(io, "open", spy)


# ---------------------------------------------------------------------------------------------------------------
# Download, re-run, check mode
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", SOURCES)
def test_download_then_rerun_changes_nothing_and_reads_no_file(
    source, hub_double, repo, tmp_path, capsys, monkeypatch
):
    root = tmp_path / "models"
    first = run_module(args_for(hub_double, source, root), capsys)
    assert first["changed"] is True, first
    assert snapshot_files(first["path"]) == repo_files(repo)
    assert first["total_bytes"] == first["bytes_transferred"] == tree_bytes(repo)
    assert first["revision_requested"] == ("master" if source == "modelscope" else "main")
    assert first["revision_is_commit"] is True and len(first["revision"]) == 40
    assert first["path"] == str(root / "acme" / "tiny" / first["revision"])
    assert hub_double.file_requests(MODEL) == {path: 1 for path in repo_files(repo)}
    assert hub_double.file_bytes(MODEL) == tree_bytes(repo)
    assert not (root / ".staging").exists()
    assert not (root / ".cache" / "huggingface").exists()  # the HF client wrote nothing

    hub_double.reset()
    spy = OpenSpy(monkeypatch, Path(first["path"]))
    again = run_module(args_for(hub_double, source, root), capsys)
    assert again["changed"] is False
    assert again["bytes_transferred"] == 0 and again["would_download_bytes"] == 0
    assert again["listing"] == "manifest"
    assert spy.opened == [sn.MANIFEST_NAME]
    stats = hub_double.stats()
    assert stats["bytes_total"] == 0
    assert stats["requests"]["total"] == 1  # resolving the branch, nothing else

    hub_double.reset()
    pinned = run_module(args_for(hub_double, source, root, revision=first["revision"]), capsys)
    assert pinned["changed"] is False and pinned["path"] == first["path"]
    assert hub_double.stats()["requests"]["total"] == 0  # a commit needs no hub at all


@pytest.mark.parametrize("source", SOURCES)
def test_check_mode_reports_the_bytes_to_download(source, hub_double, repo, tmp_path, capsys):
    root = tmp_path / "models"
    predicted = run_module(args_for(hub_double, source, root), capsys, check=True)
    assert predicted["changed"] is True
    assert predicted["would_download_bytes"] == tree_bytes(repo)
    assert predicted["bytes_transferred"] == 0
    assert not root.exists()
    assert hub_double.stats()["bytes_total"] == 0
    real = run_module(args_for(hub_double, source, root), capsys)
    assert real["bytes_transferred"] == predicted["would_download_bytes"]
    after = run_module(args_for(hub_double, source, root), capsys, check=True)
    assert after["changed"] is False and after["would_download_bytes"] == 0


@pytest.mark.parametrize("source", SOURCES)
def test_patterns_select_files(source, hub_double, repo, tmp_path, capsys):
    result = run_module(
        args_for(hub_double, source, tmp_path, allow_patterns=["*.json"], ignore_patterns=["generation_*"]),
        capsys,
    )
    assert sorted(snapshot_files(result["path"])) == [
        "config.json",
        "model.safetensors.index.json",
        "tokenizer.json",
    ]
    assert sorted(hub_double.file_requests(MODEL)) == sorted(snapshot_files(result["path"]))


# ---------------------------------------------------------------------------------------------------------------
# Resume, corruption
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", SOURCES)
def test_killed_at_half_then_rerun_fetches_about_the_remainder(source, hub_double, tmp_path, capsys):
    """A ~200 MB sparse shard; the double stalls after half of it, the module process is killed, the re-run
    continues from the partial file: the double sees about the other half, not the whole file."""
    make_model_repo(hub_double.root, MODEL, "master", shards=1, shard_size=MiB, sparse_shard_size=BIG)
    big = "model-00002-of-00002.safetensors"
    half = BIG // 2
    hub_double.set_faults({"kind": "stall", "path": big, "after_bytes": half, "seconds": 120, "times": 1})
    root = tmp_path / "models"
    with running_module(args_for(hub_double, source, root), tmp_path) as process:
        partial = None
        deadline = time.monotonic() + 120
        # Wait until the double has sent half and the client has written (nearly) all of it to the partial file.
        while time.monotonic() < deadline:
            partials = (
                list((root / ".staging").rglob(big + sn.PARTIAL_SUFFIX))
                if (root / ".staging").exists()
                else []
            )
            if partials and hub_double.file_bytes(MODEL, big) >= half:
                partial = partials[0]
                size = partial.stat().st_size
                time.sleep(0.3)
                if partial.stat().st_size == size and size > half - 11 * MiB:
                    break
            assert process.poll() is None, process.communicate()
            time.sleep(0.1)
        assert partial is not None
    kept = partial.stat().st_size
    assert half - 11 * MiB < kept <= half
    assert not (root / "acme").exists()  # nothing visible yet

    hub_double.reset(faults=True)
    result = run_module(args_for(hub_double, source, root), capsys)
    assert result["changed"] is True
    sent = hub_double.file_bytes(MODEL, big)
    assert sent == BIG - kept  # exactly the remainder, on the wire
    assert hub_double.file_stats(MODEL)[big]["ranges"] == [f"bytes={kept}-"]
    assert result["bytes_transferred"] == hub_double.stats()["bytes_total"]
    assert (Path(result["path"]) / big).stat().st_size == BIG
    assert not (root / ".staging").exists()


@pytest.mark.parametrize("source", SOURCES)
def test_connection_cut_at_half_is_resumed_within_the_run(source, hub_double, repo, tmp_path, capsys):
    """The clients resume a cut connection themselves, from the last piece they wrote: less than a MiB is
    fetched twice (huggingface_hub's default 10 MiB pieces would lose up to 10 MiB)."""
    shard = "extra/model-extra.safetensors"
    size = 24 * MiB
    write_random(repo / shard, size, seed=7)
    hub_double.set_faults({"kind": "cut", "path": shard, "after_bytes": size // 2, "times": 1})
    result = run_module(args_for(hub_double, source, tmp_path), capsys)
    assert snapshot_files(result["path"]) == repo_files(repo)
    entry = hub_double.file_stats(MODEL)[shard]
    assert entry["requests"] == 2
    assert entry["ranges"][0] is None
    offset = int(entry["ranges"][1].removeprefix("bytes=").rstrip("-"))
    assert size // 2 - MiB <= offset <= size // 2
    assert entry["bytes"] == size // 2 + (size - offset)  # resumed, not restarted


@pytest.mark.parametrize("source", SOURCES)
def test_flipped_byte_in_transit_is_detected_and_only_that_file_fetched_again(
    source, hub_double, repo, tmp_path, capsys
):
    shard = "model-00001-of-00003.safetensors"
    hub_double.set_faults({"kind": "flip", "path": shard, "offset": 1_000_000, "times": 1})
    result = run_module(args_for(hub_double, source, tmp_path), capsys)
    assert snapshot_files(result["path"]) == repo_files(repo)
    requests = hub_double.file_requests(MODEL)
    assert requests.pop(shard) == 2
    assert set(requests.values()) == {1}


@pytest.mark.parametrize("source", SOURCES)
def test_corrupted_file_on_disk_is_repaired_alone_by_verify_full(source, hub_double, repo, tmp_path, capsys):
    first = run_module(args_for(hub_double, source, tmp_path), capsys)
    shard = "model-00003-of-00003.safetensors"
    flip_byte(Path(first["path"]) / shard)
    hub_double.reset()

    quick = run_module(args_for(hub_double, source, tmp_path), capsys)
    assert quick["changed"] is False  # same size and mtime: only a full check can see it
    full = run_module(args_for(hub_double, source, tmp_path, verify="full"), capsys)
    assert full["changed"] is True
    assert full["files_repaired"] == [shard] and full["files_fetched"] == [shard]
    assert hub_double.file_requests(MODEL) == {shard: 1}
    assert snapshot_files(full["path"]) == repo_files(repo)
    assert run_module(args_for(hub_double, source, tmp_path, verify="full"), capsys)["changed"] is False


# ---------------------------------------------------------------------------------------------------------------
# Refusals and errors
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", SOURCES)
def test_disk_too_small_is_refused_before_download_leaving_nothing(
    source, hub_double, repo, tmp_path, capsys, monkeypatch
):
    root = tmp_path / "models"
    total = tree_bytes(repo)
    free = total // 2
    monkeypatch.setattr(sn, "disk_free", lambda _path: (free, str(tmp_path)))
    result = run_module(args_for(hub_double, source, root, free_space_margin="64M"), capsys)
    assert result["failed"] is True and result["error_kind"] == "no_space"
    needed = total + 64 * MiB
    assert (result["needed_bytes"], result["free_bytes"], result["path"]) == (needed, free, str(tmp_path))
    assert f"needed {needed} bytes" in result["msg"] and f"free {free} bytes" in result["msg"]
    assert f"at {tmp_path}" in result["msg"] and MODEL in result["msg"]
    assert hub_double.stats()["bytes_total"] == 0
    assert not root.exists()


@pytest.mark.parametrize("source", SOURCES)
def test_wrong_revision_names_model_and_revision(source, hub_double, repo, tmp_path, capsys):
    result = run_module(args_for(hub_double, source, tmp_path / "m", revision="v9-does-not-exist"), capsys)
    assert result["failed"] is True
    assert result["error_kind"] == "revision_not_found"
    assert "model acme/tiny revision v9-does-not-exist" in result["msg"]
    assert hub_double.url in result["msg"]
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("source", SOURCES)
def test_unknown_model_is_reported_as_not_found(source, hub_double, repo, tmp_path, capsys):
    result = run_module(dict(args_for(hub_double, source, tmp_path / "m"), model="acme/missing"), capsys)
    assert result["failed"] is True
    assert result["error_kind"] == "repo_not_found"
    assert "model acme/missing revision" in result["msg"]


@pytest.mark.parametrize("source", SOURCES)
def test_gated_model_needs_the_token_which_is_never_shown(source, hub_double, repo, tmp_path, capsys):
    hub_double.set_tokens({MODEL: "hf_s3cret_t0ken"})
    denied = run_module(args_for(hub_double, source, tmp_path / "a"), capsys)
    assert denied["failed"] is True and denied["error_kind"] == "auth"
    assert "model acme/tiny revision" in denied["msg"] and "401" in denied["msg"]
    assert "token" in denied["msg"]
    allowed = run_module(args_for(hub_double, source, tmp_path / "b", token="hf_s3cret_t0ken"), capsys)
    assert allowed["changed"] is True
    assert snapshot_files(allowed["path"]) == repo_files(repo)
    assert "hf_s3cret_t0ken" not in json.dumps(allowed) + json.dumps(denied)


@pytest.mark.parametrize("source", SOURCES)
def test_file_missing_on_the_hub_fails_and_keeps_the_rest_for_the_next_run(
    source, hub_double, repo, tmp_path, capsys
):
    hub_double.set_faults({"kind": "status", "status": 404, "on": "file", "path": "tokenizer.json"})
    failed = run_module(args_for(hub_double, source, tmp_path), capsys)
    assert failed["failed"] is True and failed["error_kind"] == "download"
    assert "tokenizer.json" in failed["msg"] and "acme/tiny" in failed["msg"]
    hub_double.reset(faults=True)
    result = run_module(args_for(hub_double, source, tmp_path), capsys)
    assert hub_double.file_requests(MODEL) == {"tokenizer.json": 1}
    assert result["files_fetched"] == ["tokenizer.json"]


def test_missing_client_library_is_named_with_the_fix(hub_double, repo, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    result = run_module(args_for(hub_double, "huggingface", tmp_path / "m"), capsys)
    assert result["failed"] is True and result["error_kind"] == "missing_library"
    assert "huggingface_hub" in result["msg"] and "pip install" in result["msg"]
    assert "delegate_to: localhost" in result["msg"]
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------------------------------------------------------
# Other sources
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("api", SOURCES)
def test_mirror_source_speaks_either_api(api, hub_double, repo, tmp_path, capsys):
    result = run_module(
        {
            "model": MODEL,
            "source": "mirror",
            "mirror_api": api,
            "endpoint": hub_double.url,
            "models_root": str(tmp_path),
        },
        capsys,
    )
    assert result["changed"] is True and result["source"] == "mirror"
    assert snapshot_files(result["path"]) == repo_files(repo)


def test_local_source_adopts_a_snapshot_and_checks_its_manifest(hub_double, repo, tmp_path, capsys):
    origin = run_module(args_for(hub_double, "huggingface", tmp_path / "controller"), capsys)
    args = {
        "model": MODEL,
        "source": "local",
        "local_path": origin["path"],
        "models_root": str(tmp_path / "host"),
    }
    adopted = run_module(args, capsys)
    assert adopted["changed"] is True
    assert adopted["revision"] == origin["revision"] and adopted["revision_is_commit"] is True
    assert snapshot_files(adopted["path"]) == repo_files(repo)
    assert run_module(args, capsys)["changed"] is False

    flip_byte(Path(origin["path"]) / "config.json")
    broken = run_module(dict(args, models_root=str(tmp_path / "other"), retries=1), capsys)
    assert broken["failed"] is True
    assert "config.json: downloaded content has sha256" in broken["msg"]


def test_through_ansible_cli(hub_double, repo, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = dict(
        os.environ,
        HOME=str(home),
        PATH=f"{REPO_ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
    )
    for key in ("HF_HOME", "MODELSCOPE_HOME", "MODELSCOPE_CACHE"):
        env.pop(key, None)
    module_args = json.dumps(
        {"model": MODEL, "endpoint": hub_double.url, "models_root": str(tmp_path / "models")}
    )
    argv = ["ansible", "localhost", "-m", "llmfleet.serve.model_snapshot", "-a", module_args, "-o"]
    first = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "localhost | CHANGED" in first.stdout
    second = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "localhost | SUCCESS" in second.stdout, second.stdout + second.stderr
    assert '"bytes_transferred": 0' in second.stdout
    assert sorted(p.name for p in home.iterdir()) == []  # the clients wrote nothing to the home directory


@pytest.mark.parametrize("source", SOURCES)
def test_the_scripted_tiny_model_arrives_loadable(source, hub_double, tmp_path, capsys):
    """The lab's scripted tiny model (what the test fleet serves with vLLM), through the double."""
    served = hub_double.root / "llmfleet" / "tiny-minimax-m2" / "main"
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "lab" / "tinymodel" / "build.py"), "--out", str(served)],
        check=True,
        capture_output=True,
    )
    result = run_module(
        dict(args_for(hub_double, source, tmp_path), model="llmfleet/tiny-minimax-m2"), capsys
    )
    assert result["changed"] is True
    assert snapshot_files(result["path"]) == repo_files(served)
    assert result["files_unverified"] == []
    from safetensors.numpy import load_file

    tensors = load_file(str(Path(result["path"]) / "model.safetensors"))
    assert "lm_head.weight" in tensors
    script = json.loads((Path(result["path"]) / "llmfleet_script.json").read_text())
    assert script["tool_call"]["name"] == "get_weather"
