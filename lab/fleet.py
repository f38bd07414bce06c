#!/usr/bin/env python3
"""The llmfleet test fleet: real Debian hosts (12 or 13) booted with systemd-nspawn, reached over SSH.

Each host is an overlay over a cached debootstrap root of its suite (built once per suite, keyed by
suite, mirror and package list),
boots a real systemd with sshd, and lives in its own network namespace with a veth pair on a
per-fleet bridge. The bridge address is the controller's address for the hosts; the hosts have no
default route, so nothing reaches past the controller: they are offline, like an air-gapped site.
Like such a site, they get OS packages through a package proxy on the controller: apt-cacher-ng on
port 3142 of every bridge (started when a fleet is created, unless something listens there already),
which each host's apt is configured to use. Each host's generated SSH host key goes into the fleet's
known_hosts file (<state dir>/<fleet>/known_hosts), so that its clients check the hosts' keys.

    fleet.py create  --spec SPEC.json [--known-hosts FILE]
                                          boot the hosts of a fleet (in parallel), print their connection data
                                          (and write the fleet's known_hosts to FILE as well)
    fleet.py destroy --fleet NAME         stop and remove everything a fleet made (also after a crash)
    fleet.py up --inventory HOSTS.yml     boot the fleet an inventory describes, unless it already runs
    fleet.py list                         fleets and hosts that exist
    fleet.py build-root [--suite SUITE]   build (or reuse) the cached base root of a suite (default bookworm)
    fleet.py snapshot --fleet NAME --host HOST --path DIR
                                          keep what HOST wrote under DIR as a layer (hard links), print its directory
    fleet.py add-layer --fleet NAME --host HOST --layer LAYER
                                          reboot HOST with LAYER as an extra read-only layer under its own files

A spec (JSON):
    {"fleet": "demo", "subnet": "10.213.7.0/24",            # subnet optional: derived from the name
     "hosts": [{"name": "h1", "address": "10.213.7.11",     # address optional
                "cpus": "1",                                # optional --cpu-affinity
                "suite": "trixie",                          # optional Debian suite: bookworm (default) or trixie
                "files": [{"src": "/path/x", "dest": "/usr/bin/x", "mode": "0755"}]}]}

Needs root, debootstrap, systemd-container (systemd-nspawn), iproute2, ssh-keygen and apt-cacher-ng.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

STATE_DIR = Path(os.environ.get("LLMFLEET_LAB_STATE", "/var/lib/llmfleet-lab"))
CACHE_DIR = Path(os.environ.get("LLMFLEET_LAB_CACHE", "/var/cache/llmfleet-lab"))
MIRROR = os.environ.get("LLMFLEET_LAB_MIRROR", "http://deb.debian.org/debian")
# Debian suites a host can run, by release: bookworm (12) boots unless a host names another.
SUITES = {"bookworm": "12", "trixie": "13"}
DEFAULT_SUITE = "bookworm"
LOGIN_USER = "llmfleet"
# Everything a test host needs: systemd and sshd to be a host, python3/python3-apt/sudo for Ansible,
# libnuma1, g++ and python3-dev for vLLM's CPU build (its worker needs libnuma, and torch compiles C++
# against the Python headers), rsync for fan-out. Every suite of SUITES has these names (trixie's
# python3 is 3.13, bookworm's 3.11).
PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "sudo",
    "iproute2",
    "procps",
    "ca-certificates",
    "kmod",
    "rsync",
    "curl",
    "gnupg",
    "less",
    "libnuma1",
    "g++",
    "python3-dev",
]
ROOT_FORMAT = 2  # bump when customise_base_root() changes
BOOT_TIMEOUT_S = 60
AUTO_SUBNETS = 240
STOP_TIMEOUT_S = 15
# The controller's package proxy, which the hosts reach on their gateway (the fleet's bridge address).
APT_PROXY = "/usr/sbin/apt-cacher-ng"
APT_PROXY_USER = "apt-cacher-ng"
APT_PROXY_PORT = 3142
APT_PROXY_START_TIMEOUT_S = 10


def log(msg: str) -> None:
    print(f"fleet: {msg}", file=sys.stderr, flush=True)


def run(argv: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, text=True, capture_output=True, **kwargs)


def short_hash(text: str, length: int = 6) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# ---------------------------------------------------------------------------------------------
# The cached base root
# ---------------------------------------------------------------------------------------------


def check_suite(suite: str, where: str) -> str:
    if suite not in SUITES:
        known = ", ".join(f"{name} (Debian {release})" for name, release in SUITES.items())
        raise SystemExit(f"{where}: suite {suite!r} is not one the test fleet boots; known: {known}")
    return suite


def root_key(suite: str = DEFAULT_SUITE, mirror: str = MIRROR) -> str:
    """The cache key of a suite's base root: what goes into it (suite, mirror, packages, user, format)."""
    return short_hash(json.dumps([suite, mirror, sorted(PACKAGES), LOGIN_USER, ROOT_FORMAT]), 16)


