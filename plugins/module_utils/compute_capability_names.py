"""Compute capability of well-known NVIDIA GPU names, for sources that do not report it.

Standard library only: this code runs on target hosts.
"""

from __future__ import annotations

import re

#: Documented fallback for GPUs whose source does not report the compute capability
#: (XML, -L, table and older drivers). Searched in order, case-insensitively, on the product
#: name without a trailing "..." (the table truncates long names). Values from NVIDIA's CUDA GPU
#: list. A name that matches nothing gives None: the facts never guess beyond this table.
COMPUTE_CAPABILITY_BY_NAME: tuple[tuple[str, str, str], ...] = (
    ("Blackwell Ultra: B300, GB300", r"\b(?:GB|B)300\b", "10.3"),
    ("Blackwell: B100, B200, GB200", r"\b(?:GB|B)(?:100|200)\b", "10.0"),
    ("Blackwell GB10 (DGX Spark)", r"\bGB10\b", "12.1"),
    ("Blackwell: RTX PRO xxxx (Blackwell), GeForce RTX 50xx", r"\bRTX PRO \d{4}\b|\bRTX 50\d0\b", "12.0"),
    ("Hopper: H100, H200, H800, H20, GH200", r"\b(?:GH|H)(?:100|200|800)\b|\bH20\b", "9.0"),
    (
        "Ada: L4, L20, L40, L40S, RTX 40xx, RTX xxxx Ada",
        r"\bL(?:4|20|40S?)\b|\bRTX 40\d0\b|\bRTX \d{4} Ada\b|\bAda Generation\b",
        "8.9",
    ),
    ("Ampere GA100: A100, A800, A30", r"\bA(?:100|800|30)\b", "8.0"),
    (
        "Ampere GA10x: A2, A10, A10G, A16, A40, RTX Axxxx, RTX 30xx",
        r"\bA(?:2|10G?|16|40)\b|\bRTX A\d{4}\b|\bRTX 30\d0\b",
        "8.6",
    ),
    (
        "Turing: T4, Txxx/Txxxx workstation, RTX 20xx, GTX 16xx, Quadro RTX, TITAN RTX",
        r"\bT(?:4|400|600|1000|1200|2000)\b|\bRTX 20\d0\b|\bGTX 16\d0\b|\bQuadro RTX\b|\bTITAN RTX\b",
        "7.5",
    ),
    ("Volta: V100, V100S, TITAN V, Quadro GV100", r"\bG?V100S?\b|\bTITAN V\b", "7.0"),
    ("Pascal GP100: P100", r"\bP100\b", "6.0"),
    (
        "Pascal GP10x: P4, P6, P40, GTX 10xx, Quadro Pxxxx, TITAN Xp",
        r"\bP(?:4|6|40)\b|\bGTX 10\d0\b|\bQuadro P\d{3,4}\b|\bTITAN Xp\b",
        "6.1",
    ),
    ("Maxwell GM20x: M4, M6, M40, M60", r"\bM(?:4|6|40|60)\b", "5.2"),
    ("Kepler GK210: K80", r"\bK80\b", "3.7"),
)


def compute_capability_from_name(name: str | None) -> str | None:
    """Compute capability of a well-known GPU name (see :data:`COMPUTE_CAPABILITY_BY_NAME`)."""
    if not name:
        return None
    stem = name.strip()
    if stem.endswith("..."):
        stem = stem[:-3].rstrip()
    for _label, pattern, capability in COMPUTE_CAPABILITY_BY_NAME:
        if re.search(pattern, stem, re.IGNORECASE):
            return capability
    return None
