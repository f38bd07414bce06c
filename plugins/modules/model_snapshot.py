#!/usr/bin/python
"""Ansible module: a complete, verified model snapshot under <models_root>/<org>/<name>/<revision>/."""
# Ansible modules put DOCUMENTATION, EXAMPLES and RETURN before the imports.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_snapshot
short_description: Download a pinned, verified model snapshot from ModelScope, Hugging Face, a mirror or a local directory
version_added: 0.1.0
description:
  - Makes C(<models_root>/<org>/<name>/<revision>/) hold the files of O(model) at O(revision), as listed by
    the source and filtered by O(allow_patterns) and O(ignore_patterns), with a manifest
    C(.llmfleet-manifest.json) that records every file's size and sha256 (and the git blob sha1 of small files).
  - The hub protocol is spoken by the official clients, C(modelscope) (its C(modelscope_hub) engine) and
    C(huggingface_hub); see the requirements.
  - A branch or tag is resolved to a commit, and the snapshot directory is named after the commit
    (returned as RV(revision)). ModelScope reports commits only on some servers; when it does not, the
    snapshot is named after the revision as given, a warning says so, and every run compares it with the
    hub's file listing.
  - Atomic. Work happens in C(<models_root>/.staging/); a new snapshot becomes visible by one directory
    rename after every file is verified and the manifest is written. An existing snapshot (repaired, or
    given new patterns) is updated file by file with atomic renames and its manifest is rewritten last.
  - Resumable. A stopped run leaves C(<file>.incomplete) files and a journal of the files already verified;
    the next run fetches only what is missing, continuing partial files with HTTP Range requests.
  - Verified. Sizes always; sha256 for files the hub gives it for (ModelScope lists it for every file,
    Hugging Face for LFS files) and the git blob sha1 for the other Hugging Face files. A file that fails is
    deleted and fetched again, alone.
  - Preflight. Before anything is written, the free space of the filesystem of O(models_root) must hold the
    bytes still to download plus O(free_space_margin); otherwise the module fails with the numbers (needed,
    free, where) and leaves nothing behind.
  - A re-run on a complete snapshot pinned to a commit makes no hub request at all (a branch costs one
    request to resolve it), changes nothing and reads no file contents - it compares sizes with the manifest.
    O(verify=full) re-hashes every file and repairs the ones that differ.
author:
  - llmfleet developers
requirements:
  - "For O(source=modelscope): the Python package C(modelscope) >= 1.38 (it brings C(modelscope-hub), which
    this module imports) on the Python that runs the module."
  - "For O(source=huggingface): the Python package C(huggingface_hub)."
  - "Run the task on the controller (C(delegate_to: localhost), whose environment holds both), or on the host
    with C(ansible_python_interpreter) set to an environment that holds them (a vLLM release environment
    holds C(huggingface_hub), since vLLM depends on it). O(source=local) needs neither."
