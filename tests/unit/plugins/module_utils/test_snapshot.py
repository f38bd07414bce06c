"""Unit tests for module_utils/snapshot.py: names, patterns, margins, hashing, manifest, plan, and the run itself
driven through a fake source (no network, no hub client)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.llmfleet.serve.plugins.module_utils import snapshot as sn
from ansible_collections.llmfleet.serve.plugins.module_utils.snapshot import Action, RemoteFile

CASES = yaml.safe_load((Path(__file__).with_name("snapshot_cases.yml")).read_text())
MODEL = "acme/tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


# ---------------------------------------------------------------------------------------------------------------
# Names and layout
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("model", "org", "name"), CASES["model_ids"]["valid"])
def test_split_model_id_accepts(model, org, name):
    assert sn.split_model_id(model) == (org, name)


@pytest.mark.parametrize("model", CASES["model_ids"]["invalid"])
def test_split_model_id_refuses(model):
    with pytest.raises(sn.RequestError, match="org/name"):
        sn.split_model_id(model)


@pytest.mark.parametrize(("revision", "dirname"), CASES["revision_dirs"]["valid"])
def test_revision_dirname(revision, dirname):
    assert sn.revision_dirname(revision) == dirname


@pytest.mark.parametrize("revision", CASES["revision_dirs"]["invalid"])
def test_revision_dirname_refuses(revision):
    with pytest.raises(sn.RequestError, match="cannot name a directory"):
        sn.revision_dirname(revision)


@pytest.mark.parametrize("revision", CASES["commits"]["commit"])
def test_is_commit(revision):
    assert sn.is_commit(revision)


@pytest.mark.parametrize("revision", CASES["commits"]["not_commit"])
def test_is_not_commit(revision):
    assert not sn.is_commit(revision)


@pytest.mark.parametrize("path", CASES["repo_paths"]["valid"])
def test_repo_path_accepted(path):
    assert sn.validate_repo_path(path) == path


@pytest.mark.parametrize("path", CASES["repo_paths"]["invalid"])
def test_repo_path_refused(path):
    with pytest.raises(sn.HubError, match="unsafe path"):
        sn.validate_repo_path(path)


def test_layout_paths():
    layout = sn.snapshot_paths("/srv/models", "MiniMaxAI/MiniMax-M2", "refs/pr/3")
    assert layout.final == Path("/srv/models/MiniMaxAI/MiniMax-M2/refs--pr--3")
    assert layout.staging == Path("/srv/models/.staging/MiniMaxAI/MiniMax-M2/refs--pr--3")
    assert layout.journal == Path("/srv/models/.staging/MiniMaxAI/MiniMax-M2/refs--pr--3.journal.json")
    assert layout.lock == Path("/srv/models/.staging/MiniMaxAI/MiniMax-M2/refs--pr--3.lock")
    assert layout.manifest == layout.final / ".llmfleet-manifest.json"
    assert layout.client_home == Path("/srv/models/.cache")


def test_layout_refuses_relative_root():
    with pytest.raises(sn.RequestError, match="absolute"):
        sn.snapshot_paths("models", MODEL, "main")


# ---------------------------------------------------------------------------------------------------------------
# Patterns and listings
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES["patterns"]["cases"], ids=lambda c: f"{c['allow']}-{c['ignore']}")
def test_filter_files(case):
    files = [RemoteFile(p, 1) for p in CASES["patterns"]["files"]]
    kept = sn.filter_files(files, case["allow"], case["ignore"])
    assert [f.path for f in kept] == case["expect"]


def test_check_listing_refuses_empty_selection():
    with pytest.raises(sn.RequestError, match=r"no file of acme/tiny at revision main matches"):
        sn.check_listing([], MODEL, "main")


def test_check_listing_refuses_duplicates_and_negative_sizes():
    with pytest.raises(sn.HubError, match=r"names 'a\.json' twice"):
        sn.check_listing([RemoteFile("a.json", 1), RemoteFile("a.json", 2)], MODEL, "main")
    with pytest.raises(sn.HubError, match="negative size"):
        sn.check_listing([RemoteFile("a.json", -1)], MODEL, "main")
    with pytest.raises(sn.HubError, match="unsafe path"):
        sn.check_listing([RemoteFile("../x", 1)], MODEL, "main")


def test_remote_file_checked_by():
    assert RemoteFile("a", 1, sha256="ab").checked_by == "sha256"
    assert RemoteFile("a", 1, git_sha1="cd").checked_by == "git-sha1"
    assert RemoteFile("a", 1).checked_by == "size"


# ---------------------------------------------------------------------------------------------------------------
# Sizes and free space
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("spec", "total", "expected"), CASES["margins"]["valid"])
def test_parse_margin(spec, total, expected):
    assert sn.parse_margin(spec, total) == expected


@pytest.mark.parametrize("spec", CASES["margins"]["invalid"])
def test_parse_margin_refuses(spec):
    with pytest.raises(sn.RequestError, match="free_space_margin"):
        sn.parse_margin(spec, 100)


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 2**30, "5.0 GiB"), (3 * 2**40, "3.0 TiB")],
)
def test_human_bytes(n, text):
    assert sn.human_bytes(n) == text


def test_space_check_passes_and_refuses_with_numbers():
    ok = sn.SpaceCheck(to_download=100, margin=10, free=110, where="/srv")
    assert ok.needed == 110 and ok.ok
    short = sn.SpaceCheck(to_download=3 * 2**30, margin=2**30, free=2**30, where="/srv/models")
    assert not short.ok
    message = short.refusal(MODEL, COMMIT, 5 * 2**30)
    assert f"needed {4 * 2**30} bytes" in message
    assert f"free {2**30} bytes" in message
    assert "at /srv/models" in message
    assert f"{MODEL} at revision {COMMIT}" in message
    assert "3.0 GiB still to download of a 5.0 GiB snapshot" in message


def test_disk_free_uses_nearest_existing_ancestor(tmp_path, monkeypatch):
    seen = []

    class FakeStat:
        f_bavail = 10
        f_frsize = 4096

    def fake_statvfs(path):
        seen.append(str(path))
        return FakeStat()

    monkeypatch.setattr(os, "statvfs", fake_statvfs)
    free, where = sn.disk_free(tmp_path / "not" / "yet" / "there")
    assert (free, where) == (40960, str(tmp_path))
    assert seen == [str(tmp_path)]


# ---------------------------------------------------------------------------------------------------------------
# Hashing
# ---------------------------------------------------------------------------------------------------------------
def test_hash_file_gives_sha256_and_git_blob_sha1(tmp_path):
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello\n")
    digest = sn.hash_file(path)
    assert digest.size == 6
    assert digest.sha256 == hashlib.sha256(b"hello\n").hexdigest()
    # `git hash-object` of "hello\n"
    assert digest.git_sha1 == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert sn.hash_file(path, with_git=False).git_sha1 is None


def test_hash_file_skips_the_git_id_of_big_files(tmp_path, monkeypatch):
    monkeypatch.setattr(sn, "GIT_HASH_MAX", 4)
    path = tmp_path / "w.bin"
    path.write_bytes(b"hello\n")
    assert sn.hash_file(path).git_sha1 is None
    assert sn.hash_file(path, with_git=True).git_sha1 == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_hashing_writer_hashes_prefix_and_writes(tmp_path):
    data = bytes(range(256)) * 100
    path = tmp_path / "f.incomplete"
    path.write_bytes(data[:1000])
    with path.open("r+b") as fh:
        fh.seek(1000)
        writer = sn.HashingWriter(fh, path, 1000, len(data), with_git=True)
        assert writer.tell() == 1000
        writer.write(data[1000:20000])
        writer.write(memoryview(data)[20000:])
        writer.flush()
        digest = writer.digest()
    assert path.read_bytes() == data
    assert digest == sn.hash_file(path, with_git=True)


def test_hashing_writer_follows_a_rewind_and_truncate(tmp_path):
    """What huggingface_hub's http_get does when a server answers a Range request with the whole file."""
    data = b"abcdefghij" * 50
    path = tmp_path / "f.incomplete"
    path.write_bytes(b"STALE-PREFIX")
    with path.open("r+b") as fh:
        fh.seek(12)
        writer = sn.HashingWriter(fh, path, 12, len(data), with_git=False)
        writer.seek(max(writer.tell() - 12, 0))
        writer.truncate()
        writer.write(data)
        writer.flush()
        digest = writer.digest()
    assert path.read_bytes() == data
    assert digest == sn.Digest(len(data), hashlib.sha256(data).hexdigest(), None)