def base_root(suite: str = DEFAULT_SUITE) -> Path:
    """Return the cached base root of a suite, building it on first use. Never booted itself."""
    root = CACHE_DIR / "roots" / root_key(suite) / "rootfs"
    if (root.parent / "complete").exists():
        return root
    root.parent.parent.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "roots" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root.parent / "complete").exists():
            build_base_root(root, suite)
    return root


def build_base_root(root: Path, suite: str) -> None:
    staging = root.parent.with_name(root.parent.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    debs = CACHE_DIR / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    log(f"building the {suite} base root {root.parent.name} with debootstrap (a minute or two, once)")
    started = time.monotonic()
    result = run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            f"--cache-dir={debs}",
            suite,
            str(staging / "rootfs"),
            MIRROR,
        ],
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(
            f"debootstrap of {suite} failed ({result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    customise_base_root(staging / "rootfs")
    (staging / "complete").write_text(
        json.dumps({"suite": suite, "packages": PACKAGES, "seconds": time.monotonic() - started})
    )
    shutil.rmtree(root.parent, ignore_errors=True)
    staging.rename(root.parent)
    log(f"base root ready in {time.monotonic() - started:.0f} s")


def customise_base_root(rootfs: Path) -> None:
    def chroot(*argv: str) -> None:
        run(["chroot", str(rootfs), *argv])

    chroot("useradd", "--create-home", "--shell", "/bin/bash", LOGIN_USER)
    sudoers = rootfs / "etc/sudoers.d" / LOGIN_USER
    sudoers.write_text(f"{LOGIN_USER} ALL=(ALL) NOPASSWD:ALL\n")
    sudoers.chmod(0o440)
    (rootfs / "etc/ssh/sshd_config.d/llmfleet-lab.conf").write_text(
        "PasswordAuthentication no\nUseDNS no\nPermitRootLogin prohibit-password\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
    )
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    # Each host gets its own identity at create time.
    (rootfs / "etc/machine-id").write_text("")
    with contextlib.suppress(FileNotFoundError):
        (rootfs / "var/lib/dbus/machine-id").unlink()
    # Nothing in a test host should wait for hardware or a network that is not there.
    for unit in ("systemd-networkd-wait-online.service", "apt-daily.timer", "apt-daily-upgrade.timer"):
        (rootfs / "etc/systemd/system" / unit).unlink(missing_ok=True)
        (rootfs / "etc/systemd/system" / unit).symlink_to("/dev/null")


# ---------------------------------------------------------------------------------------------
# Fleets and hosts
# ---------------------------------------------------------------------------------------------


@dataclass
class HostSpec:
    name: str
    address: str = ""
    cpus: str = ""
    files: list[dict] = field(default_factory=list)
    suite: str = DEFAULT_SUITE


def host_specs(fleet: str, hosts: list[dict]) -> list[HostSpec]:
    """The hosts of a spec, checked: known keys, unique names, known suites."""
    known = {f.name for f in fields(HostSpec)}
    specs = []
    for entry in hosts:
        name = entry.get("name", "?")
        unknown = sorted(set(entry) - known)
        if unknown:
            raise SystemExit(f"fleet {fleet}, host {name}: unknown key(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(known))}")  # fmt: skip
        spec = HostSpec(**entry)
        check_suite(spec.suite, f"fleet {fleet}, host {name}")
        specs.append(spec)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise SystemExit(f"fleet {fleet}: duplicate host names in {names}")
    return specs


@dataclass
class Host:
    fleet: str
    name: str
    address: str
    prefixlen: int
    gateway: str
    cpus: str
    netns: str
    veth: str
    pid: int = 0
    suite: str = DEFAULT_SUITE
    # Snapshots of other hosts (their `root` directories) between the host's own files and the
    # base root, topmost first.
    layers: list[str] = field(default_factory=list)

    @property
    def dir(self) -> Path:
        return STATE_DIR / self.fleet / "hosts" / self.name

    @property
    def merged(self) -> Path:
        return self.dir / "merged"


def fleet_dir(fleet: str) -> Path:
    return STATE_DIR / fleet


def bridge_name(fleet: str) -> str:
    return f"lfb{short_hash(fleet, 8)}"


def netns_prefix(fleet: str) -> str:
    return f"lf-{short_hash(fleet, 8)}-"


def identity_file(fleet: str) -> Path:
    return fleet_dir(fleet) / "id_ed25519"


def known_hosts_file(fleet: str) -> Path:
    return fleet_dir(fleet) / "known_hosts"


def subnet_in_use() -> dict[str, str]:
    """Every IPv4 subnet on this machine's links, with the link that holds it."""
    out = run(["ip", "-j", "-4", "addr", "show"]).stdout
    nets = {}
    for link in json.loads(out or "[]"):
        for addr in link.get("addr_info", []):
            net = ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}", strict=False)
            nets[str(net)] = link["ifname"]
    return nets


