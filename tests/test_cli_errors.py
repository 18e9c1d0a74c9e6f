"""Bad input as a user meets it, through click: one ``error: ...`` line on stderr, no traceback, exit 2
for usage errors. Table-driven; the tiny model stands in wherever a model is needed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main

GOOD_DIFF = "--- a/m.py\n+++ b/m.py\n@@ -1 +1,3 @@\n def f(x):\n+    y = x + 1\n+    return y\n"
SAMPLE = (
    '{"id": "s1", "language": "python", "path": "m.py", "code": "def f(x):\\n    return x\\n", "buggy_lines": [2]}\n'
)


def _bundle(path: Path, d_model: int, model_name: str) -> Path:
    from risk_core.artifacts import ArtifactConfig, Bundle
    from risk_core.probe import ProbeConfig, RiskProbe
    from risk_core.sae import SaeConfig, SparseCoder

    sae = SparseCoder(d_model, SaeConfig(expansion_factor=2, k=4))
    probe = RiskProbe(ProbeConfig(n_features=sae.num_latents))
    Bundle(ArtifactConfig(model_name=model_name, model_sha256=None, d_model=d_model, layer=2), sae, probe).save(path)
    return path


@pytest.fixture(scope="module")
def w(tmp_path_factory, tiny_model_dir):
    """Every bad input on disk, next to a good repo, a tiny bundle and an SAE for the tiny model."""
    d = tmp_path_factory.mktemp("cli-errors")
    (d / "repo").mkdir()
    (d / "repo" / "m.py").write_text("def f(x):\n    y = x + 1\n    return y\n")
    files = {
        "good.diff": GOOD_DIFF,
        "malformed.diff": "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-x\n",
        "prose.diff": "hello\nthis is not a diff\n",
        "binary.diff": "diff --git a/x.png b/x.png\nindex 1..2 100644\nBinary files a/x.png and b/x.png differ\n",
        "empty.diff": "",
        "empty.py": "",
        "bad.jsonl": SAMPLE + "not json\n",
        "nokeys.jsonl": '{"a": 1}\n',
        "good.jsonl": SAMPLE,
    }
    for name, text in files.items():
        (d / name).write_text(text)
    (d / "list.jsonl").write_text("[1, 2]\n")
    (d / "latin1.jsonl").write_bytes(SAMPLE.replace("return x", "return 'caf\xe9'").encode("latin-1"))
    (d / "undecodable.diff").write_bytes(GOOD_DIFF.replace("+ 1", "+ 1  # \xff\xfe").encode("latin-1"))
    (d / "empty-src").mkdir()
    bundle = _bundle(d / "bundle", 64, str(tiny_model_dir))
    _bundle(d / "bundle-d32", 32, "another-model")
    for part in ("sae/sae.safetensors", "probe/probe.safetensors"):
        cut = d / f"cut-{part.split('/')[0]}"
        shutil.copytree(bundle, cut)
        (cut / part).write_bytes((cut / part).read_bytes()[:64])
    shutil.copytree(bundle / "sae", d / "sae")
    return d


# (name, argv with {d} = workdir and {m} = tiny model, stdin, exit code, text the error line holds)
CASES = [
    ("malformed diff", ["review", "--diff", "{d}/malformed.diff"], None, 2, "malformed diff"),
    ("prose instead of a diff", ["review", "--diff", "{d}/prose.diff"], None, 2, "not a unified diff"),
    (
        "malformed diff on stdin",
        ["review", "--diff", "-"],
        "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-x\n",
        2,
        "malformed diff",
    ),
    ("missing diff", ["review", "--diff", "{d}/nope.diff"], None, 2, "diff not found"),
    ("diff is a directory", ["review", "--diff", "{d}/repo"], None, 2, "diff is a directory"),
    ("nonexistent --bundle", ["review", "--diff", "{d}/good.diff", "--bundle", "{d}/nope"], None, 2, "not a bundle"),
    # a mistyped bundle is refused even when nothing in the diff needs the model (a CI set-up error
    # would otherwise pass until the first pull request with code to score)
    (
        "--bundle that is no bundle, nothing to score",
        ["review", "--diff", "{d}/empty.diff", "--bundle", "{d}"],
        None,
        2,
        "not a bundle",
    ),
    (
        "bundle of another model",
        ["review", "--diff", "{d}/good.diff", "--bundle", "{d}/bundle-d32"],
        None,
        2,
        "d_model=32",
    ),
    (
        "truncated SAE safetensors",
        ["review", "--diff", "{d}/good.diff", "--bundle", "{d}/cut-sae"],
        None,
        2,
        "cannot read SAE weights",
    ),
    (
        "truncated probe safetensors",
        ["review", "--diff", "{d}/good.diff", "--bundle", "{d}/cut-probe"],
        None,
        2,
        "not a probe directory",
    ),
    ("--github bad spec", ["review", "--github", "octo/repo"], None, 2, "expects OWNER/REPO#N"),
    ("--github without a token", ["review", "--github", "octo/repo#1"], None, 2, "GITHUB_TOKEN is not set"),
    (
        "unknown model (review)",
        ["review", "--diff", "{d}/good.diff", "--model", "no-such-model"],
        None,
        2,
        "unknown model 'no-such-model'",
    ),
    (
        "unknown model (encode)",
        ["encode", "{d}/repo/m.py", "-m", "no-such-model", "-o", "{d}/o.st"],
        None,
        2,
        "unknown model",
    ),
    (
        "--fail-above 2",
        ["review", "--diff", "{d}/good.diff", "--fail-above", "2"],
        None,
        2,
        "--fail-above must be between 0 and 1",
    ),
    (
        "unknown --format",
        ["review", "--diff", "{d}/good.diff", "--format", "yaml"],
        None,
        2,
        "Invalid value for '--format'",
    ),
    (
        "unknown eval --format",
        ["eval", "{d}/bad.jsonl", "--bundle", "{d}/bundle", "--format", "yaml"],
        None,
        2,
        "Invalid value for '--format'",
    ),
    (
        "non-numeric --threshold",
        ["review", "--diff", "{d}/good.diff", "--threshold", "high"],
        None,
        2,
        "'high' is not a valid float",
    ),
    ("missing required option", ["encode", "{d}/repo/m.py"], None, 2, "Missing option '--out'"),
    ("unknown command", ["reveiw"], None, 2, "No such command 'reveiw'"),
    ("unknown top-level flag", ["--bogus"], None, 2, "No such option '--bogus'"),
    (
        "encode layer out of range",
        ["encode", "{d}/repo/m.py", "-m", "{m}", "-l", "9", "-o", "{d}/o.st", "--device", "cpu"],
        None,
        2,
        "layer 9 is out of range",
    ),
    ("encode empty file", ["encode", "{d}/empty.py", "-m", "{m}", "-o", "{d}/o.st"], None, 2, "empty file"),
    ("encode missing file", ["encode", "{d}/nope.py", "-m", "{m}", "-o", "{d}/o.st"], None, 2, "no such file"),
    (
        "bind malformed JSONL",
        ["bind", "--data", "{d}/bad.jsonl", "--sae", "{d}/sae", "-m", "{m}", "-o", "{d}/b"],
        None,
        2,
        "bad.jsonl:2",
    ),
    (
        "bind JSONL without sample keys",
        ["bind", "--data", "{d}/nokeys.jsonl", "--sae", "{d}/sae", "-m", "{m}", "-o", "{d}/b"],
        None,
        2,
        "nokeys.jsonl:1: not a labeled sample",
    ),
    ("eval malformed JSONL", ["eval", "{d}/bad.jsonl", "--bundle", "{d}/bundle", "-m", "{m}"], None, 2, "bad.jsonl:2"),
    (
        "eval JSONL line not an object",
        ["eval", "{d}/list.jsonl", "--bundle", "{d}/bundle", "-m", "{m}"],
        None,
        2,
        "list.jsonl:1: not a labeled sample (expected a JSON object",
    ),
    (
        "data split non-UTF-8 JSONL",
        ["data", "split", "{d}/latin1.jsonl", "--train", "{d}/tr.jsonl", "--test", "{d}/te.jsonl"],
        None,
        2,
        "not UTF-8",
    ),
    ("eval nonexistent --bundle", ["eval", "{d}/good.jsonl", "--bundle", "{d}/nope"], None, 2, "not a bundle"),
    (
        "data split malformed JSONL",
        ["data", "split", "{d}/bad.jsonl", "--train", "{d}/tr.jsonl", "--test", "{d}/te.jsonl"],
        None,
        2,
        "bad.jsonl:2",
    ),
    (
        "corpus build of an empty dir",
        ["corpus", "build", "{d}/empty-src", "-o", "{d}/corpus"],
        None,
        2,
        "no code files found",
    ),
    (
        "corpus build without sources",
        ["corpus", "build", "-o", "{d}/corpus"],
        None,
        2,
        "at least one SOURCE or --recipe",
    ),
]


def _run(w: Path, model: Path, argv: list[str], stdin: str | None, env: dict | None = None):
    args = [a.format(d=w, m=model) for a in argv]
    if args[0] == "review" and "--github" not in args:
        args += ["--repo", str(w / "repo"), "--device", "cpu", "-q"]
        if "--model" not in args:
            args += ["--model", str(model)]
        if "--bundle" not in args:
            args += ["--bundle", str(w / "bundle")]
    env = {"GITHUB_TOKEN": None, "GH_TOKEN": None, "INPUT_GITHUB_TOKEN": None, **(env or {})}
    return CliRunner().invoke(main, args, input=stdin, env=env, catch_exceptions=False)


@pytest.mark.parametrize("name, argv, stdin, code, text", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line(w, tiny_model_dir, name, argv, stdin, code, text):
    res = _run(w, tiny_model_dir, argv, stdin)
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == code, res.output
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert text in lines[0]
    assert "Traceback" not in res.output and res.stdout == ""


# Inputs that look odd but are valid: nothing to do (binary-only, empty) or replaced bytes, never a failure.
OK_CASES = [
    ("binary-only diff", ["review", "--diff", "{d}/binary.diff", "--format", "json"], None, '"binary file"'),
    ("empty diff", ["review", "--diff", "{d}/empty.diff", "--format", "json"], None, '"lines_scored": 0'),
    ("empty diff on stdin", ["review", "--diff", "-", "--format", "json"], "", '"lines_scored": 0'),
    (
        "undecodable bytes in the diff",
        ["review", "--diff", "{d}/undecodable.diff", "--format", "json"],
        None,
        "undecodable byte(s) replaced",
    ),
    ("diff on stdin", ["review", "--diff", "-", "--format", "json"], GOOD_DIFF, '"lines_scored": 2'),
]


@pytest.mark.parametrize("name, argv, stdin, text", OK_CASES, ids=[c[0] for c in OK_CASES])
def test_odd_but_valid_input_succeeds(w, tiny_model_dir, name, argv, stdin, text):
    res = _run(w, tiny_model_dir, argv, stdin)
    assert res.exit_code == 0, res.output
    assert text in res.stdout and "Traceback" not in res.output


def test_group_without_subcommand_still_shows_help():
    res = CliRunner().invoke(main, ["data"], catch_exceptions=False)
    assert "Commands:" in res.output and "error:" not in res.output


def test_a_review_that_scores_nothing_reports_the_bundle_s_threshold_not_the_plain_one(tmp_path):
    """With nothing to score the model never loads; the summary said "0 finding(s) above 50%" where
    every review that scores says the embedded bundle's 60%."""
    import json

    from risk_core.artifacts import bundle_threshold

    shipped = bundle_threshold(Path(__file__).resolve().parents[1] / "risk_core/weights/qwen2.5-coder-0.5b")
    assert shipped is not None and shipped != 0.5
    (tmp_path / "empty.diff").write_text("")
    args = ["review", "--diff", str(tmp_path / "empty.diff"), "--repo", str(tmp_path), "--format", "json", "-q"]
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)["summary"]
    assert summary["lines_scored"] == 0 and summary["threshold"] == pytest.approx(shipped)
