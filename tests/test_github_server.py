"""Self-test of the loopback GitHub server: it serves PyGithub, and it catches spec violations."""

from __future__ import annotations

import json
from pathlib import Path

import github
import requests

try:
    from tests.github_server import GitHubServer, github_server, make_github_server  # noqa: F401
    from tests.github_server.spec import SPEC_PATH
except ModuleNotFoundError:  # pytest puts tests/ (not the repo root) on sys.path
    from github_server import GitHubServer, github_server, make_github_server  # noqa: F401
    from github_server.spec import SPEC_PATH


def test_spec_path_is_the_vendored_subset():
    repo_root = Path(__file__).resolve().parents[1]
    assert SPEC_PATH == repo_root / "tests" / "data" / "github-rest-api-subset.json"
    assert SPEC_PATH.is_file()
    source = json.loads(SPEC_PATH.read_text())["info"]["x-pttrust-source"]
    assert source["npm"] == "@octokit/openapi@23.0.2" and len(source["sha256"]) == 64


def _client(server):
    return github.Github(
        auth=github.Auth.Token(server.token),
        base_url=server.base_url,
        seconds_between_requests=0,
        seconds_between_writes=0,
        retry=None,
    )


def test_serves_pygithub_without_violations(github_server):
    repo = github_server.state.create_repo("octo", "demo")
    base = repo.commit({"a.py": "x = 1\n"})
    head = repo.commit({"a.py": "x = 1\ny = 2\n"}, parent=base, author_login="copilot[bot]")
    repo.open_pull(base, head, labels=["ai-generated"])
    pull = _client(github_server).get_repo("octo/demo").get_pull(1)
    assert pull.head.sha == head and [l.name for l in pull.labels] == ["ai-generated"]
    (f,) = list(pull.get_files())
    assert f.filename == "a.py" and f.patch == "@@ -1 +1,2 @@\n x = 1\n+y = 2"
    (c,) = list(pull.get_commits())
    assert c.author.login == "copilot[bot]"
    # fixture teardown asserts github_server.violations == []


def test_invalid_request_and_response_are_recorded():
    with GitHubServer() as server:
        repo = server.state.create_repo("octo", "demo")
        sha = repo.commit({"a": "1\n"})
        auth = {"Authorization": f"token {server.token}"}
        requests.post(
            f"{server.base_url}/repos/octo/demo/check-runs",
            headers=auth,
            json={"name": "x", "head_sha": sha, "conclusion": "bogus"},
        )
        assert any(v.startswith("request POST /repos/octo/demo/check-runs") for v in server.violations)
        assert any(v.startswith("response 201 POST") for v in server.violations)  # echoed the bad value
        server.violations.clear()
        requests.get(f"{server.base_url}/repos/octo/demo/branches", headers=auth)
        assert any("not in the REST description subset" in v for v in server.violations)


def test_invalid_response_is_recorded(monkeypatch):
    with GitHubServer() as server:
        repo = server.state.create_repo("octo", "demo")
        base = repo.commit({"a": "1\n"})
        repo.open_pull(base, repo.commit({"a": "2\n"}, parent=base))
        from importlib import import_module

        ctx = import_module(type(server).__module__)._Ctx
        real = ctx.pull_json
        monkeypatch.setattr(ctx, "pull_json", lambda self, pull: real(self, pull) | {"number": "one"})
        requests.get(f"{server.base_url}/repos/octo/demo/pulls/1", headers={"Authorization": f"token {server.token}"})
        assert server.violations, "a pull request whose number is a string must be caught"


def test_faults_validate_and_are_consumed(github_server):
    github_server.state.create_repo("octo", "demo")
    auth = {"Authorization": f"token {github_server.token}"}
    url = f"{github_server.base_url}/repos/octo/demo"
    github_server.faults.rate_limit("repos/get", times=1)
    github_server.faults.too_many_requests("repos/get", times=1, retry_after=3)
    github_server.faults.server_error("repos/get", times=1)
    r1, r2, r3, r4 = (requests.get(url, headers=auth) for _ in range(4))
    assert (r1.status_code, r1.headers["x-ratelimit-remaining"]) == (403, "0")
    assert "x-ratelimit-reset" in r1.headers
    assert (r2.status_code, r2.headers["Retry-After"]) == (429, "3")
    assert r3.status_code == 500 and r4.status_code == 200
    assert json.loads(r4.content)["full_name"] == "octo/demo"
    assert requests.get(url, headers={"Authorization": "token wrong"}).status_code == 401


def test_enterprise_prefix(make_github_server):
    server = make_github_server(prefix="/api/v3")
    server.state.create_repo("octo", "demo")
    assert server.base_url.endswith("/api/v3")
    assert _client(server).get_repo("octo/demo").full_name == "octo/demo"
