"""Filters behind the endpoint_proxy role: inventory values checked before the front door changes."""

from __future__ import annotations

from typing import Any

from ansible_collections.llmfleet.serve.plugins.module_utils.front_door import (
    api_key_problems,
    certificate_problems,
    key_digest,
    network_problems,
)


def front_door_problems(settings: dict[str, Any]) -> list[str]:
    """Every problem with the front door's settings: certificate and key, key set, scrape allowlist."""
    return (
        certificate_problems(settings["cert"], settings["key"], names=settings.get("names", []))
        + api_key_problems(settings["api_keys"])
        + network_problems(settings["metrics_allow"], "llmfleet_metrics_allow")
    )


def api_key_digests(keys: list[str]) -> list[str]:
    return sorted(key_digest(key) for key in keys)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"front_door_problems": front_door_problems, "api_key_digests": api_key_digests}