def test_digest_problems_names_each_difference():
    digest = sn.Digest(6, "a" * 64, "b" * 40)
    assert sn.digest_problems(RemoteFile("f", 6, "A" * 64, "B" * 40), digest) == []
    problems = sn.digest_problems(RemoteFile("f", 7, "c" * 64, "d" * 40), digest)
    assert problems == [
        "size 6 instead of 7",
        f"sha256 {'a' * 64} instead of {'c' * 64}",
        f"git blob sha1 {'b' * 40} instead of {'d' * 40}",
    ]


# ---------------------------------------------------------------------------------------------------------------
# Manifest and journal
# ---------------------------------------------------------------------------------------------------------------
def make_manifest(files: list[sn.FileRecord], **over: Any) -> sn.Manifest:
    data: dict[str, Any] = {
        "model": MODEL,
        "revision": COMMIT,
        "revision_requested": "main",
        "revision_is_commit": True,
        "source": "huggingface",
        "endpoint": "http://hub",
        "allow_patterns": (),
        "ignore_patterns": (),
        "files": tuple(files),
        "created": "2026-11-25T00:00:00Z",
    }
    data.update(over)
    return sn.Manifest(**data)


def record(path: str, content: bytes) -> sn.FileRecord:
    return sn.FileRecord(
        path,
        len(content),
        hashlib.sha256(content).hexdigest(),
        hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest(),
    )


