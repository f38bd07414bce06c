"""Tests for tests/fakes/nvidia-smi, the capture-replaying stand-in used on test hosts."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_merge import facts_from_texts
from ansible_collections.llmfleet.serve.plugins.module_utils.nvidia_smi_errors import error_from_output
from ansible_collections.llmfleet.serve.plugins.module_utils.nvidia_smi_parsers import (
    QUERY_FIELDS,
    QUERY_FIELDS_LEGACY,
    parse_query_csv,
    parse_topo,
)

REPO = Path(__file__).resolve().parents[2]
FAKE = REPO / "tests" / "fakes" / "nvidia-smi"
FIXTURES = REPO / "tests" / "fixtures" / "nvidia-smi"


def make_host(tmp_path: Path, name: str = "gpu-host", **files: str) -> Path:
    """A capture directory: keyword = target name (q_x -> q-x.xml, ...), value = fixture name or text."""
    names = {
        "q_x": "q-x.xml",
        "query_gpu": "query-gpu.csv",
        "topo": "topo.txt",
        "L": "L.txt",
        "table": "table.txt",
        "error": "error.txt",
        "error_rc": "error.rc",
    }
    host = tmp_path / name
    host.mkdir()
    for key, value in files.items():
        source = FIXTURES / value
        if "\n" not in value and source.is_file():
            shutil.copyfile(source, host / names[key])
        else:
            (host / names[key]).write_text(value)
    return host


def smi(host: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("LLMFLEET_FAKE_GPU_DIR", None)
    if host is not None:
        env["LLMFLEET_FAKE_GPU_DIR"] = str(host)
    return subprocess.run(
        [str(FAKE), *args], capture_output=True, text=True, env=env, timeout=30, check=False
    )


def test_fake_is_an_executable_python3_script():
    assert os.access(FAKE, os.X_OK)
    assert FAKE.read_text().startswith("#!/usr/bin/env python3\n")


def test_replays_captures_verbatim(tmp_path):
    host = make_host(
        tmp_path,
        q_x="rtx-a5000x2_qx-v13_telegraf.xml",
        topo="h20x8_topo_sglang-issue-24966.txt",
        L="b200x2_L_dranet.txt",
        table="h200x8_table_tufts-guides.txt",
    )
    for args, name in [
        (["-q", "-x"], "rtx-a5000x2_qx-v13_telegraf.xml"),
        (["-x", "-q"], "rtx-a5000x2_qx-v13_telegraf.xml"),
        (["topo", "-m"], "h20x8_topo_sglang-issue-24966.txt"),
        (["-L"], "b200x2_L_dranet.txt"),
        ([], "h200x8_table_tufts-guides.txt"),
    ]:
        result = smi(host, *args)
        assert result.returncode == 0, args
        assert result.stdout == (FIXTURES / name).read_text(), args


def test_query_selects_columns_by_header_name(tmp_path):
    host = make_host(tmp_path, query_gpu="h100-80gb-hbm3x1_query-gpu-wide_nvidia-gpu-exporter.csv")
    result = smi(host, "--query-gpu=name,memory.total,compute_cap,index", "--format=csv")
    assert result.returncode == 0
    assert (
        result.stdout
        == "name, memory.total [MiB], compute_cap, index\nNVIDIA H100 80GB HBM3, 81559 MiB, 9.0, 0\n"
    )
    result = smi(host, "--query-gpu=memory.total,mig.mode.current,fan.speed", "--format=csv,noheader,nounits")
    assert result.stdout == "81559, Disabled, [N/A]\n"


def test_query_adds_units_to_a_nounits_capture(tmp_path):
    capture = "index, name, memory.total [MiB]\n0, NVIDIA L4, 23034\n1, NVIDIA L4, 23034\n"
    host = make_host(tmp_path, query_gpu=capture)
    result = smi(host, "--query-gpu", "memory.total,name", "--format", "csv,noheader")
    assert result.stdout == "23034 MiB, NVIDIA L4\n23034 MiB, NVIDIA L4\n"


def test_query_of_the_module_parses_back_to_the_capture(tmp_path):
    host = make_host(tmp_path, query_gpu="l40sx1_query-gpu-wide_nvidia-gpu-exporter.csv")
    argv = [f"--query-gpu={','.join(QUERY_FIELDS)}", "--format=csv,noheader,nounits"]
    result = smi(host, *argv)
    capture = parse_query_csv(result.stdout, fields=QUERY_FIELDS)
    assert [(g.name, g.memory_total_mib, g.compute_capability, g.pci_bus_id) for g in capture.gpus] == [
        ("NVIDIA L40S", 46068, "8.9", "00000000:01:00.0")
    ]


@pytest.mark.parametrize("field", ["bogus", "compute_cap"])
def test_unknown_query_field_is_refused_like_the_real_tool(tmp_path, field):
    # with only q-x.xml, compute_cap is unknown, as with drivers that predate the field
    host = make_host(tmp_path, q_x="tesla-t4x1_qx-v11_telegraf.xml")
    result = smi(host, f"--query-gpu=index,{field}", "--format=csv")
    assert result.returncode == 2
    assert result.stdout == f'Field "{field}" is not a valid field to query.\n'


def test_query_derived_from_xml(tmp_path):
    host = make_host(tmp_path, q_x="tesla-k80x4_qx-v10_openpai.xml")
    result = smi(host, f"--query-gpu={','.join(QUERY_FIELDS_LEGACY)}", "--format=csv,noheader,nounits")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "0, GPU-c3b26f7a-8dcb-619c-fa1b-8029265a4db0, Tesla K80, 00001580:00:00.0, 11441"
    assert lines[3] == "3, GPU-3341aba2-f01d-2c1f-7dd4-e389779faec2, Tesla K80, 0000F8D6:00:00.0, 11441"


def test_list_and_table_derived_from_xml_parse_to_the_same_gpus(tmp_path):
    host = make_host(tmp_path, q_x="rtx-a5000x2_qx-v13_telegraf.xml")
    xml_facts = facts_from_texts([smi(host, "-q", "-x").stdout]).as_dict()
    listing = smi(host, "-L")
    table = smi(host)
    assert listing.returncode == table.returncode == 0
    merged = facts_from_texts([smi(host, "-q", "-x").stdout, listing.stdout, table.stdout]).as_dict()
    assert merged["gpus"] == xml_facts["gpus"]
    assert merged["driver_version"] == "590.44.01"
    assert merged["cuda_version"] == "13.1"
    assert merged["source"] == ["xml", "list", "table"]


def test_xml_derived_from_csv_and_list(tmp_path):
    host = make_host(tmp_path, query_gpu="h200x1-mig_query-gpu-wide_nvidia-gpu-exporter.csv")
    facts = facts_from_texts([smi(host, "-q", "-x").stdout]).as_dict()
    assert facts["gpus"][0]["name"] == "NVIDIA H200"
    assert facts["gpus"][0]["memory_total_mib"] == 143771
    assert facts["gpus"][0]["mig_mode"] == "Enabled"
    host2 = make_host(tmp_path, name="list-only", L="b200x2_L_dranet.txt")
    facts = facts_from_texts([smi(host2, "-q", "-x").stdout]).as_dict()
    assert [g["uuid"] for g in facts["gpus"]] == [
        "GPU-00261f28-8bd7-afb7-c2d9-897ff3f13706",
        "GPU-f538682c-7be3-18c8-91b6-5a3fc69143d0",
    ]


def test_topo_of_several_gpus_needs_the_capture(tmp_path):
    host = make_host(tmp_path, q_x="rtx-a5000x2_qx-v13_telegraf.xml")
    result = smi(host, "topo", "-m")
    assert result.returncode == 3
    assert "topo.txt" in result.stderr
    single = make_host(tmp_path, name="one-gpu", q_x="tesla-t4x1_qx-v11_telegraf.xml")
    assert parse_topo(smi(single, "topo", "-m").stdout).gpus[0].index == 0


def test_table_only_host_cannot_answer_xml(tmp_path):
    host = make_host(tmp_path, table="l40sx1_table_nvidia-gpu-exporter.txt")
    result = smi(host, "-q", "-x")
    assert result.returncode == 3
    assert result.stdout == ""
    assert "cannot produce -q -x" in result.stderr


@pytest.mark.parametrize(
    ("fixture", "code"),
    [
        ("err_couldnt-communicate_shine-cluster-issue-50.txt", 9),
        ("err_nvml-mismatch-570_tinygrad-ogkm-issue-47.txt", 18),
        ("err_nvml-mismatch-oneline_shine-cluster-issue-30.txt", 18),
        ("err_libnvidia-ml-not-found_tkestack-gpu-manager-issue-101.txt", 12),
        ("err_no-devices-found_open-gpu-kernel-modules-issue-862.txt", 6),
        ("err_device-handle-unknown-error_xxd3vin-workspace-issue-19.txt", 255),
    ],
)
def test_error_capture_fails_every_command(tmp_path, fixture, code):
    host = make_host(tmp_path, error=fixture, q_x="tesla-t4x1_qx-v11_telegraf.xml")
    commands = [["-q", "-x"], ["-L"], ["topo", "-m"], []] if code == 9 else [["-q", "-x"], []]
    for args in commands:
        result = smi(host, *args)
        assert result.returncode == code, args
        assert result.stdout == (FIXTURES / fixture).read_text(), args
    assert smi(host, "-h").returncode == 0


def test_error_rc_overrides_the_exit_code(tmp_path):
    lost = "Unable to determine the device handle for GPU 0000:3B:00.0: GPU is lost\n"
    host = make_host(tmp_path, error=lost, error_rc="15\n")
    assert smi(host, "-L").returncode == 15


@pytest.mark.parametrize(
    "args",
    [["--frobnicate"], ["-q"], ["topo"], ["--format=csv"], ["-L", "extra"]],
)
def test_unknown_options_are_refused(tmp_path, args):
    host = make_host(tmp_path, q_x="tesla-t4x1_qx-v11_telegraf.xml")
    result = smi(host, *args)
    assert result.returncode == 2
    assert "Please run 'nvidia-smi -h' for help." in result.stdout


def test_query_without_format_and_with_bad_format(tmp_path):
    host = make_host(tmp_path, q_x="tesla-t4x1_qx-v11_telegraf.xml")
    assert smi(host, "--query-gpu=name").returncode == 2
    result = smi(host, "--query-gpu=name", "--format=json")
    assert result.returncode == 2
    assert "not a valid format" in result.stdout


def test_missing_directory_behaves_like_a_missing_driver(tmp_path):
    result = smi(tmp_path / "absent", "-L")
    assert result.returncode == 9
    assert error_from_output(result.stdout).reason == "driver-not-loaded"
