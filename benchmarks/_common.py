"""What the benchmarks share."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """The machine the figures were taken on, for the report."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def publish(report: dict[str, Any], json_file: str | None, table: list[str]) -> None:
    """Write the report to ``json_file`` when one is given; print the table, then the report."""
    if json_file:
        Path(json_file).write_text(json.dumps(report, indent=1) + "\n")
    print("\n".join(table))
    print(json.dumps(report, indent=1))
