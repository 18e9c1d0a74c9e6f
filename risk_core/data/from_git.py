"""Real bugs from history: bug-fix commits of a git repository, labeled at the lines each fix changed.

For a fix commit C with one parent P, the buggy sample is the function around the fix as it was in P,
and its buggy lines are the P-side lines the fix deleted or replaced. A fix that only adds lines (a
missing guard) labels the P line that stands where the addition goes (the next code line of the
function; the previous one at its end), the same convention as the ``remove_statement`` mutant. The
same window of C is kept as a clean negative (``buggy_lines == []``), linked by id (``<id>:fixed``).

Selection (all of it, so that a label means "this line was wrong"):

- a non-merge commit with one parent whose message says it fixes a bug (:func:`is_fix_message`);
- exactly one changed *source* file (a supported language, not a test, vendored, generated, example,
  benchmark or build file); every other changed file is a test, a doc or a changelog entry;
- the fix changes 1-3 code lines of the parent (``max_changed_lines``), adds at most ``max_added_lines``
  code lines, and every hunk lies inside ONE function (the innermost definition that holds them all,
  found by the parser of :mod:`risk_core.candidates`); whitespace-, comment- and import-only changes
  are not fixes (compared with whitespace and comments stripped);
- the window is the whole function when it has at most ``max_window`` lines, else a ``max_window``-line
  window around the change inside it (from the function's first line when the change lies in its first
  ``max_window`` lines).

Works on work trees and on bare git directories alike; only ``git`` is run, never a checkout.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from risk_core import candidates
from risk_core.data.jsonl import Sample
from risk_core.errors import UsageError
from risk_core.languages import EXTENSIONS as _ALL_EXTENSIONS
from risk_core.languages import MINED_LANGUAGES

# The suffixes of the mined languages (recorded in every mining manifest).
EXTENSIONS: dict[str, str] = {ext: lang for ext, lang in _ALL_EXTENSIONS.items() if lang in MINED_LANGUAGES}

FIX_PATTERN = re.compile(
    r"\b(fix(e[sd]|ing)?|bug(s|fix(es)?)?|hotfix|fault|defect|crash(es|ed|ing)?|regression|"
    r"off[- ]by[- ]one|wrong(ly)?|incorrect(ly)?|broken|mistake|erroneous)\b|"
    r"\b(issue|close[sd]?|resolve[sd]?)\s*(#|gh-)\d+|\bgh-\d+",
    re.IGNORECASE,
)
# Words of a body that say a bug was fixed even when the subject does not.
BODY_FIX_PATTERN = re.compile(
    r"\b(fix(e[sd])?\s+(#|gh-)\d+|bug|crash(es|ed)?|regression|off[- ]by[- ]one)\b", re.IGNORECASE
)
# Subjects of commits that say "fix" but do not fix program logic.
NOT_A_FIX = re.compile(
    r"\b(refactor(ing|ed|s)?|typos?|docs?|documentation|docstrings?|readme|changelog|lint(s|ing|er)?|"
    r"flake8|pylint|mypy|pyright|checkstyle|spotless|prettier\s+format|gofmt|format(ting|ted)?|reformat\w*|"
    r"whitespace|indentation|spelling|grammar|comments?|style|cosmetic|merge|revert(s|ed)?|bump(s|ed)?|"
    r"release|version\s+\d|dependenc(y|ies)|deps|ci|travis|appveyor|github\s+actions|type\s+(hints?|"
    r"annotations?|definitions?|declarations?)|typings?|deprecat\w*|warnings?|rename[sd]?)\b|"
    r"^\s*(docs?|tests?|chore|style|refactor|ci|build|perf|release|revert|deps)(\([^)]*\))?!?:|"
    r"\b(fix(e[sd]|ing)?|update[sd]?|correct(s|ed)?)\s+(the\s+|a\s+|some\s+|flaky\s+|failing\s+|broken\s+|"
    r"unit\s+)*tests?\b|\btests?\s+(only|fix(es)?)\b",
    re.IGNORECASE,
)

# Paths that are never a mined source: vendored, generated, minified, build output, examples, benchmarks.
SKIP_PATH = re.compile(
    r"(^|/)(vendor(ed)?|_vendor|third[-_]?party|thirdparty|node_modules|bower_components|dist|build|out|"
    r"target|coverage|generated|__generated__|examples?|samples?|demos?|benchmarks?|bench|perf|"
    r"scripts?|tools?|hack|contrib|site-packages|\.github|docs?|documentation)/|"
    r"\.min\.[cm]?js$|\.bundle\.js$|\.d\.ts$|_pb2(_grpc)?\.py$|\.pb(\.gw)?\.go$|_generated\.|\.generated\.|"
    r"zz_generated|bindata\.go$|(^|/)(setup|noxfile|fabfile|conftest|conf)\.py$|\.config\.[cm]?[jt]s$|"
    r"(^|/)(gruntfile|gulpfile|karma\.conf)[^/]*$",
    re.IGNORECASE,
)
_TEST_DIRS = re.compile(
    r"(^|/)(tests?|testing|testutils?|__tests__|__mocks__|__fixtures__|__snapshots__|specs?|testdata|"
    r"test[-_]data|test[-_]?fixtures|fixtures?|e2e|androidTest|testFixtures|jvmTest|commonTest|jsTest|"
    r"integration[-_]?tests?)/|(^|/)(test_[^/]*|[^/]*_tests?|conftest)\.py$|_test\.go$|"
    r"\.(test|spec|e2e)\.[cm]?[jt]sx?$|\.snap$",
    re.IGNORECASE,
)
_JAVA_TEST = re.compile(r"(^|/)(Test[A-Z0-9_][^/]*|[^/]*Tests?|[^/]*TestCase|[^/]*IT)\.(java|kt)$")
# Files that may change beside the fix: docs and changelog entries (tests are the other kind).
_DOC_PATH = re.compile(
    r"\.(md|markdown|rst|adoc|asciidoc|textile)$|(^|/)(docs?|documentation|changelog\.d|changes|changelog|"
    r"newsfragments|news|\.changeset|\.changes|releasenotes|release-notes)/|"
    r"(^|/)(CHANGES|CHANGELOG|HISTORY|NEWS|AUTHORS|CONTRIBUTORS|README|RELEASE[-_]?NOTES)[^/]*$",
    re.IGNORECASE,
)
_GENERATED_MARK = re.compile(r"code generated .* do not edit|@generated|auto-?generated|do not edit", re.IGNORECASE)
_IMPORT_LINE = re.compile(
    r"^\s*(import\b|from\s+\S+\s+import\b|package\b|using\b|#include\b|"
    r"(const|let|var)\s+[\w{}\s,]+=\s*require\(|export\s+\*\s+from\b)"
)
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclass(frozen=True)
class Rules:
    """The selection rules' parameters (recorded in every mining manifest)."""

    max_commits: int = 20000
    """Commits looked at per repository (newest first, merges excluded)."""
    min_changed_lines: int = 1
    max_changed_lines: int = 3
    """Labeled (changed/removed, or insertion-point) code lines of the parent, inclusive range."""
    max_added_lines: int = 6
    """Code lines the fix adds at most (a bigger addition is new code, not a localised fix)."""
    max_window: int = 60
    """Lines of a sample at most: the whole function up to this, else a window around the change."""
    max_line_chars: int = 400
    """A window with a longer line is minified or data, not code."""

    def to_json(self) -> dict:
        return {
            **asdict(self),
            "fix_pattern": FIX_PATTERN.pattern,
            "body_fix_pattern": BODY_FIX_PATTERN.pattern,
            "not_a_fix_subject": NOT_A_FIX.pattern,
            "skip_path": SKIP_PATH.pattern,
            "test_path": [_TEST_DIRS.pattern, _JAVA_TEST.pattern],
            "doc_path": _DOC_PATH.pattern,
            "extensions": dict(sorted(EXTENSIONS.items())),
            "definitions": {k: sorted(v) for k, v in sorted(candidates._DEFINITIONS.items())},
        }


