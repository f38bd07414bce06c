"""GPU discovery (module_utils nvidia_smi_*.py and gpu_facts_*.py) against every real capture in tests/fixtures/nvidia-smi."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from ansible_collections.llmfleet.serve.plugins.module_utils.compute_capability_names import (
    compute_capability_from_name,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_live import facts_from_nvml
from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_merge import (
    classify_links,
    facts_from_texts,
    merge_captures,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.nvidia_smi_errors import (
    NvidiaSmiError,
    error_from_output,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.nvidia_smi_parsers import (
    KIND_CSV,
    KIND_TOPO,
    detect_kind,
    parse_capture,
    parse_query_csv,
    parse_topo,
    parse_xml,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.nvidia_smi_values import (
    normalize_bus_id,
    parse_memory_mib,
)

REPO = Path(__file__).resolve().parents[4]
FIXTURES = REPO / "tests" / "fixtures" / "nvidia-smi"
EXPECTED_FILE = Path(__file__).with_name("nvidia_smi_expected.yml")
EXPECTED: dict[str, dict[str, Any]] = yaml.safe_load(EXPECTED_FILE.read_text())["fixtures"]

PER_GPU_KEYS = ("names", "memory_total_mib", "compute_capability", "compute_capability_source", "mig_mode")
GPU_FIELD = {"names": "name"}
TOP_KEYS = ("count", "driver_version", "cuda_version", "interconnect", "nvswitch")


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def fixture_names() -> list[str]:
    return sorted(p.name for p in FIXTURES.iterdir() if p.is_file() and p.name != "SOURCES.md")


def check_facts(facts: dict[str, Any], warnings: list[str], expected: dict[str, Any]) -> None:
    """Compare facts with one expectation entry; raises AssertionError naming the first mismatch."""
    for key in TOP_KEYS:
        if key in expected:
            assert facts[key] == expected[key], f"{key}: {facts[key]!r} != {expected[key]!r}"
    gpus = facts["gpus"]
    for key in PER_GPU_KEYS:
        if key not in expected:
            continue
        want = expected[key]
        got = [gpu[GPU_FIELD.get(key, key)] for gpu in gpus]
        want_list = want if isinstance(want, list) else [want] * len(gpus)
        assert got == want_list, f"{key}: {got!r} != {want_list!r}"
    if "first_uuid" in expected:
        assert gpus[0]["uuid"] == expected["first_uuid"], f"first_uuid: {gpus[0]['uuid']!r}"
    if "first_pci_bus_id" in expected:
        assert gpus[0]["pci_bus_id"] == expected["first_pci_bus_id"], (
            f"first_pci_bus_id: {gpus[0]['pci_bus_id']!r}"
        )
    if "uuids" in expected:
        assert [g["uuid"] for g in gpus] == expected["uuids"]
    if "pci_bus_ids" in expected:
        assert [g["pci_bus_id"] for g in gpus] == expected["pci_bus_ids"]
    migs = facts["mig_devices"]
    if "mig_devices" in expected:
        assert len(migs) == expected["mig_devices"], f"mig_devices: {len(migs)} != {expected['mig_devices']}"
    if "mig_profiles" in expected:
        assert [m["profile"] for m in migs] == expected["mig_profiles"]
    subsets = []
    if "mig" in expected:
        subsets += list(zip(migs, expected["mig"], strict=False))
        assert len(migs) >= len(expected["mig"])
    if "mig_first" in expected:
        subsets.append((migs[0], expected["mig_first"]))
    if "mig_last" in expected:
        subsets.append((migs[-1], expected["mig_last"]))
    for gpu_index, wanted in expected.get("mig_of_gpu", {}).items():
        subsets += list(zip([m for m in migs if m["gpu_index"] == gpu_index], wanted, strict=True))
    for got_dev, want_dev in subsets:
        for key, value in want_dev.items():
            assert got_dev[key] == value, f"MIG device {got_dev}: {key} != {value!r}"
    if "warning" in expected:
        assert any(expected["warning"] in w for w in warnings), (
            f"no warning with {expected['warning']!r}: {warnings}"
        )


# --------------------------------------------------------------------------------------------
# Every fixture, data-driven
# --------------------------------------------------------------------------------------------


def test_every_fixture_has_an_expectation_and_vice_versa():
    names = set(fixture_names())
    assert names, "no fixtures found"
    missing = sorted(names - set(EXPECTED))
    stale = sorted(set(EXPECTED) - names)
    assert not missing, f"fixtures without an expectation in {EXPECTED_FILE.name}: {missing}"
    assert not stale, f"expectations without a fixture: {stale}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture(name):
    expected = EXPECTED[name]
    text = fixture_text(name)
    if "error" in expected:
        assert detect_kind(text) is None
        with pytest.raises(NvidiaSmiError) as info:
            facts_from_texts([text])
        assert expected["error"] in info.value.msg
        assert info.value.reason == expected["reason"]
        return
    assert detect_kind(text) == expected["kind"]
    facts = facts_from_texts([text])
    data = facts.as_dict()
    assert data["source"] == [expected["kind"]]
    assert len(data["gpus"]) == data["count"]
    check_facts(data, facts.warnings, expected)


def test_every_error_message_says_what_to_do():
    for name in fixture_names():
        if "error" not in EXPECTED[name]:
            continue
        err = error_from_output(fixture_text(name))
        assert err is not None, name
        # the advice part plus what nvidia-smi said, so the person sees both
        assert "nvidia-smi said:" in err.msg, name
        assert len(err.msg) > 80, name


@pytest.mark.parametrize(
    ("mutation", "expected_message"),
    [
        ({"count": 3}, "count"),
        ({"names": "NVIDIA H100 PCIe"}, "names"),
        ({"memory_total_mib": 81920}, "memory_total_mib"),
        ({"driver_version": "535.54.03"}, "driver_version"),
        ({"mig": [{"gpu_index": 0, "device_index": 0, "memory_total_mib": 1}]}, "MIG device"),
        ({"warning": "no such warning"}, "no warning"),
    ],
)
def test_checker_detects_wrong_expectations(mutation, expected_message):
    """The data-driven check must be able to fail."""
    name = "h100-80gb-hbm3x1-mig_table_nvidia-gpu-exporter.txt"
    facts = facts_from_texts([fixture_text(name)])
    wrong = dict(EXPECTED[name], **mutation)
    with pytest.raises(AssertionError, match=expected_message):
        check_facts(facts.as_dict(), facts.warnings, wrong)


def test_detection_does_not_depend_on_file_names(tmp_path):
    text = fixture_text("h20x8_topo_sglang-issue-24966.txt")
    renamed = tmp_path / "a100_table_qx.xml"
    renamed.write_text(text)
    assert detect_kind(renamed.read_text()) == KIND_TOPO


# --------------------------------------------------------------------------------------------
# Several sources of one host
# --------------------------------------------------------------------------------------------


def test_h100_list_csv_and_topo_merge_into_one_result(h100_exporter_gpu):
    facts = facts_from_texts(
        [
            fixture_text("h100-80gb-hbm3x1_L_nvidia-gpu-exporter.txt"),
            fixture_text("h100-80gb-hbm3x1_query-gpu-wide_nvidia-gpu-exporter.csv"),
            fixture_text("h100-80gb-hbm3x1_topo-ansi_nvidia-gpu-exporter.txt"),
        ]
    )
    assert facts.as_dict() == {
        "count": 1,
        "gpus": [h100_exporter_gpu],
        "mig_devices": [],
        "driver_version": "590.48.01",
        "cuda_version": None,
        "interconnect": "none",
        "nvswitch": True,
        "source": ["list", "csv", "topo"],
    }


def test_eight_h100_table_and_topo():
    facts = facts_from_texts(
        [
            fixture_text("h100-sxm-80gbx8_table_thamada-nvsim.txt"),
            fixture_text("h100-sxm-80gbx8_topo_thunderkittens-issue-167.txt"),
        ]
    ).as_dict()
    assert facts["count"] == 8
    assert facts["interconnect"] == "nvlink"
    assert facts["nvswitch"] is True
    assert facts["driver_version"] == "565.57.01"
    assert facts["cuda_version"] == "12.7"
    assert [g["memory_total_mib"] for g in facts["gpus"]] == [81559] * 8
    assert [g["pci_bus_id"] for g in facts["gpus"]][-1] == "00000000:DB:00.0"
    assert {g["compute_capability"] for g in facts["gpus"]} == {"9.0"}
    assert facts["source"] == ["table", "topo"]


def test_h200_mig_list_csv_and_table_complete_each_other():
    facts = facts_from_texts(
        [
            fixture_text("h200x1-mig_table_nvidia-gpu-exporter.txt"),
            fixture_text("h200x1-mig_L_nvidia-gpu-exporter.txt"),
            fixture_text("h200x1-mig_query-gpu-wide_nvidia-gpu-exporter.csv"),
        ]
    ).as_dict()
    gpu = facts["gpus"][0]
    assert gpu["compute_capability"] == "9.0"
    assert gpu["compute_capability_source"] == "nvidia-smi"
    assert gpu["memory_total_mib"] == 143771
    assert gpu["mig_mode"] == "Enabled"
    assert facts["cuda_version"] == "13.1"  # only the table has it
    assert facts["interconnect"] == "none"
    # profile and UUID from -L, instance ids and memory from the table
    assert facts["mig_devices"][1] == {
        "gpu_index": 0,
        "device_index": 1,
        "gpu_instance_id": 2,
        "compute_instance_id": 1,
        "profile": "2c.3g.71gb",
        "uuid": "MIG-00000001-0000-0000-0000-000000000001",
        "memory_total_mib": 71424,
    }
    assert [m["profile"] for m in facts["mig_devices"]] == [
        "1c.3g.71gb",
        "2c.3g.71gb",
        "2g.35gb",
        "1g.18gb",
        "1g.18gb",
    ]


def test_xml_and_list_of_a100_mig_merge_by_device_index():
    xml = fixture_text("a100-sxm4-40gbx1-mig_qx-v11_netdata.xml")
    listing = (
        "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-27b94a00-ed54-5c24-b1fd-1054085de32a)\n"
        "  MIG 3g.20gb     Device  0: (UUID: MIG-11111111-2222-3333-4444-555555555555)\n"
        "  MIG 3g.20gb     Device  1: (UUID: MIG-66666666-7777-8888-9999-000000000000)\n"
    )
    facts = facts_from_texts([xml, listing]).as_dict()
    assert facts["mig_devices"][1]["gpu_instance_id"] == 2
    assert facts["mig_devices"][1]["profile"] == "3g.20gb"
    assert facts["mig_devices"][1]["memory_total_mib"] == 19968
    assert facts["mig_devices"][1]["uuid"] == "MIG-66666666-7777-8888-9999-000000000000"


def test_windows_topo_usage_error_is_only_a_warning_next_to_gpu_data():
    facts = facts_from_texts(
        [
            fixture_text("rtx-2080-superx1_table-windows-wddm_nvidia-gpu-exporter.txt"),
            fixture_text("rtx-2080-superx1_err-topo-usage-windows_nvidia-gpu-exporter.txt"),
        ]
    )
    assert facts.count == 1
    assert facts.interconnect == "none"
    assert any("rejected the command line" in w for w in facts.warnings)


def test_full_name_from_another_source_replaces_the_truncated_table_name():
    table = fixture_text("rtx-2080-superx1_table-windows-wddm_nvidia-gpu-exporter.txt")
    listing = "GPU 0: NVIDIA GeForce RTX 2080 SUPER (UUID: GPU-0b6b8c4e-0000-1111-2222-333344445555)\n"
    facts = facts_from_texts([table, listing]).as_dict()
    assert facts["gpus"][0]["name"] == "NVIDIA GeForce RTX 2080 SUPER"
    assert facts["gpus"][0]["uuid"] == "GPU-0b6b8c4e-0000-1111-2222-333344445555"


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["h100-sxm-80gbx8_table_modal-gpu-glossary.txt", "h100x4_topo_nccl-issue-1617.txt"], "GPU counts"),
        (
            ["tesla-t4x1_qx-v11_telegraf.xml", "tesla-t4x1_table-legacy-layout_cloud-native-docs.txt"],
            "driver",
        ),
        (["h200x8_table_tufts-guides.txt", "b200x8_table_modal-gpu-glossary.txt"], "PCI bus ids"),
        (["b200x2_L_dranet.txt", "rtx-a5000x2_qx-v13_telegraf.xml"], "UUIDs"),
    ],
)
def test_sources_from_different_hosts_are_refused(names, message):
    with pytest.raises(NvidiaSmiError, match=message) as info:
        facts_from_texts([fixture_text(n) for n in names])
    assert info.value.reason == "inconsistent"


def test_two_captures_of_one_kind_with_different_counts_are_refused():
    with pytest.raises(NvidiaSmiError, match="GPU counts table=8, table=4"):
        facts_from_texts(
            [
                fixture_text("h100-sxm-80gbx8_table_thamada-nvsim.txt"),
                fixture_text("a100-sxm4-80gbx4_table_thamada-nvsim.txt"),
            ]
        )


def test_different_gpu_indexes_are_refused():
    listing = "GPU 4: NVIDIA B200 (UUID: GPU-aaaaaaaa-0000-0000-0000-000000000004)\n"
    with pytest.raises(NvidiaSmiError, match="GPU indexes"):
        facts_from_texts([listing, fixture_text("h200x1_topo-ansi_nvidia-gpu-exporter.txt")])


def test_bus_id_conflict_is_refused():
    table = fixture_text("h100-sxm-80gbx8_table_thamada-nvsim.txt")
    other = fixture_text("h100-sxm-80gbx8_table_modal-gpu-glossary.txt").replace("550.90.07", "565.57.01")
    with pytest.raises(NvidiaSmiError, match="PCI bus ids"):
        facts_from_texts([table, other])


def test_usage_error_alone_is_raised():
    with pytest.raises(NvidiaSmiError) as info:
        facts_from_texts([fixture_text("rtx-2080-superx1_err-topo-usage-windows_nvidia-gpu-exporter.txt")])
    assert info.value.reason == "usage"


def test_driver_error_next_to_good_data_is_still_raised():
    with pytest.raises(NvidiaSmiError, match="version mismatch"):
        facts_from_texts(
            [
                fixture_text("tesla-t4x1_qx-v11_telegraf.xml"),
                fixture_text("err_nvml-mismatch-oneline_shine-cluster-issue-30.txt"),
            ]
        )


def test_no_source_gives_a_cpu_host():
    assert facts_from_texts([]).as_dict() == {
        "count": 0,
        "gpus": [],
        "mig_devices": [],
        "driver_version": None,
        "cuda_version": None,
        "interconnect": "none",
        "nvswitch": None,
        "source": [],
    }


# --------------------------------------------------------------------------------------------
# Robustness on variants not in the fixtures
# --------------------------------------------------------------------------------------------


def test_headerless_csv_of_the_module_query():
    text = (
        "0, GPU-aaaaaaaa-1111-2222-3333-444444444444, NVIDIA H100 80GB HBM3, 00000000:18:00.0, 81559, 9.0\n"
        "1, GPU-bbbbbbbb-1111-2222-3333-444444444444, NVIDIA H100 80GB HBM3, 00000000:2A:00.0, 81559, 9.0\n"
    )
    assert detect_kind(text) == KIND_CSV
    facts = facts_from_texts([text]).as_dict()
    assert facts["count"] == 2
    assert facts["gpus"][1]["pci_bus_id"] == "00000000:2A:00.0"
    assert facts["gpus"][1]["compute_capability"] == "9.0"
    legacy = "\n".join(line.rsplit(",", 1)[0] for line in text.splitlines())
    facts = facts_from_texts([legacy]).as_dict()
    assert facts["gpus"][0]["compute_capability_source"] == "name-table"
    assert facts["gpus"][0]["memory_total_mib"] == 81559


def test_headerless_csv_with_explicit_fields():
    capture = parse_query_csv("NVIDIA L4, 23034 MiB\n", fields=["name", "memory.total [MiB]"])
    assert capture.gpus[0].name == "NVIDIA L4"
    assert capture.gpus[0].memory_total_mib == 23034


def test_unknown_headerless_csv_is_refused_with_advice():
    with pytest.raises(NvidiaSmiError, match="no header line"):
        parse_query_csv("NVIDIA L4, 23034\n")


def test_csv_with_nounits_header_and_error_line():
    text = (
        "index, name, memory.total [MiB], compute_cap, mig.mode.current\n"
        "0, NVIDIA A100-SXM4-80GB, 81920, 8.0, [N/A]\n"
        "Unable to determine the device handle for GPU 0000:C2:00.0: Unknown Error\n"
    )
    capture = parse_query_csv(text)
    assert [g.memory_total_mib for g in capture.gpus] == [81920]
    assert capture.gpus[0].mig_mode is None
    assert any("device handle" in w for w in capture.warnings)


def test_xml_with_noise_around_it():
    xml = fixture_text("tesla-t4x1_qx-v11_telegraf.xml")
    facts = facts_from_texts(["WARNING: infoROM is corrupted at gpu 0000:00:1E.0\n" + xml + "\n"])
    assert facts.gpus[0].name == "Tesla T4"
    assert any("infoROM" in w for w in facts.warnings)


@pytest.mark.parametrize(
    ("state", "nvswitch"), [("Completed", True), ("In Progress", True), ("Not Started", True), ("N/A", None)]
)
def test_xml_fabric_state_tells_nvswitch(state, nvswitch):
    xml = fixture_text("a100-sxm4-80gbx4-mig_qx-v12_telegraf.xml")
    assert "<state>N/A</state>" in xml
    facts = facts_from_texts([xml.replace("<state>N/A</state>", f"<state>{state}</state>")])
    assert facts.nvswitch is nvswitch


def test_truncated_xml_is_refused():
    xml = fixture_text("tesla-t4x1_qx-v11_telegraf.xml")
    with pytest.raises(NvidiaSmiError, match="incomplete"):
        parse_xml(xml[: len(xml) // 2])
    broken = xml.replace("<uuid>", "<uuid", 1)
    with pytest.raises(NvidiaSmiError, match="not well-formed"):
        parse_xml(broken)


def test_table_with_crlf_and_old_header_without_cuda():
    text = (
        "+-----------------------------------------------------------------------------+\r\n"
        "| NVIDIA-SMI 384.66                 Driver Version: 384.66                    |\r\n"
        "|-------------------------------+----------------------+----------------------+\r\n"
        "| GPU  Name        Persistence-M| Bus-Id        Disp.A | Volatile Uncorr. ECC |\r\n"
        "| Fan  Temp  Perf  Pwr:Usage/Cap|         Memory-Usage | GPU-Util  Compute M. |\r\n"
        "|===============================+======================+======================|\r\n"
        "|   0  GeForce GTX 1070    Off  | 00000000:01:00.0  On |                  N/A |\r\n"
        "| 27%   35C    P8    10W / 151W |   2028MiB /  8112MiB |      1%      Default |\r\n"
        "+-------------------------------+----------------------+----------------------+\r\n"
    )
    facts = facts_from_texts([text]).as_dict()
    assert facts["driver_version"] == "384.66"
    assert facts["cuda_version"] is None
    assert facts["gpus"][0]["name"] == "GeForce GTX 1070"
    assert facts["gpus"][0]["memory_total_mib"] == 8112
    assert facts["gpus"][0]["mig_mode"] is None


def test_table_excerpt_without_column_headers():
    text = fixture_text("l40sx1_table_nvidia-gpu-exporter.txt")
    lines = [
        ln for ln in text.splitlines() if "Name" not in ln and "Memory-Usage" not in ln and "MIG M." not in ln
    ]
    facts = facts_from_texts(["\n".join(lines)]).as_dict()
    assert [(g["name"], g["memory_total_mib"]) for g in facts["gpus"]] == [("NVIDIA L40S", 46068)]


def test_topo_with_old_mlx_columns_and_partial_nvlink():
    text = (
        "\tGPU0\tGPU1\tGPU2\tGPU3\tmlx5_0\tCPU Affinity\n"
        "GPU0\t X \tNV1\tNV2\tSYS\tPIX\t0-19\n"
        "GPU1\tNV1\t X \tSYS\tNV2\tPIX\t0-19\n"
        "GPU2\tNV2\tSYS\t X \tNV1\tSYS\t20-39\n"
        "GPU3\tSYS\tNV2\tNV1\t X \tSYS\t20-39\n"
        "mlx5_0\tPIX\tPIX\tSYS\tSYS\t X \n"
    )
    capture = parse_topo(text)
    assert capture.links[(0, 2)] == "NV2"
    facts = merge_captures([capture])
    assert (facts.interconnect, facts.nvswitch) == ("nvlink-partial", None)


@pytest.mark.parametrize(
    ("count", "links", "expected"),
    [
        (0, None, ("none", None)),
        (1, {}, ("none", None)),
        (2, None, ("unknown", None)),
        (2, {(0, 1): "NV12", (1, 0): "NV12"}, ("nvlink", False)),
        (2, {(0, 1): "PHB", (1, 0): "PHB"}, ("pcie", False)),
        (3, {(0, 1): "NV18", (0, 2): "NV18", (1, 2): "NV18"}, ("nvlink", True)),
        (3, {(0, 1): "NV4", (0, 2): "SYS", (1, 2): "NV4"}, ("nvlink-partial", None)),
    ],
)
def test_classify_links(count, links, expected):
    assert classify_links(count, links) == expected


@pytest.mark.parametrize(
    ("value", "mib"),
    [
        ("81559 MiB", 81559),
        ("81559", 81559),
        (" 40960 MiB ", 40960),
        ("80 GiB", 81920),
        ("N/A", None),
        ("[N/A]", None),
        ("Not Supported", None),
        ("[Requested functionality has been deprecated]", None),
        ("", None),
        (None, None),
        ("lots", None),
    ],
)
def test_parse_memory_mib(value, mib):
    assert parse_memory_mib(value) == mib


@pytest.mark.parametrize(
    ("value", "bus"),
    [
        ("00000000:1B:00.0", "00000000:1B:00.0"),
        ("0000:0b:00.0", "00000000:0B:00.0"),
        ("00002DF7:00:00.0", "00002DF7:00:00.0"),
        ("   00000000:AD:00.0 Off ", "00000000:AD:00.0"),
        ("N/A", None),
        ("garbage", None),
    ],
)
def test_normalize_bus_id(value, bus):
    assert normalize_bus_id(value) == bus


@pytest.mark.parametrize(
    ("name", "capability"),
    [
        ("NVIDIA H100 80GB HBM3", "9.0"),
        ("NVIDIA H100 PCIe", "9.0"),
        ("NVIDIA H20", "9.0"),
        ("NVIDIA GH200 480GB", "9.0"),
        ("NVIDIA B200", "10.0"),
        ("NVIDIA B300 SXM6 AC", "10.3"),
        ("NVIDIA GeForce RTX 5090", "12.0"),
        ("NVIDIA L40S", "8.9"),
        ("NVIDIA L4", "8.9"),
        ("NVIDIA RTX 6000 Ada Gene...", "8.9"),
        ("NVIDIA A100 80GB PCIe", "8.0"),
        ("NVIDIA A800-SXM4-80GB", "8.0"),
        ("NVIDIA A10", "8.6"),
        ("NVIDIA RTX A6000", "8.6"),
        ("NVIDIA GeForce RTX 2080 ...", "7.5"),
        ("Quadro RTX 8000", "7.5"),
        ("Tesla V100-SXM2-32GB", "7.0"),
        ("Tesla P100-PCIE...", "6.0"),
        ("Tesla P40", "6.1"),
        ("Tesla K80", "3.7"),
        ("NVIDIA GeForce RTX 4", None),
        ("Graphics Device", None),
        ("NVIDIA RTX A2000 12GB", "8.6"),
        ("NVIDIA A2", "8.6"),
        ("Quadro P4000", "6.1"),
        ("Tesla V100S-PCIE-32GB", "7.0"),
        ("NVIDIA RTX PRO 6000 Blac...", "12.0"),
        ("NVIDIA H20-3e", "9.0"),
        ("Quadro T1000", "7.5"),
        ("Tesla M60", "5.2"),
        ("NVIDIA GeForce RTX 3060...", "8.6"),
        ("", None),
        (None, None),
    ],
)
def test_compute_capability_from_name(name, capability):
    assert compute_capability_from_name(name) == capability


def test_text_form_of_query_is_refused_with_advice():
    text = "\n==============NVSMI LOG==============\n\nTimestamp : Mon\nDriver Version : 550.54.14\n"
    with pytest.raises(NvidiaSmiError, match="nvidia-smi -q -x") as info:
        parse_capture(text)
    assert info.value.reason == "query-text"


@pytest.mark.parametrize("text", ["", "\n\n", "hello world\n"])
def test_empty_or_foreign_text_is_refused(text):
    with pytest.raises(NvidiaSmiError) as info:
        parse_capture(text)
    assert info.value.reason in ("empty", "unrecognised")


@pytest.mark.parametrize(
    ("text", "reason", "fragment"),
    [
        ("Failed to initialize NVML: Unknown Error\n", "nvml-init", "(Unknown Error)"),
        ("Failed to initialize NVML: Insufficient Permissions\n", "permission", "root"),
        (
            "Unable to determine the device handle for GPU0000:3B:00.0: GPU is lost.  Reboot\n",
            "gpu-lost",
            "Reboot",
        ),
        ('Field "compute_cap" is not a valid field to query.\n', "usage", 'Field "compute_cap"'),
        ("Failed to initialize NVML: Driver Not Loaded\n", "driver-not-loaded", "not loaded"),
        ("bash: nvidia-smi: command not found\n", "not-installed", "not installed"),
    ],
)
def test_other_known_errors(text, reason, fragment):
    err = error_from_output(text)
    assert err is not None
    assert err.reason == reason
    assert fragment in err.msg


def test_error_from_output_ignores_normal_output():
    assert error_from_output(fixture_text("tesla-t4x1_table-legacy-layout_cloud-native-docs.txt")) is None


# --------------------------------------------------------------------------------------------
# NVML with a fake pynvml
# --------------------------------------------------------------------------------------------


class FakeNvml:
    """The part of nvidia-ml-py's pynvml that facts_from_nvml uses, driven by plain data."""

    NVML_FEATURE_ENABLED = 1
    NVML_NVLINK_MAX_LINKS = 18
    NVML_NVLINK_DEVICE_TYPE_GPU = 0
    NVML_NVLINK_DEVICE_TYPE_SWITCH = 2
    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_ERROR_NOT_FOUND = 6
    NVML_ERROR_DRIVER_NOT_LOADED = 9
    NVML_ERROR_LIBRARY_NOT_FOUND = 12
    NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
    NVML_ERROR_UNKNOWN = 999
    NVML_GPU_FABRIC_STATE_NOT_SUPPORTED = 0
    NVML_GPU_FABRIC_STATE_NOT_STARTED = 1
    NVML_GPU_FABRIC_STATE_IN_PROGRESS = 2
    NVML_GPU_FABRIC_STATE_COMPLETED = 3

    class NVMLError(Exception):
        def __init__(self, value):
            super().__init__(f"NVML error {value}")
            self.value = value

    class c_nvmlGpuFabricInfo_t:  # the pynvml name
        state = 0

    def __init__(self, gpus, driver="550.90.07", cuda=12040, init_error=None, remote_type=True):
        self.gpus = gpus
        self.driver = driver
        self.cuda = cuda
        self.init_error = init_error
        self.shutdown_called = False
        if not remote_type:
            self.nvmlDeviceGetNvLinkRemoteDeviceType = None

    def _fail(self, code=3):
        raise self.NVMLError(code)

    def nvmlInit(self):
        if self.init_error is not None:
            raise self.NVMLError(self.init_error)

    def nvmlShutdown(self):
        self.shutdown_called = True

    def nvmlSystemGetDriverVersion(self):
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self):
        return self.cuda

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("gpu", index)

    def _gpu(self, handle):
        return self.gpus[handle[1]]

    def nvmlDeviceGetName(self, handle):
        return self._gpu(handle)["name"].encode()  # old pynvml returns bytes

    def nvmlDeviceGetUUID(self, handle):
        if handle[0] == "mig":
            return self._gpu(handle)["migs"][handle[2]]["uuid"]
        return self._gpu(handle)["uuid"]

    def nvmlDeviceGetPciInfo(self, handle):
        return SimpleNamespace(busId=self._gpu(handle)["bus"])

    def nvmlDeviceGetMemoryInfo(self, handle):
        if handle[0] == "mig":
            return SimpleNamespace(total=self._gpu(handle)["migs"][handle[2]]["mib"] * 1048576)
        return SimpleNamespace(total=self._gpu(handle)["mib"] * 1048576)

    def nvmlDeviceGetCudaComputeCapability(self, handle):
        return self._gpu(handle)["cc"]

    def nvmlDeviceGetMigMode(self, handle):
        mode = self._gpu(handle).get("mig")
        if mode is None:
            self._fail()
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle):
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle, slot):
        if slot >= len(self._gpu(handle).get("migs", [])):
            self._fail(self.NVML_ERROR_NOT_FOUND)
        return ("mig", handle[1], slot)

    def nvmlDeviceGetGpuInstanceId(self, handle):
        return self._gpu(handle)["migs"][handle[2]]["gi"]

    def nvmlDeviceGetComputeInstanceId(self, handle):
        return self._gpu(handle)["migs"][handle[2]]["ci"]

    def nvmlDeviceGetGpuFabricInfo(self, handle, info):
        state = self._gpu(handle).get("fabric")
        if state is None:
            self._fail()
        info.state = state

    def _link(self, handle, link):
        links = self._gpu(handle).get("links", [])
        if link >= len(links):
            self._fail()
        return links[link]

    def nvmlDeviceGetNvLinkState(self, handle, link):
        self._link(handle, link)
        return 1

    def nvmlDeviceGetNvLinkRemotePciInfo(self, handle, link):
        target = self._link(handle, link)
        bus = "00000000:F0:00.0" if target == "switch" else self.gpus[target]["bus"]
        return SimpleNamespace(busId=bus)

    def nvmlDeviceGetNvLinkRemoteDeviceType(self, handle, link):
        return 2 if self._link(handle, link) == "switch" else 0


