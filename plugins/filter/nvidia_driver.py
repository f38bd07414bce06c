"""Filters for the nvidia_driver role: the install plan, reboot signals, driver versions, repository keys."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.llmfleet.serve.plugins.module_utils import nvidia_driver as nd


def nvidia_driver_plan(settings: dict[str, Any]) -> dict[str, Any]:
    """The role's plan for one host (see module_utils/nvidia_driver.plan); errors are in ``errors``."""
    if not isinstance(settings, dict):
        raise AnsibleFilterError(
            f"nvidia_driver_plan expects a dict of settings, got {type(settings).__name__}"
        )
    return nd.plan(settings)


def nvidia_driver_reboot_reasons(
    module_text: str | None,
    branch: Any,
    flavour: str,
    nouveau_loaded: bool = False,
    reboot_required_pkgs: list[str] | str | None = None,
    driver_packages: list[str] | None = None,
) -> list[str]:
    """Why the host must reboot before the pinned driver runs (empty: it need not)."""
    pkgs = reboot_required_pkgs or []
    if isinstance(pkgs, str):
        pkgs = pkgs.splitlines()
    try:
        return nd.reboot_reasons(
            branch, flavour, module_text, bool(nouveau_loaded), pkgs, driver_packages or []
        )
    except nd.DriverChoiceError as exc:
        raise AnsibleFilterError(str(exc)) from None


def nvidia_driver_loaded_module(module_text: str | None) -> dict[str, Any] | None:
    """The loaded kernel module from /proc/driver/nvidia/version: {version, open}, or None."""
    module = nd.loaded_module(module_text)
    return {"version": module.version, "open": module.open} if module else None


def nvidia_driver_version_error(version: Any, branch: Any, what: str = "nvidia-smi") -> str:
    """An error message when a reported driver version is not of the pinned branch, else ''."""
    try:
        return nd.check_reported_version(version, branch, what)
    except nd.DriverChoiceError as exc:
        raise AnsibleFilterError(str(exc)) from None


def nvidia_driver_key_errors(key_text: str, fingerprint: str, url: str = "") -> list[str]:
    """Why a downloaded repository key must not be trusted (empty: it is the pinned key)."""
    return nd.key_errors(key_text, fingerprint, url)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "nvidia_driver_plan": nvidia_driver_plan,
            "nvidia_driver_reboot_reasons": nvidia_driver_reboot_reasons,
            "nvidia_driver_loaded_module": nvidia_driver_loaded_module,
            "nvidia_driver_version_error": nvidia_driver_version_error,
            "nvidia_driver_key_errors": nvidia_driver_key_errors,
        }
