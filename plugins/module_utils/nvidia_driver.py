"""Choices of the nvidia_driver role, as pure functions: which packages, from where, pinned how.

Inputs are what a host tells before any NVIDIA software is on it (distribution, version, architecture,
kernel, the PCI ids of its NVIDIA GPUs and NVSwitches) plus the operator's settings (branch, source,
kernel module flavour, mirror). The output is a plan the role carries out, or a list of errors that
say what is wrong and what to set instead.

Package names, repository URLs and key fingerprints (checked against public sources, see
docs/nvidia_driver.md):

- NVIDIA's CUDA repository, ``https://developer.download.nvidia.com/compute/cuda/repos/<distro>/<arch>/``
  with ``<distro>`` debian12, debian13, ubuntu2204, ubuntu2404 or rhel9 and ``<arch>`` x86_64 or sbsa
  (aarch64; debian13 has an x86_64 tree only). The debian12, Ubuntu trees are signed by key ``3bf863cc``
  (fingerprint EB693B3035CD5710E231E123A4B469963BF863CC), the debian13 tree by its own key ``8793F200``
  (02182E60104FCDC26EAE1B8597A5D4CB8793F200: the older key's SHA-1 binding signature is refused by
  Debian 13's apt), RHEL trees by ``D42D0685`` (610C7B14E068A878070DA4E99CD0A493D42D0685).
- Debian 12 and 13, CUDA repository: the compute-only set ``nvidia-driver-cuda`` +
  ``nvidia-kernel-open-dkms`` (or ``nvidia-kernel-dkms``, proprietary) + ``nvidia-persistenced``; the
  branch lives in the version (580.95.05-1), so an APT pin holds it. Fabric Manager:
  ``nvidia-fabricmanager-<branch>`` up to 575, unsuffixed ``nvidia-fabricmanager`` from 580.
- Debian's own archive: one branch per release, 535 in Debian 12 and 550 in Debian 13
  (``nvidia-kernel-dkms`` in non-free, ``nvidia-open-kernel-dkms`` in contrib), and no Fabric Manager.
- Ubuntu archive: ``nvidia-driver-<branch>-server-open`` / ``nvidia-driver-<branch>-server`` and
  ``nvidia-fabricmanager-<branch>``.
- Ubuntu, CUDA repository: ``nvidia-open-<branch>`` / ``cuda-drivers-<branch>`` up to 580, unsuffixed
  ``nvidia-open`` / ``cuda-drivers`` from 590; Fabric Manager suffixed up to 575, unsuffixed from 580.
- RHEL 9, CUDA repository: DNF module stream ``nvidia-driver:<branch>-open`` or
  ``nvidia-driver:<branch>-dkms``; Fabric Manager ``nvidia-fabric-manager`` before 580,
  ``nvidia-fabricmanager`` from 580.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ansible_collections.llmfleet.serve.plugins.module_utils.openpgp import OpenPGPError, openpgp_fingerprints

CUDA_REPO_BASE = "https://developer.download.nvidia.com/compute/cuda/repos"
APT_KEY = ("3bf863cc.pub", "EB693B3035CD5710E231E123A4B469963BF863CC")
#: CUDA trees signed by a key of their own instead of APT_KEY.
APT_KEYS_BY_DISTRO = {"debian13": ("8793F200.pub", "02182E60104FCDC26EAE1B8597A5D4CB8793F200")}
#: CUDA trees that lack some of NVIDIA's architectures (others have x86_64 and sbsa).
CUDA_ARCHES_BY_DISTRO = {"debian13": ("x86_64",)}
RPM_KEY = ("D42D0685.pub", "610C7B14E068A878070DA4E99CD0A493D42D0685")
REPO_NAME = "llmfleet-nvidia-cuda"

SOURCES = ("cuda", "distribution")
KERNEL_MODULES = ("auto", "open", "proprietary")
FABRICMANAGER_MODES = ("auto", "true", "false")

#: The first branch with open kernel modules for datacenter GPUs.
OPEN_MODULES_MIN_BRANCH = 515
#: The first branch that drives Blackwell GPUs (B200, RTX PRO 6000 Blackwell, RTX 50).
BLACKWELL_MIN_BRANCH = 570
#: The one branch each Debian release's own archive carries.
DEBIAN_ARCHIVE_BRANCHES = {"12": 535, "13": 550}
# Where NVIDIA's packaging changed names (see the module docstring).
CUDA_APT_SUFFIXED_DRIVER_MAX = 580
CUDA_APT_SUFFIXED_FABRICMANAGER_MAX = 575
RPM_FABRICMANAGER_RENAMED = 580

# PCI device id boundaries of NVIDIA GPUs (see plugins/module_utils/pci.py).
TURING_MIN_DEVICE = 0x1E00
BLACKWELL_MIN_DEVICE = 0x2900
TURING_MIN_CC = (7, 5)
BLACKWELL_MIN_CC = (10, 0)

SUPPORTED_OS = {
    "Debian": ("12", "13"),
    "Ubuntu": ("22.04", "24.04"),
    "RedHat": ("9",),
    "Rocky": ("9",),
    "AlmaLinux": ("9",),
    "CentOS": ("9",),
    "OracleLinux": ("9",),
}
CUDA_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "sbsa", "arm64": "sbsa"}


class DriverChoiceError(ValueError):
    """A setting or host that no plan fits; the message says what to change."""


# ---------------------------------------------------------------------------------------------
# Host and GPUs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostPlatform:
    distribution: str
    version: str
    architecture: str
    kernel: str

    @property
    def family(self) -> str:
        if self.distribution == "Debian":
            return "debian"
        if self.distribution == "Ubuntu":
            return "ubuntu"
        return "rhel"

    @property
    def package_manager(self) -> str:
        return "dnf" if self.family == "rhel" else "apt"

    @property
    def major(self) -> str:
        return self.version if self.family == "ubuntu" else self.version.split(".")[0]

    @property
    def cuda_distro(self) -> str:
        if self.family == "ubuntu":
            return "ubuntu" + self.major.replace(".", "")
        if self.family == "debian":
            return "debian" + self.major
        return "rhel" + self.major

    @property
    def cuda_arch(self) -> str:
        return CUDA_ARCH[self.architecture]


def host_platform(distribution: str, version: str, architecture: str, kernel: str) -> HostPlatform:
    """The host, validated: a supported OS release and an architecture NVIDIA builds drivers for."""
    version = str(version)
    releases = SUPPORTED_OS.get(distribution)
    if releases is None:
        raise DriverChoiceError(
            f"the OS {distribution} {version} is not supported by the nvidia_driver role; "
            f"supported: Debian 12 and 13, Ubuntu 22.04 and 24.04, RHEL-family 9"
        )
    wanted = ".".join(version.split(".")[:2]) if distribution == "Ubuntu" else version.split(".")[0]
    if wanted not in releases:
        raise DriverChoiceError(
            f"the OS {distribution} {version} is not supported by the nvidia_driver role; "
            f"supported {distribution} releases: {', '.join(releases)}"
        )
    if architecture not in CUDA_ARCH:
        raise DriverChoiceError(
            f"architecture {architecture} has no NVIDIA datacenter driver packages; supported: x86_64, aarch64"
        )
    return HostPlatform(
        distribution=distribution, version=wanted, architecture=architecture, kernel=str(kernel)
    )


def parse_branch(branch: Any) -> int:
    text = str(branch).strip()
    if not re.fullmatch(r"\d{3}", text):
        raise DriverChoiceError(
            f"nvidia_driver_branch = {branch!r} is not a driver branch; give its first number, e.g. 570 or 580"
        )
    return int(text)


def parse_compute_capability(value: Any) -> tuple[int, int] | None:
    match = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", str(value or ""))
    return (int(match.group(1)), int(match.group(2))) if match else None


def gpu_generation(device_id: Any = None, compute_capability: Any = None) -> str:
    """``pre-turing``, ``turing-to-hopper`` or ``blackwell`` from a PCI device id or a compute capability.

    >>> gpu_generation(device_id="0x1db1")   # Tesla V100-SXM2
    'pre-turing'
    >>> gpu_generation(compute_capability="10.0")
    'blackwell'
    """
    cc = parse_compute_capability(compute_capability)
    if cc is not None:
        if cc < TURING_MIN_CC:
            return "pre-turing"
        return "blackwell" if cc >= BLACKWELL_MIN_CC else "turing-to-hopper"
    if device_id is None or str(device_id).strip() == "":
        raise DriverChoiceError("a GPU without a PCI device id or a compute capability cannot be classified")
    try:
        number = int(str(device_id), 16)
    except ValueError:
        raise DriverChoiceError(f"PCI device id {device_id!r} is not hexadecimal") from None
    if number < TURING_MIN_DEVICE:
        return "pre-turing"
    return "blackwell" if number >= BLACKWELL_MIN_DEVICE else "turing-to-hopper"


def choose_kernel_module(requested: str, gpus: Sequence[Mapping[str, Any]], branch: int) -> tuple[str, str]:
    """The kernel module flavour and why. ``gpus`` items carry ``device`` (PCI id) or ``compute_capability``."""
    if requested not in KERNEL_MODULES:
        raise DriverChoiceError(
            f"nvidia_driver_kernel_module = {requested!r} is not accepted; one of: {', '.join(KERNEL_MODULES)}"
        )
    generations = {}
    for gpu in gpus:
        label = gpu.get("address") or gpu.get("name") or gpu.get("device") or "a GPU"
        generations[str(label)] = gpu_generation(gpu.get("device"), gpu.get("compute_capability"))
    old = sorted(label for label, gen in generations.items() if gen == "pre-turing")
    blackwell = sorted(label for label, gen in generations.items() if gen == "blackwell")
    if old and blackwell:
        raise DriverChoiceError(
            "no kernel module flavour drives both the pre-Turing GPUs "
            f"({', '.join(old)}: proprietary only) and the Blackwell GPUs ({', '.join(blackwell)}: open only)"
        )
    if requested == "open" and old:
        raise DriverChoiceError(
            f"the open kernel modules do not support pre-Turing GPUs ({', '.join(old)}); "
            "set nvidia_driver_kernel_module: proprietary (or auto)"
        )
    if requested == "proprietary" and blackwell:
        raise DriverChoiceError(
            f"Blackwell GPUs ({', '.join(blackwell)}) only run on the open kernel modules; "
            "set nvidia_driver_kernel_module: open (or auto)"
        )
    if blackwell and branch < BLACKWELL_MIN_BRANCH:
        raise DriverChoiceError(
            f"branch {branch} does not drive Blackwell GPUs ({', '.join(blackwell)}); "
            f"set nvidia_driver_branch to {BLACKWELL_MIN_BRANCH} or newer"
        )
    if requested == "auto":
        flavour = "proprietary" if old else "open"
        reason = (
            f"auto: pre-Turing GPUs ({', '.join(old)}) need the proprietary modules"
            if old
            else "auto: every GPU is Turing or newer, so the open modules (NVIDIA's default since 560)"
        )
    else:
        flavour, reason = requested, f"nvidia_driver_kernel_module: {requested}"
    if flavour == "open" and branch < OPEN_MODULES_MIN_BRANCH:
        raise DriverChoiceError(
            f"branch {branch} has no open kernel modules (they start with {OPEN_MODULES_MIN_BRANCH}); "
            "choose a newer branch or nvidia_driver_kernel_module: proprietary"
        )
    return flavour, reason


# ---------------------------------------------------------------------------------------------
# Packages and repositories
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    name: str
    #: True when the package's version carries the driver version, so it can be held to the branch.
    versioned: bool = True


def driver_packages(target: HostPlatform, branch: int, source: str, flavour: str) -> list[Package]:
    """The driver packages (kernel module, user space, nvidia-smi, persistence daemon) for one host."""
    open_modules = flavour == "open"
    if target.family == "debian":
        if source == "cuda":
            kernel = "nvidia-kernel-open-dkms" if open_modules else "nvidia-kernel-dkms"
            return [Package("nvidia-driver-cuda"), Package(kernel), Package("nvidia-persistenced")]
        archive_branch = DEBIAN_ARCHIVE_BRANCHES[target.major]
        if branch != archive_branch:
            raise DriverChoiceError(
                f"Debian {target.major}'s own archive only carries driver branch {archive_branch}, not {branch}; "
                f"set nvidia_driver_source: cuda (NVIDIA's repository) or nvidia_driver_branch: {archive_branch}"
            )
        kernel = "nvidia-open-kernel-dkms" if open_modules else "nvidia-kernel-dkms"
        return [
            Package(kernel),
            Package("nvidia-smi"),
            Package("libcuda1"),
            Package("nvidia-persistenced", versioned=False),
        ]
    if target.family == "ubuntu":
        if source == "distribution":
            return [Package(f"nvidia-driver-{branch}-server{'-open' if open_modules else ''}")]
        base = "nvidia-open" if open_modules else "cuda-drivers"
        return [Package(f"{base}-{branch}" if branch <= CUDA_APT_SUFFIXED_DRIVER_MAX else base)]
    if source == "distribution":
        raise DriverChoiceError(
            f"{target.distribution} {target.major} does not ship NVIDIA drivers; set nvidia_driver_source: cuda"
        )
    return []  # RHEL: a DNF module stream, see dnf_module()


def fabricmanager_packages(target: HostPlatform, branch: int, source: str) -> list[Package]:
    """The Fabric Manager package of the same branch."""
    if target.family == "debian" and source == "distribution":
        raise DriverChoiceError(
            f"Debian {target.major}'s own archive has no NVIDIA Fabric Manager, which NVSwitch systems need; "
            "set nvidia_driver_source: cuda (NVIDIA's repository)"
        )
    if target.family == "rhel":
        name = "nvidia-fabricmanager" if branch >= RPM_FABRICMANAGER_RENAMED else "nvidia-fabric-manager"
        return [Package(name)]
    if target.family == "ubuntu" and source == "distribution":
        return [Package(f"nvidia-fabricmanager-{branch}")]
    suffixed = branch <= CUDA_APT_SUFFIXED_FABRICMANAGER_MAX
    return [Package(f"nvidia-fabricmanager-{branch}" if suffixed else "nvidia-fabricmanager")]


def dnf_module(target: HostPlatform, branch: int, flavour: str) -> str:
    if target.family != "rhel":
        return ""
    return f"nvidia-driver:{branch}-{'open' if flavour == 'open' else 'dkms'}"


def header_packages(target: HostPlatform) -> list[str]:
    if target.family == "rhel":
        return [f"kernel-devel-{target.kernel}", "kernel-headers"]
    return [f"linux-headers-{target.kernel}"]


@dataclass(frozen=True)
class Repository:
    url: str
    key_url: str
    key_fingerprint: str
    kind: str  # apt or dnf
    name: str = REPO_NAME
    #: APT suite: "/" for a flat repository (NVIDIA's layout)
    suite: str = "/"


def normalize_fingerprint(value: str) -> str:
    return re.sub(r"\s+", "", str(value or "")).upper()


def repository(
    target: HostPlatform, source: str, url: str = "", key_url: str = "", key_fingerprint: str = ""
) -> Repository | None:
    """NVIDIA's CUDA repository for the host, or the mirror the operator names; None for distribution."""
    if source != "cuda":
        return None
    if target.family == "rhel":
        key_file, default_fingerprint = RPM_KEY
    else:
        key_file, default_fingerprint = APT_KEYS_BY_DISTRO.get(target.cuda_distro, APT_KEY)
    arches = CUDA_ARCHES_BY_DISTRO.get(target.cuda_distro)
    if arches and target.cuda_arch not in arches:
        raise DriverChoiceError(
            f"NVIDIA's CUDA repository has no {target.cuda_distro}/{target.cuda_arch} tree for "
            f"{target.distribution} {target.major} on {target.architecture} (only {', '.join(arches)}); "
            "use nvidia_driver_source: distribution (Debian's own archive)"
        )
    base = url.strip() or f"{CUDA_REPO_BASE}/{target.cuda_distro}/{target.cuda_arch}/"
    if not re.match(r"^(https?|file|ftp)://", base):
        raise DriverChoiceError(f"nvidia_driver_repo_url = {url!r} is not an http(s), ftp or file URL")
    if not base.endswith("/"):
        base += "/"
    fingerprint = normalize_fingerprint(key_fingerprint or default_fingerprint)
    if not re.fullmatch(r"[0-9A-F]{40}|[0-9A-F]{64}", fingerprint):
        raise DriverChoiceError(
            f"nvidia_driver_repo_key_fingerprint = {key_fingerprint!r} is not a full OpenPGP fingerprint "
            "(40 hexadecimal digits, spaces allowed)"
        )
    return Repository(
        url=base,
        key_url=key_url.strip() or base + key_file,
        key_fingerprint=fingerprint,
        kind=target.package_manager,
    )


