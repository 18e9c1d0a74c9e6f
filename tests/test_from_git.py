"""Bug fixes mined from git history: selection rules, labels, the fixed negative, bare dirs, dedupe."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import GIT_ENV, git

from risk_core.candidates import enclosing_definition
from risk_core.data.from_git import (
    classify_path,
    dedupe,
    fix_pairs,
    fix_samples,
    is_fix_message,
)
from risk_core.data.from_git import mining as fg

CLAMP = "def clamp(x, lo, hi):\n    if x < lo:\n        return lo\n    if x >= hi:\n        return lo\n    return x\n"
TWICE = "def twice(x):\n    # double it\n    return 2 * x\n"
JS = "function last(xs) {\n  const n = xs.length;\n  return xs[n];\n}\n\nconst first = (xs) => xs[0];\n"


def commit(repo: Path, message: str, files: dict[str, str]) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    repo = tmp_path_factory.mktemp("hist") / "proj"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    body = CLAMP + "\n\n" + TWICE
    commit(
        repo,
        "initial",
        {
            "m.py": body,
            "n.py": TWICE,
            "lib/last.js": JS,
            "README.md": "hi\n",
            "tests/test_m.py": "def test_m():\n    assert True\n",
        },
    )
    fixed = body.replace("    if x >= hi:\n        return lo\n", "    if x > hi:\n        return hi\n")
    shas = {
        "fix": commit(
            repo,
            "Fix clamp upper bound (issue #12)",
            {"m.py": fixed, "tests/test_m.py": "def test_m():\n    assert 1\n", "CHANGES.md": "fixed\n"},
        )
    }
    commit(repo, "Refactor clamp, fix naming", {"m.py": fixed.replace("return x\n", "return (x)\n")})
    commit(repo, "Fix wrong link in the README", {"README.md": "hello\n"})
    commit(
        repo, "Fix bug in m and n", {"m.py": fixed.replace("2 * x", "x + x"), "n.py": TWICE.replace("2 * x", "x * 2")}
    )
    commit(repo, "Fix broken assertion", {"tests/test_m.py": "def test_m():\n    assert 2\n"})
    n_py = TWICE.replace("2 * x", "x * 2").replace("# double it", "# double it, safely")
    commit(repo, "Fix crash in twice", {"n.py": n_py})  # comment only
    guarded = n_py.replace("    return x * 2\n", "    if x is None:\n        return 0\n    return x * 2\n")
    shas["insert"] = commit(repo, "fix: a None crashed twice", {"n.py": guarded})
    shas["js"] = commit(repo, "Fix off-by-one in last()", {"lib/last.js": JS.replace("xs[n]", "xs[n - 1]")})
    commit(repo, "Fix crash in minified bundle", {"dist/last.min.js": "function f(){}\n"})
    return repo, shas


def n_py_expected():
    return TWICE.replace("2 * x", "x * 2").replace("# double it", "# double it, safely")


def test_selection_and_labels(history):
    repo, shas = history
    stats = Counter()
    pairs = fix_pairs(repo, name="o/proj", stats=stats)
    bugs = {b.id: (b, f) for b, f in pairs}
    assert sorted(bugs) == sorted(
        [
            f"o/proj:{shas['fix'][:12]}:m.py",
            f"o/proj:{shas['insert'][:12]}:n.py",
            f"o/proj:{shas['js'][:12]}:lib/last.js",
        ]
    )
    b, f = bugs[f"o/proj:{shas['fix'][:12]}:m.py"]
    # the enclosing function only, in the parent, labeled at the two replaced lines
    assert b.code == CLAMP and b.buggy_lines == [4, 5] and b.operator == "git-fix" and b.language == "python"
    parent = git(repo, "rev-parse", shas["fix"] + "^").strip()
    assert b.path == f"o/proj:m.py@{parent[:12]}#L1"
    # the fixed version of the same window: a clean negative linked by id
    assert f.id == b.id + ":fixed" and f.buggy_lines == [] and f.operator == "git-fix-fixed"
    assert f.code == CLAMP.replace("x >= hi:\n        return lo", "x > hi:\n        return hi")
    # a pure insertion labels the code line that stands where the addition goes
    b, f = bugs[f"o/proj:{shas['insert'][:12]}:n.py"]
    assert b.code == n_py_expected() and b.buggy_lines == [3]
    assert f.code.count("\n") == 5 and "if x is None:" in f.code
    # JavaScript: the function declaration only
    b, f = bugs[f"o/proj:{shas['js'][:12]}:lib/last.js"]
    assert b.code == JS.split("\n\n")[0] + "\n" and b.buggy_lines == [3] and b.language == "javascript"
    assert stats["skip:message"] >= 2 and stats["skip:many-sources"] == 1 and stats["skip:no-source"] == 1
    assert stats["skip:cosmetic"] == 1 and stats["skip:other-file"] == 1 and stats["ok"] == 3, stats


def test_bare_git_dir_gives_the_same_samples(history, tmp_path):
    repo, _ = history
    bare = tmp_path / "proj.git"
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True, env={**GIT_ENV, "HOME": str(tmp_path)}
    )
    assert fix_samples(bare, name="o/proj") == fix_samples(repo, name="o/proj")
    assert len(fix_samples(bare)) == 6  # 3 buggy + 3 fixed


def test_rev_pins_the_history(history):
    repo, shas = history
    only = fix_samples(repo, rev=shas["fix"], name="o/proj")
    assert [s.id for s in only] == [f"o/proj:{shas['fix'][:12]}:m.py", f"o/proj:{shas['fix'][:12]}:m.py:fixed"]


def test_dedupe_drops_cherry_picks(tmp_path):
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "initial", {"m.py": CLAMP})
    fixed = CLAMP.replace("return lo\n    return x", "return hi\n    return x")
    commit(repo, "Fix clamp", {"m.py": fixed})
    commit(repo, "Revert clamp", {"m.py": CLAMP})
    commit(repo, "Fix clamp again (regression)", {"m.py": fixed})
    stats = Counter()
    pairs = fix_pairs(repo, stats=stats)
    assert len(pairs) == 1 and stats["skip:duplicate"] == 1
    # across repositories: a pair seen before is dropped
    seen: set[str] = set()
    assert len(dedupe(pairs, seen=seen)) == 1 and dedupe(pairs, seen=seen) == []


def test_messages_and_paths():
    assert is_fix_message("Fix off-by-one in parser") and is_fix_message("closes #3\n\nbug in x")
    assert is_fix_message("Handle empty input\n\nThis crashed on an empty list.")
    assert is_fix_message("fix(router): wrong param order")
    for msg in (
        "Add feature",
        "fix typo",
        "Refactor: fix naming",
        "docs: fix example",
        "Fix lint errors",
        'Revert "Fix x"',
        "Merge branch 'fix'",
        "Bump version to 1.2",
        "Fix failing tests",
        "chore: fix release script",
        "style: fix formatting",
    ):
        assert not is_fix_message(msg), msg
    assert classify_path("src/x.py") == "source" and classify_path("lib/x.ts") == "source"
    for p in (
        "tests/test_x.py",
        "x_test.go",
        "src/test/java/FooTest.java",
        "a/FooTests.java",
        "b/x.spec.ts",
        "c/x.test.js",
        "pkg/testdata/a.go",
        "src/__tests__/a.js",
    ):
        assert classify_path(p) == "test", p
    for p in ("docs/conf.py", "CHANGES.rst", "changelog.d/12.bugfix", "README.md"):
        assert classify_path(p) == "doc", p
    for p in (
        "vendor/a.go",
        "third_party/x.py",
        "node_modules/a/b.js",
        "dist/a.js",
        "a.min.js",
        "x_pb2.py",
        "api.pb.go",
        "examples/a.py",
        "benchmarks/b.py",
        "setup.py",
        "src/x.c",
        "package.json",
        "types/index.d.ts",
    ):
        assert classify_path(p) == "other", p
    assert classify_path("src/Latest.java") == "source"


def test_enclosing_walk_matches_candidates():
    code = (
        CLAMP
        + "\n\nclass A:\n    @staticmethod\n    def f(y):\n        def g():\n            return y\n        return g\n"
    )
    tree = fg._tree(code, "python")
    lines = code.splitlines()
    for line in range(1, len(lines) + 1):
        if not lines[line - 1].strip() or lines[line - 1].lstrip().startswith("@"):
            continue
        spans = fg._definitions_at(tree, lines, "python", line)
        assert (spans[0] if spans else None) == enclosing_definition(code, "python", line), line


def test_window_of_a_long_function(tmp_path):
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    body = "def long(x):\n" + "".join(f"    x = x + {i}\n" for i in range(100)) + "    return x\n"
    commit(repo, "initial", {"m.py": body})
    commit(repo, "Fix wrong step", {"m.py": body.replace("x = x + 80\n", "x = x - 80\n")})
    [b, f] = fix_samples(repo)
    lines = body.splitlines()
    assert len(b.code.splitlines()) == 60 and b.code.splitlines()[b.buggy_lines[0] - 1].strip() == "x = x + 80"
    assert lines.index("    x = x + 80") + 1 == int(b.path.rsplit("#L", 1)[1]) + b.buggy_lines[0] - 1
    assert len(f.code.splitlines()) == 60 and "x = x - 80" in f.code
    commit(repo, "Fix early step", {"m.py": body.replace("x = x + 80\n", "x = x - 80\n").replace("+ 3\n", "- 3\n")})
    b = fix_samples(repo)[0]
    assert b.path.endswith("#L1") and b.buggy_lines == [5]


def test_recipe_script(history, tmp_path):
    repo, _ = history
    mirror = tmp_path / "mirror"
    (mirror / "o+proj").mkdir(parents=True)
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(repo), str(mirror / "o+proj" / "repo")],
        check=True,
        env={**GIT_ENV, "HOME": str(tmp_path)},
    )
    head = git(repo, "rev-parse", "HEAD").strip()
    tsv = tmp_path / "repos.tsv"
    tsv.write_text(f"# repo\tcommit\tlanguage\tsplit\no/proj\t{head}\tpython\theldout\n")
    script = Path(__file__).resolve().parent.parent / "scripts" / "mine-bug-fixes"
    out = tmp_path / "out"
    for _ in range(2):
        res = subprocess.run(
            [sys.executable, str(script), str(mirror), str(out), "--repos", str(tsv)],
            check=False,
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["repos"]["o/proj"]["bugs"] == 3 and manifest["totals"]["bind"]["bugs"] == 0
    assert (out / "HELDOUT_READY").exists() and (out / "BIND_READY").exists()
    ids = [json.loads(x)["id"] for x in (out / "heldout.jsonl").read_text().splitlines()]
    assert ids == sorted(ids) and len(ids) == 6
    bad = tmp_path / "bad.tsv"
    bad.write_text("o/proj\tHEAD\tpython\tboth\n")
    res = subprocess.run(
        [sys.executable, str(script), str(mirror), str(out), "--repos", str(bad)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and res.stderr.startswith("error:") and "Traceback" not in res.stderr


def test_fix_kind_tells_replaced_lines_from_insertion_points():
    from risk_core.data.from_git.diff import fix_kind

    buggy = "def f(xs):\n    n = len(xs)\n    return xs[n]\n"
    assert fix_kind(buggy, buggy.replace("xs[n]", "xs[n - 1]"), [3]) == "replace"
    assert fix_kind(buggy, buggy.replace("    n = len(xs)\n", ""), [2]) == "replace"  # a deletion replaces too
    guarded = buggy.replace("    return", "    if not n:\n        return None\n    return")
    assert fix_kind(buggy, guarded, [3]) == "insert"  # the label only marks where the guard goes
    both = guarded.replace("xs[n]", "xs[n - 1]")
    assert fix_kind(buggy, both, [2, 3]) == "mixed"  # line 3 changed, line 2 did not


def test_recipe_script_bind_extra_leaves_bind_as_it_was(history, tmp_path):
    """Repositories added as bind-extra are mined last: bind.jsonl (and the bind order made from it)
    keeps its bytes, and their samples that repeat a bind one are dropped."""
    repo, _ = history
    mirror = tmp_path / "mirror"
    for name in ("o+proj", "o+copy"):
        (mirror / name).mkdir(parents=True)
        subprocess.run(
            ["git", "clone", "-q", "--bare", str(repo), str(mirror / name / "repo")],
            check=True,
            env={**GIT_ENV, "HOME": str(tmp_path)},
        )
    head = git(repo, "rev-parse", "HEAD").strip()
    script = Path(__file__).resolve().parent.parent / "scripts" / "mine-bug-fixes"
    rows = f"o/proj\t{head}\tpython\tbind\n"
    outs = {}
    for name, text in (("plain", rows), ("extra", rows + f"o/copy\t{head}\tpython\tbind-extra\n")):
        (tmp_path / f"{name}.tsv").write_text(text)
        out = outs[name] = tmp_path / name
        res = subprocess.run(
            [sys.executable, str(script), str(mirror), str(out), "--repos", str(tmp_path / f"{name}.tsv")],
            check=False,
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stderr
    assert (outs["plain"] / "bind.jsonl").read_bytes() == (outs["extra"] / "bind.jsonl").read_bytes()
    manifest = json.loads((outs["extra"] / "manifest.json").read_text())
    assert manifest["totals"]["bind"]["bugs"] == 3 and manifest["totals"]["bind-extra"]["bugs"] == 0
    assert manifest["repos"]["o/copy"]["cross_repo_duplicates"] == 3
    assert (outs["extra"] / "bind-extra.jsonl").read_text() == "" and (outs["extra"] / "BIND_EXTRA_READY").exists()
