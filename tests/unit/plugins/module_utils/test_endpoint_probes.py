import datetime

import pytest

from ansible_collections.llmfleet.serve.plugins.module_utils import endpoint_probes as ep

ROUTES = {
    "/health": ["get"],
    "/v1/chat/completions": ["post"],
    "/invocations": ["post"],
    "/v1/models/{model_id}": ["get", "delete"],
}


def test_public_paths_are_not_probed_and_path_parameters_are_filled():
    assert ep.probe_targets(ROUTES, ["/health"]) == [
        ("POST", "/invocations"),
        ("POST", "/v1/chat/completions"),
        ("DELETE", "/v1/models/probe"),
        ("GET", "/v1/models/probe"),
    ]


def test_an_openapi_paths_object_is_read_for_its_methods_only():
    paths = {"/tokenize": {"post": {"summary": "Tokenize"}, "parameters": [], "summary": "Tokenizer"}}
    assert ep.probe_targets(paths, []) == [("POST", "/tokenize")]


def test_each_target_is_sent_without_a_key_and_with_a_wrong_one():
    sent = []

    def send(method, path, headers):
        sent.append((method, path, headers))
        return 401

    statuses = ep.probe_routes(send, [("POST", "/invocations")], "wrong")
    assert statuses == {"POST /invocations": {"no_key": 401, "wrong_key": 401}}
    assert sent == [("POST", "/invocations", {}), ("POST", "/invocations", {"Authorization": "Bearer wrong"})]


@pytest.mark.parametrize("status", [401, 403, 404, 405])
def test_refusals_are_not_leaks(status):
    assert ep.judge_probes({"POST /tokenize": {"no_key": status, "wrong_key": status}}) == []


@pytest.mark.parametrize("status", [200, 204, 302, 400, 422, 500])
def test_any_other_answer_is_a_leak(status):
    # 400/422: the request reached vLLM, which parsed it; 500: it ran and failed there.
    assert ep.judge_probes({"POST /invocations": {"no_key": status, "wrong_key": 401}}) == [
        f"POST /invocations: no_key {status}"
    ]


NOW = datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)


def test_a_certificate_far_from_its_end_has_no_warning():
    details = ep.judge_certificate(
        {"notAfter": "Jun  1 12:00:00 2027 GMT", "issuer": ((("commonName", "lab CA"),),)}, 30, NOW
    )
    assert details == {
        "verified": True,
        "not_after": "Jun  1 12:00:00 2027 GMT",
        "days_left": 151,
        "issuer": "lab CA",
    }


def test_a_certificate_near_its_end_warns_with_the_date():
    details = ep.judge_certificate({"notAfter": "Jan 11 00:00:00 2027 GMT"}, 30, NOW)
    assert details["days_left"] == 10
    assert details["warning"] == "the certificate expires in 10 days (on Jan 11 00:00:00 2027 GMT): renew it"