def test_manifest_round_trip(tmp_path):
    manifest = make_manifest([record("a.json", b"{}"), record("w.safetensors", b"x" * 10)])
    path = sn.write_manifest(tmp_path, manifest)
    assert path == tmp_path / sn.MANIFEST_NAME
    data = json.loads(path.read_text())
    assert data["format"] == 1 and data["total_bytes"] == 12
    assert data["files"][0] == {
        "path": "a.json",
        "size": 2,
        "sha256": hashlib.sha256(b"{}").hexdigest(),
        "git_sha1": hashlib.sha1(b"blob 2\0{}").hexdigest(),
        "checked_by": "sha256",
    }
    assert sn.read_manifest(tmp_path) == manifest
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_read_manifest_missing_and_broken(tmp_path):
    assert sn.read_manifest(tmp_path) is None
    (tmp_path / sn.MANIFEST_NAME).write_text("{not json")
    with pytest.raises(sn.ManifestError, match="not valid JSON"):
        sn.read_manifest(tmp_path)
    (tmp_path / sn.MANIFEST_NAME).write_text(json.dumps({"format": 99}))
    with pytest.raises(sn.ManifestError, match="unsupported manifest format 99"):
        sn.read_manifest(tmp_path)
    (tmp_path / sn.MANIFEST_NAME).write_text(json.dumps({"format": 1, "model": MODEL}))
    with pytest.raises(sn.ManifestError, match="malformed manifest"):
        sn.read_manifest(tmp_path)


def test_manifest_answers_only_the_same_pinned_request():
    manifest = make_manifest([], allow_patterns=("*.json",))
    assert manifest.answers(MODEL, COMMIT, ["*.json"], [])
    assert not manifest.answers(MODEL, COMMIT, [], [])
    assert not manifest.answers(MODEL, COMMIT, ["*.json"], ["x"])
    assert not manifest.answers("acme/other", COMMIT, ["*.json"], [])
    assert not manifest.answers(MODEL, "f" * 40, ["*.json"], [])
    branch = make_manifest([], revision="master", revision_is_commit=False)
    assert not branch.answers(MODEL, "master", [], [])


def test_journal_round_trip_and_garbage(tmp_path):
    path = tmp_path / "j.json"
    rec = sn.FileRecord("a", 1, "s" * 64, "g" * 40, "sha256", 123)
    sn.write_journal(path, {"a": rec})
    assert sn.read_journal(path) == {"a": rec}
    path.write_text("garbage")
    assert sn.read_journal(path) == {}
    assert sn.read_journal(tmp_path / "missing.json") == {}


def test_file_record_matches():
    rec = record("a", b"abc")
    assert rec.matches(RemoteFile("a", 3, rec.sha256.upper(), None))
    assert rec.matches(RemoteFile("a", 3, None, rec.git_sha1))
    assert rec.matches(RemoteFile("a", 3))
    assert not rec.matches(RemoteFile("a", 4))
    assert not rec.matches(RemoteFile("a", 3, "0" * 64))
    assert not rec.matches(RemoteFile("a", 3, None, "0" * 40))


