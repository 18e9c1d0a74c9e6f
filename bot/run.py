"""Model + bundle loading and the one scoring pass shared by `pttrust review` (local and --github)
and the GitHub Action's entry, so that both run the same pieces in the same order."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from risk_core.errors import PttrustError, UsageError
from risk_core.types import Scorer

if TYPE_CHECKING:
    from bot.config import ReviewConfig
    from bot.review import Report, ReviewSource, Skipped

Progress = Callable[[str], None]
ScorerFactory = Callable[[str | None, str | None, str, "Progress | None"], tuple[Scorer, str, "str | None"]]
"""``(model, bundle, device, progress) -> (scorer, model name, bundle path)``, as `load_scorer`."""


def default_bundle(model: str) -> Path | None:
    """The bundle packaged for a registry model (risk_core/weights/<model>), if the wheel has one."""
    import risk_core

    path = Path(risk_core.__file__).parent / "weights" / model
    return path if (path / "cfg.json").is_file() else None


def bundle_for(model: str | None, bundle: str | None) -> tuple[str, Path | None]:
    """(model name, bundle dir) a review of ``model`` with ``bundle`` reads: the bundle given, else the
    one packaged for the model (the embedded one when none is given)."""
    from risk_core.models import DEFAULT_MODEL

    name = model or DEFAULT_MODEL
    return name, Path(bundle) if bundle else default_bundle(name)


def load_scorer(
    model: str | None,
    bundle: str | None,
    device: str = "auto",
    progress: Progress | None = None,
    *,
    quantize: str = "auto",
    engine: str = "auto",
    dtype: str = "auto",
) -> tuple[Scorer, str, str | None]:
    """Load the model and its artifact bundle into a `risk_core.score.Scorer`; the model only up to
    the bundle's layer when its features need no logits (`risk_core.score.layers_needed`), by the
    torch engine where it can (``engine``: see `risk_core.model_loading.load_model`), in ``dtype`` (auto:
    bfloat16 where the hardware makes it fast, `risk_core.model_loading.review_dtype`).

    Returns (scorer, model name, bundle path). Import errors of the model stack become one line.
    """
    say = progress or (lambda _m: None)
    try:
        from risk_core.artifacts import Bundle
        from risk_core.model_loading import load_model, review_dtype
        from risk_core.score import Scorer, layers_needed
    except ImportError as err:
        raise PttrustError(f"the scoring stack is not available: {err}") from None
    name, bundle_path = bundle_for(model, bundle)
    if bundle_path is None:
        raise UsageError(f"no artifact bundle for model {name!r}: pass --bundle DIR (made by `pttrust bind`)")
    say(f"loading bundle {bundle_path}")
    loaded_bundle = Bundle.load(bundle_path)
    say(f"loading model {name}")
    if loaded_bundle.cfg.framing == "review":
        # The review framing wraps code in the chat template, which only transformers' tokenizer renders.
        if engine == "torch":
            raise UsageError(f"bundle {bundle_path} frames code in the chat template: it needs the transformers engine")
        engine = "transformers"
    loaded = load_model(  # the CLI's reporter: respects -q
        name,
        device=device,
        quantize=quantize,
        dtype=review_dtype(device, quantize) if dtype == "auto" else dtype,
        up_to_layer=layers_needed(loaded_bundle),
        say=progress,
        engine=engine,
    )
    return Scorer(loaded, loaded_bundle), name, str(bundle_path)


def score_source(
    source: ReviewSource,
    cfg: ReviewConfig,
    *,
    device: str = "auto",
    quantize: str = "auto",
    dtype: str = "auto",
    scorer_factory: ScorerFactory | None = None,
    progress: Progress | None = None,
) -> Report:
    """Run the review pipeline on ``source`` (a ``bot.review.ReviewSource``) and return its Report.

    The model is loaded only once the input has been checked and holds lines to score, so a bad
    diff fails fast and an empty one never loads it. Publishing is the caller's: it decides what a
    refused post means (the CLI fails, the Action falls back to annotations).
    """
    from bot.review import review_source
    from risk_core.artifacts import bundle_threshold, check_bundle_dir

    if cfg.bundle:  # refused now, not when the first diff with code to score loads it
        check_bundle_dir(cfg.bundle)
    bundle_dir = bundle_for(cfg.model, cfg.bundle)[1]
    known_threshold = bundle_threshold(bundle_dir) if bundle_dir else None
    # quantize and dtype reach the loader only when asked for, so factories with load_scorer's first
    # four parameters (the Action's, test doubles) keep working.
    asked = {k: v for k, v in (("quantize", quantize), ("dtype", dtype)) if v != "auto"}
    factory: ScorerFactory = scorer_factory or (functools.partial(load_scorer, **asked) if asked else load_scorer)
    loaded: dict[str, str | None] = {}

    def scorer() -> Scorer:
        scorer_, loaded["model"], loaded["bundle"] = factory(cfg.model, cfg.bundle, device, progress)
        return scorer_

    report = review_source(source, scorer, cfg, progress=progress, default_threshold=known_threshold)
    report.summary.model, report.summary.bundle = loaded.get("model"), loaded.get("bundle")
    return report


# Skips a gate may pass: files the config leaves out on purpose, or with no text to score.
_DELIBERATE_SKIPS = ("binary file", "submodule file", "generated/vendored path", "marked ")


def unreviewed(report: Report) -> list[Skipped]:
    """The report's skipped files that a gate did not look at although it should have: unscored for a
    limit (files, added lines, bytes) or an error, not left out by the config or binary."""
    return [s for s in report.skipped if not s.reason.startswith(_DELIBERATE_SKIPS)]


def gate_skip_problem(report: Report, cfg: ReviewConfig) -> tuple[str, str] | None:
    """``(level, message)`` when a gate is set and files went unscored: level ``error`` (on_skip fail,
    the default) or ``warning`` (on_skip warn); None otherwise."""
    if cfg.fail_above is None:
        return None
    missed = unreviewed(report)
    if not missed:
        return None
    first = missed[0]
    more = f" and {len(missed) - 1} more" if len(missed) > 1 else ""
    message = (
        f"the gate (fail-above {cfg.fail_above:g}) did not look at {len(missed)} file(s) with added lines: "
        f"{first.path} ({first.reason}){more}"
    )
    return ("warning" if cfg.on_skip == "warn" else "error"), message
