"""A hub test double: the part of the ModelScope and Hugging Face HTTP APIs that snapshot downloads use.

It serves model repositories from a local directory laid out as ``<root>/<org>/<name>/<revision>/<files>``
(``<revision>`` is a branch name such as ``master`` or ``main``; the two are aliases of each other when only
one exists). Both APIs see the same repositories and the same commits.

- Commit: the sha1 of the revision's listing (path, size, sha256 of every file), so it changes exactly when
  the content changes (the Hugging Face client caches trees by commit).
- LFS: files with a weights-like extension or larger than 10 MiB. Their sha256 is published (HF tree ``lfs``,
  ModelScope ``Sha256`` on every file) and their content is served through a redirect to ``/_cdn/...``
  on the *other* loopback name (127.0.0.1 <-> localhost), the way the real hubs redirect to a CDN.
- Every content response honours ``Range: bytes=a-`` / ``a-b`` (206, or 416 past the end).

Fault injection (at start with ``--faults``/``--config``, at run time with ``POST /_double/faults``):
``cut`` (close after N body bytes), ``stall`` (send N bytes, then hang), ``flip`` (invert one byte at an absolute
file offset), ``slow`` (delay before answering and/or a rate in bytes/s), ``status`` (answer 401/404/500...).
A fault matches on request kind (``revision``, ``listing``, ``head``, ``file``, ``any``), ``api`` (``hf``, ``ms``,
``any``), ``repo`` and ``path`` globs, and applies ``times`` times (``null`` = until removed).

Access (``POST /_double/auth``, ``--tokens``/``--config``): ``tokens`` maps a repository to the token that can
see it; such a repository is gated unless ``private`` lists it; ``accounts`` are further valid tokens (an account
that sees no restricted repository). The Hugging Face API answers as the real hub does: a token it does not know
is refused on every repository (401, ``Invalid credentials in Authorization header``); a missing repository, or a
private one the caller cannot see, is ``RepoNotFound`` (401 without a token, 404 with a valid one); a gated
repository's metadata is public, its files need access (``GatedRepo``: 401 without a token, 403 with another
account's). The ModelScope API answers 401 for any listed repository without its token.

Counters: ``GET /_double/stats`` returns requests and body bytes per file, per request kind and in total;
``POST /_double/reset`` clears them (``{"faults": true}`` also clears the faults).

Run: ``python -m tests.hubdouble.server --root DIR --port 8765 --host 127.0.0.1``.
Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import fnmatch
import hashlib
import json
import posixpath
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

CHUNK = 1024 * 1024
LFS_MIN_SIZE = 10 * 1024 * 1024
LFS_SUFFIXES = frozenset(
    {
        ".safetensors",
        ".bin",
        ".pt",
        ".pth",
        ".ckpt",
        ".gguf",
        ".onnx",
        ".msgpack",
        ".h5",
        ".npz",
        ".model",
        ".tar",
        ".gz",
        ".zip",
    }
)
BRANCH_ALIASES = {"main": "master", "master": "main"}
HF_TREE_PAGE_SIZE = 1000
KINDS = ("revision", "listing", "head", "file", "auth", "any")
FAULT_KINDS = ("cut", "stall", "flip", "slow", "status")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


# ---------------------------------------------------------------------------------------------------------------
# Repository store
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileMeta:
    path: str
    size: int
    sha256: str
    git_sha1: str
    lfs: bool


@dataclass(frozen=True)
class Revision:
    org: str
    name: str
    name_on_disk: str
    commit: str
    directory: Path
    files: tuple[FileMeta, ...]

    @property
    def repo_id(self) -> str:
        return f"{self.org}/{self.name}"

    def file(self, path: str) -> FileMeta | None:
        for meta in self.files:
            if meta.path == path:
                return meta
        return None


class NotFound(Exception):
    """``what`` is ``repo``, ``revision`` or ``entry``."""

    def __init__(self, what: str, message: str, commit: str | None = None) -> None:
        super().__init__(message)
        self.what = what
        self.message = message
        self.commit = commit


def is_lfs(path: str, size: int) -> bool:
    return size > LFS_MIN_SIZE or posixpath.splitext(path)[1].lower() in LFS_SUFFIXES


class RepoStore:
    """Reads repositories from disk; hashes are cached by (path, size, mtime)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._hashes: dict[str, tuple[int, int, str, str]] = {}

    def repo_dir(self, org: str, name: str) -> Path:
        if not _safe_segment(org) or not _safe_segment(name):
            raise NotFound("repo", f"Repository {org}/{name} not found")
        path = self.root / org / name
        if not path.is_dir():
            raise NotFound("repo", f"Repository {org}/{name} not found")
        return path

    def revision_names(self, org: str, name: str) -> list[str]:
        repo = self.repo_dir(org, name)
        return sorted(p.name for p in repo.iterdir() if p.is_dir() and not p.name.startswith("."))

    def resolve(self, org: str, name: str, revision: str) -> Revision:
        names = self.revision_names(org, name)
        if revision in names:
            return self._load(org, name, revision)
        alias = BRANCH_ALIASES.get(revision)
        if alias in names and revision not in names:
            return self._load(org, name, alias)
        if COMMIT_RE.match(revision):
            for candidate in names:
                loaded = self._load(org, name, candidate)
                if loaded.commit == revision:
                    return loaded
        raise NotFound("revision", f"Revision {revision} not found in {org}/{name}")

    def _load(self, org: str, name: str, dirname: str) -> Revision:
        directory = self.root / org / name / dirname
        files = []
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            rel = path.relative_to(directory).as_posix()
            if any(part.startswith(".") for part in rel.split("/")) and not rel.endswith(".gitattributes"):
                continue
            files.append(self._meta(path, rel))
        listing = "".join(f"{f.path}\0{f.size}\0{f.sha256}\n" for f in files)
        commit = hashlib.sha1(listing.encode()).hexdigest()
        return Revision(org, name, dirname, commit, directory, tuple(files))

    def _meta(self, path: Path, rel: str) -> FileMeta:
        st = path.stat()
        key = str(path)
        with self._lock:
            cached = self._hashes.get(key)
        if cached and cached[0] == st.st_size and cached[1] == st.st_mtime_ns:
            sha256, sha1 = cached[2], cached[3]
        else:
            sha256, sha1 = _hash_pair(path, st.st_size)
            with self._lock:
                self._hashes[key] = (st.st_size, st.st_mtime_ns, sha256, sha1)
        return FileMeta(rel, st.st_size, sha256, sha1, is_lfs(rel, st.st_size))


