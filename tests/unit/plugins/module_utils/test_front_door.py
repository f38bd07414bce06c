import datetime
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.llmfleet.serve.plugins.module_utils import front_door as fd

TLS_PY = Path(__file__).resolve().parents[4] / "lab" / "tls.py"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")

    def issue(name, *args):
        subprocess.run([sys.executable, str(TLS_PY), "issue", str(directory), name, *args], check=True)
        return (directory / f"{name}.pem").read_text(), (directory / f"{name}.key").read_text()

    return {
        "good": issue("good", "--san", "10.1.1.1", "--san", "gw.lab"),
        "expired": issue("expired", "--san", "10.1.1.1", "--days", "-2"),
        "mismatched": issue("mismatched", "--san", "10.1.1.1", "--other-key"),
    }


def test_a_good_pair_for_the_names_clients_use_has_no_problem(pki):
    assert fd.certificate_problems(*pki["good"], names=["10.1.1.1", "gw.lab"]) == []


def test_a_key_of_another_certificate_is_refused(pki):
    [problem] = fd.certificate_problems(*pki["mismatched"])
    assert "llmfleet_tls_key does not belong to the certificate CN=10.1.1.1" in problem


def test_an_expired_certificate_is_refused_with_its_date(pki):
    [problem] = fd.certificate_problems(*pki["expired"])
    expired_on = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2)
    assert f"expired on {expired_on:%Y-%m-%d}: renew it" in problem


def test_a_name_the_certificate_does_not_cover_is_named_with_those_it_does(pki):
    [problem] = fd.certificate_problems(*pki["good"], names=["10.1.1.2"])
    assert "is not valid for 10.1.1.2, the address clients use; it names 10.1.1.1, gw.lab" in problem


def test_missing_or_unreadable_material_says_what_to_give():
    assert fd.certificate_problems("", "") == [f"no TLS certificate or key: {fd.CERT_HINT}"]
    [problem] = fd.certificate_problems("not a pem", "x")
    assert problem.startswith("llmfleet_tls_cert is not a PEM certificate")


@pytest.mark.parametrize(
    ("keys", "problems"),
    [
        (["k1", "k2"], []),
        ([], ["llmfleet_api_keys is empty"]),
        ("k1", ["llmfleet_api_keys is empty"]),
        (["k1", "k1"], ["llmfleet_api_keys lists a key twice"]),
        (["k1", "a b"], ["llmfleet_api_keys[1] is blank or holds white space"]),
    ],
)
def test_the_key_set(keys, problems):
    found = fd.api_key_problems(keys)
    assert [p[: len(want)] for p, want in zip(found, problems, strict=True)] == problems


def test_the_scrape_allowlist_names_each_bad_entry():
    assert fd.network_problems(["10.0.0.5", "10.1.0.0/24", "::1"], "allow") == []
    assert fd.network_problems(["10.0.0.5", "prometheus"], "allow") == [
        "allow[1] = 'prometheus' is not an IP address or network (e.g. 10.1.0.0/24)"
    ]
    assert fd.network_problems("10.0.0.5", "allow")[0].startswith("allow must be a list")


def test_the_proxy_compares_the_digest_of_the_whole_header():
    # printf 'Bearer k1' | sha256sum
    assert fd.key_digest("k1") == "d531ce3dfd8914036257be957da6ec446233b822494ec29de2100fc960fc1426"
