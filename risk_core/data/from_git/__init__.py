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

The package, one job a module: ``rules`` (messages, paths, limits), ``git`` (the one process run),
``diff`` (hunks and line mapping), ``mining`` (commits in, sample pairs out).
"""

from risk_core.data.from_git.diff import Hunk, changed_parent_lines, parse_hunks
from risk_core.data.from_git.git import Git, open_repo
from risk_core.data.from_git.mining import (
    FixCandidate,
    dedupe,
    fix_pairs,
    fix_samples,
    fixed_id,
    iter_fix_commits,
    mine_fix,
    normalised,
)
from risk_core.data.from_git.rules import (
    BODY_FIX_PATTERN,
    EXTENSIONS,
    FIX_PATTERN,
    NOT_A_FIX,
    SKIP_PATH,
    Rules,
    classify_path,
    is_fix_message,
    is_test_path,
    source_file_of,
)

__all__ = [
    "BODY_FIX_PATTERN",
    "EXTENSIONS",
    "FIX_PATTERN",
    "NOT_A_FIX",
    "SKIP_PATH",
    "FixCandidate",
    "Git",
    "Hunk",
    "Rules",
    "changed_parent_lines",
    "classify_path",
    "dedupe",
    "fix_pairs",
    "fix_samples",
    "fixed_id",
    "is_fix_message",
    "is_test_path",
    "iter_fix_commits",
    "mine_fix",
    "normalised",
    "open_repo",
    "parse_hunks",
    "source_file_of",
]