def _h100(index, **extra):
    gpu = {
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": f"GPU-{index:08x}-1111-2222-3333-444444444444",
        "bus": f"00000000:{0x18 + index:02X}:00.0",
        "mib": 81559,
        "cc": (9, 0),
        "mig": 0,
        "links": ["switch"] * 18,
    }
    gpu.update(extra)
    return gpu


@pytest.mark.parametrize("remote_type", [True, False])
def test_nvml_eight_gpus_on_nvswitch(remote_type):
    nvml = FakeNvml([_h100(i) for i in range(8)], remote_type=remote_type)
    facts = facts_from_nvml(nvml)
    data = facts.as_dict()
    assert data["count"] == 8
    assert data["interconnect"] == "nvlink"
    assert data["nvswitch"] is True
    assert data["driver_version"] == "550.90.07"
    assert data["cuda_version"] == "12.4"
    assert data["source"] == ["nvml"]
    assert data["gpus"][3] == {
        "index": 3,
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-00000003-1111-2222-3333-444444444444",
        "pci_bus_id": "00000000:1B:00.0",
        "memory_total_mib": 81559,
        "compute_capability": "9.0",
        "compute_capability_source": "nvml",
        "mig_mode": "Disabled",
    }
    assert nvml.shutdown_called


def test_nvml_result_has_the_same_shape_as_nvidia_smi():
    from_nvml = facts_from_nvml(FakeNvml([_h100(0)])).as_dict()
    from_smi = facts_from_texts([fixture_text("tesla-t4x1_qx-v11_telegraf.xml")]).as_dict()
    assert from_nvml.keys() == from_smi.keys()
    assert from_nvml["gpus"][0].keys() == from_smi["gpus"][0].keys()