def _hash_pair(path: Path, size: int) -> tuple[str, str]:
    """sha256 of the content and the git blob sha1 (``sha1("blob <size>\\0" + content)``)."""
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(f"blob {size}\0".encode())
    with path.open("rb") as fh:
        while block := fh.read(8 * CHUNK):
            sha256.update(block)
            sha1.update(block)
    return sha256.hexdigest(), sha1.hexdigest()


def _safe_segment(value: str) -> bool:
    return bool(value) and value not in (".", "..") and "/" not in value and "\0" not in value


# ---------------------------------------------------------------------------------------------------------------
# Faults and counters
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Fault:
    kind: str
    on: str = "file"
    api: str = "any"
    repo: str = "*"
    path: str = "*"
    times: int | None = None
    after_bytes: int = 0
    offset: int | None = None
    rate: int | None = None
    delay: float = 0.0
    seconds: float = 60.0
    status: int = 500
    error_code: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        fault = cls(**known)
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, got {fault.kind!r}")
        if fault.on not in KINDS:
            raise ValueError(f"fault 'on' must be one of {KINDS}, got {fault.on!r}")
        if fault.api not in ("hf", "ms", "any"):
            raise ValueError(f"fault 'api' must be hf, ms or any, got {fault.api!r}")
        return fault

    def matches(self, kind: str, api: str, repo: str, path: str) -> bool:
        return (
            self.on in ("any", kind)
            and self.api in ("any", api)
            and fnmatch.fnmatchcase(repo, self.repo)
            and fnmatch.fnmatchcase(path, self.path)
        )


