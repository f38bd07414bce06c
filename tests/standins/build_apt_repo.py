#!/usr/bin/env python3
"""Build a signed local APT repository of NVIDIA driver stand-ins with the real package names.

No kernel module can be built or loaded on the test hosts (containers without GPUs), so the
nvidia_driver role is tested against packages that carry the names, versions, dependencies and
systemd units of NVIDIA's Debian 12 CUDA repository, and behave like the real ones where the role
can see it:

  nvidia-driver-cuda          /usr/bin/nvidia-smi: the fake that replays captures (tests/fakes/nvidia-smi)
  nvidia-kernel-open-dkms     "loads the module": writes <proc>/driver/nvidia/version and binds the host's
  nvidia-kernel-dkms            GPU capture set to the package's driver and CUDA versions for nvidia-smi
                                (tests/standins/gpu_set.py, shipped as /usr/lib/llmfleet-standin/gpu-set)
  nvidia-persistenced         nvidia-persistenced.service running a sleeping stand-in daemon
  nvidia-fabricmanager-570    nvidia-fabricmanager.service; the daemon refuses to start unless the loaded
  nvidia-fabricmanager          module is its own version, like the real one
  linux-headers-<kernel>      empty, for the running kernel of the test hosts (the controller's)
  initramfs-tools             update-initramfs that records its calls in /var/log/llmfleet-standin/

for branch 570 and 580 side by side, so that only the role's APT pin keeps a host on 570.

What a host looks like to the stand-ins (set up by the test, as hardware would be):
  /etc/llmfleet-standin/gpus/        the capture set of its "GPUs" (a copy of tests/fixtures/gpu-sets/<board>/);
                                     the loaded module writes it, with its own driver and CUDA versions, to
                                     /etc/llmfleet-fake-gpu/ where nvidia-smi replays it. Without it: no GPU.
  /etc/llmfleet-standin/module-load  "install": the kernel module package loads its module at install;
                                     "boot": only at boot, and the package asks for a reboot through
                                     /run/reboot-required(.pkgs), as Ubuntu's packages do
  /srv/llmfleet-standin/proc         where the stand-in "kernel" keeps driver/nvidia/version
  /srv/llmfleet-standin/sys          the board's sysfs PCI tree (gpu_set.py sysfs SET OUT.tar, unpacked there
                                     by the test)

Two flat repositories (like NVIDIA's: "deb URL /") under www/: nvidia/ holds the driver stand-ins,
base/ the headers and initramfs-tools a site's Debian mirror would carry. Both are signed with a key
made for them (InRelease, Release.gpg, public key llmfleet-standin.pub in each). Output goes to .cache/nvidia-standins/<key>/, where the
key hashes every input; a second run with the same inputs prints the same JSON and does nothing.

    python3 tests/standins/build_apt_repo.py          # build (or reuse) and print JSON: repo dir, fingerprint, ...

Needs dpkg-deb and gpg.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
GPU_SET = REPO_ROOT / "tests" / "standins" / "gpu_set.py"
FAKE_SMI = REPO_ROOT / "tests" / "fakes" / "nvidia-smi"
CACHE = REPO_ROOT / ".cache" / "nvidia-standins"
FORMAT = 1  # bump when the packages' contents change in a way the inputs below do not show

# Real driver releases of each branch (NVIDIA's Debian 12 CUDA repository carries both), and the CUDA
# version each one reports (nvidia-smi's "CUDA Version", <cuda_version> in -q -x).
BRANCHES = {"570": "570.172.08", "580": "580.95.05"}
CUDA_VERSIONS = {"570": "12.8", "580": "13.0"}
DEB_REVISION = "1"
STANDIN_PROC = "/srv/llmfleet-standin/proc"
FABRICMANAGER_SUFFIXED_MAX = 575
KEY_FILE = "llmfleet-standin.pub"


def log(msg: str) -> None:
    print(f"standins: {msg}", file=sys.stderr, flush=True)


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kwargs)


def dpkg_arch() -> str:
    return run(["dpkg", "--print-architecture"]).stdout.strip()


def inputs_key(kernel: str, arch: str) -> str:
    digest = hashlib.sha256()
    parts = [
        Path(__file__).read_bytes(),
        FAKE_SMI.read_bytes(),
        GPU_SET.read_bytes(),
        json.dumps([FORMAT, BRANCHES, CUDA_VERSIONS, kernel, arch]).encode(),
    ]
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Packages
# ---------------------------------------------------------------------------------------------


@dataclass
class Deb:
    name: str
    version: str
    source: str
    description: str
    arch: str
    files: dict[str, tuple[str, int]] = field(default_factory=dict)  # path -> (content, mode)
    depends: str = ""
    conflicts: str = ""
    provides: str = ""
    postinst: str = ""
    prerm: str = ""


def script(body: str) -> str:
    return "#!/bin/sh\nset -e\n" + body.strip() + "\n"


def load_module_script(version: str, cuda: str, open_modules: bool) -> str:
    flavour = (
        "NVIDIA UNIX Open Kernel Module for x86_64" if open_modules else "NVIDIA UNIX x86_64 Kernel Module"
    )
    return script(f"""
