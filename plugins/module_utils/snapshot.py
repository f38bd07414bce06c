"""Model snapshots on disk: paths, manifest, plan, free-space preflight, verification, staging and promotion.

A snapshot of ``org/name`` at a revision lives in ``<models_root>/<org>/<name>/<revision>/``. It becomes
visible only when complete and verified:

- Work happens in ``<models_root>/.staging/<org>/<name>/<revision>/``. A file being fetched is
  ``<path>.incomplete`` there (the name the ModelScope client uses too), so a stopped run resumes it with
  an HTTP Range request. A fetched file is hashed and recorded in the staging journal
  (``<revision>.journal.json`` beside the staging directory) with its size and mtime, so a later run
  trusts it by ``stat`` alone.
- A new snapshot is promoted by writing the manifest into the staging directory last and renaming the
  directory into place (one ``rename(2)``). A snapshot that already exists (repair, changed patterns,
  a moving branch) is updated file by file with ``os.replace``; its manifest is rewritten last.
- The manifest (``.llmfleet-manifest.json``) lists every file with size, sha256 and git blob sha1. A re-run
  with ``verify=quick`` checks sizes with ``stat`` and reads no file contents; ``verify=full`` re-hashes.

Everything here is stdlib-only and independent of Ansible. Hub clients are behind the :class:`Source`
protocol (see ``hub_clients.py``); :func:`sync_snapshot` drives a source through the steps above.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

MANIFEST_NAME = ".llmfleet-manifest.json"
MANIFEST_FORMAT = 1
PARTIAL_SUFFIX = ".incomplete"
STAGING_DIRNAME = ".staging"
CACHE_DIRNAME = ".cache"
HASH_BLOCK = 8 * 1024 * 1024
GIT_HASH_MAX = 16 * 1024 * 1024
DEFAULT_MARGIN = "1G"
FILE_MODE = 0o644
DIR_MODE = 0o755

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMIT_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(i?B?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------
class SnapshotError(Exception):
    """A failure a person can act on; ``details`` go into the module result."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class RequestError(SnapshotError):
    """The request itself is invalid (model id, revision, patterns, margin)."""


class ManifestError(SnapshotError):
    """A manifest or journal cannot be read."""


class SpaceError(SnapshotError):
    """Not enough free space; ``details`` hold needed_bytes, free_bytes and path."""


class LockedError(SnapshotError):
    """Another run works on the same snapshot."""


class HubError(SnapshotError):
    """A hub (or local source) failure, classified.

    ``kind`` is one of: missing_library, repo_not_found, revision_not_found, file_not_found, auth,
    network, server, integrity, client. Network, server and integrity failures are retried.
    """

    RETRYABLE = frozenset({"network", "server", "integrity"})

    def __init__(self, kind: str, message: str, status: int | None = None, retry: bool | None = None) -> None:
        super().__init__(message, kind=kind, status=status)
        self.kind = kind
        self.status = status
        self._retry = retry

    @property
    def retryable(self) -> bool:
        """Network, server and integrity failures, unless the client already spent its own retries."""
        return self.kind in self.RETRYABLE if self._retry is None else self._retry


class DownloadError(SnapshotError):
    """Some files could not be fetched; the staging area is kept so the next run resumes."""


# ---------------------------------------------------------------------------------------------------------------
# Names and paths
# ---------------------------------------------------------------------------------------------------------------
def split_model_id(model: str) -> tuple[str, str]:
    """``org/name`` -> (org, name); both parts must be plain names (letters, digits, ``._-``)."""
    parts = model.split("/") if isinstance(model, str) else []
    if len(parts) != 2 or not all(_NAME_RE.match(p) and ".." not in p for p in parts):
        raise RequestError(
            f"model must be 'org/name' with letters, digits, '.', '_' or '-' in each part, got {model!r}"
        )
    return parts[0], parts[1]


def is_commit(revision: str) -> bool:
    """A full git commit id (40 hex, or 64 hex for sha256 repositories)."""
    return bool(_COMMIT_RE.match(revision or ""))


def revision_dirname(revision: str) -> str:
    """The directory name for a revision: ``/`` in branch names becomes ``--``."""
    name = (revision or "").replace("/", "--")
    if not _NAME_RE.match(name) or ".." in name:
        raise RequestError(
            f"revision {revision!r} cannot name a directory: use letters, digits, '.', '_', '-' or '/'"
        )
    return name


def validate_repo_path(path: str) -> str:
    """A file path from a listing must stay inside the snapshot and not collide with our own files."""
    pure = PurePosixPath(path)
    bad = (
        not path
        or "\\" in path
        or "\0" in path
        or pure.is_absolute()
        or any(part in ("", ".", "..") for part in path.split("/"))
        or path.endswith(PARTIAL_SUFFIX)
        or path == MANIFEST_NAME
    )
    if bad:
        raise HubError("client", f"the file listing holds an unsafe path {path!r}; refusing to write it")
    return path


