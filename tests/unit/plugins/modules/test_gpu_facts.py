"""Unit tests for the gpu_facts module: captured files, live hosts (mocked and the fake nvidia-smi), errors."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from ansible.module_utils import _internal as module_utils_internal
from ansible.module_utils import basic
from ansible.module_utils.common import warnings as ansible_warnings

from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_merge import facts_from_texts
from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_schema import (
    CAPABILITY_SOURCES,
    INTERCONNECTS,
    MIG_MODES,
    empty_facts,
)
from ansible_collections.llmfleet.serve.plugins.modules import gpu_facts

REPO = Path(__file__).resolve().parents[4]
FIXTURES = REPO / "tests" / "fixtures" / "nvidia-smi"
FAKE = REPO / "tests" / "fakes" / "nvidia-smi"
SMI = "/usr/bin/nvidia-smi"
QUERY = ["--query-gpu=index,uuid,name,pci.bus_id,memory.total,compute_cap", "--format=csv,noheader,nounits"]
QUERY_LEGACY = ["--query-gpu=index,uuid,name,pci.bus_id,memory.total", "--format=csv,noheader,nounits"]


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """AnsibleModule keeps warnings in a process-wide list; start every test without any."""
    monkeypatch.setattr(ansible_warnings, "_global_warnings", {})
    # Once any controller code is imported (other tests import ansible.errors), warnings go to the
    # controller's display instead of the module result: run as a module would on a host.
    monkeypatch.setattr(module_utils_internal, "is_controller", False)


class FakeRunner:
    """Stands in for AnsibleModule.run_command: answers by argv, records the calls."""

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str, str]]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, args, **kwargs):
        assert isinstance(args, list), "run_command must get an argv list"
        self.calls.append(args)
        return self.answers.get(tuple(args), (2, "Invalid combination of input arguments.", ""))


@pytest.fixture
def live(monkeypatch):
    """Install a FakeRunner and a found nvidia-smi; returns a function to set the answers."""

    def install(answers: dict[tuple[str, ...], tuple[int, str, str]]) -> FakeRunner:
        runner = FakeRunner(answers)
        monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda module, args, **kw: runner(args, **kw))
        monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda module, name, **kw: SMI)
        return runner

    return install


# --------------------------------------------------------------------------------------------
# Documentation
# --------------------------------------------------------------------------------------------


def test_argument_spec_matches_documentation(documented_spec):
    documented_spec(gpu_facts)
    assert yaml.safe_load(gpu_facts.EXAMPLES)


def test_return_samples_are_real_results_of_the_fixtures():
    facts_doc = yaml.safe_load(gpu_facts.RETURN)["ansible_facts"]["contains"]["llmfleet_gpu"]["contains"]
    h100 = facts_from_texts([fixture("h100-80gb-hbm3x1_query-gpu-wide_nvidia-gpu-exporter.csv")]).as_dict()
    assert facts_doc["gpus"]["sample"] == h100["gpus"]
    h200 = facts_from_texts(
        [
            fixture("h200x1-mig_table_nvidia-gpu-exporter.txt"),
            fixture("h200x1-mig_L_nvidia-gpu-exporter.txt"),
        ]
    ).as_dict()
    assert facts_doc["mig_devices"]["sample"] == [h200["mig_devices"][1]]
    assert facts_doc["driver_version"]["sample"] == h200["driver_version"]
    assert facts_doc["cuda_version"]["sample"] == h200["cuda_version"]
    assert sorted(facts_doc) == sorted(h100)
    assert facts_doc["interconnect"]["choices"] == list(INTERCONNECTS)
    gpu_doc = facts_doc["gpus"]["contains"]
    assert gpu_doc["mig_mode"]["choices"] == list(MIG_MODES)
    assert gpu_doc["compute_capability_source"]["choices"] == list(CAPABILITY_SOURCES)


# --------------------------------------------------------------------------------------------
# src: captured files
# --------------------------------------------------------------------------------------------


def test_src_files_are_merged(tmp_path, run_module):
    paths = []
    for name, target in [
        ("h100-sxm-80gbx8_table_modal-gpu-glossary.txt", "nvidia-smi.out"),
        ("h100-sxm-80gbx8_topo_thunderkittens-issue-167.txt", "capture-2"),
    ]:
        shutil.copyfile(FIXTURES / name, tmp_path / target)
        paths.append(str(tmp_path / target))
    result = run_module(gpu_facts, {"src": paths})
    assert result["changed"] is False
    facts = result["ansible_facts"]["llmfleet_gpu"]
    assert facts["count"] == 8
    assert facts["interconnect"] == "nvlink"
    assert facts["nvswitch"] is True
    assert facts["driver_version"] == "550.90.07"
    assert facts["gpus"][7]["pci_bus_id"] == "00000000:CA:00.0"
    assert facts["source"] == ["table", "topo"]


def test_src_error_capture_fails_with_advice(run_module):
    result = run_module(
        gpu_facts, {"src": [str(FIXTURES / "err_nvml-mismatch-570_tinygrad-ogkm-issue-47.txt")]}
    )
    assert result["failed"] is True
    assert "driver/library version mismatch: reboot or reload the kernel module" in result["msg"]
    assert result["reason"] == "version-mismatch"
    assert result["changed"] is False


def test_src_windows_topo_error_becomes_a_warning(run_module):
    result = run_module(
        gpu_facts,
        {
            "src": [
                str(FIXTURES / "rtx-2080-superx1_table-windows-wddm_nvidia-gpu-exporter.txt"),
                str(FIXTURES / "rtx-2080-superx1_err-topo-usage-windows_nvidia-gpu-exporter.txt"),
            ]
        },
    )
    assert result["ansible_facts"]["llmfleet_gpu"]["count"] == 1
    assert any("rejected the command line" in w for w in result["warnings"])


def test_src_unreadable_file_fails(tmp_path, run_module):
    result = run_module(gpu_facts, {"src": [str(tmp_path / "missing.xml")]})
    assert result["failed"] is True
    assert "cannot read" in result["msg"]


def test_src_runs_nothing(live, run_module):
    runner = live({})
    run_module(gpu_facts, {"src": [str(FIXTURES / "tesla-t4x1_qx-v11_telegraf.xml")]})
    assert runner.calls == []


# --------------------------------------------------------------------------------------------
# Live host with a mocked run_command
# --------------------------------------------------------------------------------------------


def test_live_host_runs_three_read_only_commands(live, run_module):
    runner = live(
        {
            (SMI, "-q", "-x"): (0, fixture("rtx-a5000x2_qx-v13_telegraf.xml"), ""),
            (SMI, *QUERY): (
                0,
                "0, GPU-12345678-aaaa-bbbb-cccc-0123456789ab, NVIDIA RTX A5000, 00000000:81:00.0, 24564, 8.6\n"
                "1, GPU-12345678-aaaa-bbbb-cccc-0123456789cd, NVIDIA RTX A5000, 00000000:C1:00.0, 24564, 8.6\n",
                "",
            ),
            (SMI, "topo", "-m"): (
                0,
                "\tGPU0\tGPU1\tCPU Affinity\nGPU0\t X \tNV4\t0-15\nGPU1\tNV4\t X \t0-15\n",
                "",
            ),
        }
    )
    result = run_module(gpu_facts, {"_ansible_check_mode": True})
    assert runner.calls == [[SMI, "-q", "-x"], [SMI, *QUERY], [SMI, "topo", "-m"]]
    facts = result["ansible_facts"]["llmfleet_gpu"]
    assert result["changed"] is False
    assert facts["count"] == 2
    assert facts["gpus"][1]["compute_capability"] == "8.6"
    assert facts["gpus"][1]["compute_capability_source"] == "nvidia-smi"
    assert (facts["interconnect"], facts["nvswitch"]) == ("nvlink", False)
    assert facts["source"] == ["xml", "csv", "topo"]
    assert "warnings" not in result


def test_live_host_retries_the_query_without_compute_cap(live, run_module):
    runner = live(
        {
            (SMI, "-q", "-x"): (0, fixture("tesla-t4x1_qx-v11_telegraf.xml"), ""),
            (SMI, *QUERY): (2, 'Field "compute_cap" is not a valid field to query.\n', ""),
            (SMI, *QUERY_LEGACY): (
                0,
                "0, GPU-d37e67a5-91dd-3774-a5cb-99096249601a, Tesla T4, 00000000:00:1E.0, 15360\n",
                "",
            ),
            (SMI, "topo", "-m"): (0, "\tGPU0\tCPU Affinity\tNUMA Affinity\nGPU0\t X \t0-7\tN/A\n", ""),
        }
    )
    result = run_module(gpu_facts, {})
    assert [SMI, *QUERY_LEGACY] in runner.calls
    gpu = result["ansible_facts"]["llmfleet_gpu"]["gpus"][0]
    assert (gpu["compute_capability"], gpu["compute_capability_source"]) == ("7.5", "name-table")
    assert "warnings" not in result


def test_live_host_without_query_and_topo_still_succeeds(live, run_module):
    live(
        {
            (SMI, "-q", "-x"): (0, fixture("rtx-2080x2_qx-v13_telegraf.xml"), ""),
            (SMI, "topo", "-m"): (
                255,
                fixture("rtx-2080-superx1_err-topo-usage-windows_nvidia-gpu-exporter.txt"),
                "",
            ),
        }
    )
    result = run_module(gpu_facts, {})
    facts = result["ansible_facts"]["llmfleet_gpu"]
    assert facts["count"] == 2
    assert facts["interconnect"] == "unknown"
    assert facts["source"] == ["xml"]
    assert any("interconnect is unknown" in w for w in result["warnings"])
    assert any("--query-gpu" in w for w in result["warnings"])


def test_live_output_with_nonzero_exit_still_counts(live, run_module):
    xml = fixture("tesla-p100-pcie-16gbx1_qx-v11_netdata.xml")
    live(
        {
            (SMI, "-q", "-x"): (14, xml, "WARNING: infoROM is corrupted at gpu 0000:00:04.0\n"),
            (SMI, "topo", "-m"): (0, "\tGPU0\tCPU Affinity\nGPU0\t X \t0-3\n", ""),
        }
    )
    result = run_module(gpu_facts, {})
    assert result["ansible_facts"]["llmfleet_gpu"]["gpus"][0]["memory_total_mib"] == 16384
    assert any("infoROM is corrupted" in w for w in result["warnings"])


@pytest.mark.parametrize(
    ("fixture_name", "rc", "fragment", "reason"),
    [
        (
            "err_couldnt-communicate_shine-cluster-issue-50.txt",
            9,
            "the NVIDIA driver is not loaded",
            "driver-not-loaded",
        ),
        ("err_no-devices-found_open-gpu-kernel-modules-issue-862.txt", 6, "no devices found", "no-devices"),
        (
            "err_libnvidia-ml-not-found_tkestack-gpu-manager-issue-101.txt",
            12,
            "libnvidia-ml.so not found",
            None,
        ),
        (
            "err_device-handle-unknown-error_xxd3vin-workspace-issue-19.txt",
            255,
            "GPU 0000:0B:00.0",
            "device-handle",
        ),
    ],
)
def test_live_error_fails_with_the_helpful_message(live, run_module, fixture_name, rc, fragment, reason):
    runner = live({(SMI, "-q", "-x"): (rc, fixture(fixture_name), "")})
    result = run_module(gpu_facts, {})
    assert result["failed"] is True
    assert fragment in result["msg"]
    assert result["reason"] == (reason or "nvml-library-missing")
    assert runner.calls == [[SMI, "-q", "-x"]]


def test_live_unknown_failure_names_the_command_and_exit_code(live, run_module):
    live({(SMI, "-q", "-x"): (255, "", "Segmentation fault\n")})
    result = run_module(gpu_facts, {})
    assert result["failed"] is True
    assert "`nvidia-smi -q -x` failed with exit code 255: Segmentation fault" in result["msg"]


def test_host_without_nvidia_smi_is_a_cpu_host(monkeypatch, run_module):
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, **kw: None)
    runner = FakeRunner({})
    monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda module, args, **kw: runner(args, **kw))
    result = run_module(gpu_facts, {})
    assert result["changed"] is False
    assert result["ansible_facts"]["llmfleet_gpu"] == empty_facts().as_dict()
    assert result["ansible_facts"]["llmfleet_gpu"]["count"] == 0
    assert runner.calls == []


def test_missing_nvidia_smi_path_fails(tmp_path, run_module):
    result = run_module(gpu_facts, {"nvidia_smi_path": str(tmp_path / "nvidia-smi")})
    assert result["failed"] is True
    assert "is not an executable file" in result["msg"]


# --------------------------------------------------------------------------------------------
# use_nvml
# --------------------------------------------------------------------------------------------


class MiniNvml:
    """A one-GPU pynvml stand-in (the full fake lives in the module_utils tests)."""

    NVML_ERROR_LIBRARY_NOT_FOUND = 12

    class NVMLError(Exception):
        def __init__(self, value):
            super().__init__(value)
            self.value = value

    def __init__(self, init_error=None):
        self.init_error = init_error

    def nvmlInit(self):
        if self.init_error:
            raise self.NVMLError(self.init_error)

    def nvmlShutdown(self):
        pass

    def nvmlSystemGetDriverVersion(self):
        return "595.80"

    def nvmlSystemGetCudaDriverVersion(self):
        return 13020

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetName(self, handle):
        return "NVIDIA L40S"

    def nvmlDeviceGetUUID(self, handle):
        return "GPU-11111111-2222-3333-4444-555555555555"

    def nvmlDeviceGetPciInfo(self, handle):
        return SimpleNamespace(busId="00000000:01:00.0")

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(total=46068 * 1048576)

    def nvmlDeviceGetCudaComputeCapability(self, handle):
        return (8, 9)


def test_use_nvml_reads_through_pynvml(monkeypatch, live, run_module):
    runner = live({})
    monkeypatch.setitem(sys.modules, "pynvml", MiniNvml())
    result = run_module(gpu_facts, {"use_nvml": True})
    facts = result["ansible_facts"]["llmfleet_gpu"]
    assert facts["source"] == ["nvml"]
    assert facts["cuda_version"] == "13.2"
    assert facts["gpus"][0]["compute_capability_source"] == "nvml"
    assert facts["gpus"][0]["memory_total_mib"] == 46068
    assert runner.calls == []


@pytest.mark.parametrize("pynvml", [None, MiniNvml(init_error=12)])
def test_use_nvml_falls_back_to_nvidia_smi(monkeypatch, live, run_module, pynvml):
    live(
        {
            (SMI, "-q", "-x"): (0, fixture("tesla-t4x1_qx-v11_telegraf.xml"), ""),
            (SMI, "topo", "-m"): (0, "\tGPU0\tCPU Affinity\nGPU0\t X \t0-3\n", ""),
        }
    )
    monkeypatch.setitem(sys.modules, "pynvml", pynvml)  # None makes the import fail
    result = run_module(gpu_facts, {"use_nvml": True})
    assert result["ansible_facts"]["llmfleet_gpu"]["source"] == ["xml", "topo"]
    assert any(w.startswith("use_nvml:") for w in result["warnings"])


def test_use_nvml_driver_error_fails(monkeypatch, run_module):
    monkeypatch.setitem(sys.modules, "pynvml", MiniNvml(init_error=18))
    MiniNvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
    try:
        result = run_module(gpu_facts, {"use_nvml": True})
    finally:
        del MiniNvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH
    assert result["failed"] is True
    assert result["reason"] == "version-mismatch"


# --------------------------------------------------------------------------------------------
# Live path against the fake nvidia-smi (a real subprocess)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def fake_host(tmp_path, monkeypatch):
    host = tmp_path / "llmfleet-fake-gpu"
    host.mkdir()
    monkeypatch.setenv("LLMFLEET_FAKE_GPU_DIR", str(host))
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, **kw: str(FAKE))
    return host


def test_live_path_against_the_fake_nvidia_smi(fake_host, run_module, h100_exporter_gpu):
    shutil.copyfile(
        FIXTURES / "h100-80gb-hbm3x1_query-gpu-wide_nvidia-gpu-exporter.csv", fake_host / "query-gpu.csv"
    )
    shutil.copyfile(FIXTURES / "h100-80gb-hbm3x1_topo-ansi_nvidia-gpu-exporter.txt", fake_host / "topo.txt")
    result = run_module(gpu_facts, {})
    assert "warnings" not in result
    facts = result["ansible_facts"]["llmfleet_gpu"]
    assert facts["source"] == ["xml", "csv", "topo"]
    assert facts["gpus"] == [h100_exporter_gpu]
    assert facts["interconnect"] == "none"


def test_live_path_against_the_fake_with_an_old_driver(fake_host, run_module):
    shutil.copyfile(FIXTURES / "rtx-a5000x2_qx-v13_telegraf.xml", fake_host / "q-x.xml")
    result = run_module(gpu_facts, {})
    facts = result["ansible_facts"]["llmfleet_gpu"]
    # compute_cap refused -> retried without it; no topo.txt -> interconnect unknown
    assert [g["compute_capability"] for g in facts["gpus"]] == ["8.6", "8.6"]
    assert facts["source"] == ["xml", "csv"]
    assert facts["interconnect"] == "unknown"
    assert any("interconnect is unknown" in w for w in result["warnings"])


def test_live_path_against_the_fake_with_a_driver_error(fake_host, run_module):
    shutil.copyfile(FIXTURES / "err_nvml-mismatch-570_tinygrad-ogkm-issue-47.txt", fake_host / "error.txt")
    result = run_module(gpu_facts, {})
    assert result["failed"] is True
    assert "driver/library version mismatch: reboot or reload the kernel module" in result["msg"]
    assert "570.124" in result["msg"]
