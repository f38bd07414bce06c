"""The GPU capture sets (tests/fixtures/gpu-sets/) and tests/standins/gpu_set.py, which binds them to a driver
version and turns them into the boards' PCI trees."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from ansible_collections.llmfleet.serve.plugins.module_utils import pci
from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_live import collect_live
from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_merge import facts_from_texts
from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_schema import GpuFacts

REPO = Path(__file__).resolve().parents[2]
SETS = REPO / "tests" / "fixtures" / "gpu-sets"
FAKE = REPO / "tests" / "fakes" / "nvidia-smi"
sys.path.insert(0, str(REPO / "tests" / "standins"))
import build_apt_repo  # noqa: E402
import gpu_set  # noqa: E402

#: what gpu_facts must find in each set: (count, name, MiB, compute capability, interconnect, nvswitch,
#: GPU PCI device id, NVSwitches on the bus, driver, CUDA)
EXPECTED = {
    "hgx-h100-8": (
        8,
        "NVIDIA H100 80GB HBM3",
        81559,
        "9.0",
        "nvlink",
        True,
        "0x2330",
        4,
        "565.57.01",
        "12.7",
    ),
    "hgx-a100-4": (
        4,
        "NVIDIA A100-SXM4-80GB",
        81920,
        "8.0",
        "nvlink",
        False,
        "0x20b2",
        0,
        "555.42.02",
        "12.5",
    ),
    "rtxpro6000-4": (
        4,
        "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition",
        97887,
        "12.0",
        "pcie",
        False,
        "0x2bb4",
        0,
        "590.44.01",
        "13.1",
    ),
}


def set_texts(directory: Path) -> list[str]:
    return list(gpu_set.read_set(directory).values())


def fake_runner(directory: Path):
    """``run(argv)`` for collect_live, answered by the fake nvidia-smi replaying ``directory``."""
    env = {**os.environ, "LLMFLEET_FAKE_GPU_DIR": str(directory)}

    def run(argv: list[str]) -> tuple[int, str, str]:
        done = subprocess.run([str(FAKE), *argv[1:]], capture_output=True, text=True, env=env, check=False)
        return done.returncode, done.stdout, done.stderr

    return run


def check_facts(facts: GpuFacts, board: str, driver: str, cuda: str) -> None:
    count, name, memory, capability, interconnect, nvswitch, *_ = EXPECTED[board]
    assert facts.count == count
    assert {g.name for g in facts.gpus} == {name}
    assert {g.memory_total_mib for g in facts.gpus} == {memory}
    assert {(g.compute_capability, g.compute_capability_source) for g in facts.gpus} == {
        (capability, "nvidia-smi")
    }
    uuids = [g.uuid for g in facts.gpus]
    assert all(u.startswith("GPU-") for u in uuids) and len(set(uuids)) == count
    assert (facts.interconnect, facts.nvswitch) == (interconnect, nvswitch)
    assert (facts.driver_version, facts.cuda_version) == (driver, cuda)
    assert not facts.warnings


def test_every_set_is_known_and_documented():
    assert sorted(p.name for p in SETS.iterdir() if p.is_dir()) == sorted(EXPECTED)
    for board in EXPECTED:
        names = {p.name for p in (SETS / board).iterdir()}
        assert {"q-x.xml", "query-gpu.csv", "topo.txt", "L.txt", "pci.json", "SOURCES.md"} <= names, board


@pytest.mark.parametrize("board", sorted(EXPECTED))
def test_all_files_of_a_set_agree(board):
    """Every capture of the set read together: sources that disagree (count, UUID, bus id, driver) fail."""
    *_, driver, cuda = EXPECTED[board]
    check_facts(facts_from_texts(set_texts(SETS / board)), board, driver, cuda)


@pytest.mark.parametrize("board", sorted(EXPECTED))
def test_the_fake_answers_what_gpu_facts_asks_a_live_host(board):
    """-q -x, --query-gpu=index,uuid,...,compute_cap and topo -m, as gpu_facts runs them on a host."""
    *_, driver, cuda = EXPECTED[board]
    facts = collect_live(fake_runner(SETS / board), "nvidia-smi")
    assert facts.source == ["xml", "csv", "topo"]
    check_facts(facts, board, driver, cuda)


@pytest.mark.parametrize("board", sorted(EXPECTED))
@pytest.mark.parametrize("branch", sorted(build_apt_repo.BRANCHES))
def test_bound_set_reports_the_loaded_driver(tmp_path, board, branch):
    driver, cuda = build_apt_repo.BRANCHES[branch], build_apt_repo.CUDA_VERSIONS[branch]
    bound = tmp_path / "bound"
    assert gpu_set.main(["bind", str(SETS / board), str(bound), "--driver", driver, "--cuda", cuda]) == 0
    check_facts(collect_live(fake_runner(bound), "nvidia-smi"), board, driver, cuda)
    check_facts(facts_from_texts(set_texts(bound)), board, driver, cuda)
    if (SETS / board / "table.txt").exists():  # the table's columns stay aligned
        widths = [len(line) for line in (SETS / board / "table.txt").read_text().splitlines()]
        assert [len(line) for line in (bound / "table.txt").read_text().splitlines()] == widths


def test_cuda_of_the_branches_the_gpu_hosts_need():
    """The CUDA 13 build of vLLM needs driver 580 or newer, which reports CUDA 13.0."""
    assert build_apt_repo.BRANCHES["580"] == "580.95.05"
    assert build_apt_repo.CUDA_VERSIONS == {"570": "12.8", "580": "13.0"}


def test_binding_keeps_table_columns():
    table = "| NVIDIA-SMI 565.57.01              Driver Version: 565.57.01      CUDA Version: 12.7     |\n"
    xml = "<nvidia_smi_log><driver_version>565.57.01</driver_version><cuda_version>12.7</cuda_version></nvidia_smi_log>"
    bound = gpu_set.bind({"q-x.xml": xml, "table.txt": table}, "570.172.08", "12.8")
    assert bound["table.txt"] == (
        "| NVIDIA-SMI 570.172.08             Driver Version: 570.172.08     CUDA Version: 12.8     |\n"
    )
    assert bound["q-x.xml"] == xml.replace("565.57.01", "570.172.08").replace("12.7", "12.8")


def test_binding_leaves_longer_versions_alone():
    xml = "<nvidia_smi_log><driver_version>565.57.01</driver_version><cuda_version>12.7</cuda_version><x>565.57.011</x></nvidia_smi_log>"
    assert "<x>565.57.011</x>" in gpu_set.bind({"q-x.xml": xml}, "580.95.05", "13.0")["q-x.xml"]


@pytest.mark.parametrize(
    ("driver", "cuda", "message"),
    [("580", "13.0", "driver version '580'"), ("580.95.05", "thirteen", "CUDA version 'thirteen'")],
)
def test_binding_refuses_what_is_not_a_version(driver, cuda, message):
    with pytest.raises(gpu_set.SetError, match=message):
        gpu_set.bind(gpu_set.read_set(SETS / "hgx-h100-8"), driver, cuda)


def test_a_q_x_xml_that_is_not_one_is_refused():
    with pytest.raises(gpu_set.SetError, match="no <nvidia_smi_log> element"):
        gpu_set.bind({"q-x.xml": "NVIDIA-SMI has failed"}, "580.95.05", "13.0")


def test_a_set_without_versions_is_refused():
    with pytest.raises(
        gpu_set.SetError, match="driver_version '' and cuda_version 'N/A' must both be versions"
    ):
        gpu_set.bind(
            {"q-x.xml": "<nvidia_smi_log><cuda_version>N/A</cuda_version></nvidia_smi_log>"}, "1.2", "3.4"
        )


def test_a_set_without_q_x_xml_is_refused(tmp_path):
    shutil.copyfile(SETS / "hgx-h100-8" / "query-gpu.csv", tmp_path / "query-gpu.csv")
    with pytest.raises(gpu_set.SetError, match=r"no q-x\.xml"):
        gpu_set.read_set(tmp_path)
    with pytest.raises(gpu_set.SetError, match="no such capture set directory"):
        gpu_set.read_set(tmp_path / "missing")


def test_cli_reports_a_bad_set(tmp_path, capsys):
    assert gpu_set.main(["sysfs", str(tmp_path), str(tmp_path / "out.tar")]) == 2
    assert (
        capsys.readouterr().err
        == f"gpu_set: {tmp_path}: no q-x.xml (nvidia-smi -q -x); every capture set needs one\n"
    )
    assert not (tmp_path / "out.tar").exists()


@pytest.mark.parametrize("branch", sorted(build_apt_repo.BRANCHES))
def test_kernel_module_packages_bind_the_set_to_their_versions(branch):
    version, cuda = build_apt_repo.BRANCHES[branch], build_apt_repo.CUDA_VERSIONS[branch]
    for open_modules in (True, False):
        deb = build_apt_repo.kernel_module_deb(version, cuda, "amd64", open_modules)
        assert deb.files["/usr/lib/llmfleet-standin/gpu-set"] == (
            gpu_set.__loader__.get_data(gpu_set.__file__).decode(),
            0o755,
        )
        load, mode = deb.files["/usr/lib/llmfleet-standin/load-module"]
        assert mode == 0o755
        assert (
            f"gpu-set bind /etc/llmfleet-standin/gpus /etc/llmfleet-fake-gpu \\\n  --driver {version} --cuda {cuda}\n"
            in load
        )


def tar_devices(data: bytes) -> list[pci.PciDevice]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
        files: dict[str, dict[str, str]] = {}
        for name in names:
            _, _, _, address, field = name.split("/")
            files.setdefault(address, {})[field] = tar.extractfile(name).read().decode()
    return [pci.parse_device(address, values) for address, values in files.items()]


@pytest.mark.parametrize("board", sorted(EXPECTED))
def test_pci_tree_of_a_set_matches_its_captures(board):
    count, *_, device, switches, _driver, _cuda = EXPECTED[board]
    summary = pci.summarize(tar_devices(gpu_set.sysfs_tar(gpu_set.pci_devices(SETS / board))))
    assert summary["nvidia_gpu_count"] == count
    assert {g["device"] for g in summary["nvidia_gpus"]} == {device}
    assert summary["nvswitch_count"] == switches
    facts = facts_from_texts(set_texts(SETS / board))
    assert sorted(g["address"] for g in summary["nvidia_gpus"]) == sorted(
        g.pci_bus_id.lower()[4:] for g in facts.gpus
    )


def test_pci_class_comes_from_the_capture():
    devices = gpu_set.pci_devices(SETS / "rtxpro6000-4")
    assert devices["0000:61:00.0"] == ("0x10de", "0x2bb4", "0x030000")  # VGA: the card has display outputs
    assert gpu_set.pci_devices(SETS / "hgx-h100-8")["0000:18:00.0"] == ("0x10de", "0x2330", "0x030200")


def copy_set(tmp_path: Path, board: str) -> Path:
    target = tmp_path / board
    shutil.copytree(SETS / board, target)
    return target


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("q-x.xml", "<pci_device_id>233010DE</pci_device_id>", ""),
            "needs <pci><pci_bus_id> and <pci_device_id>",
        ),
        (("q-x.xml", "233010DE", "23301002"), "vendor 1002 of pci_device_id 23301002 is not NVIDIA's 10DE"),
        (("q-x.xml", "</nvidia_smi_log>", ""), "not well-formed XML"),
        (("pci.json", '"devices"', '"device_list"'), 'expected {"devices"'),
        (("pci.json", '"0x22a3"', '"switch"'), "'switch' is not a hexadecimal number"),
        (("pci.json", '"0000:05:00.0"', '"0000:18:00.0"'), "0000:18:00.0 is a GPU of q-x.xml already"),
    ],
)
def test_pci_tree_refuses_a_broken_set(tmp_path, edit, message):
    directory = copy_set(tmp_path, "hgx-h100-8")
    name, old, new = edit
    path = directory / name
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    with pytest.raises(gpu_set.SetError, match=message.replace("(", r"\(").replace("{", r"\{")):
        gpu_set.pci_devices(directory)


def test_pci_tree_needs_a_gpu(tmp_path):
    (tmp_path / "q-x.xml").write_text("<nvidia_smi_log><attached_gpus>0</attached_gpus></nvidia_smi_log>")
    with pytest.raises(gpu_set.SetError, match="no <gpu> element"):
        gpu_set.pci_devices(tmp_path)


def test_a_set_without_pci_json_has_only_its_gpus(tmp_path):
    directory = copy_set(tmp_path, "hgx-a100-4")
    (directory / "pci.json").unlink()
    assert set(gpu_set.pci_devices(directory)) == {
        "0000:68:00.0",
        "0000:9e:00.0",
        "0000:c2:00.0",
        "0000:d4:00.0",
    }
