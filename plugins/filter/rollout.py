"""Filters behind rollout.yml: the release manifest, the rollout's settings, and what a host serves."""

from __future__ import annotations

from typing import Any

import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.llmfleet.serve.plugins.module_utils.release_manifest import (
    ManifestError,
    batch_number,
    load_manifest,
    manifest_digest,
    manifest_settings,
    rollout_settings_problems,
    wheelhouse_problem,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.rollout_report import passed, served_state


def release_manifest(data: Any, where: str) -> dict[str, Any]:
    """The checked manifest (given as data, or as the file's YAML text); a bad one stops the run with the
    file, the key and the value."""
    if isinstance(data, str):
        try:
            data = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            raise AnsibleFilterError(f"{where}: the release manifest is not valid YAML: {exc}") from exc
    try:
        return load_manifest(data, where)
    except ManifestError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "release_manifest": release_manifest,
            "release_manifest_digest": manifest_digest,
            "release_manifest_settings": manifest_settings,
            "release_wheelhouse_problem": wheelhouse_problem,
            "rollout_settings_problems": rollout_settings_problems,
            "rollout_served_state": served_state,
            "rollout_batch_number": batch_number,
            "rollout_passed": passed,
        }
