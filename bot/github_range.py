"""Read a range of commits (``base...head``) through PyGithub's compare API, for the Action's
``push`` and ``merge_group`` runs: the same `bot.review.ReviewSource` a pull request gives (diff,
new-side contents at ``head``, per-line authorship from the range's commits), with no PR to post on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from bot.github_client import GitHubSettings, GuardedAuthorship, connect, github_errors, guarded
from bot.github_source import PullRequestData, PullRequestReader, _commit_info, _pull_file

if TYPE_CHECKING:
    from github.Comparison import Comparison
    from github.Repository import Repository

    from bot.review import ReviewSource


class RangeReader(PullRequestReader):
    """`PullRequestReader` over a comparison instead of a pull request (same reads, same blame)."""

    def __init__(self, repo: Repository, comparison: Comparison, base: str, head: str):
        self.repo = repo
        self.pull = None
        self.data = PullRequestData(
            full_name=repo.full_name,
            number=0,
            title=f"{base[:7]}...{head[:7]}",
            head_sha=head,
            base_sha=base,
            labels=(),
            files=[_pull_file(f) for f in comparison.files],
            commits=[_commit_info(c) for c in comparison.commits],
        )
        self._blame = None

    @property
    def name(self) -> str:
        return f"{self.data.full_name} {self.data.title}"


def open_range(
    full_name: str,
    base: str,
    head: str,
    *,
    environ: Mapping[str, str] | None = None,
    settings: GitHubSettings | None = None,
) -> ReviewSource:
    """``bot.review.ReviewSource`` for ``base...head`` of ``full_name``."""
    from bot.review import ReviewSource

    what = f"{full_name} {base[:7]}...{head[:7]}"
    gh = connect(settings, environ)
    with github_errors(f"reading {what}"):
        repo = gh.get_repo(full_name)
        reader = RangeReader(repo, repo.compare(base, head), base, head)
        diff = reader.unified_diff()
    return ReviewSource(
        diff=diff,
        read_file=guarded(reader.read_file, what),
        authorship=GuardedAuthorship(reader, what),
        pr_labels=(),
        default_authored_by="ai",
        name=what,
    )
