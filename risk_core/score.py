"""The one entry the bot calls: files + target lines in, a calibrated risk per line out.

Pure with respect to the outside world: the caller has already read the files and loaded the model
and bundle; nothing here reads or writes anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from risk_core.artifacts import Bundle
from risk_core.candidates import candidate_mask
from risk_core.corpus import language_of
from risk_core.encode import EncodeConfig
from risk_core.features import compute_features
from risk_core.models import LoadedModel


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
    latents: list[LatentContribution] = field(default_factory=list)
    """The latents that drove the score, by |contribution|, largest first."""


@dataclass
class FileScores:
    path: str
    lines: list[LineRisk]
    """Scored target lines (lines without a token, e.g. blank ones, are absent)."""
    skipped: str | None = None
    """Why the file was not scored, when it was not."""


class Scorer:
    """Bundle (SAE + probe) applied to a loaded model's line states."""

    def __init__(self, loaded: LoadedModel, bundle: Bundle, encode_cfg: EncodeConfig | None = None):
        bundle.check_compatible(loaded)
        self.loaded = loaded
        self.bundle = bundle
        self.encode_cfg = encode_cfg or EncodeConfig(layer=bundle.cfg.layer, pooling=bundle.cfg.pooling)
        self.encode_cfg.surprise = "surprise" in bundle.cfg.features
        if self.encode_cfg.layer != bundle.cfg.layer or self.encode_cfg.pooling != bundle.cfg.pooling:
            raise ValueError("encode config must read the bundle's layer with its pooling")

    @torch.no_grad()
    def score(self, files: list[FileToScore], top_latents: int = 5) -> list[FileScores]:
        if not files:
            return []
        languages = [language_of(f.path) or "unknown" for f in files]
        feats = compute_features(
            self.loaded,
            [_through_last_target(f) for f in files],
            languages,
            self.encode_cfg,
            sae=self.bundle.sae,
            framing=self.bundle.cfg.framing,
            keep_raw=False,
        )
        probe = self.bundle.probe
        out = []
        for f, lang, ff in zip(files, languages, feats):
            lines = f.text.splitlines()
            wanted = set(f.target_lines) if f.target_lines is not None else None
            # Blank, comment-only and docstring lines are not where the probe was trained to look.
            candidate = candidate_mask(f.text, lang)
            rows = [i for i, n in enumerate(ff.line_numbers) if (wanted is None or n in wanted) and candidate[n - 1]]
            if not rows:
                out.append(FileScores(f.path, []))
                continue
            x = ff.matrix(self.bundle.cfg.features)[rows]
            risk = probe.risk(x)
            contrib = probe.contributions(x)
            n_latents = ff.latents.shape[1]
            scored = []
            for r, row in enumerate(rows):
                c = contrib[r, :n_latents]
                top = torch.topk(c.abs(), k=min(top_latents, n_latents)).indices.tolist()
                latents = [
                    LatentContribution(i, float(ff.latents[row, i]), float(c[i]), self.bundle.latent_label(i))
                    for i in top
                ]
                n = ff.line_numbers[row]
                scored.append(LineRisk(f.path, n, float(risk[r]), lines[n - 1], latents))
            out.append(FileScores(f.path, scored))
        return out


def _through_last_target(f: FileToScore) -> str:
    """The text up to and including the last target line: the model is causal, so what follows the
    last line scored cannot change any score, and a diff near the top of a long file skips the rest."""
    if not f.target_lines:
        return f.text
    lines = f.text.splitlines(keepends=True)
    return "".join(lines[: max(f.target_lines)])