def version_glob(branch: int, version: str = "") -> str:
    """The version pattern the packages are held to: the branch, or one exact driver version of it."""
    if not version:
        return f"{branch}.*"
    if not re.fullmatch(r"\d{3}\.\d+(\.\d+)?", version):
        raise DriverChoiceError(
            f"nvidia_driver_version = {version!r} is not a driver version like 570.172.08"
        )
    if not version_matches_branch(version, branch):
        raise DriverChoiceError(f"nvidia_driver_version {version} is not of branch {branch}")
    return f"{version}*" if version.count(".") == 2 else f"{version}.*"


def apt_preferences(branch: int, glob: str, fabricmanager: Sequence[str]) -> str:
    """An apt_preferences(5) file that keeps every NVIDIA driver package on the branch.

    The first record follows NVIDIA's version-locking guide (binary packages built from any source
    package whose name holds "nvidia", plus cuda-drivers and cuda-compat); the second names the
    Fabric Manager packages, whose source package ("fabric-manager-NNN") does not say nvidia.
    """
    lines = [
        f"# Managed by llmfleet (nvidia_driver role): hold the NVIDIA driver to branch {branch}.",
        "# Priority 1000 keeps these versions even against newer ones in any repository.",
        "Package: src:*nvidia*:any src:cuda-drivers:any src:cuda-compat:any",
        f"Pin: version {glob}",
        "Pin-Priority: 1000",
    ]
    names = sorted({*fabricmanager, "nvidia-fabricmanager*", "libnvidia-nscq*"})
    lines += ["", f"Package: {' '.join(names)}", f"Pin: version {glob}", "Pin-Priority: 1000"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------


@dataclass
class DriverPlan:
    needed: bool
    errors: list[str] = field(default_factory=list)
    summary: str = ""
    branch: int | None = None
    source: str = ""
    kernel_module: str = ""
    kernel_module_reason: str = ""
    package_manager: str = ""
    packages: list[str] = field(default_factory=list)
    package_names: list[str] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    fabricmanager: bool = False
    fabricmanager_reason: str = ""
    fabricmanager_packages: list[str] = field(default_factory=list)
    fabricmanager_names: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    repository: dict[str, str] | None = None
    apt_preferences: str = ""
    dnf_module: str = ""
    versionlock: str = ""
    version_glob: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _spec(package: Package, manager: str, glob: str) -> str:
    if manager == "apt" and package.versioned:
        return f"{package.name}={glob}"
    return package.name


def _fabricmanager_decision(mode: str, nvswitches: int) -> tuple[bool, str]:
    if mode == "true":
        return True, "nvidia_driver_fabricmanager: true"
    if mode == "false":
        return False, "nvidia_driver_fabricmanager: false"
    if nvswitches:
        return True, f"auto: {nvswitches} NVSwitch(es) on the PCI bus"
    return False, "auto: no NVSwitch on the PCI bus"


def plan(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The whole plan for one host; ``errors`` lists every reason it cannot be carried out.

    ``settings``: distribution, version, architecture, kernel (host facts); pci (the pci_devices
    result); branch, version_pin, source, kernel_module, fabricmanager, persistenced,
    repo_url, repo_key_url, repo_key_fingerprint (role settings).
    """
    pci = settings.get("pci") or {}
    gpus = list(pci.get("nvidia_gpus") or [])
    nvswitches = len(pci.get("nvswitches") or [])
    if not gpus:
        return DriverPlan(
            needed=False, summary="no NVIDIA GPU on the PCI bus (vendor 0x10de, display class)"
        ).as_dict()
    result = DriverPlan(needed=True)
    try:
        _fill(result, settings, gpus, nvswitches)
    except DriverChoiceError as exc:
        result.errors.append(str(exc))
    return result.as_dict()


def _fill(
    result: DriverPlan, settings: Mapping[str, Any], gpus: list[Mapping[str, Any]], nvswitches: int
) -> None:
    target = host_platform(
        str(settings.get("distribution", "")),
        str(settings.get("version", "")),
        str(settings.get("architecture", "")),
        str(settings.get("kernel", "")),
    )
    branch = parse_branch(settings.get("branch"))
    source = str(settings.get("source", "cuda"))
    if source not in SOURCES:
        raise DriverChoiceError(
            f"nvidia_driver_source = {source!r} is not accepted; one of: {', '.join(SOURCES)}"
        )
    fm_mode = str(settings.get("fabricmanager", "auto")).lower()
    if fm_mode not in FABRICMANAGER_MODES:
        raise DriverChoiceError(
            f"nvidia_driver_fabricmanager = {fm_mode!r} is not accepted; one of: auto, true, false"
        )
    flavour, flavour_reason = choose_kernel_module(str(settings.get("kernel_module", "auto")), gpus, branch)
    glob = version_glob(branch, str(settings.get("version_pin") or ""))
    packages = driver_packages(target, branch, source, flavour)
    use_fm, fm_reason = _fabricmanager_decision(fm_mode, nvswitches)
    fm_packages = fabricmanager_packages(target, branch, source) if use_fm else []
    repo = repository(
        target,
        source,
        str(settings.get("repo_url") or ""),
        str(settings.get("repo_key_url") or ""),
        str(settings.get("repo_key_fingerprint") or ""),
    )
    manager = target.package_manager
    result.branch = branch
    result.source = source
    result.kernel_module = flavour
    result.kernel_module_reason = flavour_reason
    result.package_manager = manager
    result.packages = [_spec(p, manager, glob) for p in packages]
    result.package_names = [p.name for p in packages]
    result.headers = header_packages(target)
    result.fabricmanager = use_fm
    result.fabricmanager_reason = fm_reason
    result.fabricmanager_packages = [_spec(p, manager, glob) for p in fm_packages]
    result.fabricmanager_names = [p.name for p in fm_packages]
    result.version_glob = glob
    result.services = (["nvidia-persistenced"] if settings.get("persistenced", True) else []) + (
        ["nvidia-fabricmanager"] if use_fm else []
    )
    result.repository = asdict(repo) if repo else None
    if manager == "apt":
        result.apt_preferences = apt_preferences(branch, glob, result.fabricmanager_names)
    else:
        result.dnf_module = dnf_module(target, branch, flavour)
        result.versionlock = f"*nvidia*{glob.rstrip('*').rstrip('.')}*"
    where = f"{repo.url}" if repo else f"the {target.distribution} archive"
    result.summary = (
        f"branch {branch} ({flavour} kernel modules) from {where}; "
        f"{len(gpus)} GPU(s), {nvswitches} NVSwitch(es); Fabric Manager: {'yes' if use_fm else 'no'}"
    )


# ---------------------------------------------------------------------------------------------
# What the host runs, and whether it needs a reboot
# ---------------------------------------------------------------------------------------------


def branch_of(version: Any) -> int | None:
    match = re.match(r"^\s*(?:\d+:)?(\d{3})\.\d+", str(version or ""))
    return int(match.group(1)) if match else None


def version_matches_branch(version: Any, branch: Any) -> bool:
    """True when a driver version (``570.172.08``, ``1:570.172.08-0ubuntu1``) is of the branch."""
    try:
        wanted = parse_branch(branch)
    except DriverChoiceError:
        return False
    return branch_of(version) == wanted


@dataclass(frozen=True)
class LoadedModule:
    version: str
    open: bool


def loaded_module(text: str | None) -> LoadedModule | None:
    """The NVIDIA kernel module the kernel runs, from ``/proc/driver/nvidia/version``; None when absent.

    >>> loaded_module("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.172.08  Release Build")
    LoadedModule(version='570.172.08', open=True)
    """
    for line in (text or "").splitlines():
        if not line.startswith("NVRM version:"):
            continue
        match = re.search(r"Kernel Module(?: for \S+)?\s+(\d{3}\.\d+(?:\.\d+)?)\s", line + " ")
        if match:
            return LoadedModule(version=match.group(1), open="Open Kernel Module" in line)
    return None


def _plain_name(entry: str) -> str:
    return entry.strip().split(":")[0]


def reboot_reasons(
    branch: Any,
    flavour: str,
    module_text: str | None,
    nouveau_loaded: bool,
    reboot_required_pkgs: Iterable[str] = (),
    driver_packages: Iterable[str] = (),
) -> list[str]:
    """Why the host must reboot before the pinned driver can run; empty when it need not.

    - no NVIDIA kernel module loaded, or one of another branch or flavour (a reboot loads the installed one);
    - nouveau loaded (it holds the GPUs; the blacklist takes effect at boot);
    - the package manager flagged a reboot for one of the driver packages (/run/reboot-required.pkgs).
    """
    reasons = []
    module = loaded_module(module_text)
    wanted = parse_branch(branch)
    if module is None:
        reasons.append("no NVIDIA kernel module is loaded (driver/nvidia/version is missing in procfs)")
    elif not version_matches_branch(module.version, wanted):
        reasons.append(f"the loaded NVIDIA kernel module is {module.version}, not branch {wanted}")
    elif module.open != (flavour == "open"):
        loaded = "open" if module.open else "proprietary"
        reasons.append(f"the loaded NVIDIA kernel module is the {loaded} one, the {flavour} one is installed")
    if nouveau_loaded:
        reasons.append("nouveau is loaded and holds the GPUs (it is blacklisted and stays out after a boot)")
    ours = {_plain_name(p) for p in driver_packages}
    flagged = sorted({_plain_name(p) for p in reboot_required_pkgs if p.strip()} & ours)
    if flagged:
        reasons.append(f"the package manager asks for a reboot after installing {', '.join(flagged)}")
    return reasons


def check_reported_version(version: Any, branch: Any, what: str = "nvidia-smi") -> str:
    """An error message when the driver version a tool reports is not of the pinned branch, else ''."""
    wanted = parse_branch(branch)
    if not version:
        return f"{what} reports no driver version; expected a driver of branch {wanted}"
    if not version_matches_branch(version, wanted):
        return f"{what} reports driver {version}, but the pinned branch is {wanted}"
    return ""


# ---------------------------------------------------------------------------------------------
# Repository keys
# ---------------------------------------------------------------------------------------------


def key_errors(text: str, fingerprint: str, url: str = "") -> list[str]:
    """Why a downloaded key must not be trusted: not a key, or not the pinned fingerprint; else []."""
    where = f" at {url}" if url else ""
    try:
        prints = openpgp_fingerprints(text)
    except OpenPGPError as exc:
        return [f"the repository key{where} is unusable: {exc}"]
    wanted = normalize_fingerprint(fingerprint)
    if wanted not in prints:
        return [
            f"the repository key{where} has fingerprint {', '.join(prints)}, not the pinned {wanted}; "
            "if the repository rotated its key, check the new one and set nvidia_driver_repo_key_fingerprint"
        ]
    return []
