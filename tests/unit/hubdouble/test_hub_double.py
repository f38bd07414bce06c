"""The hub double speaks the snapshot protocol of the real clients (modelscope and huggingface_hub run against
it unchanged), serves ranges, injects faults, and counts requests and bytes per file."""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hubdouble.content import make_model_repo, tree_bytes, write_random
from hubdouble.fixture import HubDouble
from hubdouble.server import DoubleState

REPO = "acme/tiny"


@pytest.fixture
def repo(hub_double: HubDouble) -> Path:
    return make_model_repo(hub_double.root, REPO, "master", shards=2, shard_size=2 * 1024 * 1024)


def files_of(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and ".cache" not in p.relative_to(directory).parts
    }


def get(
    url: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def ms_download(double: HubDouble, tmp_path: Path, **kwargs) -> Path:
    from modelscope import snapshot_download

    out = tmp_path / "ms"
    return Path(
        snapshot_download(
            REPO, local_dir=str(out), cache_dir=str(tmp_path / "ms-cache"), endpoint=double.url, **kwargs
        )
    )


def hf_download(double: HubDouble, tmp_path: Path, **kwargs) -> Path:
    import huggingface_hub

    out = tmp_path / "hf"
    return Path(
        huggingface_hub.snapshot_download(
            REPO, local_dir=str(out), cache_dir=str(tmp_path / "hf-cache"), endpoint=double.url, **kwargs
        )
    )


# ---------------------------------------------------------------------------------------------------------------
# Both real clients, unchanged
# ---------------------------------------------------------------------------------------------------------------
def test_modelscope_snapshot_download(hub_double, repo, tmp_path):
    out = ms_download(hub_double, tmp_path)
    assert files_of(out) == files_of(repo)
    stats = hub_double.stats()
    assert stats["requests"]["by_kind"]["listing"] == 1
    assert hub_double.file_requests(REPO) == {path: 1 for path in files_of(repo)}
    assert hub_double.file_bytes(REPO) == tree_bytes(repo) == stats["bytes_total"]
    listing = next(r for r in stats["log"] if r["kind"] == "listing")
    assert listing["path"] == "/api/v1/models/acme/tiny/repo/files?Revision=master&Recursive=True"
    # Weights go through a redirect to the CDN, as on the real hub.
    assert hub_double.file_stats(REPO)["model-00001-of-00002.safetensors"]["redirects"] == 1


def test_huggingface_snapshot_download(hub_double, repo, tmp_path):
    out = hf_download(hub_double, tmp_path)
    assert files_of(out) == files_of(repo)
    stats = hub_double.stats()
    assert stats["requests"]["by_kind"]["revision"] == 1
    assert stats["requests"]["by_kind"]["listing"] == 1
    assert stats["requests"]["by_kind"]["head"] == len(files_of(repo))
    assert hub_double.file_requests(REPO) == {path: 1 for path in files_of(repo)}
    assert hub_double.file_bytes(REPO) == tree_bytes(repo)


def test_both_apis_report_the_same_content_derived_commit(hub_double, repo):
    from huggingface_hub import HfApi
    from modelscope_hub import HubApi, HubConfig

    hf_sha = HfApi(endpoint=hub_double.url).model_info(REPO, revision="main").sha
    ms_revisions = HubApi(config=HubConfig(endpoint=hub_double.url)).list_repo_revisions(REPO, "model")
    assert [r["Revision"] for r in ms_revisions] == ["master"]
    assert ms_revisions[0]["CommitId"] == hf_sha
    assert len(hf_sha) == 40
    # The commit is derived from the content: change a byte, the commit changes.
    (repo / "config.json").write_text('{"changed": true}\n')
    assert HfApi(endpoint=hub_double.url).model_info(REPO, revision="main").sha != hf_sha


def test_hf_tree_gives_sizes_lfs_sha256_and_git_blob_ids(hub_double, repo):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_double.url)
    commit = api.model_info(REPO).sha
    entries = {e.path: e for e in api.list_repo_tree(REPO, recursive=True, revision=commit)}
    shard = entries["model-00001-of-00002.safetensors"]
    data = (repo / shard.path).read_bytes()
    assert shard.size == len(data)
    assert shard.lfs.sha256 == hashlib.sha256(data).hexdigest()
    config = entries["config.json"]
    raw = (repo / "config.json").read_bytes()
    assert config.lfs is None
    assert config.blob_id == hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()