# Stand-in for loading the NVIDIA kernel module {version}: the "kernel" is {STANDIN_PROC}.
# --boot: a fresh boot, so whatever module was loaded before is gone.
proc={STANDIN_PROC}/driver/nvidia
if [ "${{1:-}}" = --boot ]; then rm -f "$proc/version"; rm -rf /etc/llmfleet-fake-gpu; fi
if [ ! -f /etc/llmfleet-standin/gpus/q-x.xml ]; then
  echo "llmfleet stand-in: no capture set in /etc/llmfleet-standin/gpus, no GPU to bind" >&2; exit 0
fi
if [ -f "$proc/version" ]; then
  echo "llmfleet stand-in: a module is loaded already ($(cat "$proc/version" | head -1)); a reboot loads {version}" >&2
  exit 0
fi
mkdir -p "$proc"
python3 /usr/lib/llmfleet-standin/gpu-set bind /etc/llmfleet-standin/gpus /etc/llmfleet-fake-gpu \\
  --driver {version} --cuda {cuda}
printf 'NVRM version: {flavour}  {version}  Release Build  (llmfleet stand-in)\\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\\n' > "$proc/version"
""")


def kernel_module_deb(version: str, cuda: str, arch: str, open_modules: bool) -> Deb:
    name = "nvidia-kernel-open-dkms" if open_modules else "nvidia-kernel-dkms"
    other = "nvidia-kernel-dkms" if open_modules else "nvidia-kernel-open-dkms"
    files = {
        "/usr/lib/llmfleet-standin/load-module": (load_module_script(version, cuda, open_modules), 0o755),
        "/usr/lib/llmfleet-standin/gpu-set": (GPU_SET.read_text(), 0o755),
        "/lib/systemd/system/llmfleet-standin-nvidia-module.service": (
            "[Unit]\nDescription=llmfleet stand-in: load the NVIDIA kernel module at boot\n"
            "DefaultDependencies=no\nBefore=nvidia-persistenced.service nvidia-fabricmanager.service\n\n"
            "[Service]\nType=oneshot\nExecStart=/usr/lib/llmfleet-standin/load-module --boot\n"
            "RemainAfterExit=yes\n\n[Install]\nWantedBy=multi-user.target\n",
            0o644,
        ),
    }
    postinst = script(f"""
if [ "$1" = configure ]; then
  mkdir -p /etc/systemd/system/multi-user.target.wants
  ln -sf /lib/systemd/system/llmfleet-standin-nvidia-module.service \\
    /etc/systemd/system/multi-user.target.wants/llmfleet-standin-nvidia-module.service
  mode=$(cat /etc/llmfleet-standin/module-load 2>/dev/null || echo boot)
  if [ "$mode" = install ]; then
    /usr/lib/llmfleet-standin/load-module
  else
    touch /run/reboot-required
    echo {name} >> /run/reboot-required.pkgs
  fi