def test_nvml_bridged_pair_and_pcie_only():
    pair = [
        {
            "name": "NVIDIA RTX A6000",
            "uuid": "GPU-a",
            "bus": "0000:01:00.0",
            "mib": 49140,
            "cc": (8, 6),
            "links": [1] * 4,
        },
        {
            "name": "NVIDIA RTX A6000",
            "uuid": "GPU-b",
            "bus": "0000:02:00.0",
            "mib": 49140,
            "cc": (8, 6),
            "links": [0] * 4,
        },
    ]
    facts = facts_from_nvml(FakeNvml(pair))
    assert (facts.interconnect, facts.nvswitch) == ("nvlink", False)
    assert facts.gpus[1].pci_bus_id == "00000000:02:00.0"
    assert facts.gpus[0].mig_mode is None
    for gpu in pair:
        gpu["links"] = []
    facts = facts_from_nvml(FakeNvml(pair))
    assert (facts.interconnect, facts.nvswitch) == ("pcie", False)


def test_nvml_mig_devices_and_fabric_state():
    migs = [
        {"uuid": "MIG-aaaa", "gi": 1, "ci": 0, "mib": 40448},
        {"uuid": "MIG-bbbb", "gi": 2, "ci": 0, "mib": 40448},
    ]
    nvml = FakeNvml([_h100(0, mig=1, migs=migs, links=[], fabric=3)])
    data = facts_from_nvml(nvml).as_dict()
    assert data["gpus"][0]["mig_mode"] == "Enabled"
    assert data["mig_devices"] == [
        {
            "gpu_index": 0,
            "device_index": 0,
            "gpu_instance_id": 1,
            "compute_instance_id": 0,
            "profile": None,
            "uuid": "MIG-aaaa",
            "memory_total_mib": 40448,
        },
        {
            "gpu_index": 0,
            "device_index": 1,
            "gpu_instance_id": 2,
            "compute_instance_id": 0,
            "profile": None,
            "uuid": "MIG-bbbb",
            "memory_total_mib": 40448,
        },
    ]
    assert data["interconnect"] == "none"
    assert data["nvswitch"] is True  # fabric state "completed"


@pytest.mark.parametrize(
    ("code", "reason", "fragment"),
    [
        (9, "driver-not-loaded", "the NVIDIA driver is not loaded"),
        (18, "version-mismatch", "reboot or reload the kernel module"),
        (12, "nvml-library-missing", "libnvidia-ml.so not found"),
        (999, "nvml-init", "NVML could not be initialised"),
    ],
)
def test_nvml_init_errors(code, reason, fragment):
    with pytest.raises(NvidiaSmiError) as info:
        facts_from_nvml(FakeNvml([_h100(0)], init_error=code))
    assert info.value.reason == reason
    assert fragment in info.value.msg


def test_nvml_without_devices():
    nvml = FakeNvml([])
    with pytest.raises(NvidiaSmiError, match="no devices found"):
        facts_from_nvml(nvml)
    assert nvml.shutdown_called
