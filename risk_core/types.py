"""The hand-off between the bot and the scorer: what is asked (`FileToScore`), what comes back
(`FileScores` of `LineRisk` with their `LatentContribution`s), and what a scorer is (`Scorer`).

Torch-free on purpose: the bot, the Action and the test doubles import these types without loading
the model stack, and there is one definition of each, so renaming a field breaks every user of it
(`risk_core.score.Scorer` is the real implementation of the protocol; `tests/review_doubles.py`
holds a deterministic one for tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass
class FileToScore:
    path: str
    """Repository-relative path; its extension picks the language."""
    text: str
    """The whole new-side text of the file (context for the target lines)."""
    target_lines: list[int] | None = None
    """1-based lines to score; None scores every line."""


@dataclass
class LatentContribution:
    index: int
    """SAE latent index."""
    activation: float
    """The latent's pooled activation on the line."""
    contribution: float
    """Its share of the probe's logit (positive pushes towards risky)."""
    label: str | None = None
    """A short human label for the latent, where the bundle has one."""


@dataclass
class LineRisk:
    path: str
    line: int
    """1-based line number."""
    risk: float
    """Calibrated probability that the line is buggy."""
    text: str
    """The line's text (no newline)."""
    latents: list[LatentContribution] = field(default_factory=list[LatentContribution])
    """The latents that pushed the score up most, by contribution (largest first; the reasons a
    reviewer is shown); where fewer push it up, the least negative follow."""


@dataclass
class FileScores:
    path: str
    lines: list[LineRisk]
    """Scored target lines (lines without a token, e.g. blank ones, are absent)."""
    skipped: str | None = None
    """Why the file was not scored, when it was not."""


@runtime_checkable
class Scorer(Protocol):
    """What the review pipeline needs from a scorer (`risk_core.score.Scorer` is the real one).

    Runtime-checkable so that the pipeline can tell a scorer from a zero-argument factory of one
    (the model loads only once the input is known good)."""

    @property
    def default_threshold(self) -> float | None:
        """The bundle's calibrated finding threshold, where it records one (None: use the plain one)."""
        ...

    def score(self, files: list[FileToScore], top_latents: int = 5) -> list[FileScores]:
        """One `FileScores` per request, in order; each lists the scored target lines."""
        ...