@dataclass(frozen=True)
class SnapshotPaths:
    """Where a snapshot, its staging area and its bookkeeping live."""

    models_root: Path
    org: str
    name: str
    revision_dir: str

    @property
    def final(self) -> Path:
        return self.models_root / self.org / self.name / self.revision_dir

    @property
    def staging(self) -> Path:
        return self.models_root / STAGING_DIRNAME / self.org / self.name / self.revision_dir

    @property
    def journal(self) -> Path:
        return self.staging.with_name(self.revision_dir + ".journal.json")

    @property
    def lock(self) -> Path:
        return self.staging.with_name(self.revision_dir + ".lock")

    @property
    def manifest(self) -> Path:
        return self.final / MANIFEST_NAME

    @property
    def client_home(self) -> Path:
        return self.models_root / CACHE_DIRNAME


def snapshot_paths(models_root: str | Path, model: str, revision: str) -> SnapshotPaths:
    org, name = split_model_id(model)
    root = Path(models_root)
    if not root.is_absolute():
        raise RequestError(f"models_root must be an absolute path, got {str(models_root)!r}")
    return SnapshotPaths(root, org, name, revision_dirname(revision))


# ---------------------------------------------------------------------------------------------------------------
# Listings and patterns
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemoteFile:
    """One file as the source describes it. Hashes are None when the source gives none."""

    path: str
    size: int
    sha256: str | None = None
    git_sha1: str | None = None

    @property
    def checked_by(self) -> str:
        """What verification is possible against the source: sha256, git-sha1 or size only."""
        if self.sha256:
            return "sha256"
        if self.git_sha1:
            return "git-sha1"
        return "size"


def _pattern_matches(path: str, pattern: str) -> bool:
    if pattern.endswith("/"):
        pattern += "*"
    return fnmatch.fnmatchcase(path, pattern)


def filter_files(
    files: Iterable[RemoteFile], allow_patterns: Sequence[str] = (), ignore_patterns: Sequence[str] = ()
) -> list[RemoteFile]:
    """Keep files matching any allow pattern (all when none), then drop those matching an ignore pattern.

    Patterns are shell globs on the path inside the repository (``*`` also crosses ``/``, as in the hub
    clients); a pattern ending in ``/`` means everything below that directory.
    """
    kept = []
    for remote in files:
        if allow_patterns and not any(_pattern_matches(remote.path, p) for p in allow_patterns):
            continue
        if any(_pattern_matches(remote.path, p) for p in ignore_patterns):
            continue
        kept.append(remote)
    return sorted(kept, key=lambda f: f.path)


def check_listing(files: Sequence[RemoteFile], model: str, revision: str) -> list[RemoteFile]:
    """Reject unsafe or duplicate paths and negative sizes; refuse an empty selection."""
    seen: set[str] = set()
    for remote in files:
        validate_repo_path(remote.path)
        if remote.path in seen:
            raise HubError("client", f"the file listing of {model}@{revision} names {remote.path!r} twice")
        if remote.size < 0:
            raise HubError(
                "client", f"the file listing of {model}@{revision} gives {remote.path!r} a negative size"
            )
        seen.add(remote.path)
    if not files:
        raise RequestError(
            f"no file of {model} at revision {revision} matches allow_patterns/ignore_patterns; "
            "check the patterns against the repository's file names"
        )
    return list(files)


# ---------------------------------------------------------------------------------------------------------------
# Sizes and free space
# ---------------------------------------------------------------------------------------------------------------
def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - loop always returns


def parse_margin(spec: str | int, total_bytes: int) -> int:
    """A margin as bytes (``1073741824``), with a unit (``512M``, ``1G``, ``2GiB``) or a percent of the total."""
    text = str(spec).strip()
    if text.endswith("%"):
        try:
            percent = float(text[:-1])
        except ValueError:
            percent = -1
        if percent < 0:
            raise RequestError(f"free_space_margin {spec!r} is not a valid percentage")
        return int(total_bytes * percent / 100)
    match = _SIZE_RE.match(text)
    if not match:
        raise RequestError(f"free_space_margin {spec!r} is not a size like 1G, 512M, 1073741824 or 5%")
    number, unit, _suffix = match.groups()
    return int(float(number) * _UNITS[unit.upper()])


@dataclass(frozen=True)
class SpaceCheck:
    to_download: int
    margin: int
    free: int
    where: str

    @property
    def needed(self) -> int:
        return self.to_download + self.margin

    @property
    def ok(self) -> bool:
        return self.free >= self.needed

    def refusal(self, model: str, revision: str, total: int) -> str:
        return (
            f"not enough free space for {model} at revision {revision}: needed {self.needed} bytes "
            f"({human_bytes(self.needed)}: {human_bytes(self.to_download)} still to download of a "
            f"{human_bytes(total)} snapshot, plus a {human_bytes(self.margin)} margin), free {self.free} "
            f"bytes ({human_bytes(self.free)}) at {self.where}. Free some space, point models_root at a "
            "bigger filesystem, or lower free_space_margin."
        )


