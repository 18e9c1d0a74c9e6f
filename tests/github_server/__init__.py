"""A loopback GitHub REST server for tests, validating every request and response against GitHub's
REST description (``tests/data/github-rest-api-subset.json``, see ``scripts/cut-github-rest-subset``).

Usage (also see ``tests/test_github_server.py``)::

    from tests.github_server import GitHubServer, github_server   # the fixture, re-export in a test module

    def test_something(github_server):                 # started, torn down, asserts no violations
        repo = github_server.state.create_repo("octo", "demo")
        base = repo.commit({"a.py": "x = 1\n"})
        head = repo.commit({"a.py": "x = 1\ny = 2\n"}, parent=base, author_login="copilot[bot]")
        pull = repo.open_pull(base, head, labels=["ai"])
        gh = github.Github(auth=github.Auth.Token(github_server.token), base_url=github_server.base_url)
        ...
        github_server.faults.too_many_requests("pulls/create-review", times=2)
        assert github_server.calls_to("pulls/create-review")[-1].status == 200

``GitHubServer(prefix="/api/v3")`` serves like GitHub Enterprise Server. ``make_github_server`` is the
factory fixture for several servers or a prefix. Violations are collected in ``server.violations``;
the fixtures assert there are none at teardown, so a spec-invalid request or response fails the test.
"""

from __future__ import annotations

import pytest

from .faults import Fault, FaultQueue
from .server import GitHubServer, RecordedCall
from .spec import SPEC_PATH, SpecValidator, spec_path
from .state import Commit, GitHubState, Pull, Repo, TokenInfo

__all__ = [
    "GitHubServer",
    "FaultQueue",
    "Fault",
    "RecordedCall",
    "GitHubState",
    "Repo",
    "Pull",
    "Commit",
    "TokenInfo",
    "SpecValidator",
    "SPEC_PATH",
    "spec_path",
    "github_server",
    "make_github_server",
]


@pytest.fixture
def make_github_server():
    """Factory: ``make_github_server(prefix="/api/v3")`` -> a started server; all are stopped and checked
    for description violations at teardown."""
    servers: list[GitHubServer] = []

    def make(prefix: str = "", bot_login: str = "pttrust-bot[bot]") -> GitHubServer:
        server = GitHubServer(prefix=prefix, bot_login=bot_login).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
    for server in servers:
        server.assert_no_violations()


@pytest.fixture
def github_server(make_github_server) -> GitHubServer:
    """A started loopback server at ``server.base_url`` accepting ``server.token``."""
    return make_github_server()
