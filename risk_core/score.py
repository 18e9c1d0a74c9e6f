"""The one entry the bot calls: files + target lines in, a calibrated risk per line out.

Pure with respect to the outside world: the caller has already read the files and loaded the model
and bundle; nothing here reads or writes anything.
"""

from __future__ import annotations

import textwrap

import torch

from risk_core.artifacts import Bundle
from risk_core.candidates import candidate_mask, definition_spans, scoring_window
from risk_core.context_probe import ContextProbe
from risk_core.encode import EncodeConfig
from risk_core.features import compute_features, uses_raw
from risk_core.languages import language_of
from risk_core.model_loading import LoadedModel
from risk_core.types import FileScores, FileToScore, LatentContribution, LineRisk

__all__ = ["FileScores", "FileToScore", "LatentContribution", "LineRisk", "Scorer", "line_windows", "window_text"]


def layers_needed(bundle: Bundle) -> int | None:
    """``load_model(up_to_layer=...)`` for a scorer of ``bundle``: its layer, or None (the whole causal
    LM) when its features need the logits (surprise)."""
    return None if "surprise" in bundle.cfg.features else bundle.cfg.layer


class Scorer:
    """Bundle (SAE + probe) applied to a loaded model's line states."""

    def __init__(self, loaded: LoadedModel, bundle: Bundle, encode_cfg: EncodeConfig | None = None):
        bundle.check_compatible(loaded)
        self.loaded = loaded
        self.bundle = bundle
        self.encode_cfg = encode_cfg or bundle.cfg.encode_config()
        want = bundle.cfg.encode_config()
        got = self.encode_cfg
        if (got.layer, got.pooling, got.echo) != (want.layer, want.pooling, want.echo):
            raise ValueError("encode config must read the bundle's layer with its pooling and reading")
        self.encode_cfg.surprise = want.surprise

    @property
    def default_threshold(self) -> float | None:
        """The bundle's calibrated finding threshold (metrics.json ``threshold``), where it records one."""
        from risk_core.artifacts import recorded_threshold

        return recorded_threshold(self.bundle.metrics)

    @torch.no_grad()
    def score(self, files: list[FileToScore], top_latents: int = 5) -> list[FileScores]:
        """Each target line is encoded in its ``candidates.scoring_window`` (its definition, bounded),
        the same windows the probe was bound on; windows of all files go through the model together,
        and a window holding several target lines is encoded once. Lines that are not candidates
        (string or comment text, blank, punctuation only) get no risk."""
        if not files:
            return []
        windows: list[tuple[int, int, int]] = []  # (file index, first line, last line)
        targets: list[list[int]] = []  # per window: the file's target lines it scores
        languages = [language_of(f.path) or "unknown" for f in files]
        for fi, (f, lang) in enumerate(zip(files, languages)):
            for (lo, hi), ns in line_windows(f.text, lang, f.target_lines).items():
                windows.append((fi, lo, hi))
                targets.append(ns)
        if not windows:
            return [FileScores(f.path, []) for f in files]
        texts = [window_text(files[fi].text, lo, hi) for fi, lo, hi in windows]
        feats = compute_features(
            self.loaded,
            texts,
            [languages[fi] for fi, _, _ in windows],
            self.encode_cfg,
            sae=self.bundle.sae,
            framing=self.bundle.cfg.framing,
            keep_raw=uses_raw(self.bundle.cfg.features),
        )
        scored: list[list[LineRisk]] = [[] for _ in files]
        for (fi, lo, _hi), text, ff, wanted_lines in zip(windows, texts, feats, targets):
            rows = candidate_rows(ff, text, languages[fi])
            row_of = {ff.line_numbers[i] + lo - 1: r for r, i in enumerate(rows)}
            picked = [(n, row_of[n]) for n in wanted_lines if n in row_of]
            if not picked:
                continue
            scored[fi] += self._score_window(files[fi], ff, rows, picked, top_latents)
        return [FileScores(f.path, sorted(s, key=lambda r: r.line)) for f, s in zip(files, scored)]

    def _score_window(
        self, f: FileToScore, ff, rows: list[int], picked: list[tuple[int, int]], top_latents: int
    ) -> list[LineRisk]:
        """Risk of the ``picked`` (file line, row among ``rows``) lines of one window."""
        x = ff.matrix(self.bundle.cfg.features)[rows]
        risk, contrib = probe_lines(self.bundle.probe, x, [r for _, r in picked])
        latents_of_rows = ff.latents[rows]
        n_latents = latents_of_rows.shape[1]
        lines = f.text.splitlines()
        out = []
        for k, (n, r) in enumerate(picked):
            c = contrib[k, :n_latents]
            top = torch.topk(c, k=min(top_latents, n_latents)).indices.tolist()
            latents = [
                LatentContribution(i, float(latents_of_rows[r, i]), float(c[i]), self.bundle.latent_label(i))
                for i in top
            ]
            out.append(LineRisk(f.path, n, float(risk[k]), lines[n - 1], latents))
        return out


def line_windows(text: str, language: str, target_lines=None) -> dict[tuple[int, int], list[int]]:
    """The windows (first, last line) a file's target lines are scored in (``candidates.scoring_window``),
    each with its target lines in order; ``target_lines`` None: every line. Lines that are not
    candidates, or not in the file, are in none."""
    n_lines = len(text.splitlines())
    candidate = candidate_mask(text, language)
    wanted = range(1, n_lines + 1) if target_lines is None else sorted(set(target_lines))
    lines = [n for n in wanted if 1 <= n <= n_lines and candidate[n - 1]]
    if not lines:
        return {}
    spans = definition_spans(text, language)
    by_window: dict[tuple[int, int], list[int]] = {}
    for n in lines:
        by_window.setdefault(scoring_window(spans, n_lines, n), []).append(n)
    return by_window


def candidate_rows(ff, text: str, language: str) -> list[int]:
    """Indices of a window's feature rows (``ff.line_numbers``) that are candidate lines."""
    mask = candidate_mask(text, language)
    return [i for i, n in enumerate(ff.line_numbers) if mask[n - 1]]


def probe_lines(probe, x: torch.Tensor, at: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Risk [len(at)] and per-feature contributions [len(at), F] of rows ``at`` of a window's candidate
    lines ``x`` [L, F]: a context probe reads every line of the window, a line probe each row alone."""
    if isinstance(probe, ContextProbe):
        return probe.risk(x)[at], probe.contributions(x, rows=at)
    return probe.risk(x[at]), probe.contributions(x[at])


def window_text(text: str, lo: int, hi: int) -> str:
    """Lines ``lo..hi`` (1-based, inclusive) of ``text``, dedented as the binding data's windows are."""
    return textwrap.dedent("\n".join(text.splitlines()[lo - 1 : hi]) + "\n")
