"""Which commits and files are mined: the fix-message patterns, path classes and the Rules' limits."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from risk_core import candidates
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
GENERATED_MARK = re.compile(r"code generated .* do not edit|@generated|auto-?generated|do not edit", re.IGNORECASE)
IMPORT_LINE = re.compile(
    r"^\s*(import\b|from\s+\S+\s+import\b|package\b|using\b|#include\b|"
    r"(const|let|var)\s+[\w{}\s,]+=\s*require\(|export\s+\*\s+from\b)"
)


@dataclass(frozen=True)
class Rules:
    """The selection rules' parameters (recorded in every mining manifest)."""

    max_commits: int = 20000
    """Commits looked at per repository (newest first, merges excluded)."""
    min_changed_lines: int = 1
    """Labeled (changed/removed, or insertion-point) code lines of the parent at least."""
    max_changed_lines: int = 3
    """Labeled code lines of the parent at most (with min_changed_lines, an inclusive range)."""
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
