"""Deployment figures on the test fleet, measured side by side in one run.

    .venv/bin/python benchmarks/bench_site.py [--skip-runtime] [--skip-site] [--skip-start]

- runtime: the vllm_runtime role (warm wheelhouse) on 1 host vs 3 hosts, and the no-op re-run's
  time as a fraction of the first run;
- site: site.yml on 1 host vs 2 hosts, first run and no-op re-run;
- start: on one served host, a restart with an empty compile cache (cold) vs a restart with the
  cache kept (warm), to /health;
- verify: the time each check of openai_check takes on that host.

Every fleet is created fresh for its measurement and destroyed after it. Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FLEET = [sys.executable, str(REPO / "lab" / "fleet.py")]
LAB_MODEL = REPO / ".cache" / "lab" / "models" / "llmfleet-tiny"
RUNTIME_ONLY = """
- ansible.builtin.import_playbook: {repo}/playbooks/plan.yml
- hosts: all
  become: true
  gather_facts: false
  roles: [llmfleet.serve.vllm_runtime]
"""


def create_fleet(name: str, hosts: int) -> list[dict]:
    spec = {"fleet": name, "hosts": [{"name": f"{name}-{i}", "cpus": str(i % 2)} for i in range(hosts)]}
    out = subprocess.run([*FLEET, "create", "--spec", "-"], input=json.dumps(spec), text=True,
                         capture_output=True, check=True).stdout  # fmt: skip
    return json.loads(out)


def destroy_fleet(name: str) -> None:
    subprocess.run([*FLEET, "destroy", "--fleet", name], capture_output=True, check=True)


def known_hosts(instance: dict) -> Path:
    return Path(instance["identity_file"]).with_name("known_hosts")


def inventory(instances: list[dict], path: Path) -> Path:
    hosts = {
        i["instance"]: {"ansible_host": i["address"], "ansible_user": i["user"],
                        "ansible_ssh_private_key_file": i["identity_file"]}
        for i in instances
    }  # fmt: skip
    group_vars = {
        "llmfleet_model": "llmfleet-tiny",
        "model_weights_source": "local",
        "model_weights_local_path": str(LAB_MODEL),
        "model_weights_revision": "scripted-v1",
        "vllm_runtime_find_links": ["/opt/wheels"],
        "llmfleet_api_keys": ["bench-key"],
        # the front door's certificate from a private CA made for the run (one naming every host)
        "llmfleet_tls_cert": issue_certificate(instances, tls_dir(path)),
        "llmfleet_tls_key": (tls_dir(path) / "fleet.key").read_text(),
        "llmfleet_tls_ca_file": f"{tls_dir(path)}/ca.pem",
        # the fleet's known_hosts (lab/fleet.py writes its hosts' keys there, next to its login key)
        "ansible_ssh_common_args": (
            f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={known_hosts(instances[0])}"
        ),
    }
    sans = [f"--san={i['address']}" for i in instances] + [f"--san={i['instance']}" for i in instances]
    subprocess.run(
        [sys.executable, str(REPO / "lab" / "tls.py"), "issue", str(tls_dir(path)), "fleet", *sans],
        check=True,
    )
    path.write_text(yaml.safe_dump({"all": {"hosts": hosts, "vars": group_vars}}))
    return path


def tls_dir(inventory_path: Path) -> Path:
    return inventory_path.parent / "tls"


def issue_certificate(instances: list[dict], directory: Path) -> str:
    """One certificate naming every host (address and name), from lab/tls.py's CA; its PEM."""
    sans = [f"--san={i['address']}" for i in instances] + [f"--san={i['instance']}" for i in instances]
    subprocess.run(
        [sys.executable, str(REPO / "lab" / "tls.py"), "issue", str(directory), "fleet", *sans], check=True
    )
    return (directory / "fleet.pem").read_text()


def play(inventory_path: Path, playbook: Path) -> float:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    started = time.monotonic()
    result = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory_path), str(playbook)],
                            cwd=REPO, env=env, text=True, capture_output=True, check=False)  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"{playbook} failed:\n{result.stdout[-4000:]}")
    return time.monotonic() - started


