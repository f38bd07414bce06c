"""Unit tests for hub_clients' reading of Hugging Face refusals: which cause (from huggingface_hub's error class,
else its X-Error-Code, else the status) and the message for each. The real clients against the hub double are
in tests/unit/hubdouble/test_hub_refusals.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ansible_collections.llmfleet.serve.plugins.module_utils.hub_clients import (
    _hf_error_classes,
    hf_cause,
    hf_refusal,
)

ERRORS = _hf_error_classes()
WHERE = "huggingface at http://hub:8765: model acme/tiny revision main"


class FakeHTTPError(Exception):
    """An error with a response, as an older huggingface_hub (or a plain HTTP error) raises it."""

    def __init__(self, status: int, code: str | None = None) -> None:
        super().__init__(f"{status} Client Error")
        headers = {"X-Error-Code": code} if code else {}
        self.response = SimpleNamespace(status_code=status, headers=headers)


def real(cls_name: str) -> BaseException:
    """An instance of the installed huggingface_hub's class (its constructor wants a live response)."""
    cls = ERRORS[cls_name]
    return cls.__new__(cls)


@pytest.mark.parametrize(
    ("cls_name", "cause"),
    [
        ("GatedRepoError", "gated"),  # a RepositoryNotFoundError too: the gate is named, not "not found"
        ("RepositoryNotFoundError", "repo"),
        ("RevisionNotFoundError", "revision"),
        ("EntryNotFoundError", "entry"),
    ],
)
def test_the_class_huggingface_hub_raised_decides_whatever_the_status(cls_name, cause):
    assert hf_cause(real(cls_name), 401, ERRORS, token_given=False) == cause


@pytest.mark.parametrize(
    ("status", "code", "token_given", "cause"),
    [
        (401, "RepoNotFound", False, "repo"),  # a mistyped id without a token: not "give a token"
        (404, "RepoNotFound", True, "repo"),
        (401, "GatedRepo", False, "gated"),
        (403, "GatedRepo", True, "gated"),
        (404, "RevisionNotFound", False, "revision"),
        (404, "EntryNotFound", False, "entry"),
        (401, None, True, "token"),  # invalid credentials: the token was refused
        (401, None, False, "denied"),
        (403, None, True, "denied"),
        (404, None, False, "repo"),
        (500, "RepoNotFound", False, None),
        (500, None, False, None),
    ],
)
def test_without_the_class_the_error_code_then_the_status_decides(status, code, token_given, cause):
    assert hf_cause(FakeHTTPError(status, code), status, ERRORS, token_given) == cause


def refusal(cause: str, status: int | None, token_given: bool = False, detail: str = "server says no"):
    return hf_refusal(
        cause,
        where=WHERE,
        model="acme/tiny",
        revision="main",
        status=status,
        detail=detail,
        token_given=token_given,
    )


@pytest.mark.parametrize(
    ("cause", "status", "token_given", "kind", "says"),
    [
        (
            "repo",
            401,
            False,
            "repo_not_found",
            "acme/tiny not found, or private (HTTP 401, no token was given): check the model id, or give a token "
            "that can see it (token).",
        ),
        (
            "repo",
            404,
            True,
            "repo_not_found",
            "(HTTP 404, the token given cannot see it): check the model id",
        ),
        (
            "gated",
            401,
            False,
            "auth",
            "acme/tiny is gated and no token was given (HTTP 401): request access on the model's page on the hub, "
            "then give a token of an account that has it (token).",
        ),
        ("gated", 403, True, "auth", "belongs to an account that has not been granted access (HTTP 403)"),
        (
            "revision",
            404,
            False,
            "revision_not_found",
            "revision not found (HTTP 404): acme/tiny has no revision 'main'",
        ),
        ("entry", 404, False, "file_not_found", "file not found (HTTP 404): server says no"),
        (
            "token",
            401,
            True,
            "auth",
            "the hub refused the token (HTTP 401: server says no): it is invalid or expired",
        ),
        (
            "denied",
            403,
            True,
            "auth",
            "access denied (HTTP 403): server says no. Give a token with read access",
        ),
    ],
)
def test_each_refusal_says_what_was_refused_and_what_to_do(cause, status, token_given, kind, says):
    error = refusal(cause, status, token_given)
    assert (error.kind, error.status) == (kind, status)
    assert error.message.startswith(WHERE + ": ")
    assert says in error.message


def test_only_a_refused_token_blames_the_token_and_only_a_missing_repo_says_not_found():
    messages = {cause: refusal(cause, 401, True).message for cause in ("repo", "gated", "token", "denied")}
    assert [c for c, m in messages.items() if "refused the token" in m] == ["token"]
    assert [c for c, m in messages.items() if "not found" in m] == ["repo"]
    assert not refusal("repo", None).retryable and not refusal("gated", 401).retryable