def existing_ancestor(path: Path) -> Path:
    current = path
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def disk_free(path: Path) -> tuple[int, str]:
    """Bytes available to unprivileged writers on the filesystem that will hold ``path``, and where."""
    anchor = existing_ancestor(path)
    st = os.statvfs(anchor)
    return st.f_bavail * st.f_frsize, str(anchor)


# ---------------------------------------------------------------------------------------------------------------
# Hashing and verification
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Digest:
    """What a file hashes to. ``git_sha1`` (the git blob id) is computed for small files and whenever the
    source gives one to compare with; Hugging Face gives it only for non-LFS files, which are small."""

    size: int
    sha256: str
    git_sha1: str | None = None


def _git_header(size: int) -> bytes:
    return f"blob {size}\0".encode()


def hash_file(path: Path, with_git: bool | None = None) -> Digest:
    """sha256, and the git blob sha1 (``sha1(b"blob <size>\\0" + content)``) when ``with_git`` (default: for
    files up to GIT_HASH_MAX), in one read."""
    size = path.stat().st_size
    if with_git is None:
        with_git = size <= GIT_HASH_MAX
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(_git_header(size)) if with_git else None
    read = 0
    with path.open("rb") as fh:
        while block := fh.read(HASH_BLOCK):
            sha256.update(block)
            if sha1 is not None:
                sha1.update(block)
            read += len(block)
    return Digest(read, sha256.hexdigest(), sha1.hexdigest() if sha1 is not None else None)