options:
  model:
    description:
      - The repository, C(org/name), for example C(MiniMaxAI/MiniMax-M2).
    type: str
    required: true
  source:
    description:
      - Where the files come from.
      - C(modelscope) - ModelScope (the default, as in the reference deployment guide).
      - C(huggingface) - the Hugging Face Hub.
      - C(mirror) - a server speaking the API named by O(mirror_api) at O(endpoint).
      - C(local) - a directory on the host, O(local_path). When it holds a C(.llmfleet-manifest.json) (another
        snapshot made by this module, for example one copied from the controller) its hashes are checked;
        otherwise sizes only, and O(revision) must be given.
    type: str
    choices: [modelscope, huggingface, mirror, local]
    default: modelscope
  revision:
    description:
      - A commit (recommended), a tag or a branch. Defaults to C(master) on ModelScope, C(main) on Hugging
        Face, and to the revision recorded in the manifest of O(local_path).
    type: str
  endpoint:
    description:
      - Base URL of the hub API, with its scheme (C(http://) or C(https://)). Required for O(source=mirror).
      - For O(source=modelscope) and O(source=huggingface) it overrides the client's default
        (C(MODELSCOPE_ENDPOINT) / C(HF_ENDPOINT), else C(https://modelscope.cn) / C(https://huggingface.co)).
    type: str
  mirror_api:
    description:
      - The API the mirror speaks, with O(source=mirror).
    type: str
    choices: [modelscope, huggingface]
    default: huggingface
  token:
    description:
      - Access token for gated or private models. Never logged. When unset, the client's own environment
        variable is used if present (C(MODELSCOPE_API_TOKEN) / C(HF_TOKEN)).
    type: str
  local_path:
    description:
      - With O(source=local), the directory that holds the files.
    type: path
  models_root:
    description:
      - The directory that holds all snapshots. Client state goes to C(<models_root>/.cache/) and unfinished
        work to C(<models_root>/.staging/), so the whole lives on one filesystem and nothing is written to
        the home directory.
    type: path
    required: true
  allow_patterns:
    description:
      - Only files whose path matches one of these shell globs (C(*.json), C(*.safetensors)). All files when
        empty. A pattern ending in C(/) selects a directory.
    type: list
    elements: str
    default: []
  ignore_patterns:
    description:
      - Files whose path matches one of these globs are left out (applied after O(allow_patterns)).
      - Changing the patterns of an existing snapshot adds the files now wanted and removes those no longer wanted.
    type: list
    elements: str
    default: []
  verify:
    description:
      - C(quick) - an existing snapshot is checked by file size against its manifest, reading no file
        contents. Downloaded files are always hashed.
      - C(full) - every file of an existing snapshot is re-hashed; a file that differs is fetched again.
    type: str
    choices: [quick, full]
    default: quick
  free_space_margin:
    description:
      - Space that must stay free on top of the bytes still to download, as bytes (C(1073741824)), with a unit
        (C(512M), C(1G), C(2GiB)) or as a percentage of the snapshot's total size (C(5%)).
    type: str
    default: 1G
  workers:
    description:
      - Files downloaded in parallel.
    type: int
    default: 4
  retries:
    description:
      - Attempts per file after network, server or integrity failures (the clients retry inside each attempt
        too). Each attempt resumes from the bytes already received.
    type: int
    default: 3
attributes:
  check_mode:
    details:
      - Check mode resolves the revision and lists the files (read-only hub requests), runs the free-space
        preflight, and returns RV(would_download_bytes) and RV(changed) as a real run would; it writes nothing.
  idempotent:
    details:
      - The second run finds the manifest, compares sizes (or hashes with O(verify=full)) and reports no change.
        A ModelScope branch that the hub does not resolve to a commit changes when the branch moves.
extends_documentation_fragment:
  - llmfleet.serve.attributes
notes:
  - Hugging Face files bigger than 50 GB are served only through the Xet protocol, which cannot resume from
    a partial file; this module downloads over plain HTTP and so cannot fetch them.
  - The snapshot's files are world-readable (0644, directories 0755) so the service user can read them; set
    ownership afterwards if needed.
  - Two runs on the same snapshot at once are refused (a lock file in C(<models_root>/.staging/)).
seealso:
  - name: Model snapshots (design, layout, manifest format)
    description: docs/model_snapshot.md in this collection.
    link: https://example.invalid/llmfleet/serve/docs/model_snapshot.md
"""

EXAMPLES = r"""
- name: MiniMax-M2 from ModelScope, pinned, on the controller
  llmfleet.serve.model_snapshot:
    model: MiniMaxAI/MiniMax-M2
    revision: "{{ model_weights_revision }}"
    models_root: /srv/models
  delegate_to: localhost
  run_once: true

- name: From Hugging Face on the host, with the Python of the vLLM release environment
  llmfleet.serve.model_snapshot:
    model: MiniMaxAI/MiniMax-M2
    source: huggingface
    revision: main
    token: "{{ hf_token }}"
    models_root: /srv/models
    allow_patterns: ["*.json", "*.safetensors", "*.py", "*.txt"]
  vars:
    ansible_python_interpreter: /opt/llmfleet/releases/current/bin/python

- name: From a Hugging Face mirror
  llmfleet.serve.model_snapshot:
    model: MiniMaxAI/MiniMax-M2
    source: mirror
    mirror_api: huggingface
    endpoint: https://hf-mirror.example.com
    models_root: /srv/models

- name: Adopt a snapshot copied from the controller (its manifest is checked)
  llmfleet.serve.model_snapshot:
    model: MiniMaxAI/MiniMax-M2
    source: local
    local_path: /srv/incoming/MiniMax-M2
    models_root: /srv/models

- name: How much would be downloaded?
  llmfleet.serve.model_snapshot:
    model: MiniMaxAI/MiniMax-M2
    models_root: /srv/models
  check_mode: true
  register: weights_plan

- name: Re-hash everything and repair what differs
  llmfleet.serve.model_snapshot:
    model: MiniMaxAI/MiniMax-M2
    revision: "{{ model_weights_revision }}"
    models_root: /srv/models
    verify: full
"""

RETURN = r"""
path:
  description: The snapshot directory.
  returned: success
  type: str
  sample: /srv/models/MiniMaxAI/MiniMax-M2/5b5e2f2b6a8f4c0e9d1a3b7c2e4f6a8b0c1d2e3f
revision:
  description: The revision the snapshot holds - the commit when the hub resolved it, else the revision as given.
  returned: success
  type: str
  sample: 5b5e2f2b6a8f4c0e9d1a3b7c2e4f6a8b0c1d2e3f
revision_requested:
  description: The revision as asked for (or the source's default).
  returned: success
  type: str
  sample: master
revision_is_commit:
  description: Whether RV(revision) is a commit (the snapshot can never change).
  returned: success
  type: bool
  sample: true
source:
  description: The source used.
  returned: success
  type: str
  sample: modelscope
endpoint:
  description: The hub endpoint used (null for O(source=local)).
  returned: success
  type: str
  sample: https://modelscope.cn
total_bytes:
  description: Size of the snapshot's files.
  returned: success
  type: int
  sample: 230116392960
would_download_bytes:
  description: Bytes that had to be (check mode - would have to be) downloaded, partial files counted as far as they go.
  returned: success
  type: int
  sample: 115058196480
bytes_transferred:
  description: Bytes added to the staging area by this run (0 in check mode and on a complete snapshot).
  returned: success
  type: int
  sample: 115058196480
files_total:
  description: Number of files in the snapshot.
  returned: success
  type: int
  sample: 137
files_fetched:
  description: Files downloaded (or resumed) by this run.
  returned: success
  type: list
  elements: str
  sample: [model-00001-of-00130.safetensors, model-00002-of-00130.safetensors]
files_removed:
  description: Files removed from an existing snapshot because the patterns no longer select them.
  returned: success
  type: list
  elements: str
  sample: []
files_repaired:
  description: Files of an existing snapshot that failed verification (missing, wrong size, or wrong hash with O(verify=full)) and were fetched again.
  returned: success
  type: list
  elements: str
  sample: [model-00042-of-00130.safetensors]
files_unverified:
  description: Files for which the source gives no hash, so only their size was checked.
  returned: success
  type: list
  elements: str
  sample: []
listing:
  description: Where the file list came from - C(hub), C(local), or C(manifest) (a complete snapshot of a commit with the same patterns; no hub request).
  returned: success
  type: str
  sample: manifest
manifest:
  description: Path of the snapshot's manifest.
  returned: success
  type: str
  sample: /srv/models/MiniMaxAI/MiniMax-M2/5b5e2f2b6a8f4c0e9d1a3b7c2e4f6a8b0c1d2e3f/.llmfleet-manifest.json
error_kind:
  description: On failure, the kind of error (missing_library, repo_not_found, revision_not_found, file_not_found, auth, network, server, integrity, no_space, locked, request, manifest, download).
  returned: failure
  type: str
  sample: no_space
needed_bytes:
  description: On a free-space refusal, the bytes needed (to download plus margin).
  returned: failure
  type: int
  sample: 116131938304
free_bytes:
  description: On a free-space refusal, the bytes free.
  returned: failure
  type: int
  sample: 53687091200
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmfleet.serve.plugins.module_utils import hub_clients
from ansible_collections.llmfleet.serve.plugins.module_utils import snapshot as sn

ERROR_KINDS: dict[type[sn.SnapshotError], str] = {
    sn.SpaceError: "no_space",
    sn.LockedError: "locked",
    sn.RequestError: "request",
    sn.ManifestError: "manifest",
    sn.DownloadError: "download",
}


def argument_spec() -> dict[str, Any]:
    return {
        "model": {"type": "str", "required": True},
        "source": {
            "type": "str",
            "choices": ["modelscope", "huggingface", "mirror", "local"],
            "default": "modelscope",
        },
        "revision": {"type": "str"},
        "endpoint": {"type": "str"},
        "mirror_api": {"type": "str", "choices": ["modelscope", "huggingface"], "default": "huggingface"},
        "token": {"type": "str", "no_log": True},
        "local_path": {"type": "path"},
        "models_root": {"type": "path", "required": True},
        "allow_patterns": {"type": "list", "elements": "str", "default": []},
        "ignore_patterns": {"type": "list", "elements": "str", "default": []},
        "verify": {"type": "str", "choices": ["quick", "full"], "default": "quick"},
        "free_space_margin": {"type": "str", "default": "1G"},
        "workers": {"type": "int", "default": 4},
        "retries": {"type": "int", "default": 3},
    }


def build_request(params: dict[str, Any], check_mode: bool) -> sn.SnapshotRequest:
    return sn.SnapshotRequest(
        model=params["model"],
        models_root=params["models_root"],
        revision=params["revision"],
        source=params["source"],
        endpoint=params["endpoint"],
        allow_patterns=tuple(params["allow_patterns"]),
        ignore_patterns=tuple(params["ignore_patterns"]),
        verify_full=params["verify"] == "full",
        free_space_margin=params["free_space_margin"],
        workers=params["workers"],
        retries=params["retries"],
        check_mode=check_mode,
    )


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_if=[("source", "mirror", ("endpoint",)), ("source", "local", ("local_path",))],
    )
    params = module.params

    def source_factory(client_home: Any) -> sn.Source:
        return hub_clients.make_source(
            params["source"],
            client_home,
            endpoint=params["endpoint"],
            token=params["token"],
            mirror_api=params["mirror_api"],
            local_path=params["local_path"],
        )

    try:
        result = sn.sync_snapshot(build_request(params, module.check_mode), source_factory)
    except sn.HubError as exc:
        module.fail_json(msg=exc.message, error_kind=exc.kind, status=exc.status)
    except sn.SnapshotError as exc:
        kind = next((k for cls, k in ERROR_KINDS.items() if isinstance(exc, cls)), "error")
        module.fail_json(msg=exc.message, error_kind=kind, **exc.details)
    data = result.to_dict()
    for warning in data.pop("warnings"):
        module.warn(warning)
    module.exit_json(**data)


if __name__ == "__main__":
    main()
