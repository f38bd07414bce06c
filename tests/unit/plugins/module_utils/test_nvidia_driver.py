"""Choices of the nvidia_driver role: packages per distribution and branch, flavours, reboots, keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.llmfleet.serve.plugins.filter import nvidia_driver as filters
from ansible_collections.llmfleet.serve.plugins.module_utils import nvidia_driver as nd
from ansible_collections.llmfleet.serve.plugins.module_utils.openpgp import openpgp_fingerprints

HERE = Path(__file__).parent
CASES = yaml.safe_load((HERE / "nvidia_driver_cases.yml").read_text())
DATA = HERE / "nvidia_driver_data"
RSA_KEY = (DATA / "test-key-rsa.asc").read_text()
ED25519_KEY = (DATA / "test-key-ed25519.asc").read_text()
RSA_FPR = "055840A4B90BA96C566B7794E5539AC7A3828D62"
ED25519_FPR = "4A0AB0152EC605A5124928BEF126CA6D5850FBE0"


def board(spec: Any) -> dict[str, Any]:
    spec = CASES["boards"][spec] if isinstance(spec, str) else spec
    return {
        "nvidia_gpus": [
            {"address": f"0000:{i + 0x18:02x}:00.0", "device": d, "kind": "nvidia-gpu"}
            for i, d in enumerate(spec["gpus"])
        ],
        "nvswitches": [
            {"address": f"0000:{i + 5:02x}:00.0", "device": d} for i, d in enumerate(spec["nvswitches"])
        ],
    }


def settings_for(case: dict[str, Any]) -> dict[str, Any]:
    host = CASES["hosts"][case["host"]] if isinstance(case["host"], str) else case["host"]
    defaults = {"branch": "580", "source": "cuda", "kernel_module": "auto", "fabricmanager": "auto"}
    return {**host, **defaults, **case["settings"], "pci": board(case["board"])}


@pytest.mark.parametrize("case", CASES["cases"], ids=lambda c: c["id"])
def test_plan(case):
    result = nd.plan(settings_for(case))
    assert result["errors"] == []
    assert result["needed"] is True
    for key, expected in case["expect"].items():
        assert result[key] == expected, key


@pytest.mark.parametrize("case", CASES["refusals"], ids=lambda c: c["id"])
def test_refusal(case):
    result = nd.plan(settings_for(case))
    assert len(result["errors"]) == 1
    assert case["error"] in result["errors"][0]
    assert result["packages"] == []


def test_no_nvidia_gpu_means_nothing_to_do():
    result = nd.plan({"distribution": "Debian", "version": "12", "branch": "580", "pci": {"nvidia_gpus": []}})
    assert result["needed"] is False
    assert result["errors"] == []
    assert result["packages"] == []
    assert "no NVIDIA GPU" in result["summary"]


def test_plan_summary_names_what_it_does():
    case = {"host": "debian12", "board": "hgx-h100-8", "settings": {"branch": "570"}}
    summary = nd.plan(settings_for(case))["summary"]
    assert summary == (
        "branch 570 (open kernel modules) from "
        "https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/; "
        "8 GPU(s), 4 NVSwitch(es); Fabric Manager: yes"
    )


def test_apt_preferences_hold_the_branch():
    text = nd.apt_preferences(570, "570.*", ["nvidia-fabricmanager-570"])
    records = [r.splitlines() for r in text.strip().split("\n\n")]
    assert records[0][-3:] == [
        "Package: src:*nvidia*:any src:cuda-drivers:any src:cuda-compat:any",
        "Pin: version 570.*",
        "Pin-Priority: 1000",
    ]
    assert records[1] == [
        "Package: libnvidia-nscq* nvidia-fabricmanager* nvidia-fabricmanager-570",
        "Pin: version 570.*",
        "Pin-Priority: 1000",
    ]


@pytest.mark.parametrize(
    ("device", "cc", "generation"),
    [
        ("0x1db1", None, "pre-turing"),  # Tesla V100-SXM2-16GB
        ("0x15f8", None, "pre-turing"),  # Tesla P100-PCIE-16GB
        ("0x102d", None, "pre-turing"),  # Tesla K80
        ("0x1eb8", None, "turing-to-hopper"),  # Tesla T4
        ("0x2182", None, "turing-to-hopper"),  # GTX 1660 Ti (TU116)
        ("0x20b2", None, "turing-to-hopper"),  # A100-SXM4-80GB
        ("0x2330", None, "turing-to-hopper"),  # H100 SXM5
        ("0x28b0", None, "turing-to-hopper"),  # Ada AD107
        ("0x2901", None, "blackwell"),  # B200
        ("0x2b85", None, "blackwell"),  # RTX 5090
        (None, "7.0", "pre-turing"),
        (None, "7.5", "turing-to-hopper"),
        (None, "9.0", "turing-to-hopper"),
        (None, "10.0", "blackwell"),
        (None, "12.0", "blackwell"),
        ("0x1db1", "9.0", "turing-to-hopper"),  # the compute capability wins when known
    ],
)
def test_gpu_generation(device, cc, generation):
    assert nd.gpu_generation(device, cc) == generation


def test_gpu_generation_needs_something_to_go_by():
    with pytest.raises(nd.DriverChoiceError, match="cannot be classified"):
        nd.gpu_generation(None, None)
    with pytest.raises(nd.DriverChoiceError, match="'0xzz' is not hexadecimal"):
        nd.gpu_generation("0xzz")


def test_kernel_module_auto_reasons():
    flavour, reason = nd.choose_kernel_module("auto", [{"address": "0000:3b:00.0", "device": "0x1db4"}], 580)
    assert (flavour, reason) == (
        "proprietary",
        "auto: pre-Turing GPUs (0000:3b:00.0) need the proprietary modules",
    )
    flavour, reason = nd.choose_kernel_module("auto", [{"compute_capability": "8.0"}], 580)
    assert flavour == "open"
    assert "Turing or newer" in reason


@pytest.mark.parametrize(
    ("version", "branch", "matches"),
    [
        ("570.172.08", "570", True),
        ("570.172.08", 570, True),
        ("1:570.172.08-0ubuntu0.24.04.1", "570", True),
        ("580.95.05-1", "580", True),
        ("575.57.08", "570", False),
        ("57.0", "570", False),
        ("", "570", False),
        (None, "570", False),
        ("570.172.08", "r570", False),
    ],
)
def test_version_matches_branch(version, branch, matches):
    assert nd.version_matches_branch(version, branch) is matches


def test_reported_version_check_says_what_it_saw():
    assert nd.check_reported_version("570.172.08", "570") == ""
    assert (
        nd.check_reported_version("550.54.15", "570")
        == "nvidia-smi reports driver 550.54.15, but the pinned branch is 570"
    )
    assert (
        nd.check_reported_version(None, "570")
        == "nvidia-smi reports no driver version; expected a driver of branch 570"
    )
    assert filters.nvidia_driver_version_error("550.54.15", "570") == (
        "nvidia-smi reports driver 550.54.15, but the pinned branch is 570"
    )


PROC_OPEN = (
    "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.172.08  Release Build  "
    "(dvs-builder@U16-I3-B13-4-3)  Wed Jul  2 14:54:51 UTC 2025\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
)
PROC_PROPRIETARY = (
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"
    "GCC version:  gcc version 11.4.0 (Ubuntu 11.4.0-1ubuntu1~22.04)\n"
)


def test_loaded_module_from_proc():
    assert nd.loaded_module(PROC_OPEN) == nd.LoadedModule(version="570.172.08", open=True)
    assert nd.loaded_module(PROC_PROPRIETARY) == nd.LoadedModule(version="535.104.05", open=False)
    assert nd.loaded_module("") is None
    assert nd.loaded_module(None) is None
    assert nd.loaded_module("GCC version: gcc 12\n") is None
    assert filters.nvidia_driver_loaded_module(PROC_OPEN) == {"version": "570.172.08", "open": True}


@pytest.mark.parametrize(
    ("module_text", "flavour", "nouveau", "pkgs", "expected"),
    [
        (PROC_OPEN, "open", False, [], []),
        (
            None,
            "open",
            False,
            [],
            ["no NVIDIA kernel module is loaded (driver/nvidia/version is missing in procfs)"],
        ),
        (
            PROC_PROPRIETARY,
            "proprietary",
            False,
            [],
            ["the loaded NVIDIA kernel module is 535.104.05, not branch 570"],
        ),
        (
            PROC_OPEN,
            "proprietary",
            False,
            [],
            ["the loaded NVIDIA kernel module is the open one, the proprietary one is installed"],
        ),
        (
            PROC_OPEN,
            "open",
            True,
            [],
            ["nouveau is loaded and holds the GPUs (it is blacklisted and stays out after a boot)"],
        ),
        (
            PROC_OPEN,
            "open",
            False,
            ["linux-image-6.1.0-27-amd64", "nvidia-kernel-open-dkms:amd64"],
            ["the package manager asks for a reboot after installing nvidia-kernel-open-dkms"],
        ),
        (PROC_OPEN, "open", False, ["linux-image-6.1.0-27-amd64"], []),
    ],
)
def test_reboot_reasons(module_text, flavour, nouveau, pkgs, expected):
    driver = ["nvidia-driver-cuda", "nvidia-kernel-open-dkms", "nvidia-persistenced"]
    assert nd.reboot_reasons("570", flavour, module_text, nouveau, pkgs, driver) == expected


def test_reboot_reasons_filter_takes_the_pkgs_file_text():
    reasons = filters.nvidia_driver_reboot_reasons(
        None, "570", "open", True, "nvidia-kernel-open-dkms\n", ["nvidia-kernel-open-dkms"]
    )
    assert len(reasons) == 3


def test_fingerprints_of_real_keys():
    assert openpgp_fingerprints(RSA_KEY) == [RSA_FPR]
    assert openpgp_fingerprints(ED25519_KEY) == [ED25519_FPR]
    assert openpgp_fingerprints(RSA_KEY + ED25519_KEY) == [RSA_FPR]  # only the first armored block is read


def test_key_errors_accept_the_pinned_key_and_refuse_others():
    assert nd.key_errors(RSA_KEY, "0558 40A4 B90B A96C 566B  7794 E553 9AC7 A382 8D62") == []
    errors = nd.key_errors(ED25519_KEY, RSA_FPR, "http://mirror/k.pub")
    assert errors == [
        f"the repository key at http://mirror/k.pub has fingerprint {ED25519_FPR}, not the pinned {RSA_FPR}; "
        "if the repository rotated its key, check the new one and set nvidia_driver_repo_key_fingerprint"
    ]
    assert filters.nvidia_driver_key_errors(ED25519_KEY, RSA_FPR) != []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<html>404 Not Found</html>", "no BEGIN PGP PUBLIC KEY BLOCK"),
        (
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!not base64!!!\n-----END PGP PUBLIC KEY BLOCK-----\n",
            "base64",
        ),
        (
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n",
            "bad OpenPGP packet header",
        ),
    ],
)
def test_key_errors_on_garbage(text, message):
    errors = nd.key_errors(text, RSA_FPR)
    assert len(errors) == 1
    assert message in errors[0]


def test_filter_plan_refuses_non_dict():
    with pytest.raises(Exception, match="expects a dict"):
        filters.nvidia_driver_plan("debian")