def choose_subnet(fleet: str, wanted: str | None) -> ipaddress.IPv4Network:
    used = subnet_in_use()
    if wanted:
        holder = used.get(str(ipaddress.IPv4Network(wanted)))
        if holder and holder != bridge_name(fleet):
            raise SystemExit(
                f"fleet {fleet} wants subnet {wanted}, which {holder} holds already: another fleet uses it "
                "(fleet.py list names them; one a killed run left behind goes with fleet.py destroy --fleet NAME)"
            )
        return ipaddress.IPv4Network(wanted)
    mine = existing_bridge_subnet(fleet)
    if mine:
        return mine
    # 10.214.240-255 are left for scenarios that fix their subnet.
    start = int(short_hash(fleet, 4), 16) % AUTO_SUBNETS
    for offset in range(AUTO_SUBNETS):
        net = ipaddress.IPv4Network(f"10.214.{(start + offset) % AUTO_SUBNETS}.0/24")
        if str(net) not in used:
            return net
    raise SystemExit("no free 10.214.x.0/24 subnet for a new fleet")


def existing_bridge_subnet(fleet: str) -> ipaddress.IPv4Network | None:
    result = run(["ip", "-j", "-4", "addr", "show", "dev", bridge_name(fleet)], check=False)
    if result.returncode != 0:
        return None
    for link in json.loads(result.stdout or "[]"):
        for addr in link.get("addr_info", []):
            return ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}", strict=False)
    return None


def plan_hosts(fleet: str, subnet: ipaddress.IPv4Network, specs: list[HostSpec]) -> list[Host]:
    gateway = str(subnet.network_address + 1)
    hosts = []
    for index, spec in enumerate(specs):
        address = spec.address or str(subnet.network_address + 11 + index)
        if ipaddress.IPv4Address(address) not in subnet or address == gateway:
            raise SystemExit(f"host {spec.name}: address {address} is not a host address in {subnet}")
        hosts.append(
            Host(
                fleet=fleet,
                name=spec.name,
                address=address,
                prefixlen=subnet.prefixlen,
                gateway=gateway,
                cpus=spec.cpus or str(index % (os.cpu_count() or 1)),
                netns=netns_prefix(fleet) + spec.name,
                veth=f"lfv{short_hash(fleet + '/' + spec.name, 9)}",
                suite=spec.suite,
            )
        )
    return hosts


