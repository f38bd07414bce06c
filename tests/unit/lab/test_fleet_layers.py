"""lab/fleet.py's layers without booting: a host's snapshot (hard links, never replaced), the overlay
options and layer order, and what `add-layer` refuses. Hosts are host.json files in a temporary state
directory; stopping, mounting and booting are recorded instead of run."""

from __future__ import annotations

import json
from pathlib import Path

import fleet  # lab/, on the path through tests/conftest.py
import pytest


def make_host(name: str, suite: str = "bookworm", layers: list[str] | None = None) -> fleet.Host:
    host = fleet.Host(fleet="f", name=name, address="10.214.250.11", prefixlen=24, gateway="10.214.250.1",
                      cpus="0", netns=f"lf-x-{name}", veth=f"lfv{name}", pid=0, suite=suite,
                      layers=layers or [])  # fmt: skip
    fleet.save_host(host)
    return host


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setattr(fleet, "STATE_DIR", tmp_path / "state")
    return tmp_path / "state"


@pytest.fixture
def seeded(state):
    """Host a installed a runtime under /opt/llmfleet; host b (same suite) and c (trixie) did not."""
    release = make_host("a").dir / "upper/opt/llmfleet/releases/r1"
    release.mkdir(parents=True)
    (release / "python").write_text("interpreter")
    (release / "python").chmod(0o755)
    (release.parent.parent / "current").symlink_to(release.relative_to(release.parent.parent))
    make_host("b")
    make_host("c", suite="trixie")
    return state


@pytest.fixture
def machine(monkeypatch):
    """What add_layer does to the machine (stop, mount, umount, boot, login), in order, instead of doing it."""
    calls: list[tuple] = []
    real_run = fleet.run

    def run(argv, check=True):
        if argv[0] not in ("mount", "umount"):
            return real_run(argv, check=check)
        calls.append(("run", argv))
        return fleet.subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(fleet, "run", run)
    monkeypatch.setattr(fleet, "base_root", lambda suite: Path(f"/roots/{suite}"))
    monkeypatch.setattr(
        fleet, "stop_processes", lambda under, hosts: calls.append(("stop", [h.name for h in hosts]))
    )
    monkeypatch.setattr(fleet, "mounts_under", lambda path: [str(path / "merged")])
    monkeypatch.setattr(
        fleet, "boot", lambda host: calls.append(("boot", list(host.layers))) or fleet.save_host(host)
    )
    monkeypatch.setattr(fleet, "wait_for_login", lambda host: calls.append(("login", host.name)))
    return calls


# ---- overlay options ----------------------------------------------------------------------------
def test_the_overlay_lists_layers_topmost_first_above_the_base_root():
    options = fleet.overlay_options([Path("/l/new"), Path("/l/old"), Path("/roots/bookworm")], Path("/h/upper"),
                                    Path("/h/work"))  # fmt: skip
    assert options == "lowerdir=/l/new:/l/old:/roots/bookworm,upperdir=/h/upper,workdir=/h/work"


def test_a_host_without_layers_mounts_its_base_root_alone(state, machine):
    host = make_host("a")
    fleet.mount_root(host, Path("/roots/bookworm"))
    (_, argv) = machine[0]
    assert argv[-3:] == [
        "-o",
        f"lowerdir=/roots/bookworm,upperdir={host.dir / 'upper'},workdir={host.dir / 'work'}",
        str(host.merged),
    ]


@pytest.mark.parametrize("bad", ["/l/a:b", "/l/a,b"])
def test_a_layer_path_the_mount_options_cannot_carry_is_refused_naming_it(bad):
    with pytest.raises(SystemExit, match=f"overlay layer {bad}: a path with ':' or ','"):
        fleet.overlay_options([Path(bad), Path("/roots/bookworm")], Path("/h/upper"), Path("/h/work"))


# ---- snapshot -----------------------------------------------------------------------------------
def test_a_snapshot_links_the_hosts_own_files_and_records_where_they_come_from(seeded):
    layer = fleet.snapshot("f", "a", "/opt/llmfleet")
    assert layer == seeded / "f/layers/a-opt-llmfleet"
    own = seeded / "f/hosts/a/upper/opt/llmfleet/releases/r1/python"
    linked = layer / "root/opt/llmfleet/releases/r1/python"
    assert linked.stat().st_ino == own.stat().st_ino
    assert linked.stat().st_mode & 0o777 == 0o755
    assert (layer / "root/opt/llmfleet/current").readlink() == Path("releases/r1")
    assert json.loads((layer / "layer.json").read_text()) == {
        "host": "a",
        "suite": "bookworm",
        "path": "/opt/llmfleet",
    }


def test_the_snapshot_host_deleting_its_files_leaves_the_layer_whole(seeded):
    layer = fleet.snapshot("f", "a", "/opt/llmfleet")
    own = seeded / "f/hosts/a/upper/opt/llmfleet/releases/r1/python"
    own.unlink()  # what pruning the release on host a does to its upper directory
    assert (layer / "root/opt/llmfleet/releases/r1/python").read_text() == "interpreter"


def test_a_snapshot_of_what_the_host_did_not_write_is_refused_naming_host_and_path(seeded):
    with pytest.raises(
        SystemExit, match=r"fleet f, host b: nothing of its own at /opt/llmfleet \(no directory "
    ):
        fleet.snapshot("f", "b", "/opt/llmfleet")