# ---------------------------------------------------------------------------------------------------------------
# Plan
# ---------------------------------------------------------------------------------------------------------------
def test_make_plan_chooses_each_action():
    files = {
        name: record(name, name.encode() * 10)
        for name in ("keep", "staged", "verify", "resume", "fetch", "big")
    }
    wanted = [f.as_remote() for f in files.values()]
    state = sn.LocalState(
        final_ok={"keep": files["keep"]},
        final_problems={"fetch": "missing"},
        journal_ok={"staged": files["staged"]},
        staged_sizes={"verify": files["verify"].size},
        partials={"resume": 7, "big": files["big"].size + 1},
    )
    plan = sn.make_plan(wanted, state, manifest_paths=["keep", "fetch", "old.bin"])
    actions = {f.remote.path: (f.action, f.offset, f.to_download) for f in plan.files}
    assert actions == {
        "keep": (Action.KEEP, 0, 0),
        "staged": (Action.STAGED, 0, 0),
        "verify": (Action.VERIFY, 0, 0),
        "resume": (Action.RESUME, 7, files["resume"].size - 7),
        "fetch": (Action.FETCH, 0, files["fetch"].size),
        "big": (Action.FETCH, 0, files["big"].size),
    }
    assert plan.remove == ("old.bin",)
    assert plan.problems == ("fetch: missing",)
    assert plan.to_download == files["resume"].size - 7 + files["fetch"].size + files["big"].size
    assert plan.total_bytes == sum(f.size for f in files.values())
    assert not plan.complete


def test_make_plan_complete_only_when_all_kept_and_nothing_to_remove():
    rec = record("a", b"a")
    state = sn.LocalState(final_ok={"a": rec})
    assert sn.make_plan([rec.as_remote()], state, ["a"]).complete
    assert not sn.make_plan([rec.as_remote()], state, ["a", "b"]).complete
    changed_upstream = RemoteFile("a", 1, "f" * 64)
    assert sn.make_plan([changed_upstream], state, ["a"]).files[0].action is Action.FETCH