class DoubleState:
    """Faults, tokens and counters shared by all request threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.faults: list[Fault] = []
        self.tokens: dict[str, str] = {}
        self.private: set[str] = set()
        self.accounts: set[str] = set()
        self.stopping = threading.Event()
        self.reset_stats()

    def set_access(
        self, tokens: dict[str, str], private: list[str] | None = None, accounts: list[str] | None = None
    ) -> None:
        with self.lock:
            self.tokens = dict(tokens)
            self.private = set(private or ())
            self.accounts = set(accounts or ())

    def access(self) -> dict[str, Any]:
        with self.lock:
            return {"tokens": dict(self.tokens), "private": set(self.private), "accounts": set(self.accounts)}

    def reset_stats(self) -> None:
        with self.lock:
            self.requests_total = 0
            self.by_kind: dict[str, int] = {}
            self.by_api: dict[str, int] = {}
            self.files: dict[str, dict[str, dict[str, Any]]] = {}
            self.bytes_total = 0
            self.log: list[dict[str, Any]] = []
            self.stats_since = time.monotonic()

    def set_faults(self, faults: list[dict[str, Any]], append: bool = False) -> list[Fault]:
        parsed = [Fault.from_dict(f) for f in faults]
        with self.lock:
            self.faults = ([*self.faults, *parsed]) if append else parsed
            return list(self.faults)

    def take_faults(
        self,
        kind: str,
        api: str,
        repo: str,
        path: str,
        fault_kinds: tuple[str, ...],
        accept: Callable[[Fault], bool] = lambda _f: True,
    ) -> list[Fault]:
        """Faults of ``fault_kinds`` that apply to this request; each use counts against ``times``."""
        taken = []
        with self.lock:
            for fault in list(self.faults):
                if (
                    fault.kind not in fault_kinds
                    or not fault.matches(kind, api, repo, path)
                    or not accept(fault)
                ):
                    continue
                taken.append(fault)
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
        return taken

    def count_request(self, kind: str, api: str) -> None:
        with self.lock:
            self.requests_total += 1
            self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
            self.by_api[api] = self.by_api.get(api, 0) + 1

    def file_entry(self, repo: str, path: str) -> dict[str, Any]:
        repo_files = self.files.setdefault(repo, {})
        return repo_files.setdefault(
            path, {"requests": 0, "bytes": 0, "heads": 0, "redirects": 0, "ranges": []}
        )

    def count_file(self, repo: str, path: str, what: str, range_header: str | None = None) -> None:
        with self.lock:
            entry = self.file_entry(repo, path)
            entry[what] += 1
            if what == "requests":
                entry["ranges"].append(range_header)

    def add_bytes(self, repo: str, path: str, n: int) -> None:
        with self.lock:
            self.file_entry(repo, path)["bytes"] += n
            self.bytes_total += n

    def add_log(self, record: dict[str, Any], started: float) -> None:
        """Log a finished request. It is logged after its response went out, so a client may reset the
        stats in between: a request that started before the reset is not logged."""
        with self.lock:
            if started < self.stats_since:
                return
            self.log.append(record)
            del self.log[:-1000]

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return json.loads(
                json.dumps(
                    {
                        "requests": {
                            "total": self.requests_total,
                            "by_kind": self.by_kind,
                            "by_api": self.by_api,
                        },
                        "bytes_total": self.bytes_total,
                        "files": self.files,
                        "faults": [asdict(f) for f in self.faults],
                        "log": self.log,
                    }
                )
            )


INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


@dataclass(frozen=True)
class Refusal:
    """How the Hugging Face API refuses a request: status, ``X-Error-Code`` (None for a refused token), message."""

    status: int
    code: str | None
    message: str


def hf_refusal(
    access: dict[str, Any], repo: str, exists: bool, bearer: str | None, content: bool, endpoint: str
) -> Refusal | None:
    """The real hub's answer to ``bearer`` (None: no token) asking for ``repo``'s metadata or, when ``content``,
    its files; None when it is served. ``access`` holds ``tokens``, ``private`` and ``accounts``."""
    tokens: dict[str, str] = access["tokens"]
    if bearer is not None and bearer not in set(tokens.values()) | set(access["accounts"]):
        return Refusal(401, None, INVALID_CREDENTIALS)
    token = tokens.get(repo)
    private = repo in access["private"]
    allowed = (token is None and not private) or (bearer is not None and bearer == token)
    if not exists or (private and not allowed):
        return Refusal(401 if bearer is None else 404, "RepoNotFound", "Repository not found")
    if allowed or not content:
        return None
    if bearer is None:
        message = (
            f"Access to model {repo} is restricted. You must have access to it and be authenticated to access it. "
            "Please log in."
        )
        return Refusal(401, "GatedRepo", message)
    message = (
        f"Access to model {repo} is restricted and you are not in the authorized list. "
        f"Visit {endpoint}/{repo} to ask for access."
    )
    return Refusal(403, "GatedRepo", message)


class ConnectionCut(Exception):
    """The response was cut on purpose."""


# ---------------------------------------------------------------------------------------------------------------
# HTTP handler
# ---------------------------------------------------------------------------------------------------------------
class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hubdouble/1"
    server: HubDoubleServer

    # -- plumbing --------------------------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            sys.stderr.write("hubdouble: " + (format % args) + "\n")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        started = time.monotonic()
        self._status_sent = 0
        self._body_bytes = 0
        self._rate: int | None = None
        self._kind = "other"
        self._api = "-"
        try:
            self._route(method)
        except ConnectionCut:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except NotFound as exc:
            self._not_found(exc)
        finally:
            if self._kind != "control":
                self.server.state.add_log(
                    {
                        "method": method,
                        "path": self.path,
                        "kind": self._kind,
                        "api": self._api,
                        "status": self._status_sent,
                        "range": self.headers.get("Range"),
                        "bytes": self._body_bytes,
                        "auth": bool(self.headers.get("Authorization")),
                        "time": time.time(),
                    },
                    started,
                )

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status_sent = code
        super().send_response(code, message)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_json_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw.strip() else {}

    # -- routing ---------------------------------------------------------------------------------------------
    def _route(self, method: str) -> None:
        split = urlsplit(self.path)
        segments = [unquote(s) for s in split.path.split("/")[1:]]
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}

        if segments[:1] == ["_double"]:
            return self._control(method, segments[1:])
        if segments[:2] == ["api", "agent-harnesses"]:
            return self._json(200, {"standardEnvVars": [], "harnesses": {}})
        if segments[:1] == ["_cdn"] and len(segments) >= 5:
            org, name, commit = segments[1:4]
            return self._cdn(method, org, name, commit, "/".join(segments[4:]))
        if segments[:3] == ["api", "v1", "models"] and len(segments) >= 5:
            return self._ms(method, segments[3], segments[4], segments[5:], query)
        if segments[:2] == ["api", "v1"]:
            self._api = "ms"
            return self._json(404, {"Code": 404, "Message": f"no such API: {split.path}", "Success": False})
        if segments[:2] == ["api", "models"] and len(segments) >= 4:
            return self._hf_api(method, segments[2], segments[3], segments[4:], split.path, query)
        if len(segments) >= 5 and segments[2] == "resolve":
            return self._hf_resolve(method, segments[0], segments[1], segments[3], "/".join(segments[4:]))
        self._json(404, {"error": f"not found: {split.path}"})

    # -- control endpoints -----------------------------------------------------------------------------------
    def _control(self, method: str, segments: list[str]) -> None:
        self._kind = "control"
        state = self.server.state
        what = segments[0] if segments else ""
        if what == "health":
            return self._json(200, {"ok": True})
        if what == "stats" and method == "GET":
            return self._json(200, state.snapshot())
        if what == "reset" and method == "POST":
            body = self._read_json_body()
            state.reset_stats()
            if body.get("faults"):
                state.set_faults([])
            return self._json(200, {"ok": True})
        if what == "faults":
            if method == "POST":
                body = self._read_json_body()
                faults = body if isinstance(body, list) else body.get("faults", [])
                try:
                    current = state.set_faults(
                        faults, append=bool(body.get("append")) if isinstance(body, dict) else False
                    )
                except (TypeError, ValueError) as exc:
                    return self._json(400, {"error": str(exc)})
                return self._json(200, {"faults": [asdict(f) for f in current]})
            with state.lock:
                return self._json(200, {"faults": [asdict(f) for f in state.faults]})
        if what == "auth" and method == "POST":
            body = self._read_json_body()
            state.set_access(body.get("tokens", {}), body.get("private"), body.get("accounts"))
            return self._json(200, {"repos": sorted(state.tokens), "private": sorted(state.private)})
        self._json(404, {"error": f"unknown control endpoint {'/'.join(segments)}"})

    # -- faults before answering -----------------------------------------------------------------------------
    def _pre_faults(self, kind: str, api: str, repo: str, path: str) -> None:
        """Count the request, apply ``slow`` and ``status`` faults (body faults wait for a body to send)."""
        self._kind, self._api = kind, api
        state = self.server.state
        state.count_request(kind, api)
        faults = state.take_faults(kind, api, repo, path, ("slow", "status"))
        self._rate = min((f.rate for f in faults if f.kind == "slow" and f.rate), default=None)
        for fault in faults:
            if fault.kind == "slow" and fault.delay:
                self._sleep(fault.delay)
        for fault in faults:
            if fault.kind == "status":
                self._fault_status(fault, api, repo, path)
                return

    def _fault_status(self, fault: Fault, api: str, repo: str, path: str) -> None:
        message = f"injected HTTP {fault.status} for {repo} {path}".strip()
        if api == "ms":
            self._json(fault.status, {"Code": fault.status, "Message": message, "Success": False})
            return
        headers = {"X-Error-Message": message}
        code = fault.error_code
        if code is None and fault.status == 401:
            code = "GatedRepo"
        if code is None and fault.status == 404:
            code = "EntryNotFound" if path else "RepoNotFound"
        if code:
            headers["X-Error-Code"] = code
        self._json(fault.status, {"error": message}, headers)

    def _sleep(self, seconds: float) -> None:
        self.server.state.stopping.wait(seconds)

    def _authorized(self, repo: str) -> bool:
        with self.server.state.lock:
            token = self.server.state.tokens.get(repo)
        if token is None:
            return True
        if self.headers.get("Authorization", "") == f"Bearer {token}":
            return True
        cookie = self.headers.get("Cookie", "")
        return f"m_session_id={token}" in cookie

    def _unauthorized_ms(self, repo: str) -> None:
        message = f"Access to model {repo} is restricted: a valid token is required."
        self._json(401, {"Code": 401, "Message": message, "Success": False})

    def _hf_refused(self, org: str, name: str, content: bool) -> bool:
        """Answer as the real hub refuses this request (see :func:`hf_refusal`); True when it did."""
        try:
            self.server.store.repo_dir(org, name)
            exists = True
        except NotFound:
            exists = False
        authorization = self.headers.get("Authorization", "")
        bearer = authorization[len("Bearer ") :] if authorization.startswith("Bearer ") else None
        host = self.headers.get("Host", "127.0.0.1")
        refusal = hf_refusal(
            self.server.state.access(), f"{org}/{name}", exists, bearer, content, f"http://{host}"
        )
        if refusal is None:
            return False
        headers = {"X-Error-Message": refusal.message}
        if refusal.code:
            headers["X-Error-Code"] = refusal.code
        self._json(refusal.status, {"error": refusal.message}, headers)
        return True

    def _not_found(self, exc: NotFound) -> None:
        if self._api == "ms":
            self._json(404, {"Code": 404, "Message": exc.message, "Success": False})
            return
        code = {"repo": "RepoNotFound", "revision": "RevisionNotFound", "entry": "EntryNotFound"}[exc.what]
        headers = {"X-Error-Code": code, "X-Error-Message": exc.message}
        if exc.commit:
            headers["X-Repo-Commit"] = exc.commit
        self._json(404, {"error": exc.message}, headers)

    # -- content ---------------------------------------------------------------------------------------------
    def _cdn_base(self) -> str:
        host = self.headers.get("Host") or f"{self.server.server_address[0]}:{self.server.server_address[1]}"
        if self.server.cdn_url == "same-origin":
            return f"http://{host}"
        if self.server.cdn_url:
            return self.server.cdn_url.rstrip("/")
        hostname, _, port = host.rpartition(":") if ":" in host else (host, "", "")
        swapped = {"127.0.0.1": "localhost", "localhost": "127.0.0.1"}.get(hostname, hostname)
        return f"http://{swapped}:{port}" if port else f"http://{swapped}"

    def _cdn_url(self, rev: Revision, meta: FileMeta) -> str:
        return f"{self._cdn_base()}/_cdn/{quote(rev.org)}/{quote(rev.name)}/{rev.commit}/{quote(meta.path)}"

    def _send_content(self, method: str, rev: Revision, meta: FileMeta, extra: dict[str, str]) -> None:
        state = self.server.state
        size = meta.size
        start, end = 0, size - 1
        status = 200
        range_header = self.headers.get("Range")
        if range_header:
            parsed = _parse_range(range_header, size)
            if parsed is None:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end = parsed
            status = 206
        length = max(0, end - start + 1)
        if method == "GET":
            state.count_file(rev.repo_id, meta.path, "requests", range_header)
        else:
            state.count_file(rev.repo_id, meta.path, "heads")
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", email.utils.formatdate(usegmt=True))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        if method == "HEAD" or length == 0:
            return

        def applies(fault: Fault) -> bool:
            offset = meta.size // 2 if fault.offset is None else fault.offset
            return fault.kind != "flip" or start <= offset <= end

        faults = state.take_faults(
            self._kind, self._api, rev.repo_id, meta.path, ("cut", "stall", "flip"), accept=applies
        )
        self._stream(rev, meta, start, length, faults)

    def _stream(self, rev: Revision, meta: FileMeta, start: int, length: int, faults: list[Fault]) -> None:
        state = self.server.state
        limit = None
        stall = None
        for fault in faults:
            if fault.kind in ("cut", "stall"):
                limit = fault.after_bytes if limit is None else min(limit, fault.after_bytes)
                if fault.kind == "stall":
                    stall = fault
        flips = [f.offset if f.offset is not None else meta.size // 2 for f in faults if f.kind == "flip"]
        rate = self._rate
        chunk_size = CHUNK if rate is None else max(1024, min(CHUNK, rate // 10))
        sent = 0
        began = time.monotonic()
        with (rev.directory / meta.path).open("rb") as fh:
            fh.seek(start)
            while sent < length:
                want = min(chunk_size, length - sent)
                if limit is not None:
                    want = min(want, limit - sent)
                if want <= 0:
                    break
                block = bytearray(fh.read(want))
                if not block:
                    break
                pos = start + sent
                for offset in flips:
                    if pos <= offset < pos + len(block):
                        block[offset - pos] ^= 0xFF
                self.wfile.write(block)
                sent += len(block)
                self._body_bytes = sent
                state.add_bytes(rev.repo_id, meta.path, len(block))
                if rate:
                    ahead = sent / rate - (time.monotonic() - began)
                    if ahead > 0:
                        self._sleep(ahead)
                if state.stopping.is_set():
                    raise ConnectionCut
        if limit is not None and sent < length:
            self.wfile.flush()
            if stall is not None:
                self._sleep(stall.seconds)
            raise ConnectionCut

    # -- Hugging Face ----------------------------------------------------------------------------------------
    def _hf_api(
        self, method: str, org: str, name: str, rest: list[str], raw_path: str, query: dict[str, str]
    ) -> None:
        repo = f"{org}/{name}"
        self._api = "hf"
        if not rest or rest[0] == "revision":
            revision = rest[1] if len(rest) > 1 else "main"
            self._pre_faults("revision", "hf", repo, "")
            if self._status_sent or self._hf_refused(org, name, content=False):
                return
            rev = self.server.store.resolve(org, name, revision)
            access = self.server.state.access()
            return self._json(
                200,
                {
                    "_id": rev.commit[:24],
                    "id": repo,
                    "modelId": repo,
                    "sha": rev.commit,
                    "private": repo in access["private"],
                    "gated": repo in access["tokens"] and repo not in access["private"] and "manual",
                    "disabled": False,
                    "downloads": 0,
                    "likes": 0,
                    "tags": [],
                    "lastModified": "2026-01-01T00:00:00.000Z",
                    "createdAt": "2026-01-01T00:00:00.000Z",
                    "siblings": [{"rfilename": f.path} for f in rev.files],
                },
            )
        if rest[0] == "tree" and len(rest) >= 2:
            prefix = "/".join(rest[2:])
            self._pre_faults("listing", "hf", repo, prefix)
            if self._status_sent or self._hf_refused(org, name, content=False):
                return
            rev = self.server.store.resolve(org, name, rest[1])
            entries = _hf_tree(rev, prefix, query.get("recursive", "").lower() in ("true", "1"))
            cursor = int(query.get("cursor") or 0)
            page = entries[cursor : cursor + HF_TREE_PAGE_SIZE]
            headers = {}
            if cursor + HF_TREE_PAGE_SIZE < len(entries):
                host = self.headers.get("Host", "127.0.0.1")
                nxt = f"http://{host}{raw_path}?recursive={query.get('recursive', 'false')}&cursor={cursor + HF_TREE_PAGE_SIZE}"
                headers["Link"] = f'<{nxt}>; rel="next"'
            return self._json(200, page, headers)
        if rest == ["auth-check"]:
            self._pre_faults("auth", "hf", repo, "")
            if self._status_sent or self._hf_refused(org, name, content=True):
                return
            return self._json(200, {})
        self._json(404, {"error": f"unsupported API path {raw_path}"})

    def _hf_resolve(self, method: str, org: str, name: str, revision: str, path: str) -> None:
        repo = f"{org}/{name}"
        kind = "head" if method == "HEAD" else "file"
        self._api = "hf"
        self._pre_faults(kind, "hf", repo, path)
        if self._status_sent or self._hf_refused(org, name, content=True):
            return
        rev = self.server.store.resolve(org, name, revision)
        meta = rev.file(path)
        if meta is None:
            raise NotFound("entry", f"Entry {path} not found in {repo} at {revision}", commit=rev.commit)
        common = {"X-Repo-Commit": rev.commit}
        if meta.lfs:
            if method == "GET":
                self.server.state.count_file(repo, path, "redirects")
            else:
                self.server.state.count_file(repo, path, "heads")
            self.send_response(302)
            self.send_header("Location", self._cdn_url(rev, meta))
            self.send_header("X-Repo-Commit", rev.commit)
            self.send_header("ETag", f'"{meta.git_sha1}"')
            self.send_header("X-Linked-Etag", f'"{meta.sha256}"')
            self.send_header("X-Linked-Size", str(meta.size))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send_content(method, rev, meta, {**common, "ETag": f'"{meta.git_sha1}"'})

    def _cdn(self, method: str, org: str, name: str, commit: str, path: str) -> None:
        repo = f"{org}/{name}"
        kind = "head" if method == "HEAD" else "file"
        # The CDN belongs to whichever API redirected here; "any"-API faults apply, per-API ones by header.
        api = "ms" if "modelscope" in self.headers.get("User-Agent", "").lower() else "hf"
        self._pre_faults(kind, api, repo, path)
        if self._status_sent:
            return
        rev = self.server.store.resolve(org, name, commit)
        meta = rev.file(path)
        if meta is None:
            raise NotFound("entry", f"Entry {path} not found in {repo} at {commit}", commit=rev.commit)
        extra = {
            "X-Repo-Commit": rev.commit,
            "ETag": f'"{meta.sha256}"',
            "X-Linked-Etag": f'"{meta.sha256}"',
            "X-Linked-Size": str(meta.size),
        }
        self._send_content(method, rev, meta, extra)

    # -- ModelScope ------------------------------------------------------------------------------------------
    def _ms(self, method: str, org: str, name: str, rest: list[str], query: dict[str, str]) -> None:
        repo = f"{org}/{name}"
        self._api = "ms"
        store = self.server.store
        if rest == ["repo", "files"]:
            self._pre_faults("listing", "ms", repo, query.get("Root", ""))
            if self._status_sent:
                return
            if not self._authorized(repo):
                return self._unauthorized_ms(repo)
            rev = store.resolve(org, name, query.get("Revision") or "master")
            recursive = query.get("Recursive", "false").lower() in ("true", "1")
            files = _ms_listing(rev, query.get("Root", "").strip("/"), recursive)
            return self._json(
                200, {"Code": 200, "Data": {"Files": files}, "Message": "success", "Success": True}
            )
        if rest == ["repo"]:
            path = query.get("FilePath", "")
            self._pre_faults("file", "ms", repo, path)
            if self._status_sent:
                return
            if not self._authorized(repo):
                return self._unauthorized_ms(repo)
            rev = store.resolve(org, name, query.get("Revision") or "master")
            meta = rev.file(path)
            if meta is None:
                raise NotFound("entry", f"File {path} not found in {repo} at {rev.name_on_disk}")
            if meta.lfs:
                self.server.state.count_file(repo, path, "redirects")
                self.send_response(302)
                self.send_header("Location", self._cdn_url(rev, meta))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            return self._send_content(method, rev, meta, {})
        if rest == ["revisions"]:
            self._pre_faults("revision", "ms", repo, "")
            if self._status_sent:
                return
            if not self._authorized(repo):
                return self._unauthorized_ms(repo)
            branches = []
            for revision_name in store.revision_names(org, name):
                rev = store.resolve(org, name, revision_name)
                branches.append({"Revision": revision_name, "CommitId": rev.commit, "CreatedAt": 1767225600})
            data = {"RevisionMap": {"Branches": branches, "Tags": []}}
            return self._json(200, {"Code": 200, "Data": data, "Message": "success", "Success": True})
        if not rest:
            self._kind = "info"
            store.repo_dir(org, name)
            data = {"Id": 1, "Name": name, "Path": org, "ChineseName": name, "Visibility": 5}
            return self._json(200, {"Code": 200, "Data": data, "Message": "success", "Success": True})
        self._json(404, {"Code": 404, "Message": f"unsupported API path {'/'.join(rest)}", "Success": False})


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``bytes=a-``, ``bytes=a-b`` or ``bytes=-n``; None when unsatisfiable."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not match or (not match.group(1) and not match.group(2)):
        return (0, size - 1) if size else None
    first, last = match.groups()
    if not first:
        n = int(last)
        return (max(0, size - n), size - 1) if n and size else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return None
    return start, end


def _dirs_of(paths: list[str]) -> list[str]:
    dirs = set()
    for path in paths:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return sorted(dirs)


def _hf_tree(rev: Revision, prefix: str, recursive: bool) -> list[dict[str, Any]]:
    prefix = prefix.strip("/")
    entries: list[dict[str, Any]] = []
    base = f"{prefix}/" if prefix else ""
    for directory in _dirs_of([f.path for f in rev.files]):
        if not directory.startswith(base):
            continue
        if not recursive and "/" in directory[len(base) :]:
            continue
        oid = hashlib.sha1(f"tree {directory}".encode()).hexdigest()
        entries.append({"type": "directory", "oid": oid, "size": 0, "path": directory})
    for meta in rev.files:
        if not meta.path.startswith(base):
            continue
        if not recursive and "/" in meta.path[len(base) :]:
            continue
        entry: dict[str, Any] = {"type": "file", "oid": meta.git_sha1, "size": meta.size, "path": meta.path}
        if meta.lfs:
            entry["lfs"] = {"oid": meta.sha256, "size": meta.size, "pointerSize": 134}
        entries.append(entry)
    if prefix and not entries:
        raise NotFound("entry", f"Path {prefix} not found in {rev.repo_id}", commit=rev.commit)
    return entries


def _ms_listing(rev: Revision, root: str, recursive: bool) -> list[dict[str, Any]]:
    base = f"{root}/" if root else ""
    out: list[dict[str, Any]] = []
    for directory in _dirs_of([f.path for f in rev.files]):
        if directory.startswith(base) and (recursive or "/" not in directory[len(base) :]):
            out.append({"Name": directory.rsplit("/", 1)[-1], "Path": directory, "Type": "tree", "Size": 0})
    for meta in rev.files:
        if not meta.path.startswith(base):
            continue
        if not recursive and "/" in meta.path[len(base) :]:
            continue
        out.append(
            {
                "Name": meta.path.rsplit("/", 1)[-1],
                "Path": meta.path,
                "Type": "blob",
                "Size": meta.size,
                "Sha256": meta.sha256,
                "IsLFS": meta.lfs,
                "Revision": rev.commit,
                "CommitId": rev.commit,
                "Mode": "100644",
            }
        )
    if root and not out:
        raise NotFound("entry", f"Path {root} not found in {rev.repo_id}")
    return out


# ---------------------------------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------------------------------
class HubDoubleServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        root: Path,
        *,
        cdn_url: str | None = None,
        verbose: bool = False,
    ) -> None:
        self.store = RepoStore(Path(root))
        self.state = DoubleState()
        self.cdn_url = cdn_url
        self.verbose = verbose
        super().__init__(address, HubHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def shutdown(self) -> None:
        self.state.stopping.set()
        super().shutdown()


def load_config(value: str | None) -> dict[str, Any]:
    """A JSON string, or ``@file`` holding JSON."""
    if not value:
        return {}
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    data = json.loads(text)
    return {"faults": data} if isinstance(data, list) else data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root", required=True, help="directory holding <org>/<name>/<revision>/ repositories"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument(
        "--cdn-url",
        help="base URL of the CDN redirects, or 'same-origin' (default: the other loopback name, 127.0.0.1 <-> localhost)",
    )
    parser.add_argument("--faults", help="JSON list of faults, or @file")
    parser.add_argument("--tokens", help='JSON {"org/name": "token"} of repos that need a token, or @file')
    parser.add_argument(
        "--config",
        help='JSON {"faults": [...], "tokens": {...}, "private": [repos], "accounts": [valid tokens]}, or @file',
    )
    parser.add_argument("--port-file", help="write the bound port here once listening")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    config = load_config(args.config)
    faults = config.get("faults", []) + load_config(args.faults).get("faults", [])
    tokens = {**config.get("tokens", {}), **load_config(args.tokens)}
    server = HubDoubleServer(
        (args.host, args.port), Path(args.root), cdn_url=args.cdn_url, verbose=args.verbose
    )
    server.state.set_faults(faults)
    server.state.set_access(tokens, config.get("private"), config.get("accounts"))
    if args.port_file:
        Path(args.port_file).write_text(str(server.server_address[1]))
    print(f"hubdouble serving {args.root} on {server.url}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.state.stopping.set()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
