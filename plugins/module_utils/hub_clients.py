"""Sources for model_snapshot: the ModelScope and Hugging Face hub clients, and a local directory.

Each source implements ``snapshot.Source``: resolve a revision, list files (path, size, hashes), and download
one file into the staging directory, resuming from ``<path>.incomplete``. The hub protocol is always spoken
by the official clients:

- ModelScope (``modelscope_hub``, the engine of ``modelscope`` >= 1.38): ``HubApi.list_repo_revisions`` to
  resolve a branch to a commit when the hub reports one, the legacy file listing (path, size, sha256), and
  ``HubApi.download_file(local_dir=staging, expected_sha256=..., file_size=...)``, whose own
  ``<file>.incomplete`` + ``Range`` resume works across runs and which checks sha256 and size itself.
- Hugging Face (``huggingface_hub``): ``HfApi.model_info`` (branch -> commit), ``HfApi.list_repo_tree``
  (sizes, LFS sha256, git blob ids), ``get_hf_file_metadata`` (the HEAD of ``/resolve``, CDN location) and
  ``file_download.http_get(resume_size=...)`` writing into our ``<file>.incomplete``. The client's
  ``hf_hub_download`` deletes its partial file on failure and never checks hashes, so the partial file and
  the verification are ours; the HTTP work stays the client's.

The clients read their settings from the environment, ``huggingface_hub`` at import time, so
:func:`prepare_environment` sets it (under ``<models_root>/.cache``) before the first import.
"""

from __future__ import annotations

import inspect
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ansible_collections.llmfleet.serve.plugins.module_utils.snapshot import (
    GIT_HASH_MAX,
    MANIFEST_NAME,
    PARTIAL_SUFFIX,
    Digest,
    HashingWriter,
    HubError,
    Manifest,
    RemoteFile,
    RequestError,
    ResolvedRevision,
    is_commit,
    read_manifest,
)

LIBRARY_NAME = "llmfleet"
LIBRARY_VERSION = "0.1.0"
MODELSCOPE_DEFAULT_REVISION = "master"
HUGGINGFACE_DEFAULT_REVISION = "main"
COPY_BLOCK = 8 * 1024 * 1024
# The piece size huggingface_hub's http_get asks httpx for: the size of one socket read of its transport.
HF_STREAM_PIECE = 64 * 1024
_TRANSPORT_MODULES = frozenset({"requests", "urllib3", "httpx", "httpx2", "httpcore", "socket", "ssl"})


