"""Read a pull request through PyGithub: metadata, labels, files and their patches (assembled into the
unified diff the pipeline parses), new-side contents at the head sha, and commits for authorship;
`open_pull_request` turns ``OWNER/REPO#N`` into the review's source and its publisher.

Only operations in GitHub's REST description subset are used (pulls/get, pulls/list-files,
pulls/list-commits, repos/get-content, git/get-blob, repos/get-commit); in particular no GET /user,
which an Actions ``GITHUB_TOKEN`` may not call. AI-authorship rules are not evaluated here: the raw
commits go to `bot.select` (login globs, trailers), the labels to its label rule.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.diff import ParsedDiff, parse_diff, parse_hunks
from bot.diff_names import quote_path
from bot.github_client import (
    DEFAULT_SETTINGS,
    GitHubSettings,
    GuardedAuthorship,
    connect,
    github_errors,
    guarded,
    parse_pr_spec,
)
from bot.select import CommitInfo
from risk_core.errors import UsageError

if TYPE_CHECKING:
    import jinja2
    from github.Commit import Commit
    from github.File import File
    from github.PullRequest import PullRequest
    from github.Repository import Repository

    from bot.config import ReviewConfig
    from bot.publish.github import GitHubPublisher
    from bot.review import ReviewSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PullFile:
    path: str
    status: str
    """added | removed | modified | renamed | copied | changed | unchanged (GitHub's words)."""
    previous_path: str | None
    patch: str | None
    """GitHub's hunks for this file (None for binary files or diffs GitHub truncates)."""
    blob_sha: str | None


@dataclass
class PullRequestData:
    """A pull request as read at one moment (one head sha)."""

    full_name: str
    number: int
    title: str
    head_sha: str
    base_sha: str
    labels: tuple[str, ...]
    files: list[PullFile]
    commits: list[CommitInfo]
    """Oldest first, as GitHub lists them (up to 250)."""
    author_login: str | None = None
    contents: dict[str, bytes | None] = field(default_factory=dict)
    """New-side contents by path, filled lazily by `read_file`."""

    @property
    def name(self) -> str:
        return f"{self.full_name}#{self.number}"


class PullRequestReader:
    """Reads one pull request; ``read_file`` and ``commits_for`` plug into `bot.review.ReviewSource`."""

    def __init__(self, repo: Repository, pull: PullRequest):
        self.repo = repo
        self.pull: PullRequest | None = pull
        self.data = PullRequestData(
            full_name=repo.full_name,
            number=pull.number,
            title=pull.title or "",
            head_sha=pull.head.sha,
            base_sha=pull.base.sha,
            labels=tuple(label.name for label in pull.labels),
            files=[_pull_file(f) for f in pull.get_files()],
            commits=[_commit_info(c) for c in pull.get_commits()],
            author_login=pull.user.login if pull.user else None,
        )
        self._blame: dict[str, list[str | None]] | None = None

    # -- what the pipeline reads ----------------------------------------------------------------------
    def unified_diff(self) -> str:
        return assemble_diff(self.data.files)

    def parsed_diff(self) -> ParsedDiff:
        """The PR's files as `bot.diff.FileChange`s named by the API's ``filename`` (what the pipeline
        reads): see `pull_diff`."""
        return pull_diff(self.data.files)

    def read_file(self, path: str) -> bytes | None:
        """New-side bytes of ``path`` at the head sha (None when absent there)."""
        if path not in self.data.contents:
            self.data.contents[path] = self._fetch(path)
        return self.data.contents[path]

    def _fetch(self, path: str) -> bytes | None:
        from github import GithubException

        try:
            content = self.repo.get_contents(path, ref=self.data.head_sha)
        except GithubException as err:
            if err.status == 404:
                return None
            raise
        if isinstance(content, list):  # a directory (e.g. a submodule path)
            return None
        if content.encoding == "base64" and content.content is not None:
            return content.decoded_content
        # Files over 1 MB come back without content ("encoding": "none"); the blob API has them.
        blob = self.repo.get_git_blob(content.sha)
        return base64.b64decode(blob.content) if blob.encoding == "base64" else blob.content.encode()

    def commits_for(self, path: str, lines: list[int]) -> dict[int, CommitInfo | None]:
        """`bot.select.LineAuthorship`: the PR commit that last wrote each new-side line."""
        if self._blame is None:
            self._blame = self._blame_from_patches()
        by_sha = {c.sha: c for c in self.data.commits}
        origins = self._blame.get(path)
        out: dict[int, CommitInfo | None] = {}
        for line in lines:
            sha = origins[line - 1] if origins and 0 < line <= len(origins) else None
            out[line] = by_sha.get(sha) if sha else None
        return out

    def _blame_from_patches(self) -> dict[str, list[str | None]]:
        """Replays each PR commit's patch (repos/get-commit) over per-line origins.

        A line's origin is the commit whose patch added it; base lines have None. There is no blame
        endpoint in the REST subset, and per-commit patches give exactly this for linear histories.
        Where a commit's patch is missing (binary, truncated), every line of that file is attributed
        to that commit: it may have rewritten any of them.
        """
        origins: dict[str, list[str | None]] = {}
        for info in self.data.commits:
            commit = self.repo.get_commit(info.sha)
            for f in commit.files:
                path, old = f.filename, f.previous_filename
                lines = origins.pop(old, None) if old else origins.get(path)
                if f.status == "removed":
                    origins.pop(path, None)
                    continue
                if lines is None:
                    lines = unknown_origins(self._base_length(old or path, f.status))
                try:
                    if f.patch is not None:
                        origins[path] = apply_patch_origins(lines, f.patch, info.sha)
                        continue
                except UsageError:  # a patch that does not parse: as good as none
                    pass
                n = len((self.read_file(path) or b"").splitlines())
                origins[path] = [info.sha] * n
        return origins

    def _base_length(self, path: str, status: str) -> int:
        if status == "added":
            return 0
        try:
            content = self.repo.get_contents(path, ref=self.data.base_sha)
            if isinstance(content, list):  # a directory: no lines
                return 0
            return len(content.decoded_content.splitlines())
        except Exception:  # unknown base: origins past the patch's reach stay None
            return 0


def unknown_origins(n: int) -> list[str | None]:
    """``n`` lines whose origin is unknown (base lines, or lines past a patch's reach)."""
    return [None] * n


def apply_patch_origins(origins: list[str | None], patch: str, sha: str) -> list[str | None]:
    """Per-line origins after ``patch`` (read by `bot.diff.parse_hunks`): added lines get ``sha``,
    context keeps, removed drop. UsageError for a patch that is no diff."""
    out: list[str | None] = []
    pos = 0  # index into origins (old side)
    for hunk in parse_hunks(patch):
        # An empty old side (-0,0) inserts after line source_start; otherwise the hunk starts at it.
        start = max(hunk.source_start - 1, 0) if hunk.source_length else hunk.source_start
        out.extend(origins[pos:start])
        pos = start
        for kind, _, _ in hunk.lines:
            if kind == "+":
                out.append(sha)
            elif kind == "-":
                pos += 1
            else:
                out.append(origins[pos] if pos < len(origins) else None)
                pos += 1
    out.extend(origins[pos:])
    return out


def pull_diff(files: list[PullFile]) -> ParsedDiff:
    """GitHub's per-file patches as a ParsedDiff whose paths are the API's ``filename`` and
    ``previous_filename``, exactly: the names never go through a diff header and back. Each file is
    parsed under a plain stand-in name, then given its own."""
    real: dict[str, str] = {}
    standins = []
    for i, f in enumerate(files):
        path = f"pttrust-file-{i}"
        real[path] = f.path
        previous = None
        if f.previous_path:
            previous = path if f.previous_path == f.path else f"pttrust-previous-{i}"
            real[previous] = f.previous_path
        standins.append(dataclasses.replace(f, path=path, previous_path=previous))
    parsed = parse_diff(assemble_diff(standins))
    for change in parsed.files:
        change.path = real.get(change.path, change.path)
        if change.old_path is not None:
            change.old_path = real.get(change.old_path, change.old_path)
    return parsed


def _git_name(prefix: str, name: str) -> str:
    """``a/`` + ``name`` as git writes it in a header (C-quoted where it must be)."""
    return quote_path(prefix + name)


def assemble_diff(files: list[PullFile]) -> str:
    """A git-style unified diff from GitHub's per-file patches, names quoted as git quotes them (the
    pipeline reads `pull_diff` instead, which keeps the API's names as they are)."""
    parts: list[str] = []
    for f in files:
        old = f.previous_path or f.path
        parts.append(f"diff --git {_git_name('a/', old)} {_git_name('b/', f.path)}\n")
        if f.status == "added":
            parts.append("new file mode 100644\n")
        elif f.status == "removed":
            parts.append("deleted file mode 100644\n")
        if f.previous_path and f.previous_path != f.path:
            parts.append(f"rename from {quote_path(f.previous_path)}\nrename to {quote_path(f.path)}\n")
        if f.patch is None:
            if f.status not in ("renamed",):
                parts.append(f"Binary files {_git_name('a/', old)} and {_git_name('b/', f.path)} differ\n")
            continue
        if not f.patch:
            continue
        # git ends a name holding a space with a tab, so that the header says where the name ends.
        tab_old = "\t" if " " in old else ""
        tab_new = "\t" if " " in f.path else ""
        parts.append("--- /dev/null\n" if f.status == "added" else f"--- {_git_name('a/', old)}{tab_old}\n")
        parts.append("+++ /dev/null\n" if f.status == "removed" else f"+++ {_git_name('b/', f.path)}{tab_new}\n")
        parts.append(f.patch if f.patch.endswith("\n") else f.patch + "\n")
    return "".join(parts)


def _pull_file(f: File) -> PullFile:
    return PullFile(f.filename, f.status, f.previous_filename, f.patch, f.sha)


def _commit_info(c: Commit) -> CommitInfo:
    git = c.commit
    return CommitInfo(
        sha=c.sha,
        author_name=git.author.name if git.author else "",
        author_email=git.author.email if git.author else "",
        author_login=c.author.login if c.author else None,
        committer_name=git.committer.name if git.committer else "",
        committer_email=git.committer.email if git.committer else "",
        committer_login=c.committer.login if c.committer else None,
        message=git.message or "",
    )


def open_pull_request(
    spec: str,
    *,
    dry_run: bool = False,
    cfg: ReviewConfig | None = None,
    env: jinja2.Environment,
    fmt: str = "text",
    out: str | None = None,
    environ: Mapping[str, str] | None = None,
    settings: GitHubSettings | None = None,
) -> tuple[ReviewSource, GitHubPublisher]:
    """The CLI's and the Action's hook: ``(bot.review.ReviewSource, GitHubPublisher)`` for ``OWNER/REPO#N``.

    Reads the PR (so a bad token or PR fails before any scoring) and returns a source whose diff,
    new-side contents and per-line authorship come from GitHub. With ``dry_run`` the publisher also
    writes the local report (``fmt``/``out``) and posts nothing. The config's ``marker`` names this
    job's markers (and, unless the settings name one, its check run).
    """
    from bot.publish.github import GitHubPublisher
    from bot.publish.local import LocalPublisher
    from bot.publish.markers import bot_identity
    from bot.review import ReviewSource

    full_name, number = parse_pr_spec(spec)
    settings = job_settings(settings or DEFAULT_SETTINGS, cfg.marker if cfg is not None else "")
    gh = connect(settings, environ)
    with github_errors(f"reading {full_name}#{number}"):
        repo = gh.get_repo(full_name)
        pull = repo.get_pull(number)
        reader = PullRequestReader(repo, pull)
        diff = reader.parsed_diff()  # named by the API's filenames, not re-parsed from a header
        identity = bot_identity(repo.requester, settings, environ)
    source = ReviewSource(
        diff=diff,
        read_file=guarded(reader.read_file, spec),
        authorship=GuardedAuthorship(reader, spec),
        pr_labels=reader.data.labels,
        default_authored_by="ai",
        name=reader.data.name,
    )
    local = LocalPublisher(fmt, env, out) if dry_run else None
    fail_above = cfg.fail_above if cfg is not None else None
    return source, GitHubPublisher(repo, pull, reader, settings, env, fail_above, dry_run, local, identity=identity)


def job_settings(settings: GitHubSettings, marker: str) -> GitHubSettings:
    """``settings`` for a job whose markers are named ``marker`` (empty: unchanged). A named job also
    gets a check run of its own, ``<check name> (<marker>)``, unless its check name was set: GitHub
    shows only the latest check run of a name, so two jobs must not share one."""
    if not marker or settings.marker == marker:
        return settings
    check_name = settings.check_name
    if check_name == DEFAULT_SETTINGS.check_name:
        check_name = f"{check_name} ({marker})"
    return dataclasses.replace(settings, marker=marker, check_name=check_name)