@pytest.mark.parametrize("path", ["opt/llmfleet", "/", "/opt/../etc"])
def test_a_snapshot_path_must_be_absolute_and_below_root(seeded, path):
    with pytest.raises(
        SystemExit, match=f"fleet f, host a: snapshot path '{path}' is not an absolute path below /"
    ):
        fleet.snapshot("f", "a", path)


def test_a_layer_is_never_made_twice(seeded):
    fleet.snapshot("f", "a", "/opt/llmfleet")
    with pytest.raises(SystemExit, match="a-opt-llmfleet exists already"):
        fleet.snapshot("f", "a", "/opt/llmfleet")


# ---- add-layer ----------------------------------------------------------------------------------
def test_add_layer_stops_the_host_then_mounts_the_layer_above_its_others_and_boots_it(seeded, machine):
    older = seeded / "f/layers/older/root"
    fleet.save_host(fleet.Host(**{**vars(fleet.fleet_host("f", "b")), "layers": [str(older)]}))
    layer = fleet.snapshot("f", "a", "/opt/llmfleet")
    fleet.add_layer("f", "b", layer)
    host_dir = seeded / "f/hosts/b"
    assert machine == [
        ("stop", ["b"]),
        ("run", ["umount", str(host_dir / "merged")]),
        ("run", ["mount", "-t", "overlay", "overlay", "-o",
                 f"lowerdir={layer / 'root'}:{older}:/roots/bookworm,upperdir={host_dir / 'upper'},"
                 f"workdir={host_dir / 'work'}", str(host_dir / "merged")]),
        ("boot", [str(layer / "root"), str(older)]),
        ("login", "b"),
    ]  # fmt: skip
    assert fleet.fleet_host("f", "b").layers == [str(layer / "root"), str(older)]


def test_a_layer_the_host_has_already_is_not_added_again(seeded, machine):
    layer = fleet.snapshot("f", "a", "/opt/llmfleet")
    fleet.add_layer("f", "b", layer)
    machine.clear()
    fleet.add_layer("f", "b", layer)
    assert machine == []


def test_a_failed_mount_boots_the_host_as_it_was_and_says_so(seeded, machine, monkeypatch):
    layer = fleet.snapshot("f", "a", "/opt/llmfleet")
    recorded = fleet.run

    def mount_fails_with_the_layer(argv, check=True):
        if argv[0] == "mount" and "a-opt-llmfleet" in argv[5]:
            machine.append(("run", argv))
            raise fleet.subprocess.CalledProcessError(32, argv, "", "overlay: bad lowerdir")
        return recorded(argv, check=check)

    monkeypatch.setattr(fleet, "run", mount_fails_with_the_layer)
    with pytest.raises(
        SystemExit, match=r"fleet f, host b: mounting layer .* failed, booted without it: overlay: bad"
    ):
        fleet.add_layer("f", "b", layer)
    assert machine[-3][1][5].startswith("lowerdir=/roots/bookworm,")
    assert machine[-2:] == [("boot", []), ("login", "b")]
    assert fleet.fleet_host("f", "b").layers == []


def test_a_layer_that_does_not_exist_is_refused_naming_it(seeded, machine):
    with pytest.raises(SystemExit, match=f"fleet f, host b: layer {seeded}/nowhere does not exist"):
        fleet.add_layer("f", "b", seeded / "nowhere")
    assert machine == []


def test_a_directory_that_is_no_snapshot_is_refused(seeded, machine):
    (seeded / "plain").mkdir()
    with pytest.raises(SystemExit, match=f"fleet f, host b: {seeded}/plain is not a layer"):
        fleet.add_layer("f", "b", seeded / "plain")


def test_a_layer_of_another_suite_is_refused_naming_both(seeded, machine):
    layer = fleet.snapshot("f", "a", "/opt/llmfleet")
    with pytest.raises(
        SystemExit, match=r"host c: layer .* comes from host a running bookworm; host c runs trixie"
    ):
        fleet.add_layer("f", "c", layer)
    assert machine == []


def test_a_host_is_not_given_its_own_snapshot(seeded, machine):
    layer = fleet.snapshot("f", "a", "/opt/llmfleet")
    with pytest.raises(SystemExit, match=r"host a: layer .* is the host's own files already"):
        fleet.add_layer("f", "a", layer)


def test_an_unknown_host_is_refused_with_the_fleets_hosts(seeded, machine):
    with pytest.raises(SystemExit, match="fleet f: no host d; its hosts: a, b, c"):
        fleet.add_layer("f", "d", seeded / "f/layers/x")


def test_an_unknown_fleet_is_refused(seeded, machine):
    with pytest.raises(SystemExit, match=f"fleet g: not found in {seeded}"):
        fleet.add_layer("g", "b", seeded / "f/layers/x")
    with pytest.raises(SystemExit, match=f"fleet g: not found in {seeded}"):
        fleet.snapshot("g", "a", "/opt/llmfleet")


def test_host_state_written_before_layers_existed_loads_without_layers(state):
    host = make_host("a")
    old = json.loads((host.dir / "host.json").read_text())
    del old["layers"]
    (host.dir / "host.json").write_text(json.dumps(old))
    assert fleet.fleet_host("f", "a").layers == []