def ensure_bridge(fleet: str, subnet: ipaddress.IPv4Network) -> None:
    bridge = bridge_name(fleet)
    if run(["ip", "link", "show", bridge], check=False).returncode != 0:
        run(["ip", "link", "add", bridge, "type", "bridge"])
    gateway = f"{subnet.network_address + 1}/{subnet.prefixlen}"
    run(["ip", "addr", "replace", gateway, "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])


def listening(address: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=1):
        return True
    return False


def ensure_apt_proxy(gateway: str) -> None:
    """Make sure the package proxy answers on the fleet's gateway: start apt-cacher-ng unless something
    listens on its port already (a proxy started for another fleet, or the machine's own service).

    It listens on every address of the controller, so one daemon serves every fleet's bridge; it stays
    running when fleets are destroyed, like a site's proxy.
    """
    if listening(gateway, APT_PROXY_PORT):
        return
    if not Path(APT_PROXY).exists():
        raise SystemExit(f"the hosts' package proxy {APT_PROXY} is missing: install apt-cacher-ng "
                         "(scripts/bootstrap.sh does)")  # fmt: skip
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    log_path = CACHE_DIR / "apt-proxy.log"
    with open(CACHE_DIR / ".apt-proxy.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not listening(gateway, APT_PROXY_PORT):
            log(f"starting the package proxy (apt-cacher-ng on port {APT_PROXY_PORT})")
            start_apt_proxy(log_path)
    deadline = time.monotonic() + APT_PROXY_START_TIMEOUT_S
    while not listening(gateway, APT_PROXY_PORT):
        if time.monotonic() > deadline:
            raise SystemExit(f"the package proxy does not answer on {gateway}:{APT_PROXY_PORT} "
                             f"{APT_PROXY_START_TIMEOUT_S} s after its start; see {log_path} and "
                             "/var/log/apt-cacher-ng/")  # fmt: skip
        time.sleep(0.2)


def start_apt_proxy(log_path: Path) -> None:
    """Start apt-cacher-ng as a daemon under its own user, as its init script does (no systemd needed)."""
    run_dir = Path("/run/apt-cacher-ng")
    run(["install", "-d", "-m", "0755", "-o", APT_PROXY_USER, "-g", APT_PROXY_USER, str(run_dir)])
    # Debian's default backend for Debian archives (ftp.debian.org) may be unreachable where the hosts'
    # mirror is not: fetch them from the mirror the base roots come from.
    argv = [APT_PROXY, "-c", "/etc/apt-cacher-ng", "ForeGround=0", f"Port={APT_PROXY_PORT}",
            f"PidFile={run_dir}/pid", f"SocketPath={run_dir}/socket",
            f"Remap-debrep=file:deb_mirror*.gz /debian ; {MIRROR.rstrip('/')}/"]  # fmt: skip
    with open(log_path, "a") as output:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                user=APT_PROXY_USER, group=APT_PROXY_USER, extra_groups=[],
                                start_new_session=True, check=False)  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"the package proxy failed to start ({result.returncode}); see {log_path}")


def apt_proxy_conf(gateway: str) -> str:
    """A host's apt setting for the controller's package proxy."""
    return (
        "// The controller's package proxy (lab/fleet.py): the host's only way to package repositories.\n"
        f'Acquire::http::Proxy "http://{gateway}:{APT_PROXY_PORT}/";\n'
        "// Repositories served on the fleet's bridge itself (a site mirror) are reached directly.\n"
        f'Acquire::http::Proxy::{gateway} "DIRECT";\n'
    )


def ensure_key(fleet: str) -> str:
    key = identity_file(fleet)
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"llmfleet-lab-{fleet}", "-f", str(key)])
    return Path(f"{key}.pub").read_text()


def overlay_options(lowers: list[Path], upper: Path, work: Path) -> str:
    """The overlay mount options: `lowers` topmost first, the host's own files (upper) above them all."""
    for path in (*lowers, upper, work):
        if any(char in str(path) for char in ":,"):
            raise SystemExit(f"overlay layer {path}: a path with ':' or ',' cannot be an overlay layer")
    return f"lowerdir={':'.join(map(str, lowers))},upperdir={upper},workdir={work}"


def mount_root(host: Host, base: Path) -> None:
    """Mount the host's root: its own files over its layers over the base root of its suite."""
    options = overlay_options([*map(Path, host.layers), base], host.dir / "upper", host.dir / "work")
    run(["mount", "-t", "overlay", "overlay", "-o", options, str(host.merged)])


def prepare_host(host: Host, spec: HostSpec, lower: Path, public_key: str) -> None:
    for sub in ("upper", "work", "merged"):
        (host.dir / sub).mkdir(parents=True, exist_ok=True)
    mount_root(host, lower)
    root = host.merged
    (root / "etc/hostname").write_text(host.name + "\n")
    (root / "etc/hosts").write_text(
        f"127.0.0.1 localhost\n127.0.1.1 {host.name}\n{host.address} {host.name}\n"
    )
    (root / "etc/machine-id").unlink(missing_ok=True)
    run(["systemd-machine-id-setup", f"--root={root}"])
    # An ed25519 host key only: RSA key generation costs most of a host's creation time.
    host_key = root / "etc/ssh/ssh_host_ed25519_key"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host.name}", "-f", str(host_key)])
    (root / "etc/apt/apt.conf.d/80llmfleet-lab-proxy").write_text(apt_proxy_conf(host.gateway))
    ssh_dir = root / "home" / LOGIN_USER / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(public_key)
    uid_gid = (root / "etc/passwd").read_text().split(f"\n{LOGIN_USER}:x:", 1)[1].split(":")[:2]
    for path in (ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(path, int(uid_gid[0]), int(uid_gid[1]))
    for item in spec.files:
        dest = root / item["dest"].lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item["src"], dest)
        dest.chmod(int(str(item.get("mode", "0644")), 8))


