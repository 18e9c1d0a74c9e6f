"""What the Action reviews with: the token and API root it talks to (`github_env`), the review config
read from the PR's *base* commit and overridden by the inputs (`resolve_config`), and the PR a
``workflow_dispatch`` run names (`resolve_dispatch`).

Never from the PR's head: a PR must not be able to raise its own threshold, cut the comment limit or
point the templates at files it controls.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from action.event import DispatchEvent, PullRequestEvent, RangeEvent
from action.inputs import Inputs
from bot.publish.actions_log import annotation
from risk_core.errors import UsageError

if TYPE_CHECKING:
    from bot.config import ReviewConfig
    from bot.github_client import GitHubSettings


def read_base_config(
    event: PullRequestEvent | RangeEvent,
    path: str,
    environ: Mapping[str, str],
    settings: GitHubSettings | None = None,
) -> str | None:
    """The config file's text at the PR's base commit, read through the API (None: absent).

    Never from the PR's head: a PR must not be able to raise its own threshold, cut the comment
    limit or point the templates at files it controls.
    """
    from github import GithubException

    from bot.github_client import connect, github_errors

    gh = connect(settings, dict(environ))
    with github_errors(f"reading {path} at {event.base_sha[:7]}"):
        try:
            content = gh.get_repo(event.full_name).get_contents(path, ref=event.base_sha)
        except GithubException as err:
            if err.status == 404:
                return None
            raise
    if isinstance(content, list):
        raise UsageError(f"input config {path!r} is a directory in the repository")
    return content.decoded_content.decode("utf-8", "replace")


# --------------------------------------------------------------------------------------------------
# The run


def github_env(env: Mapping[str, str], inputs: Inputs) -> dict[str, str]:
    """What the GitHub half reads: the github-token input wins over an ambient GITHUB_TOKEN."""
    if not inputs.token:
        raise UsageError("no github-token: pass `github-token: ${{ github.token }}` (the default)")
    out = {"GITHUB_TOKEN": inputs.token, "GITHUB_API_URL": env.get("GITHUB_API_URL") or "https://api.github.com"}
    # Whose markers count (bot.publish.markers.BotIdentity): the bot's login for an App token, and a
    # secret (e.g. `env: PTTRUST_MARKER_SECRET: ${{ secrets.PTTRUST_MARKER_SECRET }}`) keying their HMAC.
    for name in ("PTTRUST_BOT_LOGIN", "PTTRUST_MARKER_SECRET"):
        if env.get(name, "").strip():
            out[name] = env[name].strip()
    return out


def resolve_config(
    event: PullRequestEvent | RangeEvent,
    inputs: Inputs,
    github_env: Mapping[str, str],
    settings: GitHubSettings | None = None,
    out: TextIO = sys.stdout,
) -> ReviewConfig:
    """The review settings: defaults < the base commit's config file < the action's inputs."""
    from bot.config import load_config

    config_text = None
    if inputs.config:
        config_text = read_base_config(event, inputs.config, github_env, settings)
        if config_text is None and inputs.config != ".pttrust.yml":
            raise UsageError(f"input config {inputs.config!r} not found at the base commit {event.base_sha[:7]}")
    with tempfile.TemporaryDirectory(prefix="pttrust-cfg-") as tmp:
        cfg_path = None
        if config_text is not None:
            # load_config wants a file so its errors can say `.pttrust.yml:7: ...`.
            cfg_path = Path(tmp) / Path(inputs.config).name
            cfg_path.write_text(config_text, encoding="utf-8")
        cfg = load_config(cfg_path)
    if cfg.templates:
        # Only the config file is read from the base commit, not a templates directory beside it.
        print(
            annotation(
                "warning",
                "the config's `templates` is not used by the action; the packaged templates are",
                title="PtTrust",
            ),
            file=out,
        )
        cfg = dataclasses.replace(cfg, templates=None)
    return cfg.replace(
        threshold=inputs.threshold,
        max_comments=inputs.max_comments,
        fail_above=inputs.fail_above,
        on_skip=inputs.on_skip,
        authored_by=inputs.authored_by,
        model=inputs.model,
        bundle=inputs.bundle,
        filter_mode=inputs.filter_mode,
        paths=list(inputs.paths) or None,
        marker=inputs.marker,
    )


def resolve_dispatch(
    event: DispatchEvent, github_env: Mapping[str, str], settings: GitHubSettings | None = None
) -> PullRequestEvent:
    """The PR a workflow_dispatch run names, read through the API."""
    from action.event import pull_request_from_api
    from bot.github_client import connect, github_errors

    gh = connect(settings, dict(github_env))
    with github_errors(f"reading {event.full_name}#{event.number}"):
        pull = gh.get_repo(event.full_name).get_pull(event.number)
        return pull_request_from_api(event.owner, event.repo, pull.raw_data)
