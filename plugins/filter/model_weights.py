"""Filters for the model_weights role: thin shells over module_utils/weights_fanout.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.llmfleet.serve.plugins.module_utils.weights_fanout import (
    FanoutError,
    peer_seeds,
    snapshot_delta,
)


def _shell(func: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FanoutError as exc:
            raise AnsibleFilterError(str(exc)) from exc

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "snapshot_delta": _shell(snapshot_delta),
            "peer_seeds": _shell(peer_seeds),
        }