def plug_network(host: Host) -> None:
    run(["ip", "netns", "add", host.netns])
    peer = f"lfp{host.veth[3:]}"
    run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", peer, "netns", host.netns])
    run(["ip", "link", "set", host.veth, "master", bridge_name(host.fleet), "up"])
    run(["ip", "-n", host.netns, "link", "set", peer, "name", "eth0"])
    run(["ip", "-n", host.netns, "addr", "add", f"{host.address}/{host.prefixlen}", "dev", "eth0"])
    run(["ip", "-n", host.netns, "link", "set", "eth0", "up"])
    run(["ip", "-n", host.netns, "link", "set", "lo", "up"])


def boot(host: Host) -> None:
    console = open(host.dir / "console.log", "w")  # noqa: SIM115 - kept by the child
    argv = [
        "systemd-nspawn",
        f"--directory={host.merged}",
        f"--machine={host.name}",
        "--boot",
        "--keep-unit",
        "--register=no",
        f"--network-namespace-path=/run/netns/{host.netns}",
        f"--cpu-affinity={host.cpus}",
    ]
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                               start_new_session=True, close_fds=True)  # fmt: skip
    console.close()
    host.pid = process.pid
    save_host(host)


def wait_for_login(host: Host) -> None:
    """Wait until the login user gets a shell over SSH.

    sshd answers before systemd-user-sessions removes /run/nologin; until then, logins of the
    (non-root) login user are refused, which Ansible reports as an unreachable host.
    """
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        if not pid_alive(host.pid):
            tail = (host.dir / "console.log").read_text()[-2000:]
            raise RuntimeError(f"host {host.name}: systemd-nspawn exited during boot:\n{tail}")
        if sshd_answers(host):
            probe = run(ssh_argv(host, "true"), check=False)
            if probe.returncode == 0:
                return
            last = probe.stderr.strip()[-300:] or f"ssh exited with {probe.returncode}"
        time.sleep(0.2)
    raise RuntimeError(f"host {host.name}: no login on {host.address}:22 after {BOOT_TIMEOUT_S} s: {last}")


def sshd_answers(host: Host) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host.address, 22), timeout=1) as conn:
        conn.settimeout(2)
        return conn.recv(64).startswith(b"SSH-")
    return False


def ssh_argv(host: Host, command: str) -> list[str]:
    return [
        "ssh", "-i", str(identity_file(host.fleet)), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts_file(host.fleet)}",
        "-o", "LogLevel=ERROR", f"{LOGIN_USER}@{host.address}", command,
    ]  # fmt: skip


