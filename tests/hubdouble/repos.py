"""The repositories a test can ask the hub double for, by name, and the commits the double gives them.

Each is built as branch ``master`` under ``<root>/<org>/<name>/``; building again leaves a repository that is
already right as it is. The commit is the double's own (derived from the content), so a test can pin it.

Run: ``python -m tests.hubdouble.repos --root DIR llmfleet/tiny MiniMaxAI/MiniMax-M2`` prints
``{"commits": {"llmfleet/tiny": "<40 hex>", ...}, "changed": [<the names whose content changed>]}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .content import MiB, make_model_repo
from .minimax_m2 import REPO_ID as MINIMAX_M2
from .minimax_m2 import make_minimax_m2_repo
from .server import NotFound, RepoStore

BRANCH = "master"
REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_MODEL_BUILDER = REPO_ROOT / "lab" / "tinymodel" / "build.py"


def _tiny(root: Path) -> None:
    """llmfleet/tiny: the lab's scripted tiny model (lab/tinymodel/build.py)."""
    out = root / "llmfleet" / "tiny" / BRANCH
    subprocess.run(
        [sys.executable, str(TINY_MODEL_BUILDER), "--out", str(out)], check=True, stdout=subprocess.DEVNULL
    )


def _resume(root: Path) -> None:
    """acme/resume: one 8 MiB shard and small files (for interrupted downloads)."""
    if not (root / "acme" / "resume" / BRANCH).is_dir():
        make_model_repo(root, "acme/resume", BRANCH, shards=1, shard_size=8 * MiB, seed=7)


BUILDERS: dict[str, Callable[[Path], object]] = {
    "llmfleet/tiny": _tiny,
    "acme/resume": _resume,
    MINIMAX_M2: lambda root: make_minimax_m2_repo(root, BRANCH),
}


def commits_of(root: Path, names: list[str]) -> dict[str, str | None]:
    """Each repository's commit on the double, None for one that is not there."""
    store = RepoStore(root)
    commits: dict[str, str | None] = {}
    for name in names:
        try:
            commits[name] = store.resolve(*name.split("/"), BRANCH).commit
        except NotFound:
            commits[name] = None
    return commits


def build_repos(root: Path, names: list[str]) -> dict[str, str]:
    """Build the named repositories under ``root``; return each one's commit on the double."""
    unknown = sorted(set(names) - set(BUILDERS))
    if unknown:
        raise ValueError(f"no builder for {', '.join(unknown)}; known: {', '.join(sorted(BUILDERS))}")
    for name in names:
        BUILDERS[name](root)
    return {name: commit for name, commit in commits_of(root, names).items() if commit}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, type=Path, help="the double's repository directory")
    parser.add_argument("names", nargs="+", metavar="ORG/NAME", help=f"any of {', '.join(sorted(BUILDERS))}")
    args = parser.parse_args(argv)
    before = commits_of(args.root, args.names)
    try:
        commits = build_repos(args.root, args.names)
    except ValueError as exc:
        parser.error(str(exc))
    changed = [name for name in args.names if before[name] != commits[name]]
    print(json.dumps({"commits": commits, "changed": changed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