def test_hf_tree_paginates_with_link_header(hub_double):
    from huggingface_hub import HfApi

    directory = hub_double.root / "acme" / "many" / "main"
    for i in range(1005):
        (directory / f"f{i:04d}.txt").parent.mkdir(parents=True, exist_ok=True)
        (directory / f"f{i:04d}.txt").write_text(str(i))
    entries = list(HfApi(endpoint=hub_double.url).list_repo_tree("acme/many", recursive=True))
    assert len(entries) == 1005
    assert hub_double.stats()["requests"]["by_kind"]["listing"] == 2


def test_main_and_master_are_aliases_and_commits_resolve(hub_double, repo):
    status, _, body = get(f"{hub_double.url}/api/models/{REPO}/revision/main")
    assert status == 200
    commit = json.loads(body)["sha"]
    status, _, body = get(
        f"{hub_double.url}/api/v1/models/{REPO}/repo/files?Revision={commit}&Recursive=True"
    )
    assert status == 200
    paths = {f["Path"] for f in json.loads(body)["Data"]["Files"]}
    assert paths == set(files_of(repo))


# ---------------------------------------------------------------------------------------------------------------
# Ranges and redirects
# ---------------------------------------------------------------------------------------------------------------
def test_range_requests(hub_double, repo):
    data = (repo / "config.json").read_bytes()
    url = f"{hub_double.url}/api/v1/models/{REPO}/repo?Revision=master&FilePath=config.json"
    status, headers, body = get(url, {"Range": "bytes=10-"})
    assert (status, body) == (206, data[10:])
    assert headers["Content-Range"] == f"bytes 10-{len(data) - 1}/{len(data)}"
    status, headers, body = get(url, {"Range": "bytes=2-5"})
    assert (status, body, headers["Content-Length"]) == (206, data[2:6], "4")
    status, headers, _ = get(url, {"Range": f"bytes={len(data)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(data)}"
    status, _, body = get(url)
    assert (status, body) == (200, data)
    assert hub_double.file_stats(REPO)["config.json"]["ranges"] == ["bytes=10-", "bytes=2-5", None]


def test_lfs_files_redirect_to_the_other_loopback_name(hub_double, repo):
    from huggingface_hub import HfApi

    commit = HfApi(endpoint=hub_double.url).model_info(REPO).sha
    url = f"{hub_double.url}/{REPO}/resolve/{commit}/model-00001-of-00002.safetensors"
    status, headers, _ = get(url, method="HEAD")
    data = (repo / "model-00001-of-00002.safetensors").read_bytes()
    assert status == 302
    assert urlsplit(headers["Location"]).hostname == "localhost"
    assert headers["X-Repo-Commit"] == commit
    assert headers["X-Linked-Etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert headers["X-Linked-Size"] == str(len(data))
    status, _, body = get(headers["Location"], {"Range": "bytes=100-199"})
    assert (status, body) == (206, data[100:200])


# ---------------------------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------------------------
def test_cut_connection_is_resumed_by_modelscope_with_range(hub_double, repo, tmp_path):
    shard = "model-00002-of-00002.safetensors"
    hub_double.set_faults({"kind": "cut", "path": shard, "after_bytes": 1_000_000, "times": 1})
    out = ms_download(hub_double, tmp_path)
    assert files_of(out) == files_of(repo)
    entry = hub_double.file_stats(REPO)[shard]
    assert entry["requests"] == 2
    assert entry["ranges"] == [None, "bytes=1000000-"]
    assert entry["bytes"] == (repo / shard).stat().st_size
    assert hub_double.stats()["faults"] == []  # used up


def test_flipped_byte_is_caught_by_modelscope_but_not_by_huggingface_hub(hub_double, repo, tmp_path):
    shard = "model-00001-of-00002.safetensors"
    hub_double.set_faults({"kind": "flip", "path": shard, "offset": 12345, "times": 1, "api": "ms"})
    out = ms_download(hub_double, tmp_path)
    assert (out / shard).read_bytes() == (repo / shard).read_bytes()
    assert hub_double.file_stats(REPO)[shard]["requests"] == 2  # sha256 mismatch, fetched again

    hub_double.reset()
    hub_double.set_faults({"kind": "flip", "path": shard, "offset": 12345, "times": 1})
    out = hf_download(hub_double, tmp_path)
    served = (out / shard).read_bytes()
    expected = (repo / shard).read_bytes()
    assert served != expected and len(served) == len(expected)
    assert served[12345] == expected[12345] ^ 0xFF
    assert hub_double.file_stats(REPO)[shard]["requests"] == 1  # accepted silently


@pytest.mark.parametrize(
    ("fault", "client", "expected"),
    [
        ({"kind": "status", "status": 404, "on": "listing"}, "ms", "404"),
        ({"kind": "status", "status": 401, "on": "listing"}, "ms", "401"),
        ({"kind": "status", "status": 401, "on": "revision"}, "hf", "GatedRepoError"),
        (
            {"kind": "status", "status": 404, "on": "revision", "error_code": "RepoNotFound"},
            "hf",
            "RepositoryNotFoundError",
        ),
        ({"kind": "status", "status": 500, "on": "file", "path": "config.json"}, "hf", "500"),
    ],
    ids=["ms-listing-404", "ms-listing-401", "hf-revision-401", "hf-revision-404", "hf-file-500"],
)
def test_status_faults_reach_the_clients_as_their_errors(hub_double, repo, tmp_path, fault, client, expected):
    hub_double.set_faults(fault)
    download = ms_download if client == "ms" else hf_download
    with pytest.raises(Exception) as err:
        download(hub_double, tmp_path)
    assert expected in f"{type(err.value).__name__} {err.value}"


def test_unknown_revision_gets_the_hf_error_code_and_modelscope_a_404(hub_double, repo):
    status, headers, _ = get(f"{hub_double.url}/api/models/{REPO}/revision/v9")
    assert (status, headers["X-Error-Code"]) == (404, "RevisionNotFound")
    status, _, body = get(f"{hub_double.url}/api/v1/models/{REPO}/repo/files?Revision=v9")
    assert status == 404 and "v9" in json.loads(body)["Message"]
    status, _, body = get(f"{hub_double.url}/api/v1/models/acme/nothing/repo/files?Revision=master")
    assert status == 404 and "acme/nothing" in json.loads(body)["Message"]


GATED, PRIVATE, ACCOUNT = "acme/gated", "acme/private", "someone-else"
TOKENS = {GATED: "gated-token", PRIVATE: "private-token", REPO: "tiny-token"}
GATED_NO_TOKEN = f"Access to model {GATED} is restricted. You must have access to it and be authenticated"
GATED_OTHER = f"Access to model {GATED} is restricted and you are not in the authorized list. Visit http://"
INVALID = "Invalid credentials in Authorization header"
NOT_FOUND = "Repository not found"


@pytest.fixture
def restricted(hub_double: HubDouble, repo: Path) -> HubDouble:
    """acme/tiny (gated), acme/gated (gated), acme/private (private), acme/public, and a valid account."""
    for name in ("gated", "private", "public"):
        make_model_repo(hub_double.root, f"acme/{name}", "main", shards=1, shard_size=1000)
    hub_double.set_tokens(dict(TOKENS), private=[PRIVATE], accounts=[ACCOUNT])
    return hub_double


@pytest.mark.parametrize(
    ("repo_id", "what", "token", "expected"),
    [
        ("acme/missing", "revision", None, (401, "RepoNotFound", NOT_FOUND)),
        ("acme/missing", "revision", ACCOUNT, (404, "RepoNotFound", NOT_FOUND)),
        ("acme/missing", "revision", "wrong", (401, None, INVALID)),
        (PRIVATE, "revision", None, (401, "RepoNotFound", NOT_FOUND)),
        (PRIVATE, "tree", ACCOUNT, (404, "RepoNotFound", NOT_FOUND)),
        (PRIVATE, "resolve", None, (401, "RepoNotFound", NOT_FOUND)),
        (PRIVATE, "revision", "private-token", (200, None, None)),
        ("acme/public", "revision", "wrong", (401, None, INVALID)),
        ("acme/public", "resolve", "wrong", (401, None, INVALID)),
        ("acme/public", "resolve", ACCOUNT, (200, None, None)),
        (GATED, "revision", None, (200, None, None)),
        (GATED, "tree", None, (200, None, None)),
        (GATED, "resolve", None, (401, "GatedRepo", GATED_NO_TOKEN)),
        (GATED, "auth-check", None, (401, "GatedRepo", GATED_NO_TOKEN)),
        (GATED, "resolve", ACCOUNT, (403, "GatedRepo", GATED_OTHER)),
        (GATED, "resolve", "private-token", (403, "GatedRepo", GATED_OTHER)),
        (GATED, "resolve", "gated-token", (200, None, None)),
        (GATED, "auth-check", "gated-token", (200, None, None)),
        (GATED, "revision", "wrong", (401, None, INVALID)),
    ],
)
def test_hf_api_refuses_as_the_real_hub(restricted, repo_id, what, token, expected):
    path = {
        "revision": f"/api/models/{repo_id}/revision/main",
        "tree": f"/api/models/{repo_id}/tree/main?recursive=true",
        "auth-check": f"/api/models/{repo_id}/auth-check",
        "resolve": f"/{repo_id}/resolve/main/config.json",
    }[what]
    status, headers, body = get(
        restricted.url + path, {"Authorization": f"Bearer {token}"} if token else {}, method="GET"
    )
    want_status, want_code, want_message = expected
    assert (status, headers.get("X-Error-Code")) == (want_status, want_code)
    if want_message:
        assert headers["X-Error-Message"].startswith(want_message)
        assert json.loads(body)["error"] == headers["X-Error-Message"]


def test_hf_metadata_tells_gated_and_private(restricted):
    gated = json.loads(get(f"{restricted.url}/api/models/{GATED}/revision/main")[2])
    assert (gated["gated"], gated["private"]) == ("manual", False)
    private = get(
        f"{restricted.url}/api/models/{PRIVATE}/revision/main", {"Authorization": "Bearer private-token"}
    )[2]
    assert (json.loads(private)["gated"], json.loads(private)["private"]) == (False, True)
    public = json.loads(get(f"{restricted.url}/api/models/acme/public/revision/main")[2])
    assert (public["gated"], public["private"]) == (False, False)


def test_modelscope_keeps_401_for_a_restricted_repo_without_its_token(restricted):
    for repo_id in (GATED, PRIVATE):
        url = f"{restricted.url}/api/v1/models/{repo_id}/repo/files?Revision=master"
        status, _, body = get(url)
        assert status == 401 and repo_id in json.loads(body)["Message"]
        assert get(url, {"Cookie": f"m_session_id={TOKENS[repo_id]}"})[0] == 200
    # ModelScope ignores a token it does not know on a public repository.
    assert (
        get(f"{restricted.url}/api/v1/models/acme/public/repo/files", {"Cookie": "m_session_id=x"})[0] == 200
    )


def test_real_clients_raise_their_own_errors_for_each_refusal(restricted):
    from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    api = HfApi(endpoint=restricted.url)
    with pytest.raises(RepositoryNotFoundError) as missing:
        api.model_info("acme/missing", token=False)
    assert missing.value.response.status_code == 401 and "Repository Not Found for url" in str(missing.value)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(PRIVATE, token=ACCOUNT)
    with pytest.raises(HfHubHTTPError) as refused:
        api.model_info("acme/public", token="wrong")
    assert not isinstance(refused.value, RepositoryNotFoundError) and refused.value.server_message == INVALID
    assert api.model_info(GATED, token=False).gated == "manual"
    url = hf_hub_url(GATED, "config.json", endpoint=restricted.url)
    with pytest.raises(GatedRepoError) as gated:
        get_hf_file_metadata(url, token=False, endpoint=restricted.url)
    assert gated.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as other:
        api.auth_check(GATED, token=ACCOUNT)
    assert other.value.response.status_code == 403


def test_a_token_opens_its_repo_but_the_cdn_needs_none(hub_double, repo, tmp_path):
    hub_double.set_tokens({REPO: "s3cret"})
    status, headers, _ = get(f"{hub_double.url}/{REPO}/resolve/main/config.json")
    assert (status, headers["X-Error-Code"]) == (401, "GatedRepo")
    status, _, body = get(
        f"{hub_double.url}/api/models/{REPO}/revision/main", {"Authorization": "Bearer s3cret"}
    )
    assert status == 200
    commit = json.loads(body)["sha"]
    status, _, _ = get(
        f"{hub_double.url}/api/v1/models/{REPO}/repo/files?Revision=master", {"Cookie": "m_session_id=s3cret"}
    )
    assert status == 200
    status, _, _ = get(
        f"{hub_double.url}/_cdn/acme/tiny/{commit}/model-00001-of-00002.safetensors", method="HEAD"
    )
    assert status == 200
    out = hf_download(hub_double, tmp_path, token="s3cret")
    assert files_of(out) == files_of(repo)


def test_stall_sends_n_bytes_then_hangs_and_counts_them(hub_double, repo):
    shard = "model-00001-of-00002.safetensors"
    hub_double.set_faults({"kind": "stall", "path": shard, "after_bytes": 300_000, "seconds": 30})
    received = bytearray()

    def fetch():
        conn = http.client.HTTPConnection(
            urlsplit(hub_double.url).hostname, urlsplit(hub_double.url).port, timeout=30
        )
        conn.request("GET", f"/api/v1/models/{REPO}/repo?Revision=master&FilePath={shard}")
        response = conn.getresponse()
        if response.status == 302:
            location = urlsplit(response.getheader("Location"))
            conn = http.client.HTTPConnection(location.hostname, location.port, timeout=30)
            conn.request("GET", location.path)
            response = conn.getresponse()
        try:
            while chunk := response.read(65536):
                received.extend(chunk)
        except (http.client.IncompleteRead, OSError):
            pass

    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while hub_double.file_bytes(REPO, shard) < 300_000 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert hub_double.file_bytes(REPO, shard) == 300_000
    assert thread.is_alive()  # hanging, not closed
    hub_double.stop()  # ends the stall
    thread.join(5)
    assert len(received) == 300_000


def test_slow_fault_applies_its_times_and_is_then_gone(hub_double, repo):
    hub_double.set_faults({"kind": "slow", "on": "any", "delay": 0.05, "rate": 10_000_000, "times": 2})
    assert get(f"{hub_double.url}/api/models/{REPO}/revision/main")[0] == 200
    assert len(hub_double.stats()["faults"]) == 1
    assert hub_double.stats()["faults"][0]["times"] == 1
    get(f"{hub_double.url}/api/models/{REPO}/revision/main")
    assert hub_double.stats()["faults"] == []


def test_fault_matching_by_api_repo_and_path(hub_double, repo):
    hub_double.set_faults({"kind": "status", "status": 500, "api": "ms", "repo": "acme/*", "path": "*.json"})
    assert get(f"{hub_double.url}/api/v1/models/{REPO}/repo?Revision=master&FilePath=config.json")[0] == 500
    assert get(f"{hub_double.url}/api/v1/models/{REPO}/repo?Revision=master&FilePath=README.md")[0] == 200
    commit = json.loads(get(f"{hub_double.url}/api/models/{REPO}/revision/main")[2])["sha"]
    assert get(f"{hub_double.url}/{REPO}/resolve/{commit}/config.json")[0] == 200


def test_control_endpoints_validate_and_reset(hub_double, repo):
    status, _, _body = get(f"{hub_double.url}/api/models/{REPO}/revision/main")
    assert status == 200
    request = urllib.request.Request(
        f"{hub_double.url}/_double/faults",
        data=json.dumps({"faults": [{"kind": "explode"}]}).encode(),
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=5)
    assert err.value.code == 400
    assert "fault kind must be one of" in json.loads(err.value.read())["error"]
    hub_double.set_faults({"kind": "cut", "after_bytes": 1})
    hub_double.set_faults({"kind": "flip"}, append=True)
    assert [f["kind"] for f in hub_double.stats()["faults"]] == ["cut", "flip"]
    hub_double.reset(faults=False)
    stats = hub_double.stats()
    assert stats["requests"]["total"] == 0 and stats["bytes_total"] == 0 and stats["log"] == []
    assert len(stats["faults"]) == 2
    hub_double.reset(faults=True)
    assert hub_double.stats()["faults"] == []


def test_a_request_that_started_before_a_reset_is_not_logged_after_it():
    state = DoubleState()
    before_reset = time.monotonic()
    state.reset_stats()
    state.add_log({"path": "/late"}, started=before_reset)
    state.add_log({"path": "/after"}, started=time.monotonic())
    assert [record["path"] for record in state.snapshot()["log"]] == ["/after"]


def test_runs_as_a_process_with_faults_from_the_command_line(tmp_path):
    make_model_repo(tmp_path, REPO, "main", shards=1, shard_size=100_000)
    write_random(tmp_path / "acme" / "tiny" / "main" / "extra.bin", 5000, seed=3)
    faults = json.dumps([{"kind": "status", "status": 404, "path": "extra.bin", "on": "file"}])
    double = HubDouble.start_process(tmp_path, extra_args=["--faults", faults])
    try:
        assert len(double.stats()["faults"]) == 1
        status, _, body = get(f"{double.url}/api/v1/models/{REPO}/repo?Revision=main&FilePath=extra.bin")
        assert status == 404 and "injected" in json.loads(body)["Message"]
        status, _, body = get(f"{double.url}/api/v1/models/{REPO}/repo?Revision=main&FilePath=config.json")
        assert status == 200 and body == (tmp_path / "acme" / "tiny" / "main" / "config.json").read_bytes()
    finally:
        double.stop()


def test_same_origin_cdn_works_for_hosts_that_reach_the_double_by_one_address(tmp_path):
    """Test hosts in other network namespaces reach the double by one address (``--cdn-url same-origin``).
    CDN answers carry X-Repo-Commit and X-Linked-*, which huggingface_hub then reads after its redirect."""
    make_model_repo(tmp_path / "root", REPO, "master", shards=1, shard_size=1024 * 1024)
    double = HubDouble.start_thread(tmp_path / "root", cdn_url="same-origin")
    try:
        out = hf_download(double, tmp_path)
        assert files_of(out) == files_of(tmp_path / "root" / "acme" / "tiny" / "master")
        url = f"{double.url}/api/v1/models/{REPO}/repo?Revision=master&FilePath=model-00001-of-00001.safetensors"
        status, headers, _ = get(url)
        assert status == 302 and headers["Location"].startswith(double.url + "/_cdn/")
    finally:
        double.stop()
