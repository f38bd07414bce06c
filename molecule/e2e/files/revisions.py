#!/usr/bin/env python3
"""Write the tiny model's revisions a rollout test needs, from the built model, into DEST/<revision>/:

- scripted-v1: the model as built;
- scripted-v2: the same weights with another README (a new revision that serves the same way);
- broken-tools: a chat template that refuses any request with tools (installs and starts cleanly,
  fails the tool-call check).

    revisions.py MODEL_DIR DEST
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

REFUSE_TOOLS = "{%- if tools -%}{{ raise_exception('this revision cannot call tools') }}{%- endif -%}\n"


def main(model: Path, dest: Path) -> None:
    for revision in ("scripted-v1", "scripted-v2", "broken-tools"):
        target = dest / revision
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(model, target)
    readme = dest / "scripted-v2" / "README.md"
    readme.write_text(readme.read_text() + "\nRevision scripted-v2.\n")
    config_path = dest / "broken-tools" / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = REFUSE_TOOLS + config["chat_template"]
    config_path.write_text(json.dumps(config, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
