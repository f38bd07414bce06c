"""Tests of the hub double: import it, and keep the real clients' state out of the home directory."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

# huggingface_hub reads these at import and modelscope_hub at its first request: set them before either.
_CLIENT_HOME = Path(tempfile.mkdtemp(prefix="hubdouble-clients-"))
atexit.register(shutil.rmtree, _CLIENT_HOME, True)
os.environ.update(
    {
        "HF_HOME": str(_CLIENT_HOME / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "MODELSCOPE_HOME": str(_CLIENT_HOME / "ms"),
        "MODELSCOPE_CACHE": str(_CLIENT_HOME / "ms-cache"),
        "TQDM_DISABLE": "1",
    }
)

from hubdouble.fixture import hub_double  # noqa: E402, F401  (registers the fixture)
