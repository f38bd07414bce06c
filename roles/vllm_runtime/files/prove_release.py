"""Prove a vLLM release on its host: print what it runs, as JSON, for the role to check.

Run with the release's Python. On a GPU build where no NVIDIA kernel module is loaded (the driver
needs a reboot, or a test host), vLLM cannot infer its device and not even its argument parser
builds: the CPU platform is named for this process only, which changes nothing but the parsing.
"""

import contextlib
import io
import json
import os
import runpy
import sys

NVIDIA_MODULE = "/proc/driver/nvidia/version"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if not os.path.exists(NVIDIA_MODULE):
    os.environ["VLLM_TARGET_DEVICE"] = "cpu"

import torch  # noqa: E402
import vllm  # noqa: E402

proof = {"vllm": vllm.__version__, "torch": torch.__version__, "torch_cuda": torch.version.cuda}
if os.path.exists(NVIDIA_MODULE) and torch.version.cuda:
    proof["cuda_devices"] = torch.cuda.device_count()

help_text = io.StringIO()
sys.argv = ["api_server", "--help"]
with contextlib.redirect_stdout(help_text), contextlib.suppress(SystemExit):
    runpy.run_module("vllm.entrypoints.openai.api_server", run_name="__main__")
proof["api_server_help"] = "--tensor-parallel-size" in help_text.getvalue()
print(json.dumps(proof))