def known_hosts_line(host: Host) -> str:
    """`ADDRESS ssh-ed25519 KEY`: the host key the host was given, as ssh's known_hosts lists it."""
    key_type, key = (host.merged / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
    return f"{host.address} {key_type} {key}\n"


def write_known_hosts(fleet: str, hosts: list[Host], copies: list[Path]) -> None:
    """Write the fleet's known_hosts (and its copies), replacing what an earlier fleet of that name left."""
    text = "".join(known_hosts_line(host) for host in hosts)
    for path in (known_hosts_file(fleet), *copies):
        staging = path.with_name(path.name + ".new")
        staging.write_text(text)
        staging.chmod(0o644)
        staging.replace(path)


def save_host(host: Host) -> None:
    host.dir.mkdir(parents=True, exist_ok=True)
    (host.dir / "host.json").write_text(json.dumps(asdict(host)))


def load_hosts(fleet: str) -> list[Host]:
    hosts = []
    for state in sorted((fleet_dir(fleet) / "hosts").glob("*/host.json")):
        with contextlib.suppress(ValueError, TypeError):
            hosts.append(Host(**json.loads(state.read_text())))
    return hosts


def install_host(host: Host, spec: HostSpec, lower: Path, public_key: str) -> None:
    save_host(host)  # first, so that destroy finds what a crashed create left
    prepare_host(host, spec, lower, public_key)
    plug_network(host)


def start_host(host: Host) -> dict:
    boot(host)
    wait_for_login(host)
    return instance(host)


def instance(host: Host) -> dict:
    return {
        "instance": host.name,
        "address": host.address,
        "user": LOGIN_USER,
        "port": 22,
        "identity_file": str(identity_file(host.fleet)),
        "become_method": "sudo",
    }


def on_every_host(fleet: str, hosts: list[Host], step) -> list:
    """Run step(host) on all hosts at once; if any fails, remove the fleet and stop with every error."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        futures = [pool.submit(step, host) for host in hosts]
        errors, results = [], []
        for future in futures:
            try:
                results.append(future.result())
            except (Exception, SystemExit) as exc:
                errors.append(str(exc))
    if errors:
        destroy(fleet, quiet=True)
        raise SystemExit("fleet create failed:\n" + "\n".join(errors))
    return results


def create(spec: dict, known_hosts_copies: list[Path] | None = None) -> list[dict]:
    fleet = spec["fleet"]
    specs = {s.name: s for s in host_specs(fleet, spec["hosts"])}
    destroy(fleet, quiet=True)  # stale leftovers of a crashed run are cleaned, not tripped over
    lowers = {suite: base_root(suite) for suite in sorted({s.suite for s in specs.values()})}
    subnet = choose_subnet(fleet, spec.get("subnet"))
    hosts = plan_hosts(fleet, subnet, list(specs.values()))
    fleet_dir(fleet).mkdir(parents=True, exist_ok=True)
    ensure_bridge(fleet, subnet)
    ensure_apt_proxy(str(subnet.network_address + 1))
    public_key = ensure_key(fleet)
    on_every_host(fleet, hosts, lambda h: install_host(h, specs[h.name], lowers[h.suite], public_key))
    write_known_hosts(fleet, hosts, known_hosts_copies or [])
    return on_every_host(fleet, hosts, start_host)


# ---------------------------------------------------------------------------------------------
# Destroy: by recorded state and by scanning, so a crashed create is cleaned as well
# ---------------------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z"


def processes_under(path: Path) -> list[int]:
    """PIDs whose root directory or command line lies under path (nspawn and everything it runs)."""
    found = []
    prefix = str(path) + "/"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            root = os.readlink(proc / "root")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if (root + "/").startswith(prefix) or prefix in cmdline:
                found.append(int(proc.name))
    return found


def stop_processes(under: Path, hosts: list[Host]) -> None:
    """Power the hosts off (orderly), then kill whatever still runs under `under`."""
    for host in hosts:
        if pid_alive(host.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(host.pid, signal.SIGTERM)  # an orderly poweroff of the container
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and any(pid_alive(h.pid) for h in hosts):
        time.sleep(0.2)
    for pid in processes_under(under):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and processes_under(under):
        time.sleep(0.2)


def mounts_under(path: Path) -> list[str]:
    prefix = str(path) + "/"
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if (point + "/").startswith(prefix):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def destroy(fleet: str, quiet: bool = False) -> None:
    hosts = load_hosts(fleet)
    stop_processes(fleet_dir(fleet), hosts)
    for point in mounts_under(fleet_dir(fleet)):
        if run(["umount", point], check=False).returncode != 0:
            run(["umount", "--lazy", point], check=False)
    for netns in run(["ip", "netns", "list"]).stdout.split("\n"):
        name = netns.split(" ")[0]
        if name.startswith(netns_prefix(fleet)):
            run(["ip", "netns", "del", name], check=False)
    for host in hosts:
        run(["ip", "link", "del", host.veth], check=False)
    run(["ip", "link", "del", bridge_name(fleet)], check=False)
    if fleet_dir(fleet).exists():
        shutil.rmtree(fleet_dir(fleet))
        if not quiet:
            log(f"fleet {fleet}: destroyed {len(hosts)} host(s)")


# ---------------------------------------------------------------------------------------------
# Layers: what one host installed, given to others of its suite without copying it
# ---------------------------------------------------------------------------------------------


def layers_dir(fleet: str) -> Path:
    return fleet_dir(fleet) / "layers"


def fleet_host(fleet: str, name: str) -> Host:
    """A host of an existing fleet, or a refusal naming what exists."""
    if not (fleet_dir(fleet) / "hosts").is_dir():
        raise SystemExit(f"fleet {fleet}: not found in {STATE_DIR} (`fleet.py list` shows the fleets)")
    hosts = {h.name: h for h in load_hosts(fleet)}
    if name not in hosts:
        raise SystemExit(f"fleet {fleet}: no host {name}; its hosts: {', '.join(sorted(hosts)) or 'none'}")
    return hosts[name]


def snapshot(fleet: str, name: str, path: str) -> Path:
    """Keep what host `name` wrote under `path` (from its upper directory) as a layer; return the layer.

    The layer is `<fleet>/layers/<host><path with / as ->/`: `root/` (the tree, to mount) and
    `layer.json` (its host, suite and path). Its files are hard links to the host's own: no more disk, no
    copying time. That is safe for content that is written once and then only read (a release of the
    runtime): a host given the layer copies a file up to its own upper directory before changing it,
    and a host deleting or replacing its own link (pruning a release, an atomic rename) leaves the
    layer's link in place. Only writing into one of those files in place, or changing its mode or
    owner, on the snapshot's host would show through to the hosts given the layer.
    """
    host = fleet_host(fleet, name)
    if not path.startswith("/") or path.rstrip("/") == "" or ".." in Path(path).parts:
        raise SystemExit(
            f"fleet {fleet}, host {name}: snapshot path {path!r} is not an absolute path below /"
        )
    relative = Path(path.strip("/"))
    source = host.dir / "upper" / relative
    if not source.is_dir():
        raise SystemExit(f"fleet {fleet}, host {name}: nothing of its own at {path} (no directory {source})")
    layer = layers_dir(fleet) / f"{name}-{'-'.join(relative.parts)}"
    if layer.exists():
        raise SystemExit(
            f"fleet {fleet}: layer {layer} exists already (hosts may use it: it is never replaced)"
        )
    staging = layer.with_name(layer.name + ".making")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "root" / relative.parent).mkdir(mode=0o755, parents=True)
    result = run(["cp", "--archive", "--link", str(source), str(staging / "root" / relative)], check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise SystemExit(
            f"fleet {fleet}, host {name}: cannot link {source} into a layer: {result.stderr.strip()}"
        )
    (staging / "layer.json").write_text(json.dumps({"host": name, "suite": host.suite, "path": path}))
    staging.rename(layer)
    log(f"fleet {fleet}: layer {layer.name} holds host {name}'s {path}")
    return layer


def layer_root(fleet: str, host: Host, layer: Path) -> Path:
    """The directory to mount of a layer made by snapshot(), checked against the host it goes to."""
    where = f"fleet {fleet}, host {host.name}"
    meta = layer / "layer.json"
    if not layer.is_dir():
        raise SystemExit(f"{where}: layer {layer} does not exist")
    if not meta.is_file() or not (layer / "root").is_dir():
        raise SystemExit(
            f"{where}: {layer} is not a layer (`fleet.py snapshot` makes one: layer.json and root/)"
        )
    made = json.loads(meta.read_text())
    if made["host"] == host.name:
        raise SystemExit(f"{where}: layer {layer} is the host's own files already")
    if made["suite"] != host.suite:
        raise SystemExit(
            f"{where}: layer {layer} comes from host {made['host']} running {made['suite']}; "
            f"host {host.name} runs {host.suite}"
        )
    return (layer / "root").resolve()


def add_layer(fleet: str, name: str, layer: Path) -> dict:
    """Reboot a host with a layer between its own files (kept: all it did so far stays) and its other layers."""
    host = fleet_host(fleet, name)
    root = layer_root(fleet, host, layer)
    if str(root) in host.layers:
        log(f"fleet {fleet}, host {name}: has layer {layer} already")
        return instance(host)
    base = base_root(host.suite)
    stop_processes(host.dir, [host])
    for point in mounts_under(host.dir):
        result = run(["umount", point], check=False)
        if result.returncode != 0:
            raise SystemExit(f"fleet {fleet}, host {name}: cannot unmount {point}: {result.stderr.strip()}")
    layered = Host(**{**asdict(host), "layers": [str(root), *host.layers]})
    try:
        mount_root(layered, base)
    except subprocess.CalledProcessError as error:
        mount_root(host, base)
        boot(host)
        wait_for_login(host)
        raise SystemExit(f"fleet {fleet}, host {name}: mounting layer {layer} failed, "
                         f"booted without it: {error.stderr.strip()}") from error  # fmt: skip
    boot(layered)
    wait_for_login(layered)
    log(f"fleet {fleet}, host {name}: booted with layer {layer}")
    return instance(layered)


def spec_from_inventory(path: Path) -> dict:
    """A spec from an inventory: group `llmfleet_lab`, its `lab_fleet` (name, subnet), hosts' ansible_host
    (and `lab_cpus`, `lab_suite` when set)."""
    import yaml  # only this command reads YAML; the rest of the driver is stdlib

    inventory = yaml.safe_load(path.read_text())
    group = inventory["all"]["children"]["llmfleet_lab"]
    lab = group["vars"]["lab_fleet"]
    hosts = [
        {"name": name, "address": host["ansible_host"],
         **({"cpus": str(host["lab_cpus"])} if "lab_cpus" in host else {}),
         **({"suite": str(host["lab_suite"])} if "lab_suite" in host else {})}
        for name, host in group["hosts"].items()
    ]  # fmt: skip
    return {"fleet": lab["name"], "subnet": lab["subnet"], "hosts": hosts}


def up(spec: dict) -> list[dict]:
    """Create the fleet unless every host of the spec already runs and answers on SSH."""
    running = {h.name: h for h in load_hosts(spec["fleet"]) if pid_alive(h.pid)}
    wanted = {h["name"]: (h.get("address"), h.get("suite", DEFAULT_SUITE)) for h in spec["hosts"]}
    if set(running) == set(wanted) and all(
        (running[n].address, running[n].suite) == w for n, w in wanted.items()
    ):
        try:
            write_known_hosts(spec["fleet"], list(running.values()), [])
            ensure_apt_proxy(next(iter(running.values())).gateway)
            for host in running.values():
                wait_for_login(host)
            log(f"fleet {spec['fleet']}: {len(running)} host(s) already up")
            return [instance(h) for h in running.values()]
        except (RuntimeError, OSError):
            pass
    return create(spec)


def list_fleets() -> dict:
    fleets = {}
    if STATE_DIR.exists():
        for path in sorted(STATE_DIR.iterdir()):
            if path.is_dir():
                fleets[path.name] = [
                    {
                        "name": h.name,
                        "address": h.address,
                        "suite": h.suite,
                        "running": pid_alive(h.pid),
                        "layers": h.layers,
                    }
                    for h in load_hosts(path.name)
                ]
    return fleets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    create_cmd = sub.add_parser("create", help="boot the hosts of a fleet")
    create_cmd.add_argument("--spec", required=True, help="JSON spec file, or - for stdin")
    create_cmd.add_argument("--out", help="write the instance list (JSON) here as well as to stdout")
    create_cmd.add_argument(
        "--known-hosts", type=Path, help="write the fleet's known_hosts here as well (its hosts' keys)"
    )
    destroy_cmd = sub.add_parser("destroy", help="remove everything a fleet made")
    destroy_cmd.add_argument("--fleet", required=True)
    up_cmd = sub.add_parser("up", help="boot the fleet an inventory describes, unless it already runs")
    up_cmd.add_argument("--inventory", required=True, type=Path)
    sub.add_parser("list", help="show fleets and hosts")
    build_cmd = sub.add_parser("build-root", help="build or reuse the cached base root of a suite")
    build_cmd.add_argument("--suite", default=DEFAULT_SUITE, choices=sorted(SUITES))
    snapshot_cmd = sub.add_parser("snapshot", help="keep what a host wrote under a directory as a layer")
    snapshot_cmd.add_argument("--fleet", required=True)
    snapshot_cmd.add_argument("--host", required=True)
    snapshot_cmd.add_argument(
        "--path", required=True, help="absolute directory on the host, e.g. /opt/llmfleet"
    )
    layer_cmd = sub.add_parser(
        "add-layer", help="reboot a host with another host's snapshot under its own files"
    )
    layer_cmd.add_argument("--fleet", required=True)
    layer_cmd.add_argument("--host", required=True)
    layer_cmd.add_argument("--layer", required=True, type=Path, help="a directory printed by snapshot")
    args = parser.parse_args(argv)

    if os.geteuid() != 0:
        parser.error("the test fleet needs root (network namespaces, mounts, systemd-nspawn)")
    if args.command == "create":
        text = sys.stdin.read() if args.spec == "-" else Path(args.spec).read_text()
        instances = create(json.loads(text), [args.known_hosts] if args.known_hosts else [])
        output = json.dumps(instances, indent=2)
        if args.out:
            Path(args.out).write_text(output + "\n")
        print(output)
    elif args.command == "up":
        print(json.dumps(up(spec_from_inventory(args.inventory)), indent=2))
    elif args.command == "destroy":
        destroy(args.fleet)
    elif args.command == "list":
        print(json.dumps(list_fleets(), indent=2))
    elif args.command == "snapshot":
        print(snapshot(args.fleet, args.host, args.path))
    elif args.command == "add-layer":
        print(json.dumps(add_layer(args.fleet, args.host, args.layer), indent=2))
    else:
        print(base_root(args.suite))
    return 0


if __name__ == "__main__":
    sys.exit(main())