def first_and_again(name: str, hosts: int, playbook: Path, workdir: Path) -> tuple[float, float, list[dict]]:
    instances = create_fleet(name, hosts)
    inv = inventory(instances, workdir / f"{name}.yml")
    return play(inv, playbook), play(inv, playbook), instances


def ssh(instance: dict, command: str) -> str:
    return subprocess.run(
        ["ssh", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts(instance)}",
         "-o", "LogLevel=ERROR", "-i", instance["identity_file"], f"{instance['user']}@{instance['address']}",
         command],
        text=True, capture_output=True, check=True,
    ).stdout  # fmt: skip


def time_restart(instance: dict, clear_cache: bool) -> float:
    clear = "sudo sh -c 'rm -rf /var/cache/llmfleet/vllm/*' && " if clear_cache else ""
    started = time.monotonic()
    ssh(instance, f"{clear}sudo systemctl reset-failed llmfleet-vllm; sudo systemctl restart llmfleet-vllm && "
                  "until curl -sf http://127.0.0.1:8001/health >/dev/null; do sleep 0.5; done")  # fmt: skip
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-runtime", action="store_true")
    parser.add_argument("--skip-site", action="store_true")
    parser.add_argument("--skip-start", action="store_true")
    args = parser.parse_args()
    if not (LAB_MODEL / "config.json").exists():
        subprocess.run(
            [sys.executable, str(REPO / "lab/tinymodel/build.py"), "--out", str(LAB_MODEL)], check=True
        )
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        runtime_only = workdir / "runtime.yml"
        runtime_only.write_text(RUNTIME_ONLY.format(repo=REPO))
        site = REPO / "playbooks" / "site.yml"
        if not args.skip_runtime:
            times = {}
            for hosts in (1, 3):
                try:
                    times[hosts] = first_and_again(f"bench-rt{hosts}", hosts, runtime_only, workdir)[:2]
                finally:
                    destroy_fleet(f"bench-rt{hosts}")
                print(
                    f"runtime, {hosts} host(s): first {times[hosts][0]:.1f} s, no-op re-run {times[hosts][1]:.1f} s "
                    f"({times[hosts][1] / times[hosts][0]:.0%} of the first)",
                    flush=True,
                )
            print(f"runtime 3 hosts / 1 host: {times[3][0] / times[1][0]:.2f}", flush=True)
        if not args.skip_site:
            times = {}
            for hosts in (1, 2):
                try:
                    first, again, instances = first_and_again(f"bench-site{hosts}", hosts, site, workdir)
                    times[hosts] = (first, again)
                    print(
                        f"site.yml, {hosts} host(s): first {first:.1f} s, no-op re-run {again:.1f} s",
                        flush=True,
                    )
                    if hosts == 1 and not args.skip_start:
                        warm = [time_restart(instances[0], clear_cache=False) for _ in range(2)]
                        cold = [time_restart(instances[0], clear_cache=True) for _ in range(2)]
                        print(
                            f"start to /health: cold {min(cold):.1f} s, warm {min(warm):.1f} s, "
                            f"cold/warm {min(cold) / min(warm):.2f}",
                            flush=True,
                        )
                        checks = subprocess.run(
                            [str(BIN / "ansible"), "localhost", "-m", "llmfleet.serve.openai_check", "-a",
                             f"base_url=https://{instances[0]['address']}:8000/v1 model=llmfleet/tiny api_key=bench-key "
                             f"ca_file={tls_dir(workdir / 'bench-site1.yml')}/ca.pem"],
                            cwd=REPO, text=True, capture_output=True, check=True,
                        ).stdout  # fmt: skip
                        report = json.loads(checks.split("=>", 1)[1])["report"]
                        per_check = {n: round(c["latency_s"], 3) for n, c in report["checks"].items()}
                        print(
                            f"verify, seconds per check: {per_check}; all: {report['duration_s']} s",
                            flush=True,
                        )
                finally:
                    destroy_fleet(f"bench-site{hosts}")
            print(
                f"site.yml 2 hosts / 1 host: first {times[2][0] / times[1][0]:.2f}, "
                f"re-run {times[2][1] / times[1][1]:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