def client_environment(client_home: Path, hf_endpoint: str | None = None) -> dict[str, str]:
    """Environment for both clients: their state under ``client_home``, no telemetry, no progress bars."""
    env = {
        "HF_HOME": str(client_home / "huggingface"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        # Byte-range resume needs plain HTTP downloads; the Xet protocol has no partial file we could keep.
        "HF_HUB_DISABLE_XET": "1",
        "MODELSCOPE_HOME": str(client_home / "modelscope"),
        "MODELSCOPE_CACHE": str(client_home / "modelscope" / "cache"),
        # model_snapshot holds its own lock per snapshot; the client's per-file lock files would pile up.
        "MODELSCOPE_DOWNLOAD_FILE_LOCK": "false",
        "TQDM_DISABLE": "1",
    }
    if hf_endpoint:
        env["HF_ENDPOINT"] = hf_endpoint
    return env


def prepare_environment(client_home: Path, hf_endpoint: str | None = None) -> None:
    """Point the clients at ``client_home`` before they are imported (nothing goes to the user's home)."""
    os.environ.update(client_environment(client_home, hf_endpoint))


def missing_library(source: str, package: str, import_name: str, error: Exception) -> HubError:
    return HubError(
        "missing_library",
        f"source={source} needs the Python package {package!r} (import {import_name}) on the interpreter "
        f"running this module ({sys.executable}), which failed to import it: {error}. Run the task on the "
        "controller (delegate_to: localhost) whose environment has it, or set ansible_python_interpreter to "
        f"an environment that holds it, or install it there: {sys.executable} -m pip install '{package}'.",
    )


def _fsync(path: Path) -> None:
    """Put a file a client wrote on disk, as the other sources do: the manifest, written after the files,
    must never list bytes a crash could lose."""
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def _is_transport_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in _TRANSPORT_MODULES or isinstance(
        exc, (ConnectionError, TimeoutError)
    )


def _where(source: str, endpoint: str | None, model: str, revision: str | None) -> str:
    at = f" at {endpoint}" if endpoint else ""
    return f"{source}{at}: model {model} revision {revision}"


# What the Hugging Face hub refused, from the error class huggingface_hub raised or its X-Error-Code header.
HF_ERROR_CODES = {
    "GatedRepo": "gated",
    "RepoNotFound": "repo",
    "RevisionNotFound": "revision",
    "EntryNotFound": "entry",
}


def hf_cause(
    exc: BaseException, status: int | None, errors: dict[str, type[BaseException]], token_given: bool
) -> str | None:
    """What the Hugging Face hub refused (a cause of :func:`hf_refusal`): from the class huggingface_hub raised
    (``errors``, see :func:`_hf_error_classes`), else from the response's X-Error-Code (releases without that
    class), else from the status; None when it is no refusal."""
    # GatedRepoError is a RepositoryNotFoundError: test it first.
    for cls_name, cause in (
        ("GatedRepoError", "gated"),
        ("RepositoryNotFoundError", "repo"),
        ("RevisionNotFoundError", "revision"),
        ("EntryNotFoundError", "entry"),
    ):
        if isinstance(exc, errors[cls_name]):
            return cause
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    code = HF_ERROR_CODES.get(str(headers.get("X-Error-Code") or ""))
    if code and status is not None and 400 <= status < 500:
        return code
    if status == 401 and token_given:
        return "token"
    if status in (401, 403):
        return "denied"
    if status == 404:
        return "repo"
    return None


def hf_refusal(
    cause: str,
    *,
    where: str,
    model: str,
    revision: str,
    status: int | None,
    detail: str,
    token_given: bool,
) -> HubError:
    """The error for a Hugging Face hub refusal. ``cause``: ``repo`` (RepoNotFound: missing, or private and not
    visible; the hub answers 401 without a token, 404 with one), ``gated`` (GatedRepo: the metadata is public, the
    files need an account that was granted access), ``revision``, ``entry``, ``token`` (a 401 without a code
    to a token: invalid or expired) or ``denied`` (any other 401/403)."""
    http = f"HTTP {status}" if status is not None else "no HTTP status"
    if cause == "repo":
        seen = "the token given cannot see it" if token_given else "no token was given"
        return HubError(
            "repo_not_found",
            f"{where}: {model} not found, or private ({http}, {seen}): check the model id, or give a token that "
            "can see it (token).",
            status,
        )
    if cause == "gated":
        who = (
            "the token given belongs to an account that has not been granted access"
            if token_given
            else "no token was given"
        )
        return HubError(
            "auth",
            f"{where}: {model} is gated and {who} ({http}): request access on the model's page on the hub, then "
            "give a token of an account that has it (token).",
            status,
        )
    if cause == "revision":
        return HubError(
            "revision_not_found",
            f"{where}: revision not found ({http}): {model} has no revision {revision!r}; name a branch, tag or "
            "commit it has (revision).",
            status,
        )
    if cause == "entry":
        return HubError("file_not_found", f"{where}: file not found ({http}): {detail}", status)
    if cause == "token":
        return HubError(
            "auth",
            f"{where}: the hub refused the token ({http}: {detail.rstrip('.')}): it is invalid or expired. Give a "
            "valid token (token), or none for a public model.",
            status,
        )
    return HubError(
        "auth",
        f"{where}: access denied ({http}): {detail.rstrip('.')}. Give a token with read access to {model} (token).",
        status,
    )


# ---------------------------------------------------------------------------------------------------------------
# ModelScope
# ---------------------------------------------------------------------------------------------------------------
class ModelScopeSource:
    """ModelScope through ``modelscope_hub.HubApi``."""

    name = "modelscope"

    def __init__(
        self, endpoint: str | None, token: str | None, client_home: Path, label: str = "modelscope"
    ) -> None:
        prepare_environment(client_home)
        try:
            from modelscope_hub import HubApi, HubConfig
            from modelscope_hub import errors as ms_errors
        except ImportError as exc:
            raise missing_library(label, "modelscope>=1.38", "modelscope_hub", exc) from exc
        self._errors = ms_errors
        config = HubConfig(
            endpoint=endpoint,
            token=token,
            cache_dir=client_home / "modelscope" / "cache",
            config_dir=client_home / "modelscope",
        )
        self.api = HubApi(config=config, user_agent={LIBRARY_NAME: LIBRARY_VERSION})
        self.cache_dir = client_home / "modelscope" / "cache"
        self.endpoint: str | None = config.endpoint
        self.label = label

    def default_revision(self) -> str:
        return MODELSCOPE_DEFAULT_REVISION

    def _error(self, exc: Exception, where: str, what: str = "request") -> HubError:
        e = self._errors
        status = getattr(exc, "status_code", None)
        detail = getattr(exc, "message", None) or str(exc)
        if isinstance(exc, (e.AuthenticationError, e.PermissionDeniedError)) or status in (401, 403):
            return HubError(
                "auth",
                f"{where}: access denied (HTTP {status}): {detail.rstrip('.')}. The model is private or gated: give a token "
                "with access to it (token), or check the token.",
                status,
            )
        if isinstance(exc, e.NotExistError) or status == 404:
            return HubError(
                "file_not_found" if what == "file" else "repo_not_found", f"{where}: {detail}", status
            )
        if isinstance(exc, e.FileIntegrityError):
            # The client already fetched the file three times (hash) or twice (size) before giving up.
            return HubError("integrity", f"{where}: {detail}", status, retry=False)
        if isinstance(exc, (e.NetworkError, e.RequestTimeoutError)) or _is_transport_error(exc):
            return HubError("network", f"{where}: network failure: {detail}", status)
        if isinstance(exc, (e.ServerError, e.RateLimitError)) or (status or 0) >= 500:
            return HubError("server", f"{where}: server error (HTTP {status}): {detail}", status)
        return HubError("client", f"{where}: {type(exc).__name__}: {detail}", status)

    def resolve_revision(self, model: str, revision: str | None) -> ResolvedRevision:
        requested = revision or MODELSCOPE_DEFAULT_REVISION
        if is_commit(requested):
            return ResolvedRevision(requested, requested, True)
        where = _where(self.label, self.endpoint, model, requested)
        try:
            entries = self.api.list_repo_revisions(model, "model")
        except Exception as exc:
            error = self._error(exc, where)
            if error.kind == "auth":
                raise error from exc
            entries = []  # the listing that follows gives the precise error
        for entry in entries:
            if entry.get("Revision") == requested:
                commit = entry.get("CommitId") or entry.get("Commit") or entry.get("Sha") or ""
                if is_commit(str(commit)):
                    return ResolvedRevision(requested, str(commit), True)
        note = (
            f"{self.label} did not report the commit of revision {requested!r} of {model}; the snapshot is kept "
            f"under {requested!r} and compared with the hub's file listing on every run. Pin revision to a "
            "commit for a release that never changes."
        )
        return ResolvedRevision(requested, requested, False, note)

    def list_files(self, model: str, revision: str) -> list[RemoteFile]:
        where = _where(self.label, self.endpoint, model, revision)
        try:
            entries = self.api.legacy.list_repo_files(model, "model", revision=revision, recursive=True)
        except Exception as exc:
            error = self._error(exc, where)
            if error.kind == "repo_not_found":
                raise self._which_missing(model, revision, where, error) from exc
            raise error from exc
        files = []
        for entry in entries:
            if (entry.get("Type") or entry.get("type") or "blob") == "tree":
                continue
            path = entry.get("Path") or entry.get("path") or entry.get("Name") or ""
            size = entry.get("Size", entry.get("size"))
            if size is None:
                raise HubError("client", f"{where}: the file listing gives no size for {path!r}")
            sha256 = entry.get("Sha256") or entry.get("sha256") or None
            files.append(RemoteFile(path, int(size), sha256.lower() if sha256 else None))
        return files

    def _which_missing(self, model: str, revision: str, where: str, error: HubError) -> HubError:
        detail = error.message.removeprefix(f"{where}: ")
        try:
            self.api.legacy.get_repo_info(model, "model")
        except Exception:
            return HubError(
                "repo_not_found", f"{where}: model not found (HTTP {error.status}): {detail}", error.status
            )
        return HubError(
            "revision_not_found", f"{where}: revision not found (HTTP {error.status}): {detail}", error.status
        )

    def download(self, model: str, revision: str, remote: RemoteFile, staging: Path) -> Digest | None:
        """The client resumes ``<path>.incomplete`` and checks size and the listing's sha256 itself (it
        hashes the bytes as it writes them); a file it returns has that sha256."""
        where = _where(self.label, self.endpoint, model, revision) + f" file {remote.path}"
        try:
            self.api.download_file(
                model,
                "model",
                remote.path,
                revision=revision,
                cache_dir=self.cache_dir,
                local_dir=staging,
                expected_sha256=remote.sha256,
                file_size=remote.size,
            )
        except Exception as exc:
            raise self._error(exc, where, "file") from exc
        _fsync(staging / remote.path)
        if remote.sha256:
            return Digest((staging / remote.path).stat().st_size, remote.sha256, None)
        return None


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face
# ---------------------------------------------------------------------------------------------------------------
class HuggingFaceSource:
    """Hugging Face (or a mirror of its API) through ``huggingface_hub``."""

    name = "huggingface"

    def __init__(
        self, endpoint: str | None, token: str | None, client_home: Path, label: str = "huggingface"
    ) -> None:
        prepare_environment(client_home, endpoint)
        try:
            import huggingface_hub
            from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
            from huggingface_hub.file_download import http_get
            from huggingface_hub.utils import build_hf_headers
        except ImportError as exc:
            raise missing_library(label, "huggingface_hub", "huggingface_hub", exc) from exc
        self.endpoint: str | None = (endpoint or huggingface_hub.constants.ENDPOINT).rstrip("/")
        # http_get asks for 10 MiB pieces, which httpx gathers from 64 KiB reads in a growing buffer and copies
        # twice more into fresh memory: a third of the client's CPU on a fast link, and up to 10 MiB fetched
        # again after a cut. Pieces of one read's size pass straight through. http_get reads the setting at
        # every call; this process is ours alone.
        huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE = HF_STREAM_PIECE
        self.token = token
        self.label = label
        self.api = HfApi(
            endpoint=self.endpoint, token=token, library_name=LIBRARY_NAME, library_version=LIBRARY_VERSION
        )
        self._hf_hub_url = hf_hub_url
        self._metadata = get_hf_file_metadata
        # Older huggingface_hub releases have no retry switch on the HEAD; newer ones default it to off.
        self._metadata_kwargs = (
            {"retry_on_errors": True}
            if "retry_on_errors" in inspect.signature(get_hf_file_metadata).parameters
            else {}
        )
        self._http_get: Callable[..., None] = http_get
        self._headers = build_hf_headers
        self._errors = _hf_error_classes()

    def default_revision(self) -> str:
        return HUGGINGFACE_DEFAULT_REVISION

    def _error(self, exc: Exception, where: str, model: str, revision: str) -> HubError:
        e = self._errors
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        cause = hf_cause(exc, status, e, bool(self.token))
        if cause is not None:
            server = getattr(exc, "server_message", None)
            return hf_refusal(
                cause,
                where=where,
                model=model,
                revision=revision,
                status=status,
                detail=str(server).strip() if server else detail,
                token_given=bool(self.token),
            )
        if status is not None and (status >= 500 or status in (408, 429)):
            return HubError("server", f"{where}: server error (HTTP {status}): {detail}", status)
        if _is_transport_error(exc) or isinstance(exc, e["LocalEntryNotFoundError"]):
            return HubError("network", f"{where}: network failure: {type(exc).__name__}: {detail}", status)
        if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
            return HubError("integrity", f"{where}: {detail}", status)
        return HubError("client", f"{where}: {type(exc).__name__}: {detail}", status)

    def resolve_revision(self, model: str, revision: str | None) -> ResolvedRevision:
        requested = revision or HUGGINGFACE_DEFAULT_REVISION
        if is_commit(requested):
            return ResolvedRevision(requested, requested, True)
        where = _where(self.label, self.endpoint, model, requested)
        try:
            info = self.api.model_info(model, revision=requested, token=self.token)
            # A gated model's metadata is public and only its files are refused: ask now, not per file.
            if getattr(info, "gated", False) and hasattr(self.api, "auth_check"):
                self.api.auth_check(model, token=self.token)
        except Exception as exc:
            raise self._error(exc, where, model, requested) from exc
        sha = str(getattr(info, "sha", "") or "")
        if is_commit(sha):
            return ResolvedRevision(requested, sha, True)
        note = (
            f"{self.label} did not report a commit for revision {requested!r} of {model}; kept under its name"
        )
        return ResolvedRevision(requested, requested, False, note)

    def list_files(self, model: str, revision: str) -> list[RemoteFile]:
        where = _where(self.label, self.endpoint, model, revision)
        files = []
        try:
            for entry in self.api.list_repo_tree(model, recursive=True, revision=revision, token=self.token):
                if not hasattr(entry, "blob_id") or not hasattr(entry, "size"):
                    continue  # a folder
                lfs = getattr(entry, "lfs", None)
                if lfs is not None:
                    sha256 = lfs["sha256"] if isinstance(lfs, dict) else lfs.sha256
                    files.append(RemoteFile(entry.path, int(entry.size), str(sha256).lower(), None))
                else:
                    files.append(RemoteFile(entry.path, int(entry.size), None, str(entry.blob_id).lower()))
        except Exception as exc:
            raise self._error(exc, where, model, revision) from exc
        return files

    def download(self, model: str, revision: str, remote: RemoteFile, staging: Path) -> Digest | None:
        """HEAD through the client, then the client's ``http_get`` appends to our partial file through a
        hashing wrapper, so the digest costs no second read."""
        where = _where(self.label, self.endpoint, model, revision) + f" file {remote.path}"
        target = staging / remote.path
        partial = staging / (remote.path + PARTIAL_SUFFIX)
        try:
            url = self._hf_hub_url(model, remote.path, revision=revision, endpoint=self.endpoint)
            meta = self._metadata(url, token=self.token, endpoint=self.endpoint, **self._metadata_kwargs)
            if meta.size is not None and int(meta.size) != remote.size:
                raise HubError(
                    "integrity",
                    f"{where}: the hub announces {meta.size} bytes but its listing says {remote.size}",
                    retry=False,
                )
            headers = self._headers(
                token=self.token, library_name=LIBRARY_NAME, library_version=LIBRARY_VERSION
            )
            location = meta.location or url
            if urlsplit(location).netloc != urlsplit(url).netloc:
                # A CDN on another origin gets a signed URL, never the token (as hf_hub_download does).
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            offset = partial.stat().st_size if partial.exists() else 0
            with partial.open("r+b" if offset else "wb") as fh:
                fh.seek(offset)
                writer = HashingWriter(fh, partial, offset, remote.size, with_git=bool(remote.git_sha1))
                self._http_get(
                    location,
                    writer,
                    resume_size=offset,
                    headers=headers,
                    expected_size=remote.size,
                    displayed_filename=remote.path,
                )
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(partial, target)
            return writer.digest()
        except HubError:
            raise
        except Exception as exc:
            raise self._error(exc, where, model, revision) from exc


def _hf_error_classes() -> dict[str, type[BaseException]]:
    """The error classes of whichever huggingface_hub is installed (their home moved between releases)."""
    modules: list[Any] = []
    for name in ("huggingface_hub.errors", "huggingface_hub.utils"):
        try:
            modules.append(__import__(name, fromlist=["_"]))
        except ImportError:
            continue

    class _Never(Exception):
        pass

    found: dict[str, type[BaseException]] = {}
    for cls_name in (
        "RevisionNotFoundError",
        "EntryNotFoundError",
        "GatedRepoError",
        "RepositoryNotFoundError",
        "LocalEntryNotFoundError",
    ):
        found[cls_name] = next((getattr(m, cls_name) for m in modules if hasattr(m, cls_name)), _Never)
    return found


# ---------------------------------------------------------------------------------------------------------------
# Local directory
# ---------------------------------------------------------------------------------------------------------------
class LocalSource:
    """A directory already on the host: another snapshot (its manifest gives hashes) or plain model files."""

    name = "local"
    endpoint = None

    def __init__(self, local_path: Path) -> None:
        if not local_path.is_absolute():
            raise RequestError(f"local_path must be an absolute path, got {str(local_path)!r}")
        if not local_path.is_dir():
            raise RequestError(f"local_path {local_path} is not a directory")
        self.root = local_path
        self.manifest: Manifest | None = read_manifest(local_path)

    def default_revision(self) -> str | None:
        return self.manifest.revision if self.manifest else None

    def resolve_revision(self, model: str, revision: str | None) -> ResolvedRevision:
        manifest = self.manifest
        if manifest is not None:
            if manifest.model != model:
                raise RequestError(
                    f"local_path {self.root} holds a snapshot of {manifest.model}, not of {model}"
                )
            if revision and revision not in (manifest.revision, manifest.revision_requested):
                raise RequestError(
                    f"local_path {self.root} holds revision {manifest.revision} of {model}, not {revision}"
                )
            return ResolvedRevision(
                manifest.revision_requested, manifest.revision, manifest.revision_is_commit
            )
        if not revision:
            raise RequestError(
                f"local_path {self.root} has no {MANIFEST_NAME}: give the revision its files belong to (revision)"
            )
        return ResolvedRevision(revision, revision, is_commit(revision))

    def list_files(self, model: str, revision: str) -> list[RemoteFile]:
        if self.manifest is not None:
            return [record.as_remote() for record in self.manifest.files]
        files = []
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root).as_posix()
            if any(part.startswith(".") for part in rel.split("/")) or rel.endswith(PARTIAL_SUFFIX):
                continue
            if path.is_file():
                files.append(RemoteFile(rel, path.stat().st_size))
        return files

    def download(self, model: str, revision: str, remote: RemoteFile, staging: Path) -> Digest | None:
        """Copy into ``<path>.incomplete`` from where an earlier copy stopped (hashing as it goes), rename."""
        source = self.root / remote.path
        partial = staging / (remote.path + PARTIAL_SUFFIX)
        offset = partial.stat().st_size if partial.exists() else 0
        try:
            with source.open("rb") as src, partial.open("r+b" if offset else "wb") as dst:
                src.seek(offset)
                dst.seek(offset)
                with_git = bool(remote.git_sha1) or remote.size <= GIT_HASH_MAX
                writer = HashingWriter(dst, partial, offset, remote.size, with_git=with_git)
                shutil.copyfileobj(src, writer, COPY_BLOCK)
                dst.flush()
                os.fsync(dst.fileno())
        except FileNotFoundError as exc:
            raise HubError("file_not_found", f"local {self.root}: {remote.path} is missing") from exc
        os.replace(partial, staging / remote.path)
        return writer.digest()


# ---------------------------------------------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------------------------------------------
def make_source(
    source: str,
    client_home: Path,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    mirror_api: str = "huggingface",
    local_path: str | None = None,
) -> ModelScopeSource | HuggingFaceSource | LocalSource:
    """The adapter for ``source``: modelscope, huggingface, mirror (either API at ``endpoint``) or local."""
    if source == "local":
        if not local_path:
            raise RequestError("source=local needs local_path, the directory that holds the model files")
        return LocalSource(Path(local_path))
    if source == "mirror":
        if not endpoint:
            raise RequestError("source=mirror needs endpoint, the URL of the mirror")
        api = mirror_api
        label = f"mirror ({api} API)"
    else:
        api, label = source, source
    if endpoint and not endpoint.lower().startswith(("http://", "https://")):
        raise RequestError(f"endpoint must start with http:// or https://, got {endpoint!r}")
    adapter: ModelScopeSource | HuggingFaceSource
    if api == "modelscope":
        adapter = ModelScopeSource(endpoint, token, client_home, label)
    elif api == "huggingface":
        adapter = HuggingFaceSource(endpoint, token, client_home, label)
    else:
        raise RequestError(f"unknown source {source!r} (mirror_api {mirror_api!r})")
    adapter.name = source
    return adapter