# --- git ---------------------------------------------------------------------------------------------


class _Git:
    """``git`` on one repository (a work tree or a bare git dir), with a long-lived ``cat-file --batch``."""

    def __init__(self, repo: Path):
        self.repo = repo
        self._batch: subprocess.Popen | None = None

    def run(self, *args: str, timeout: int = 600) -> str:
        try:
            res = subprocess.run(
                ["git", "-C", str(self.repo), *args], check=False, capture_output=True, timeout=timeout
            )
        except FileNotFoundError:
            raise UsageError("git is not installed") from None
        except subprocess.TimeoutExpired:
            raise UsageError(f"git {args[0]} timed out in {self.repo}") from None
        if res.returncode != 0:
            err = res.stderr.decode("utf-8", "replace").strip().splitlines()
            raise UsageError(f"git {args[0]} failed in {self.repo}: {err[-1] if err else res.returncode}")
        return res.stdout.decode("utf-8", "replace")

    def show(self, rev: str, path: str) -> str | None:
        """The text of ``rev:path``; None when it is missing or not a blob."""
        if self._batch is None:
            self._batch = subprocess.Popen(
                ["git", "-C", str(self.repo), "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
        assert self._batch.stdin is not None and self._batch.stdout is not None
        self._batch.stdin.write(f"{rev}:{path}\n".encode())
        self._batch.stdin.flush()
        header = self._batch.stdout.readline().decode("utf-8", "replace").split()
        if len(header) != 3 or header[1] != "blob":
            if len(header) == 3:  # a tree or the like: drain its body
                self._batch.stdout.read(int(header[2]) + 1)
            return None
        data = self._batch.stdout.read(int(header[2]) + 1)[:-1]
        if b"\x00" in data[:8000]:
            return None
        return data.decode("utf-8", "replace")

    def close(self) -> None:
        if self._batch is not None:
            assert self._batch.stdin is not None
            self._batch.stdin.close()
            self._batch.wait(timeout=30)
            self._batch = None


def open_repo(repo: str | Path) -> _Git:
    """A repository to mine: the top of a work tree or a bare git dir (a UsageError otherwise)."""
    repo = Path(repo)
    if not repo.is_dir():
        raise UsageError(f"{repo}: not a git repository")
    git = _Git(repo)
    try:
        if git.run("rev-parse", "--is-bare-repository").strip() == "true":
            return git
        top = git.run("rev-parse", "--show-toplevel").strip()
    except UsageError:
        raise UsageError(f"{repo}: not a git repository") from None
    if Path(top).resolve() != repo.resolve():
        raise UsageError(f"{repo}: not a git repository (it lies inside {top})")
    return git


# --- selection ---------------------------------------------------------------------------------------


def is_fix_message(message: str) -> bool:
    """Whether a commit message says it fixes a bug (and its subject is not about docs, tests, style...)."""
    text = message.strip()
    if not text:
        return False
    subject = text.splitlines()[0]
    if re.match(r"\s*(merge|revert|bump|release|v?\d+\.\d+(\.\d+)?\s*$)", subject, re.IGNORECASE):
        return False
    if NOT_A_FIX.search(subject):
        return False
    return bool(FIX_PATTERN.search(subject)) or bool(BODY_FIX_PATTERN.search(text[len(subject) :]))


def is_test_path(path: str) -> bool:
    return bool(_TEST_DIRS.search(path) or _JAVA_TEST.search(path))


def classify_path(path: str) -> str:
    """``source`` (a minable file), ``test``, ``doc`` (docs/changelogs) or ``other`` (anything else)."""
    if is_test_path(path):
        return "test"
    if _DOC_PATH.search(path):
        return "doc"
    if Path(path).suffix.lower() in EXTENSIONS and not SKIP_PATH.search(path):
        return "source"
    return "other"


def source_file_of(paths: Iterable[str]) -> tuple[str | None, str]:
    """The one source file a commit changes (None and the reason when it is not exactly one, or when a
    file besides tests/docs/changelogs changed)."""
    sources = []
    for p in paths:
        kind = classify_path(p)
        if kind == "other":
            return None, "other-file"
        if kind == "source":
            sources.append(p)
    if len(sources) != 1:
        return None, "no-source" if not sources else "many-sources"
    return sources[0], "ok"


# --- diff --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hunk:
    old_start: int
    old_count: int
    new_start: int
    new_count: int

    @property
    def old_end(self) -> int:
        """Last parent line removed; for an insertion, the line it goes after."""
        return self.old_start + self.old_count - 1 if self.old_count else self.old_start

    @property
    def delta(self) -> int:
        return self.new_count - self.old_count


def parse_hunks(diff: str) -> dict[str, list[Hunk]]:
    """{path in the parent: hunks} of a ``--unified=0`` diff (added files are left out)."""
    out: dict[str, list[Hunk]] = {}
    path = None
    for line in diff.splitlines():
        if line.startswith("--- "):
            path = line[4:].strip()
            path = None if path == "/dev/null" else path.removeprefix("a/")
        elif line.startswith("@@") and path is not None:
            m = _HUNK.match(line)
            if m:
                out.setdefault(path, []).append(
                    Hunk(
                        int(m.group(1)),
                        int(m.group(2) or 1) if m.group(2) != "0" else 0,
                        int(m.group(3)),
                        int(m.group(4) or 1) if m.group(4) != "0" else 0,
                    )
                )
    return out


def changed_parent_lines(diff: str) -> dict[str, list[int]]:
    """{path in the parent: 1-based parent lines the diff removed/replaced (or where it inserted)}."""
    out: dict[str, list[int]] = {}
    for path, hunks in parse_hunks(diff).items():
        for h in hunks:
            lines = list(range(h.old_start, h.old_start + h.old_count)) if h.old_count else [h.old_start + 1]
            out.setdefault(path, []).extend(lines)
    return out


def _map_line(line: int, hunks: list[Hunk]) -> int | None:
    """The child line of an unchanged parent line (None when the line was removed)."""
    shift = 0
    for h in hunks:
        if h.old_count and h.old_start <= line <= h.old_end:
            return None
        if line > h.old_end:
            shift += h.delta
    return line + shift


# --- parsing -----------------------------------------------------------------------------------------


def _tree(code: str, language: str) -> Any:
    parser = candidates._parser(language)
    return None if parser is None else parser.parse(code.encode("utf-8"))


def _definitions_at(tree: Any, code_lines: list[str], language: str, line: int) -> list[tuple[int, int]]:
    """Spans (1-based, inclusive, decorators included) of the definitions around ``line``, innermost
    first: the same definitions as :func:`risk_core.candidates.enclosing_definition`, found by walking up
    from the line instead of over the whole file."""
    text = code_lines[line - 1]
    col = len(text) - len(text.lstrip())
    end_col = len(text.rstrip().encode("utf-8"))
    start_col = len(text[:col].encode("utf-8"))
    node = tree.root_node.descendant_for_point_range((line - 1, start_col), (line - 1, max(start_col, end_col - 1)))
    kinds = candidates._DEFINITIONS.get(language, set())
    spans = []
    while node is not None:
        if candidates._is_definition(node, kinds):
            outer = node.parent if node.parent is not None and node.parent.type == "decorated_definition" else node
            spans.append((outer.start_point[0] + 1, node.end_point[0] + 1))
        node = node.parent
    return spans


def _code_tokens(code: str, language: str) -> list[bytes]:
    """The text with whitespace and comments stripped: its leaf tokens (a string literal as one token)."""
    tree = _tree(code, language)
    if tree is None:
        return [t.encode() for t in code.split()]
    out: list[bytes] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        kind = node.type
        if "comment" in kind:
            continue
        if not node.children or "string" in kind or kind in candidates._LITERAL_TYPES:
            if node.end_byte > node.start_byte:
                out.append(node.text)
            continue
        stack.extend(reversed(node.children))
    return out


def _dedent(lines: list[str]) -> str:
    return textwrap.dedent("\n".join(lines) + "\n")


# --- mining ------------------------------------------------------------------------------------------


@dataclass
class FixCandidate:
    sha: str
    parent: str
    path: str
    language: str


def iter_fix_commits(git: _Git, rev: str, rules: Rules, stats: Counter | None = None) -> Iterator[FixCandidate]:
    """Commits reachable from ``rev`` (newest first) that pass the message and the file rules."""
    stats = Counter() if stats is None else stats
    log = git.run(
        "log",
        "--no-merges",
        "--no-renames",
        f"-n{rules.max_commits}",
        "--format=%x1e%H%x00%P%x00%B%x00",
        "--name-only",
        rev,
    )
    for rec in log.split("\x1e"):
        if not rec.strip():
            continue
        parts = rec.split("\x00")
        if len(parts) < 4:
            continue
        sha, parents, message, names = parts[0].strip(), parts[1].split(), parts[2], parts[3]
        stats["commits"] += 1
        if len(parents) != 1:
            stats["skip:not-one-parent"] += 1
            continue
        if not is_fix_message(message):
            stats["skip:message"] += 1
            continue
        paths = [ln for ln in names.strip().splitlines() if ln.strip()]
        path, why = source_file_of(paths)
        if path is None:
            stats[f"skip:{why}"] += 1
            continue
        stats["fix-message-one-source"] += 1
        yield FixCandidate(sha, parents[0], path, EXTENSIONS[Path(path).suffix.lower()])


def mine_fix(git: _Git, cand: FixCandidate, rules: Rules, name: str) -> tuple[tuple[Sample, Sample] | None, str]:
    """(buggy, fixed) samples of one candidate fix commit, or None and the reason it was skipped."""
    ws = [] if cand.language == "python" else ["--ignore-all-space"]
    try:
        diff = git.run(
            "diff",
            "--unified=0",
            "--no-color",
            "--no-renames",
            "--no-ext-diff",
            "--ignore-blank-lines",
            *ws,
            cand.parent,
            cand.sha,
            "--",
            cand.path,
        )
    except UsageError:  # a blob the snapshot lacks
        return None, "git-error"
    hunks = parse_hunks(diff).get(cand.path, [])
    if not hunks:
        return None, "no-hunk"
    old = git.show(cand.parent, cand.path)
    new = git.show(cand.sha, cand.path)
    if not old or not new:
        return None, "added-or-binary"
    if _GENERATED_MARK.search("\n".join(old.splitlines()[:8])):
        return None, "generated"
    old_lines, new_lines = old.splitlines(), new.splitlines()
    tree = _tree(old, cand.language)
    if tree is None:
        return None, "no-grammar"
    # The innermost definition that holds every hunk.
    first = hunks[0]
    anchor = first.old_start if first.old_count else max(1, first.old_start)
    if anchor > len(old_lines):
        return None, "outside-function"
    span = None
    for a, b in _definitions_at(tree, old_lines, cand.language, anchor):
        end_ok = b if cand.language == "python" else b - 1
        if all(a <= h.old_start and h.old_end <= b if h.old_count else a <= h.old_start <= end_ok for h in hunks):
            span = (a, b)
            break
    if span is None:
        return None, "outside-function"
    a, b = span
    a_new, b_new = a, b + sum(h.delta for h in hunks)
    new_tree = _tree(new, cand.language)
    if (
        a_new > len(new_lines)
        or b_new > len(new_lines)
        or b_new < a_new
        or (a_new, b_new) not in _definitions_at(new_tree, new_lines, cand.language, b_new)
    ):
        return None, "fixed-function-mismatch"
    func_old, func_new = old_lines[a - 1 : b], new_lines[a_new - 1 : b_new]
    if _code_tokens(_dedent(func_old), cand.language) == _code_tokens(_dedent(func_new), cand.language):
        return None, "cosmetic"
    mask_old = candidates.candidate_mask(_dedent(func_old), cand.language)
    mask_new = candidates.candidate_mask(_dedent(func_new), cand.language)

    def code_old(line: int) -> bool:
        return 0 <= line - a < len(mask_old) and mask_old[line - a]

    def code_new(line: int) -> bool:
        return 0 <= line - a_new < len(mask_new) and mask_new[line - a_new]

    labels: set[int] = set()
    changed_text: list[str] = []
    added_code = 0
    live: list[Hunk] = []
    for h in hunks:
        removed = [ln for ln in range(h.old_start, h.old_start + h.old_count) if code_old(ln)]
        added = [ln for ln in range(h.new_start, h.new_start + h.new_count) if code_new(ln)]
        if not removed and not added:
            continue  # a comment or blank-line hunk
        live.append(h)
        added_code += len(added)
        changed_text += [old_lines[ln - 1] for ln in removed] + [new_lines[ln - 1] for ln in added]
        if removed:
            labels.update(removed)
            continue
        # An addition: the code line that stands where it goes (the next one; the previous at the end).
        nxt = h.old_start + h.old_count if h.old_count else h.old_start + 1
        forward = [ln for ln in range(nxt, b + 1) if code_old(ln)]
        backward = [ln for ln in range(nxt - 1, a - 1, -1) if code_old(ln)]
        if forward:
            labels.add(forward[0])
        elif backward:
            labels.add(backward[0])
    if not live:
        return None, "cosmetic"
    if all(_IMPORT_LINE.match(t) for t in changed_text):
        return None, "import-only"
    if not rules.min_changed_lines <= len(labels) <= rules.max_changed_lines:
        return None, "too-many-lines" if labels else "no-label"
    if added_code > rules.max_added_lines:
        return None, "too-much-added"
    # The window: the whole function, or max_window lines around the change inside it.
    lo_h = min(min(labels), min(h.old_start for h in live))
    hi_h = max(max(labels), max(h.old_end + (0 if h.old_count else 1) for h in live))
    if b - a + 1 <= rules.max_window:
        lo, hi = a, b
    elif hi_h - a < rules.max_window:
        lo, hi = a, a + rules.max_window - 1
    else:
        centre = (lo_h + hi_h) // 2
        hi = min(b, max(a, centre - rules.max_window // 2) + rules.max_window - 1)
        lo = max(a, hi - rules.max_window + 1)
    if not lo <= lo_h or not hi_h <= hi:
        return None, "change-too-spread"
    lo_new, hi_new = _map_line(lo, hunks), _map_line(hi, hunks)
    if (lo, hi) == (a, b):
        lo_new, hi_new = a_new, b_new
    if (
        lo_new is None
        or hi_new is None
        or any(lo < h.old_start <= hi < h.old_end or h.old_start < lo <= h.old_end for h in hunks)
    ):
        return None, "change-too-spread"
    win_old, win_new = old_lines[lo - 1 : hi], new_lines[lo_new - 1 : hi_new]
    if max(len(x) for x in win_old + win_new) > rules.max_line_chars:
        return None, "long-line"
    code, fixed_code = _dedent(win_old), _dedent(win_new)
    rel = sorted(ln - lo + 1 for ln in labels)
    mask = candidates.candidate_mask(code, cand.language)
    if not all(mask[r - 1] for r in rel):
        return None, "label-not-code"
    sid = f"{name}:{cand.sha[:12]}:{cand.path}"
    buggy = Sample(
        id=sid,
        language=cand.language,
        path=f"{name}:{cand.path}@{cand.parent[:12]}#L{lo}",
        code=code,
        buggy_lines=rel,
        operator="git-fix",
    )
    fixed = Sample(
        id=f"{sid}:fixed",
        language=cand.language,
        path=f"{name}:{cand.path}@{cand.sha[:12]}#L{lo_new}",
        code=fixed_code,
        buggy_lines=[],
        operator="git-fix-fixed",
    )
    return (buggy, fixed), "ok"


def fix_pairs(
    repo: str | Path,
    rules: Rules | None = None,
    languages: set[str] | None = None,
    rev: str = "HEAD",
    name: str | None = None,
    stats: Counter | None = None,
) -> list[tuple[Sample, Sample]]:
    """(buggy, fixed) sample pairs of the bug-fix commits reachable from ``rev``, deduplicated by code.
    ``name`` (default: the directory name) prefixes ids and paths; ``stats`` counts why commits were
    skipped."""
    rules = rules or Rules()
    stats = Counter() if stats is None else stats
    git = open_repo(repo)
    name = name or Path(repo).resolve().name
    pairs: list[tuple[Sample, Sample]] = []
    try:
        for cand in iter_fix_commits(git, rev, rules, stats):
            if languages and cand.language not in languages:
                stats["skip:language"] += 1
                continue
            pair, why = mine_fix(git, cand, rules, name)
            stats["ok" if pair else f"skip:{why}"] += 1
            if pair:
                pairs.append(pair)
    finally:
        git.close()
    return dedupe(pairs, stats)


def normalised(code: str) -> str:
    return "\n".join(ln.strip() for ln in code.splitlines() if ln.strip())


def dedupe(
    pairs: Iterable[tuple[Sample, Sample]], stats: Counter | None = None, seen: set[str] | None = None
) -> list[tuple[Sample, Sample]]:
    """Pairs whose buggy and fixed code (whitespace-normalised) were not seen before (cherry-picks,
    back-ports, a fix reverted and re-applied), first come first kept; ``seen`` carries over calls."""
    seen = set() if seen is None else seen
    out = []
    for buggy, fixed in pairs:
        keys = {f"{buggy.language}\x00{normalised(buggy.code)}", f"{fixed.language}\x00{normalised(fixed.code)}"}
        if keys & seen:
            if stats is not None:
                stats["skip:duplicate"] += 1
                stats["ok"] -= 1
            continue
        seen |= keys
        out.append((buggy, fixed))
    return out


def fix_samples(
    repo: str | Path,
    max_commits: int = 20000,
    max_changed_lines: int = 3,
    languages: set[str] | None = None,
    rev: str = "HEAD",
    with_fixed: bool = True,
    name: str | None = None,
) -> list[Sample]:
    """Samples from the bug-fix commits reachable from ``rev``: each buggy function followed by its
    fixed version (a clean negative) unless ``with_fixed`` is False."""
    rules = Rules(max_commits=max_commits, max_changed_lines=max_changed_lines)
    out: list[Sample] = []
    for buggy, fixed in fix_pairs(repo, rules, languages, rev, name):
        out.append(buggy)
        if with_fixed:
            out.append(fixed)
    return out
