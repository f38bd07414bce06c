"""model_snapshot's messages for each way a hub refuses: the module as its own process, the real clients, and the
double answering as the real hubs do (Hugging Face: RepoNotFound 401 without a token and 404 with one, GatedRepo
on files only, a refused token; ModelScope: 404 for a missing model, 401 for a restricted one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hubdouble.content import make_model_repo
from hubdouble.fixture import HubDouble
from hubdouble.snapshot_module import module_result

PUBLIC, GATED, PRIVATE = "acme/tiny", "acme/gated", "acme/private"
OWNER_TOKEN = {GATED: "hf_gated_owner", PRIVATE: "hf_private_owner"}
OTHER_ACCOUNT = "hf_someone_else"


@pytest.fixture
def hub(hub_double: HubDouble) -> HubDouble:
    for repo in (PUBLIC, GATED, PRIVATE):
        make_model_repo(hub_double.root, repo, "master", shards=1, shard_size=64 * 1024)
    hub_double.set_tokens(dict(OWNER_TOKEN), private=[PRIVATE], accounts=[OTHER_ACCOUNT])
    hub_double.reset()
    return hub_double


def snapshot(hub: HubDouble, workdir: Path, source: str, model: str, **extra: Any) -> dict[str, Any]:
    args = {"model": model, "source": source, "endpoint": hub.url, "models_root": str(workdir / "models")}
    result, _, _ = module_result({**args, **extra}, workdir)
    shown = json.dumps(result)
    for token in (*OWNER_TOKEN.values(), OTHER_ACCOUNT, "hf_wrong"):
        assert token not in shown
    return result


def failure(hub: HubDouble, workdir: Path, source: str, model: str, **extra: Any) -> tuple[str, str]:
    result = snapshot(hub, workdir, source, model, **extra)
    assert result.get("failed") is True, result
    assert hub.stats()["bytes_total"] == 0, "nothing is downloaded after a refusal"
    return result["error_kind"], result["msg"]


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face
# ---------------------------------------------------------------------------------------------------------------
def test_a_mistyped_id_without_a_token_says_not_found_not_give_a_token(hub, tmp_path):
    kind, msg = failure(hub, tmp_path, "huggingface", "acme/tny")
    assert kind == "repo_not_found"
    assert f"huggingface at {hub.url}: model acme/tny revision main: " in msg
    assert (
        "acme/tny not found, or private (HTTP 401, no token was given): check the model id, or give a token"
        in msg
    )
    assert "access denied" not in msg


def test_a_private_model_without_a_token_reads_the_same_as_a_missing_one(hub, tmp_path):
    kind, msg = failure(hub, tmp_path, "huggingface", PRIVATE)
    assert kind == "repo_not_found"
    assert f"{PRIVATE} not found, or private (HTTP 401, no token was given)" in msg


def test_a_private_model_with_another_accounts_token_is_not_found_for_that_token(hub, tmp_path):
    kind, msg = failure(hub, tmp_path, "huggingface", PRIVATE, token=OTHER_ACCOUNT)
    assert kind == "repo_not_found"
    assert (
        f"{PRIVATE} not found, or private (HTTP 404, the token given cannot see it): check the model id"
        in msg
    )


def test_a_wrong_token_is_refused_even_on_a_public_model(hub, tmp_path):
    kind, msg = failure(hub, tmp_path, "huggingface", PUBLIC, token="hf_wrong")
    assert kind == "auth"
    assert "the hub refused the token (HTTP 401: Invalid credentials in Authorization header)" in msg
    assert "invalid or expired" in msg and "not found" not in msg


def test_a_gated_model_without_a_token_names_the_gate_before_any_download(hub, tmp_path):
    kind, msg = failure(hub, tmp_path, "huggingface", GATED)
    assert kind == "auth"
    assert f"{GATED} is gated and no token was given (HTTP 401): request access on the model's page" in msg
    assert "give a token of an account that has it (token)" in msg
    assert hub.stats()["requests"]["by_kind"].get("head", 0) == 0


def test_a_gated_model_with_an_account_without_access_says_so(hub, tmp_path):
    kind, msg = failure(hub, tmp_path, "huggingface", GATED, token=OTHER_ACCOUNT)
    assert kind == "auth"
    assert (
        f"{GATED} is gated and the token given belongs to an account that has not been granted access" in msg
    )
    assert "(HTTP 403)" in msg


def test_a_gated_model_downloads_with_the_token_of_an_account_that_has_access(hub, tmp_path):
    result = snapshot(hub, tmp_path, "huggingface", GATED, token=OWNER_TOKEN[GATED])
    assert result.get("changed") is True, result.get("msg")


def test_a_missing_revision_is_named(hub, tmp_path):
    kind, msg = failure(hub, tmp_path, "huggingface", PUBLIC, revision="v9")
    assert kind == "revision_not_found"
    assert f"revision not found (HTTP 404): {PUBLIC} has no revision 'v9'" in msg


# ---------------------------------------------------------------------------------------------------------------
# ModelScope: its own answers (404 for a missing model, 401 for a restricted one)
# ---------------------------------------------------------------------------------------------------------------
def test_modelscope_mistyped_id_is_not_found(hub, tmp_path):
    kind, msg = failure(hub, tmp_path, "modelscope", "acme/tny")
    assert kind == "repo_not_found"
    assert "model acme/tny revision master: model not found (HTTP 404)" in msg


@pytest.mark.parametrize("token", [None, "hf_wrong"], ids=["no-token", "wrong-token"])
def test_modelscope_restricted_model_asks_for_a_token(hub, tmp_path, token):
    kind, msg = failure(hub, tmp_path, "modelscope", GATED, **({"token": token} if token else {}))
    assert kind == "auth"
    assert f"model {GATED} revision master: access denied (HTTP 401)" in msg
    assert "give a token with access to it (token), or check the token" in msg