fi
""")
    prerm = script("""
if [ "$1" = remove ]; then
  rm -f /etc/systemd/system/multi-user.target.wants/llmfleet-standin-nvidia-module.service
fi
""")
    return Deb(
        name=name,
        version=f"{version}-{DEB_REVISION}",
        source="nvidia-graphics-drivers",
        description=f"NVIDIA {'open ' if open_modules else ''}kernel module {version} (llmfleet stand-in)",
        arch=arch,
        files=files,
        conflicts=other,
        provides="nvidia-kernel-dkms-any",
        postinst=postinst,
        prerm=prerm,
    )


def driver_debs(branch: str, version: str, arch: str) -> list[Deb]:
    full = f"{version}-{DEB_REVISION}"
    cuda = CUDA_VERSIONS[branch]
    debs = [
        Deb(
            name="nvidia-driver-cuda",
            version=full,
            source="nvidia-graphics-drivers",
            description=f"NVIDIA driver CUDA support and nvidia-smi {version} (llmfleet stand-in)",
            arch=arch,
            files={"/usr/bin/nvidia-smi": (FAKE_SMI.read_text(), 0o755)},
            depends=f"nvidia-kernel-open-dkms (= {full}) | nvidia-kernel-dkms (= {full})",
        ),
        kernel_module_deb(version, cuda, arch, open_modules=True),
        kernel_module_deb(version, cuda, arch, open_modules=False),
        Deb(
            name="nvidia-persistenced",
            version=full,
            source="nvidia-persistenced",
            description=f"NVIDIA persistence daemon {version} (llmfleet stand-in)",
            arch=arch,
            files={
                "/usr/bin/nvidia-persistenced": (
                    script("# llmfleet stand-in: keeps running like the daemon\nexec sleep infinity"),
                    0o755,
                ),
                "/lib/systemd/system/nvidia-persistenced.service": (
                    "[Unit]\nDescription=NVIDIA Persistence Daemon\nWants=syslog.target\n\n"
                    "[Service]\nType=simple\nExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced "
                    "--no-persistence-mode --verbose\n\n[Install]\nWantedBy=multi-user.target\n",
                    0o644,
                ),
            },
        ),
    ]
    suffixed = int(branch) <= FABRICMANAGER_SUFFIXED_MAX
    fm_name = f"nvidia-fabricmanager-{branch}" if suffixed else "nvidia-fabricmanager"
    daemon = script(f"""
# llmfleet stand-in for nv-fabricmanager {version}: like the real one it needs the driver of its own version.
loaded=$(grep -o '  [0-9][0-9][0-9]\\.[0-9.]*  ' {STANDIN_PROC}/driver/nvidia/version 2>/dev/null | head -1 | tr -d ' ')
if [ "$loaded" != "{version}" ]; then
  echo "fabric manager {version}: the loaded driver is '${{loaded:-none}}', not {version}; refusing to start" >&2
  exit 1
fi
exec sleep infinity
""")
    debs.append(
        Deb(
            name=fm_name,
            version=full,
            source=f"fabric-manager-{branch}" if suffixed else "fabric-manager",
            description=f"NVIDIA Fabric Manager {version} (llmfleet stand-in)",
            arch=arch,
            files={
                "/usr/bin/nv-fabricmanager": (daemon, 0o755),
                "/lib/systemd/system/nvidia-fabricmanager.service": (
                    "[Unit]\nDescription=NVIDIA fabric manager service\nAfter=network-online.target\n\n"
                    "[Service]\nType=simple\nExecStart=/usr/bin/nv-fabricmanager -c "
                    "/usr/share/nvidia/nvswitch/fabricmanager.cfg\n\n[Install]\nWantedBy=multi-user.target\n",
                    0o644,
                ),
            },
            conflicts="nvidia-fabricmanager" if suffixed else "",
        )
    )
    return debs


def support_debs(kernel: str, arch: str) -> list[Deb]:
    recorder = script("""