class HashingWriter:
    """A binary file wrapper that hashes what is written to it, for sources that stream into a partial file.

    It starts at ``offset`` (the partial file's size), hashing that prefix first. A writer that rewinds and
    truncates (``huggingface_hub.http_get`` does when a server ignores ``Range``) is followed: the hashes are
    rebuilt from the bytes that remain. ``expected_size`` is needed up front for the git blob header.
    """

    def __init__(self, fh: Any, path: Path, offset: int, expected_size: int, with_git: bool) -> None:
        self._fh = fh
        self._path = path
        self._expected_size = expected_size
        self._with_git = with_git
        self._restart(offset)

    def _restart(self, upto: int) -> None:
        self._fh.flush()
        self._sha256 = hashlib.sha256()
        self._sha1 = hashlib.sha1(_git_header(self._expected_size)) if self._with_git else None
        self._size = 0
        if upto:
            with self._path.open("rb") as prefix:
                left = upto
                while left > 0 and (block := prefix.read(min(HASH_BLOCK, left))):
                    self._update(block)
                    left -= len(block)

    def _update(self, data: bytes | bytearray | memoryview) -> None:
        self._sha256.update(data)
        if self._sha1 is not None:
            self._sha1.update(data)
        self._size += len(data)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        written = self._fh.write(data)
        self._update(data)
        return written

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._fh.seek(pos, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def truncate(self, size: int | None = None) -> int:
        result = self._fh.truncate(size)
        self._restart(self._fh.tell() if size is None else size)
        return result

    def flush(self) -> None:
        self._fh.flush()

    def fileno(self) -> int:
        return self._fh.fileno()

    def digest(self) -> Digest:
        sha1 = self._sha1.hexdigest() if self._sha1 is not None else None
        return Digest(self._size, self._sha256.hexdigest(), sha1)


def digest_problems(remote: RemoteFile, digest: Digest) -> list[str]:
    """Differences between what the source announced and what is on disk (empty when it matches)."""
    problems = []
    if digest.size != remote.size:
        problems.append(f"size {digest.size} instead of {remote.size}")
    if remote.sha256 and digest.sha256 != remote.sha256.lower():
        problems.append(f"sha256 {digest.sha256} instead of {remote.sha256}")
    if remote.git_sha1 and (digest.git_sha1 or "") != remote.git_sha1.lower():
        problems.append(f"git blob sha1 {digest.git_sha1} instead of {remote.git_sha1}")
    return problems


# ---------------------------------------------------------------------------------------------------------------
# Manifest and journal
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileRecord:
    """A verified file: what the manifest and the staging journal store."""

    path: str
    size: int
    sha256: str
    git_sha1: str | None
    checked_by: str = "sha256"
    mtime_ns: int | None = None

    def matches(self, remote: RemoteFile) -> bool:
        return (
            self.size == remote.size
            and (not remote.sha256 or remote.sha256.lower() == self.sha256)
            and (not remote.git_sha1 or remote.git_sha1.lower() == (self.git_sha1 or ""))
        )

    def as_remote(self) -> RemoteFile:
        """The record as a listing entry (the fast path uses the manifest instead of the hub listing)."""
        return RemoteFile(self.path, self.size, self.sha256, self.git_sha1)

    def to_dict(self, with_mtime: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "git_sha1": self.git_sha1,
            "checked_by": self.checked_by,
        }
        if with_mtime:
            data["mtime_ns"] = self.mtime_ns
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileRecord:
        return cls(
            path=str(data["path"]),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            git_sha1=str(data["git_sha1"]) if data.get("git_sha1") else None,
            checked_by=str(data.get("checked_by", "size")),
            mtime_ns=int(data["mtime_ns"]) if data.get("mtime_ns") is not None else None,
        )


def record_for(remote: RemoteFile, digest: Digest, mtime_ns: int | None = None) -> FileRecord:
    return FileRecord(remote.path, digest.size, digest.sha256, digest.git_sha1, remote.checked_by, mtime_ns)


@dataclass(frozen=True)
class Manifest:
    model: str
    revision: str
    revision_requested: str
    revision_is_commit: bool
    source: str
    endpoint: str | None
    allow_patterns: tuple[str, ...]
    ignore_patterns: tuple[str, ...]
    files: tuple[FileRecord, ...]
    created: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def by_path(self) -> dict[str, FileRecord]:
        return {f.path: f for f in self.files}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "model": self.model,
            "revision": self.revision,
            "revision_requested": self.revision_requested,
            "revision_is_commit": self.revision_is_commit,
            "source": self.source,
            "endpoint": self.endpoint,
            "allow_patterns": list(self.allow_patterns),
            "ignore_patterns": list(self.ignore_patterns),
            "created": self.created,
            "total_bytes": self.total_bytes,
            "files": [f.to_dict() for f in self.files],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "manifest") -> Manifest:
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ManifestError(
                f"{where}: unsupported manifest format {found!r} (expected {MANIFEST_FORMAT})"
            )
        try:
            files = tuple(FileRecord.from_dict(f) for f in data["files"])
            return cls(
                model=str(data["model"]),
                revision=str(data["revision"]),
                revision_requested=str(data.get("revision_requested", data["revision"])),
                revision_is_commit=bool(data.get("revision_is_commit", False)),
                source=str(data.get("source", "")),
                endpoint=data.get("endpoint"),
                allow_patterns=tuple(data.get("allow_patterns") or ()),
                ignore_patterns=tuple(data.get("ignore_patterns") or ()),
                files=files,
                created=str(data.get("created", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{where}: malformed manifest ({type(exc).__name__}: {exc})") from exc

    def answers(self, model: str, revision: str, allow: Sequence[str], ignore: Sequence[str]) -> bool:
        """True when this manifest was written for the same request, so its file list can stand in for
        the hub listing (only for pinned revisions: a commit never changes)."""
        return (
            self.model == model
            and self.revision == revision
            and self.revision_is_commit
            and list(self.allow_patterns) == list(allow)
            and list(self.ignore_patterns) == list(ignore)
        )


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON to a temporary file in the same directory, fsync it, rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, path)


def read_manifest(directory: Path) -> Manifest | None:
    path = directory / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"{path} is not valid JSON ({exc}); remove it to rebuild the snapshot") from exc
    return Manifest.from_dict(data, str(path))


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    path = directory / MANIFEST_NAME
    atomic_write_json(path, manifest.to_dict())
    return path


def read_journal(path: Path) -> dict[str, FileRecord]:
    """Verified staged files; an unreadable journal only costs re-hashing, so it reads as empty."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {f["path"]: FileRecord.from_dict(f) for f in data.get("files", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def write_journal(path: Path, records: dict[str, FileRecord]) -> None:
    atomic_write_json(path, {"files": [r.to_dict(with_mtime=True) for r in records.values()]})


# ---------------------------------------------------------------------------------------------------------------
# Local state and plan
# ---------------------------------------------------------------------------------------------------------------
class Action(StrEnum):
    KEEP = "keep"  # in the snapshot and verified
    STAGED = "staged"  # verified in the staging area (journal and stat agree)
    VERIFY = "verify"  # complete in the staging area but not recorded: hash it, fetch again if wrong
    RESUME = "resume"  # a partial file exists: fetch the rest
    FETCH = "fetch"  # fetch from the start


@dataclass(frozen=True)
class FilePlan:
    remote: RemoteFile
    action: Action
    offset: int = 0

    @property
    def to_download(self) -> int:
        if self.action in (Action.RESUME, Action.FETCH):
            return max(0, self.remote.size - self.offset)
        return 0


@dataclass(frozen=True)
class DownloadPlan:
    files: tuple[FilePlan, ...]
    remove: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(f.remote.size for f in self.files)

    @property
    def to_download(self) -> int:
        return sum(f.to_download for f in self.files)

    @property
    def complete(self) -> bool:
        return not self.remove and all(f.action is Action.KEEP for f in self.files)

    def with_action(self, *actions: Action) -> list[FilePlan]:
        return [f for f in self.files if f.action in actions]


@dataclass
class LocalState:
    """What is on disk, as observed by :func:`observe` (stat and, with verify=full, hashes)."""

    final_ok: dict[str, FileRecord] = field(default_factory=dict)
    final_problems: dict[str, str] = field(default_factory=dict)
    journal_ok: dict[str, FileRecord] = field(default_factory=dict)
    staged_sizes: dict[str, int] = field(default_factory=dict)
    partials: dict[str, int] = field(default_factory=dict)


def make_plan(
    wanted: Sequence[RemoteFile], state: LocalState, manifest_paths: Iterable[str] = ()
) -> DownloadPlan:
    """Decide, per wanted file, what is needed. Pure: takes the observed state, touches nothing."""
    files = []
    for remote in wanted:
        recorded = state.final_ok.get(remote.path)
        staged = state.journal_ok.get(remote.path)
        if recorded is not None and recorded.matches(remote):
            files.append(FilePlan(remote, Action.KEEP))
        elif staged is not None and staged.matches(remote):
            files.append(FilePlan(remote, Action.STAGED))
        elif state.staged_sizes.get(remote.path) == remote.size:
            files.append(FilePlan(remote, Action.VERIFY))
        elif 0 < state.partials.get(remote.path, 0) <= remote.size:
            files.append(FilePlan(remote, Action.RESUME, state.partials[remote.path]))
        else:
            files.append(FilePlan(remote, Action.FETCH))
    wanted_paths = {r.path for r in wanted}
    remove = tuple(sorted(p for p in manifest_paths if p not in wanted_paths))
    problems = tuple(f"{p}: {why}" for p, why in sorted(state.final_problems.items()))
    return DownloadPlan(tuple(files), remove, problems)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def observe(
    paths: SnapshotPaths,
    wanted: Sequence[RemoteFile],
    manifest: Manifest | None,
    verify_full: bool,
) -> LocalState:
    """Look at the snapshot and the staging area for the wanted files.

    Reads no file contents unless ``verify_full``: the snapshot's files are checked against the manifest
    by size; the staging journal is trusted when size and mtime still match.
    """
    state = LocalState()
    recorded = manifest.by_path() if manifest else {}
    journal = read_journal(paths.journal)
    for remote in wanted:
        record = recorded.get(remote.path)
        if record is not None:
            target = paths.final / remote.path
            st = _stat(target)
            if st is None:
                state.final_problems[remote.path] = "missing"
            elif st.st_size != record.size:
                state.final_problems[remote.path] = f"size {st.st_size} instead of {record.size}"
            elif verify_full:
                digest = hash_file(target)
                if digest.sha256 != record.sha256:
                    state.final_problems[remote.path] = f"sha256 {digest.sha256} instead of {record.sha256}"
                else:
                    state.final_ok[remote.path] = record
            else:
                state.final_ok[remote.path] = record
        staged = paths.staging / remote.path
        st = _stat(staged)
        if st is not None:
            entry = journal.get(remote.path)
            if entry is not None and entry.size == st.st_size and entry.mtime_ns == st.st_mtime_ns:
                state.journal_ok[remote.path] = entry
            else:
                state.staged_sizes[remote.path] = st.st_size
        partial = _stat(paths.staging / (remote.path + PARTIAL_SUFFIX))
        if partial is not None:
            state.partials[remote.path] = partial.st_size
    return state


# ---------------------------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResolvedRevision:
    requested: str
    revision: str
    is_commit: bool
    note: str | None = None


class Source(Protocol):
    """A place snapshots come from: a hub client adapter or a local directory."""

    name: str
    endpoint: str | None

    def default_revision(self) -> str | None: ...

    def resolve_revision(self, model: str, revision: str | None) -> ResolvedRevision: ...

    def list_files(self, model: str, revision: str) -> list[RemoteFile]: ...

    def download(self, model: str, revision: str, remote: RemoteFile, staging: Path) -> Digest | None:
        """Leave ``staging/<path>`` complete, resuming from ``staging/<path>.incomplete`` when present.

        Return the digest of the file when the source computed it from the bytes it wrote (or its client
        verified the sha256 given in the listing), else None and the file is hashed afterwards."""


# ---------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotRequest:
    model: str
    models_root: Path
    revision: str | None = None
    source: str = "modelscope"
    endpoint: str | None = None
    allow_patterns: tuple[str, ...] = ()
    ignore_patterns: tuple[str, ...] = ()
    verify_full: bool = False
    free_space_margin: str = DEFAULT_MARGIN
    workers: int = 4
    retries: int = 3
    check_mode: bool = False


@dataclass
class SnapshotResult:
    path: str
    revision: str
    revision_requested: str
    revision_is_commit: bool
    source: str
    endpoint: str | None
    changed: bool
    total_bytes: int
    would_download_bytes: int
    bytes_transferred: int = 0
    files_total: int = 0
    files_fetched: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    files_repaired: list[str] = field(default_factory=list)
    files_unverified: list[str] = field(default_factory=list)
    listing: str = "hub"
    manifest: str = ""
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Progress:
    """Thread-safe counters and journal updates of one run."""

    def __init__(self, journal_path: Path, journal: dict[str, FileRecord]) -> None:
        self._lock = threading.Lock()
        self.journal_path = journal_path
        self.journal = dict(journal)
        self.bytes_transferred = 0

    def add_bytes(self, n: int) -> None:
        with self._lock:
            self.bytes_transferred += max(0, n)

    def record(self, record: FileRecord) -> None:
        with self._lock:
            self.journal[record.path] = record
            write_journal(self.journal_path, self.journal)


@contextlib.contextmanager
def snapshot_lock(path: Path) -> Iterator[None]:
    """An exclusive, non-blocking lock for one snapshot (two runs would append to the same partial files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = path.open("a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        fh.close()
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise LockedError(
                f"another run is working on this snapshot (lock {path} is held); wait for it to finish"
            ) from exc
        raise
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        fh.close()


def _partial_size(path: Path) -> int:
    st = _stat(path)
    return st.st_size if st else 0


def fetch_one(
    source: Source,
    model: str,
    revision: str,
    item: FilePlan,
    staging: Path,
    progress: Progress,
    retries: int,
    sleep: Callable[[float], None] = time.sleep,
) -> FileRecord:
    """Fetch one file into staging, verify it, record it. Retries network, server and integrity failures."""
    remote = item.remote
    target = staging / remote.path
    partial = staging / (remote.path + PARTIAL_SUFFIX)
    target.parent.mkdir(parents=True, exist_ok=True)
    last: HubError | None = None
    attempts = max(1, retries)
    for attempt in range(1, attempts + 1):
        if last is not None:
            sleep(min(2 ** (attempt - 2), 8))
        if _partial_size(partial) > remote.size:
            partial.unlink()
        before = _partial_size(partial)
        target.unlink(missing_ok=True)
        try:
            digest = source.download(model, revision, remote, staging)
        except HubError as exc:
            progress.add_bytes(_partial_size(partial) - before)
            if not exc.retryable:
                raise
            last = exc
            continue
        except OSError as exc:
            progress.add_bytes(_partial_size(partial) - before)
            raise HubError("client", f"{remote.path}: {exc}") from exc
        st = target.stat()
        progress.add_bytes(st.st_size - before)
        if (
            digest is None
            or digest.size != st.st_size
            or (digest.git_sha1 is None and (remote.git_sha1 or st.st_size <= GIT_HASH_MAX))
        ):
            digest = hash_file(target, with_git=True if remote.git_sha1 else None)
        problems = digest_problems(remote, digest)
        if not problems:
            os.chmod(target, FILE_MODE)
            record = record_for(remote, digest, target.stat().st_mtime_ns)
            progress.record(record)
            return record
        target.unlink()
        partial.unlink(missing_ok=True)
        last = HubError("integrity", f"{remote.path}: downloaded content has {'; '.join(problems)}")
    assert last is not None
    raise last


def verify_staged(item: FilePlan, staging: Path, progress: Progress) -> FileRecord | None:
    """Hash a complete but unrecorded staged file; on mismatch delete it so it is fetched again."""
    target = staging / item.remote.path
    digest = hash_file(target)
    if digest_problems(item.remote, digest):
        target.unlink()
        return None
    record = record_for(item.remote, digest, target.stat().st_mtime_ns)
    progress.record(record)
    return record


def _remove_empty_dirs(top: Path) -> None:
    for directory in sorted(
        (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    ):
        with contextlib.suppress(OSError):
            directory.rmdir()


def _prune_staging(staging: Path, keep: set[str]) -> None:
    """Drop from the staging directory everything that is not a wanted, verified file."""
    for path in sorted(staging.rglob("*")):
        if path.is_file() or path.is_symlink():
            rel = path.relative_to(staging).as_posix()
            if rel not in keep:
                path.unlink()
    _remove_empty_dirs(staging)


def _fix_modes(top: Path) -> None:
    os.chmod(top, DIR_MODE)
    for path in top.rglob("*"):
        os.chmod(path, DIR_MODE if path.is_dir() else FILE_MODE)


def promote(paths: SnapshotPaths, manifest: Manifest, plan: DownloadPlan, staged: set[str]) -> None:
    """Make the verified snapshot visible.

    New snapshot: manifest written last into the staging directory, then one directory rename.
    Existing snapshot: staged files replace theirs one by one, unwanted files go, the manifest is rewritten.
    """
    final, staging = paths.final, paths.staging
    if not final.exists():
        _prune_staging(staging, staged)
        staging.mkdir(parents=True, exist_ok=True)
        write_manifest(staging, manifest)
        _fix_modes(staging)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, final)
        return
    for rel in sorted(staged):
        target = final / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, target)
    for rel in plan.remove:
        (final / rel).unlink(missing_ok=True)
    _remove_empty_dirs(final)
    write_manifest(final, manifest)
    shutil.rmtree(staging, ignore_errors=True)


def _remove_empty_parents(paths: SnapshotPaths) -> None:
    """Remove the now empty ``.staging/<org>/<name>`` chain and ``.staging`` itself (rmdir: only if empty)."""
    for directory in (
        paths.staging.parent,
        paths.staging.parent.parent,
        paths.staging.parent.parent.parent,
    ):
        with contextlib.suppress(OSError):
            directory.rmdir()


class _CreatedDirs:
    """Remembers which directories did not exist before the run, so a refusal can leave nothing behind."""

    def __init__(self, *paths: Path) -> None:
        self.missing = [p for p in paths if not p.exists()]

    def remove(self) -> None:
        for path in sorted(self.missing, key=lambda p: len(p.parts), reverse=True):
            if path.name == CACHE_DIRNAME:
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.rmdir()


class LazySource:
    """Creates the real source on first use: a complete snapshot of a commit needs no hub client at all
    (no import, no request), so a re-run is fast and works where the client library is missing."""

    def __init__(self, name: str, endpoint: str | None, factory: Callable[[], Source]) -> None:
        self._name = name
        self._endpoint = endpoint
        self._factory = factory
        self._source: Source | None = None

    @property
    def created(self) -> bool:
        return self._source is not None

    def _real(self) -> Source:
        if self._source is None:
            self._source = self._factory()
        return self._source

    @property
    def name(self) -> str:
        return self._source.name if self._source is not None else self._name

    @property
    def endpoint(self) -> str | None:
        return self._source.endpoint if self._source is not None else self._endpoint

    def default_revision(self) -> str | None:
        return self._real().default_revision()

    def resolve_revision(self, model: str, revision: str | None) -> ResolvedRevision:
        if self._name != "local" and revision and is_commit(revision):
            return ResolvedRevision(revision, revision, True)
        return self._real().resolve_revision(model, revision)

    def list_files(self, model: str, revision: str) -> list[RemoteFile]:
        return self._real().list_files(model, revision)

    def download(self, model: str, revision: str, remote: RemoteFile, staging: Path) -> Digest | None:
        return self._real().download(model, revision, remote, staging)


def sync_snapshot(
    request: SnapshotRequest,
    source_factory: Callable[[Path], Source],
    *,
    free_space: Callable[[Path], tuple[int, str]] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SnapshotResult:
    """Bring ``<models_root>/<org>/<name>/<revision>`` to the requested state; see the module docstring."""
    split_model_id(request.model)
    root = Path(request.models_root)
    if not root.is_absolute():
        raise RequestError(f"models_root must be an absolute path, got {str(root)!r}")
    created = _CreatedDirs(root, root / CACHE_DIRNAME)
    source = LazySource(request.source, request.endpoint, lambda: source_factory(root / CACHE_DIRNAME))
    try:
        result = _sync(request, source, created, free_space or disk_free, sleep)
        if request.check_mode:
            created.remove()  # a client may have written its state while resolving or listing
        return result
    except BaseException:
        # Leave nothing behind when nothing was staged yet (refusals, hub errors before the download).
        if not (root / STAGING_DIRNAME).exists():
            created.remove()
        raise


def _wanted_files(
    request: SnapshotRequest, source: LazySource, resolved: ResolvedRevision, manifest: Manifest | None
) -> tuple[list[RemoteFile], str]:
    """The files the snapshot should hold, and where that list came from (the manifest, the hub, a local path)."""
    allow, ignore = request.allow_patterns, request.ignore_patterns
    if manifest is not None and manifest.answers(request.model, resolved.revision, allow, ignore):
        return [record.as_remote() for record in manifest.files], "manifest"
    listed = source.list_files(request.model, resolved.revision)
    wanted = check_listing(filter_files(listed, allow, ignore), request.model, resolved.revision)
    return wanted, "hub" if source.name != "local" else "local"


def _check_space(
    request: SnapshotRequest,
    resolved: ResolvedRevision,
    paths: SnapshotPaths,
    plan: DownloadPlan,
    free_space: Callable[[Path], tuple[int, str]],
) -> None:
    free, where = free_space(paths.staging)
    space = SpaceCheck(
        plan.to_download, parse_margin(request.free_space_margin, plan.total_bytes), free, where
    )
    if not space.ok:
        raise SpaceError(
            space.refusal(request.model, resolved.revision, plan.total_bytes),
            needed_bytes=space.needed,
            download_bytes=space.to_download,
            margin_bytes=space.margin,
            free_bytes=space.free,
            path=space.where,
        )


def _fetch_all(
    request: SnapshotRequest,
    source: LazySource,
    revision: str,
    todo: list[FilePlan],
    staging: Path,
    progress: Progress,
    sleep: Callable[[float], None],
) -> tuple[dict[str, FileRecord], dict[str, str]]:
    """Fetch ``todo`` in parallel: the records of the files fetched, and why each of the others failed."""
    fetched: dict[str, FileRecord] = {}
    failures: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, request.workers)) as pool:
        futures = {
            pool.submit(
                fetch_one, source, request.model, revision, item, staging, progress, request.retries, sleep
            ): item
            for item in todo
        }
        for future, item in futures.items():
            try:
                fetched[item.remote.path] = future.result()
            except HubError as exc:
                failures[item.remote.path] = exc.message
                if exc.kind in ("auth", "repo_not_found", "revision_not_found"):
                    for other in futures:
                        other.cancel()
            except Exception as exc:  # a bug or an unexpected client failure: report it with the file
                failures[item.remote.path] = f"{type(exc).__name__}: {exc}"
    return fetched, failures


def _download_error(
    request: SnapshotRequest,
    source: LazySource,
    revision: str,
    todo: list[FilePlan],
    failures: dict[str, str],
    progress: Progress,
) -> DownloadError:
    return DownloadError(
        f"{len(failures)} of {len(todo)} file(s) of {request.model} at revision {revision} could not be "
        f"fetched from {source.name}"
        + (f" ({source.endpoint})" if source.endpoint else "")
        + ": "
        + "; ".join(f"{path}: {why}" for path, why in sorted(failures.items()))
        + ". The files fetched so far are kept in the staging area; the next run resumes from there.",
        failures=failures,
        bytes_transferred=progress.bytes_transferred,
    )


def _download(
    request: SnapshotRequest,
    source: LazySource,
    resolved: ResolvedRevision,
    paths: SnapshotPaths,
    wanted: list[RemoteFile],
    state: LocalState,
    plan: DownloadPlan,
    result: SnapshotResult,
    sleep: Callable[[float], None],
) -> None:
    """Stage what the plan needs (under the lock), then promote the staged files and the new manifest."""
    paths.staging.mkdir(parents=True, exist_ok=True)
    with snapshot_lock(paths.lock):
        progress = Progress(paths.journal, read_journal(paths.journal))
        staged: dict[str, FileRecord] = {
            f.remote.path: state.journal_ok[f.remote.path] for f in plan.files if f.action is Action.STAGED
        }
        todo = plan.with_action(Action.RESUME, Action.FETCH)
        for item in plan.with_action(Action.VERIFY):
            record = verify_staged(item, paths.staging, progress)
            if record is None:
                todo.append(replace(item, action=Action.FETCH, offset=0))
            else:
                staged[item.remote.path] = record
        fetched, failures = _fetch_all(
            request, source, resolved.revision, todo, paths.staging, progress, sleep
        )
        staged.update(fetched)
        result.files_fetched.extend(sorted(fetched))
        result.bytes_transferred = progress.bytes_transferred
        if failures:
            raise _download_error(request, source, resolved.revision, todo, failures, progress)

        records = dict(staged)
        for item in plan.with_action(Action.KEEP):
            records[item.remote.path] = state.final_ok[item.remote.path]
        manifest_out = Manifest(
            model=request.model,
            revision=resolved.revision,
            revision_requested=resolved.requested,
            revision_is_commit=resolved.is_commit,
            source=source.name,
            endpoint=source.endpoint,
            allow_patterns=tuple(request.allow_patterns),
            ignore_patterns=tuple(request.ignore_patterns),
            files=tuple(replace(records[r.path], mtime_ns=None) for r in wanted),
            created=now_utc(),
        )
        promote(paths, manifest_out, plan, set(staged))
        paths.journal.unlink(missing_ok=True)
        shutil.rmtree(paths.staging, ignore_errors=True)
    _remove_empty_parents(paths)


def _sync(
    request: SnapshotRequest,
    source: LazySource,
    created: _CreatedDirs,
    free_space: Callable[[Path], tuple[int, str]],
    sleep: Callable[[float], None],
) -> SnapshotResult:
    model = request.model
    resolved = source.resolve_revision(model, request.revision)
    paths = snapshot_paths(request.models_root, model, resolved.revision)
    warnings = [resolved.note] if resolved.note else []
    if paths.final.exists() and not paths.manifest.exists():
        raise ManifestError(
            f"{paths.final} exists but holds no {MANIFEST_NAME}, so it was not made by model_snapshot; "
            "move it away (or adopt its files with source=local) and run again"
        )
    manifest = read_manifest(paths.final)
    wanted, listing = _wanted_files(request, source, resolved, manifest)
    state = observe(paths, wanted, manifest, request.verify_full)
    plan = make_plan(wanted, state, manifest.by_path() if manifest else ())
    result = SnapshotResult(
        path=str(paths.final),
        revision=resolved.revision,
        revision_requested=resolved.requested,
        revision_is_commit=resolved.is_commit,
        source=source.name,
        endpoint=source.endpoint or (manifest.endpoint if manifest and not source.created else None),
        changed=not plan.complete,
        total_bytes=plan.total_bytes,
        would_download_bytes=plan.to_download,
        files_total=len(plan.files),
        files_removed=list(plan.remove),
        files_repaired=sorted(state.final_problems),
        files_unverified=sorted(r.path for r in wanted if r.checked_by == "size"),
        listing=listing,
        manifest=str(paths.manifest),
        warnings=warnings,
    )
    if plan.complete:
        return result
    _check_space(request, resolved, paths, plan, free_space)
    if not request.check_mode:
        _download(request, source, resolved, paths, wanted, state, plan, result, sleep)
    return result
