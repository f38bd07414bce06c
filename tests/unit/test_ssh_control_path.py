"""SSH control sockets must fit in a Unix socket path wherever the checkout lives.

OpenSSH binds "<control_path_dir>/<address>-<port>-<user>.<16 random characters>" first; a path
over 107 bytes makes every connection fail, which Ansible reports as an unreachable host.
"""

import configparser
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SOCKET_PATH_MAX = 107
WORST_HOME = "/home/" + "u" * 24
WORST_CHECKOUT = "/srv/ci/builds/" + "w" * 40 + "/llmfleet-serve"


def scenario_names() -> list[str]:
    return sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))


def socket_path_length(control_path_dir: str, *, home: str, env: dict[str, str]) -> int:
    directory = control_path_dir
    for name, value in env.items():
        directory = directory.replace("${" + name + "}", value)
    directory = directory.replace("~", home, 1) if directory.startswith("~") else directory
    return len(f"{directory}/255.255.255.255-22-llmfleet.{'x' * 16}")


def molecule_env(scenario: str, checkout: str) -> dict[str, str]:
    ephemeral = f"{checkout}/.cache/ansible/tmp/molecule.XXXX.{scenario}"
    return {
        "MOLECULE_SCENARIO_NAME": scenario,
        "MOLECULE_PROJECT_DIRECTORY": checkout,
        "MOLECULE_EPHEMERAL_DIRECTORY": ephemeral,
    }


def test_ansible_cfg_control_sockets_fit() -> None:
    config = configparser.ConfigParser()
    config.read(REPO / "ansible.cfg")
    directory = config["ssh_connection"]["control_path_dir"]
    assert socket_path_length(directory, home=WORST_HOME, env={}) <= SOCKET_PATH_MAX


@pytest.mark.parametrize("scenario", scenario_names())
def test_molecule_control_sockets_fit(scenario: str) -> None:
    config = yaml.safe_load((REPO / ".config/molecule/config.yml").read_text())
    directory = config["ansible"]["cfg"]["ssh_connection"]["control_path_dir"]
    length = socket_path_length(directory, home=WORST_HOME, env=molecule_env(scenario, WORST_CHECKOUT))
    assert length <= SOCKET_PATH_MAX


def test_a_control_dir_inside_the_checkout_is_caught() -> None:
    length = socket_path_length(
        "${MOLECULE_EPHEMERAL_DIRECTORY}/cp",
        home=WORST_HOME,
        env=molecule_env("model_weights", "/check/work/main"),
    )
    assert length > SOCKET_PATH_MAX
