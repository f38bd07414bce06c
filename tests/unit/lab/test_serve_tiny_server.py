"""lab/serve_tiny.py's server command line: the context it serves is the model's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import serve_tiny as serve  # lab/, on the path through tests/conftest.py
from tinymodel import build


def model_with_config(tmp_path: Path, config: dict) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def argv_value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_the_server_gets_the_built_models_whole_context(tmp_path):
    build.write_model(tmp_path)
    argv = serve.server_argv(Path("/venv"), tmp_path, 18000)
    assert argv_value(argv, "--max-model-len") == str(build.MAX_CONTEXT)
    assert argv_value(argv, "--model") == str(tmp_path)


def test_another_build_of_the_model_is_served_at_its_own_context(tmp_path):
    """A model with the old 1024-token context is served at 1024, not at the current builder's."""
    model = model_with_config(tmp_path, {"max_position_embeddings": 1024})
    assert argv_value(serve.server_argv(Path("/venv"), model, 18000), "--max-model-len") == "1024"


@pytest.mark.parametrize(
    "content",
    [None, "{not json", json.dumps({"hidden_size": 128}), json.dumps({"max_position_embeddings": None})],
    ids=["missing", "not-json", "no-key", "null"],
)
def test_a_model_without_a_readable_context_is_refused_with_its_path(tmp_path, content):
    if content is not None:
        (tmp_path / "config.json").write_text(content)
    with pytest.raises(serve.ServeError, match="max_position_embeddings") as err:
        serve.max_model_len(tmp_path)
    assert str(tmp_path / "config.json") in str(err.value)
