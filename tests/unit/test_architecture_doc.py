"""docs/architecture.md cites only what exists: every file path in the repo, every fact or
variable name somewhere in roles/, plugins/ or playbooks/."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "architecture.md"
NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def cited() -> list[str]:
    """The inline code spans of the page, outside code blocks."""
    prose = re.sub(r"^```.*?^```", "", DOC.read_text(), flags=re.S | re.M)
    return re.findall(r"`([^`\n]+)`", prose)


def source_text() -> str:
    files = [p for top in ("roles", "plugins", "playbooks") for p in (REPO / top).rglob("*") if p.is_file()]
    return "\n".join(p.read_text(errors="replace") for p in files if p.suffix in (".py", ".yml", ".j2"))


def test_every_cited_path_exists():
    paths = [c for c in cited() if "/" in c and "*" not in c]
    assert paths
    assert [p for p in paths if not (REPO / p.rstrip("/")).exists()] == []


def test_every_cited_name_is_used_in_the_code():
    names = {c for c in cited() if NAME.match(c)}
    assert {"llmfleet_plan", "llmfleet_runtime", "llmfleet_model_path"} <= names
    text = source_text()
    assert sorted(n for n in names if not re.search(rf"\b{n}\b", text)) == []