# llmfleet stand-in: records the call instead of building an initramfs.
mkdir -p /var/log/llmfleet-standin
echo "$(date -u +%FT%TZ) update-initramfs $*" >> /var/log/llmfleet-standin/update-initramfs.log
""")
    return [
        Deb(
            name=f"linux-headers-{kernel}",
            version="1",
            source="linux-signed-amd64",
            description=f"Header files for Linux {kernel} (llmfleet stand-in, empty)",
            arch=arch,
        ),
        Deb(
            name="initramfs-tools",
            version="0.142+llmfleet1",
            source="initramfs-tools",
            description="initramfs generator (llmfleet stand-in that records its calls)",
            arch="all",
            files={"/usr/sbin/update-initramfs": (recorder, 0o755)},
        ),
    ]


def build_deb(deb: Deb, out_dir: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        (root / "DEBIAN").mkdir(parents=True)
        for path, (content, mode) in deb.files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(mode)
        control = [
            f"Package: {deb.name}",
            f"Version: {deb.version}",
            f"Source: {deb.source}",
            f"Architecture: {deb.arch}",
            "Maintainer: llmfleet tests <tests@llmfleet.invalid>",
            "Section: NVIDIA" if deb.name.startswith("nvidia") else "Section: admin",
            "Priority: optional",
        ]
        for key, value in (
            ("Depends", deb.depends),
            ("Conflicts", deb.conflicts),
            ("Provides", deb.provides),
        ):
            if value:
                control.append(f"{key}: {value}")
        control.append(f"Description: {deb.description}")
        (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
        for name in ("postinst", "prerm"):
            body = getattr(deb, name)
            if body:
                (root / "DEBIAN" / name).write_text(body)
                (root / "DEBIAN" / name).chmod(0o755)
        out = out_dir / f"{deb.name}_{deb.version}_{deb.arch}.deb"
        run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(out)])
    return out


# ---------------------------------------------------------------------------------------------
# The repository
# ---------------------------------------------------------------------------------------------


def packages_index(repo: Path) -> str:
    stanzas = []
    for deb in sorted(repo.glob("*.deb")):
        control = run(["dpkg-deb", "--field", str(deb)]).stdout.strip()
        data = deb.read_bytes()
        stanzas.append(
            control
            + f"\nFilename: ./{deb.name}\nSize: {len(data)}\n"
            + f"MD5sum: {hashlib.md5(data).hexdigest()}\n"
            + f"SHA256: {hashlib.sha256(data).hexdigest()}"
        )
    return "\n\n".join(stanzas) + "\n"


def release_file(repo: Path, arch: str) -> str:
    lines = [
        "Origin: llmfleet stand-ins",
        "Label: NVIDIA CUDA stand-ins",
        "Suite: stable",
        "Codename: llmfleet-standins",
        f"Date: {formatdate(time.time(), usegmt=True)}",
        f"Architectures: {arch} all",
        "Description: NVIDIA driver stand-in packages for llmfleet tests",
        "MD5Sum:",
    ]
    files = [repo / "Packages", repo / "Packages.gz"]
    lines += [f" {hashlib.md5(f.read_bytes()).hexdigest()} {f.stat().st_size} {f.name}" for f in files]
    lines.append("SHA256:")
    lines += [f" {hashlib.sha256(f.read_bytes()).hexdigest()} {f.stat().st_size} {f.name}" for f in files]
    return "\n".join(lines) + "\n"


def signing_key(gnupg: Path) -> str:
    """Create the repository key once (kept with the build); return its fingerprint."""
    gnupg.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(gnupg)}
    listing = run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env=env).stdout
    if "fpr:" not in listing:
        run(
            [
                "gpg", "--batch", "--passphrase", "", "--quick-gen-key",
                "llmfleet NVIDIA stand-in repository <standins@llmfleet.invalid>", "rsa3072", "sign", "never",
            ],
            env=env,
        )  # fmt: skip
        listing = run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env=env).stdout
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))


def publish(repo: Path, debs: list[Deb], arch: str, gnupg: Path, fingerprint: str) -> list[Path]:
    """Build ``debs`` into the flat repository ``repo``: index, Release, signatures, public key."""
    repo.mkdir(parents=True)
    files = [build_deb(deb, repo) for deb in debs]
    index = packages_index(repo)
    (repo / "Packages").write_text(index)
    with gzip.GzipFile(repo / "Packages.gz", "wb", mtime=0) as handle:
        handle.write(index.encode())
    (repo / "Release").write_text(release_file(repo, arch))
    env = {**os.environ, "GNUPGHOME": str(gnupg)}
    sign = ["gpg", "--batch", "--yes", "--local-user", fingerprint, "--digest-algo", "SHA512"]
    run([*sign, "--clearsign", "--output", str(repo / "InRelease"), str(repo / "Release")], env=env)
    run(
        [*sign, "--armor", "--detach-sign", "--output", str(repo / "Release.gpg"), str(repo / "Release")],
        env=env,
    )
    key = run(["gpg", "--batch", "--armor", "--export", fingerprint], env=env).stdout
    (repo / KEY_FILE).write_text(key)
    return files


def build(out: Path, kernel: str, arch: str) -> dict:
    """www/nvidia: the driver stand-ins (what the role installs from); www/base: the packages a site's
    Debian mirror would carry (kernel headers, initramfs-tools)."""
    gnupg = out / "gnupg"
    fingerprint = signing_key(gnupg)
    nvidia = []
    for branch, version in BRANCHES.items():
        nvidia += driver_debs(branch, version, arch)
    nvidia_files = publish(out / "www" / "nvidia", nvidia, arch, gnupg, fingerprint)
    base_files = publish(out / "www" / "base", support_debs(kernel, arch), arch, gnupg, fingerprint)
    return {
        "www": str(out / "www"),
        "repositories": {"nvidia": "nvidia/", "base": "base/"},
        "key_file": KEY_FILE,
        "fingerprint": fingerprint,
        "branches": BRANCHES,
        "cuda_versions": CUDA_VERSIONS,
        "kernel": kernel,
        "architecture": arch,
        "packages": {
            "nvidia": sorted(f.name for f in nvidia_files),
            "base": sorted(f.name for f in base_files),
        },
    }


def ensure(kernel: str, arch: str) -> dict:
    key = inputs_key(kernel, arch)
    out = CACHE / key
    manifest = out / "manifest.json"
    if manifest.exists():
        return json.loads(manifest.read_text())
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=CACHE))
    try:
        started = time.monotonic()
        result = build(staging, kernel, arch)
        result = json.loads(json.dumps(result).replace(str(staging), str(out)))
        (staging / "manifest.json").write_text(json.dumps(result, indent=2) + "\n")
        try:
            staging.rename(out)
        except OSError:
            if not manifest.exists():  # another build won the race only if it finished
                raise
        for stale in CACHE.iterdir():  # builds of older inputs
            if stale.is_dir() and len(stale.name) == 16 and stale.name != key:
                shutil.rmtree(stale, ignore_errors=True)
        count = sum(len(names) for names in result["packages"].values())
        log(f"built {count} packages in {time.monotonic() - started:.1f} s: {out}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return json.loads(manifest.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kernel", default=os.uname().release, help="kernel release of the test hosts")
    parser.add_argument("--arch", default="", help="dpkg architecture (default: this machine's)")
    args = parser.parse_args(argv)
    for tool in ("dpkg-deb", "gpg"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing; run scripts/bootstrap.sh (it installs the host packages)")
    json.dump(ensure(args.kernel, args.arch or dpkg_arch()), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