# ---------------------------------------------------------------------------------------------------------------
# A fake source for the run
# ---------------------------------------------------------------------------------------------------------------
class FakeSource:
    """Serves ``files`` (path -> bytes); ``faults`` maps a path to a list of per-call behaviours:
    ``flip`` (deliver one byte inverted), ``cut:N`` (write N bytes of the partial file, then a network error),
    ``auth`` / ``gone`` (non-retryable errors)."""

    name = "fake"
    endpoint = "http://fake"

    def __init__(self, files: dict[str, bytes], revision: str = COMMIT, hashes: bool = True) -> None:
        self.files = dict(files)
        self.revision = revision
        self.hashes = hashes
        self.faults: dict[str, list[str]] = {}
        self.calls: list[tuple[str, int]] = []
        self.listings = 0
        self.resolutions = 0

    def default_revision(self) -> str:
        return "main"

    def resolve_revision(self, model: str, revision: str | None) -> sn.ResolvedRevision:
        self.resolutions += 1
        requested = revision or "main"
        if sn.is_commit(requested):
            return sn.ResolvedRevision(requested, requested, True)
        return sn.ResolvedRevision(requested, self.revision, sn.is_commit(self.revision))

    def list_files(self, model: str, revision: str) -> list[RemoteFile]:
        self.listings += 1
        out = []
        for path, data in self.files.items():
            sha = hashlib.sha256(data).hexdigest() if self.hashes else None
            out.append(RemoteFile(path, len(data), sha))
        return out

    def download(self, model: str, revision: str, remote: RemoteFile, staging: Path) -> None:
        partial = staging / (remote.path + sn.PARTIAL_SUFFIX)
        offset = partial.stat().st_size if partial.exists() else 0
        self.calls.append((remote.path, offset))
        data = self.files[remote.path]
        fault = self.faults.get(remote.path, [None]).pop(0) if self.faults.get(remote.path) else None
        if fault == "auth":
            raise sn.HubError("auth", f"{remote.path}: access denied (HTTP 401)", 401)
        if fault == "gone":
            raise sn.HubError("file_not_found", f"{remote.path}: not found", 404)
        if fault and fault.startswith("cut:"):
            upto = int(fault[4:])
            with partial.open("ab") as fh:
                fh.write(data[offset:upto])
            raise sn.HubError("network", f"{remote.path}: connection reset")
        body = bytearray(data[offset:])
        if fault == "flip" and body:
            body[len(body) // 2] ^= 0xFF
        with partial.open("ab") as fh:
            fh.write(body)
        os.replace(partial, staging / remote.path)


def files_of(n: int = 3, size: int = 5000) -> dict[str, bytes]:
    out = {"config.json": b'{"model_type": "llama"}\n'}
    for i in range(n):
        out[f"model-{i:05d}.safetensors"] = bytes((i * 7 + j) % 251 for j in range(size))
    return out


def request(root: Path, **over: Any) -> sn.SnapshotRequest:
    data: dict[str, Any] = {"model": MODEL, "models_root": root, "free_space_margin": "0", "workers": 2}
    data.update(over)
    return sn.SnapshotRequest(**data)


def plenty(_path: Path) -> tuple[int, str]:
    return 10**15, "/fake"


def run(
    root: Path, source: FakeSource, free: Callable[[Path], tuple[int, str]] = plenty, **over: Any
) -> sn.SnapshotResult:
    return sn.sync_snapshot(
        request(root, **over), lambda _home: source, free_space=free, sleep=lambda _s: None
    )


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


# ---------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------
def test_first_run_downloads_verifies_and_promotes(tmp_path):
    source = FakeSource(files_of())
    result = run(tmp_path / "models", source)
    final = tmp_path / "models" / "acme" / "tiny" / COMMIT
    assert result.path == str(final)
    assert result.changed and result.revision == COMMIT and result.revision_requested == "main"
    assert result.total_bytes == sum(len(v) for v in source.files.values())
    assert result.bytes_transferred == result.total_bytes == result.would_download_bytes
    assert result.files_fetched == sorted(source.files)
    for path, data in source.files.items():
        assert (final / path).read_bytes() == data
        assert oct((final / path).stat().st_mode & 0o777) == "0o644"
    manifest = sn.read_manifest(final)
    assert manifest is not None and manifest.revision == COMMIT and manifest.source == "fake"
    assert {f.path: f.sha256 for f in manifest.files} == {
        p: hashlib.sha256(d).hexdigest() for p, d in source.files.items()
    }
    # Nothing else left: no staging area, no journal, no lock.
    assert not (tmp_path / "models" / sn.STAGING_DIRNAME).exists()


def test_rerun_changes_nothing_and_reads_no_file(tmp_path, monkeypatch):
    source = FakeSource(files_of())
    run(tmp_path, source)
    hashed: list[Path] = []
    real_hash = sn.hash_file
    monkeypatch.setattr(sn, "hash_file", lambda p, **kw: hashed.append(p) or real_hash(p, **kw))
    result = run(tmp_path, source, revision=COMMIT)
    assert not result.changed
    assert result.bytes_transferred == 0 and result.would_download_bytes == 0
    assert result.listing == "manifest"
    assert hashed == []
    assert source.listings == 1  # only the first run listed


def test_verify_full_rehashes_and_repairs_only_the_corrupted_file(tmp_path):
    source = FakeSource(files_of())
    first = run(tmp_path, source)
    victim = Path(first.path) / "model-00001.safetensors"
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    source.calls.clear()

    quick = run(tmp_path, source)
    assert not quick.changed  # same size: a quick check cannot see it

    full = run(tmp_path, source, verify_full=True)
    assert full.changed
    assert full.files_repaired == ["model-00001.safetensors"]
    assert full.files_fetched == ["model-00001.safetensors"]
    assert source.calls == [("model-00001.safetensors", 0)]
    assert victim.read_bytes() == source.files["model-00001.safetensors"]
    assert not run(tmp_path, source, verify_full=True).changed


def test_quick_check_repairs_a_missing_or_truncated_file(tmp_path):
    source = FakeSource(files_of())
    first = run(tmp_path, source)
    (Path(first.path) / "config.json").unlink()
    with (Path(first.path) / "model-00002.safetensors").open("r+b") as fh:
        fh.truncate(10)
    result = run(tmp_path, source)
    assert result.files_repaired == ["config.json", "model-00002.safetensors"]
    assert result.files_fetched == ["config.json", "model-00002.safetensors"]
    assert sorted(p for p, _ in source.calls[-2:]) == ["config.json", "model-00002.safetensors"]


def test_flipped_byte_in_transit_is_detected_and_only_that_file_refetched(tmp_path):
    source = FakeSource(files_of())
    source.faults["model-00000.safetensors"] = ["flip"]
    result = run(tmp_path, source)
    calls = [p for p, _ in source.calls]
    assert calls.count("model-00000.safetensors") == 2
    assert all(calls.count(p) == 1 for p in source.files if p != "model-00000.safetensors")
    size = len(source.files["model-00000.safetensors"])
    assert result.bytes_transferred == result.total_bytes + size
    assert (Path(result.path) / "model-00000.safetensors").read_bytes() == source.files[
        "model-00000.safetensors"
    ]


def test_persistent_corruption_fails_after_retries_and_keeps_nothing_visible(tmp_path):
    source = FakeSource(files_of())
    source.faults["config.json"] = ["flip"] * 3
    with pytest.raises(
        sn.DownloadError, match=r"config.json: downloaded content has sha256 .* instead of"
    ) as err:
        run(tmp_path, source, retries=3)
    assert "next run resumes" in err.value.message
    assert not (tmp_path / "acme" / "tiny" / COMMIT).exists()
    # The other files are verified in staging and recorded in the journal: the next run fetches only config.json.
    source.calls.clear()
    result = run(tmp_path, source)
    assert [p for p, _ in source.calls] == ["config.json"]
    assert result.files_fetched == ["config.json"]


def test_stopped_download_resumes_where_it_stopped(tmp_path):
    source = FakeSource(files_of(n=2, size=10000))
    source.faults["model-00001.safetensors"] = ["cut:6000"]
    with pytest.raises(sn.DownloadError, match="connection reset"):
        run(tmp_path, source, retries=1)
    partial = (
        tmp_path / ".staging" / "acme" / "tiny" / COMMIT / ("model-00001.safetensors" + sn.PARTIAL_SUFFIX)
    )
    assert partial.stat().st_size == 6000
    source.calls.clear()
    result = run(tmp_path, source)
    assert source.calls == [("model-00001.safetensors", 6000)]
    assert result.bytes_transferred == 4000
    assert result.would_download_bytes == 4000


def test_network_failure_is_retried_within_the_run(tmp_path):
    source = FakeSource(files_of(n=1, size=10000))
    source.faults["model-00000.safetensors"] = ["cut:2500"]
    result = run(tmp_path, source, retries=2)
    assert [c for c in source.calls if c[0] == "model-00000.safetensors"] == [
        ("model-00000.safetensors", 0),
        ("model-00000.safetensors", 2500),
    ]
    assert result.bytes_transferred == result.total_bytes


def test_auth_error_is_not_retried(tmp_path):
    source = FakeSource(files_of(n=1))
    source.faults["config.json"] = ["auth"]
    with pytest.raises(sn.DownloadError, match=r"config.json: access denied \(HTTP 401\)"):
        run(tmp_path, source, retries=3, workers=1)
    assert [p for p, _ in source.calls].count("config.json") == 1


def test_too_little_space_refuses_before_anything_is_written(tmp_path):
    source = FakeSource(files_of())
    root = tmp_path / "models"
    total = sum(len(v) for v in source.files.values())
    with pytest.raises(sn.SpaceError) as err:
        run(root, source, free=lambda _p: (total, "/fake/models"), free_space_margin="1K")
    assert err.value.details == {
        "needed_bytes": total + 1024,
        "download_bytes": total,
        "margin_bytes": 1024,
        "free_bytes": total,
        "path": "/fake/models",
    }
    assert f"needed {total + 1024} bytes" in err.value.message
    assert source.calls == []
    assert not root.exists()


def test_space_refusal_counts_only_what_is_left_to_download(tmp_path):
    source = FakeSource(files_of(n=1, size=10000))
    source.faults["model-00000.safetensors"] = ["cut:8000"]
    with pytest.raises(sn.DownloadError):
        run(tmp_path, source, retries=1)
    remaining = 2000
    result = run(tmp_path, source, free=lambda _p: (remaining, "/x"), check_mode=True)
    assert result.would_download_bytes == remaining
    with pytest.raises(sn.SpaceError):
        run(tmp_path, source, free=lambda _p: (remaining - 1, "/x"))


def test_check_mode_reports_bytes_and_writes_nothing(tmp_path):
    source = FakeSource(files_of())
    root = tmp_path / "models"
    result = run(root, source, check_mode=True)
    assert result.changed
    assert result.would_download_bytes == result.total_bytes > 0
    assert result.bytes_transferred == 0
    assert source.calls == []
    assert not root.exists()
    real = run(root, source)
    assert real.bytes_transferred == result.would_download_bytes
    again = run(root, source, check_mode=True)
    assert not again.changed and again.would_download_bytes == 0


def test_changing_patterns_adds_and_removes_files_in_place(tmp_path):
    source = FakeSource(files_of())
    first = run(tmp_path, source, allow_patterns=("*.json",))
    final = Path(first.path)
    assert tree(final) == [sn.MANIFEST_NAME, "config.json"]
    second = run(tmp_path, source, allow_patterns=("*.safetensors",))
    assert second.files_removed == ["config.json"]
    assert second.files_fetched == sorted(p for p in source.files if p.endswith(".safetensors"))
    assert tree(final) == sorted([sn.MANIFEST_NAME, *second.files_fetched])
    manifest = sn.read_manifest(final)
    assert manifest is not None and manifest.allow_patterns == ("*.safetensors",)
    assert [f.path for f in manifest.files] == second.files_fetched


def test_staged_files_in_the_journal_are_trusted_by_stat_and_others_rehashed(tmp_path, monkeypatch):
    source = FakeSource(files_of(n=2))
    source.faults["model-00001.safetensors"] = ["gone"]
    with pytest.raises(sn.DownloadError, match="not found"):
        run(tmp_path, source, workers=1)
    staging = tmp_path / ".staging" / "acme" / "tiny" / COMMIT
    journal = sn.read_journal(staging.with_name(COMMIT + ".journal.json"))
    assert sorted(journal) == ["config.json", "model-00000.safetensors"]
    # Touching a staged file invalidates its journal entry: it is hashed again (and kept, being right).
    os.utime(staging / "config.json", ns=(1, 1))
    hashed: list[str] = []
    real_hash = sn.hash_file
    monkeypatch.setattr(sn, "hash_file", lambda p, **kw: hashed.append(p.name) or real_hash(p, **kw))
    source.calls.clear()
    result = run(tmp_path, source)
    assert [p for p, _ in source.calls] == ["model-00001.safetensors"]
    assert sorted(hashed) == ["config.json", "model-00001.safetensors"]
    assert result.files_fetched == ["model-00001.safetensors"]


def test_unrecorded_wrong_staged_file_is_fetched_again(tmp_path):
    source = FakeSource(files_of(n=1))
    staging = tmp_path / ".staging" / "acme" / "tiny" / COMMIT
    staging.mkdir(parents=True)
    wrong = bytearray(source.files["model-00000.safetensors"])
    wrong[0] ^= 1
    (staging / "model-00000.safetensors").write_bytes(bytes(wrong))
    result = run(tmp_path, source)
    assert "model-00000.safetensors" in result.files_fetched
    assert (Path(result.path) / "model-00000.safetensors").read_bytes() == source.files[
        "model-00000.safetensors"
    ]


def test_foreign_directory_without_manifest_is_refused(tmp_path):
    final = tmp_path / "acme" / "tiny" / COMMIT
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    with pytest.raises(sn.ManifestError, match=r"holds no \.llmfleet-manifest\.json"):
        run(tmp_path, FakeSource(files_of()))
    assert (final / "config.json").read_text() == "{}"


def test_concurrent_run_is_refused_and_the_lock_stays_with_its_holder(tmp_path):
    layout = sn.snapshot_paths(tmp_path, MODEL, COMMIT)
    with sn.snapshot_lock(layout.lock):
        with pytest.raises(sn.LockedError, match="another run"):
            run(tmp_path, FakeSource(files_of()))
        assert layout.lock.exists()
    assert not layout.lock.exists()
    assert not run(tmp_path, FakeSource(files_of())).files_removed


def test_unverifiable_files_are_reported(tmp_path):
    source = FakeSource(files_of(n=1), hashes=False)
    result = run(tmp_path, source)
    assert result.files_unverified == ["config.json", "model-00000.safetensors"]
    manifest = sn.read_manifest(Path(result.path))
    assert manifest is not None and {f.checked_by for f in manifest.files} == {"size"}


def test_branch_that_does_not_resolve_is_listed_every_run(tmp_path):
    source = FakeSource(files_of(n=1), revision="master")
    first = run(tmp_path, source, revision="master")
    assert first.path.endswith("/acme/tiny/master") and not first.revision_is_commit
    second = run(tmp_path, source, revision="master")
    assert not second.changed and second.listing == "hub"
    assert source.listings == 2
    # The branch moved: the changed file is replaced in place.
    source.files["config.json"] = b'{"model_type": "mistral"}\n'
    third = run(tmp_path, source, revision="master")
    assert third.files_fetched == ["config.json"]
    assert (Path(third.path) / "config.json").read_bytes() == source.files["config.json"]


def test_complete_snapshot_of_a_commit_needs_no_source_at_all(tmp_path):
    source = FakeSource(files_of())
    run(tmp_path, source)

    def no_client(_home: Path) -> FakeSource:
        raise sn.HubError("missing_library", "huggingface_hub is not installed")

    result = sn.sync_snapshot(request(tmp_path, revision=COMMIT), no_client, free_space=plenty)
    assert not result.changed and result.listing == "manifest"
    assert result.endpoint == "http://fake"  # from the manifest
    with pytest.raises(sn.HubError, match="not installed"):
        sn.sync_snapshot(request(tmp_path, revision="main"), no_client, free_space=plenty)


class DigestSource(FakeSource):
    """A source that reports the digest of what it wrote (as the hub adapters do)."""

    def __init__(self, files: dict[str, bytes], lie: set[str] = frozenset()) -> None:
        super().__init__(files)
        self.lie = set(lie)

    def download(self, model, revision, remote, staging):
        super().download(model, revision, remote, staging)
        data = self.files[remote.path]
        sha256 = hashlib.sha256(data).hexdigest()
        if remote.path in self.lie:
            self.lie.discard(remote.path)
            sha256 = "0" * 64
        return sn.Digest(len(data), sha256, None)


def test_a_source_digest_spares_reading_big_files_but_small_ones_are_still_hashed(tmp_path, monkeypatch):
    monkeypatch.setattr(sn, "GIT_HASH_MAX", 100)
    source = DigestSource(files_of(n=2, size=5000))
    hashed: list[str] = []
    real_hash = sn.hash_file
    monkeypatch.setattr(sn, "hash_file", lambda p, **kw: hashed.append(p.name) or real_hash(p, **kw))
    result = run(tmp_path, source)
    assert hashed == ["config.json"]  # small: hashed for its git blob id; shards: the source's digest
    manifest = sn.read_manifest(Path(result.path))
    assert manifest is not None
    records = manifest.by_path()
    assert records["config.json"].git_sha1 is not None
    assert records["model-00000.safetensors"].git_sha1 is None
    assert (
        records["model-00000.safetensors"].sha256
        == hashlib.sha256(source.files["model-00000.safetensors"]).hexdigest()
    )


def test_a_source_digest_that_disagrees_with_the_listing_means_fetch_again(tmp_path, monkeypatch):
    monkeypatch.setattr(sn, "GIT_HASH_MAX", 100)
    source = DigestSource(files_of(n=1, size=5000), lie={"model-00000.safetensors"})
    result = run(tmp_path, source)
    assert [p for p, _ in source.calls].count("model-00000.safetensors") == 2
    assert result.files_fetched == ["config.json", "model-00000.safetensors"]


# ---------------------------------------------------------------------------------------------------------------
# The module shell's argument spec matches its documentation
# ---------------------------------------------------------------------------------------------------------------
def test_module_argument_spec_matches_documentation(documented_spec):
    from ansible_collections.llmfleet.serve.plugins.modules import model_snapshot

    spec = documented_spec(model_snapshot)
    assert spec["token"]["no_log"] is True
    returned = yaml.safe_load(model_snapshot.RETURN)
    result_fields = set(sn.SnapshotResult.__dataclass_fields__) - {"warnings", "changed"}
    assert result_fields <= set(returned)
