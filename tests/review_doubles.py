"""Test doubles for the review pipeline. NOT a real scorer: `KeywordScorer` gives a line a high
"risk" when it contains one of a few keywords, so that ranking, formats and the CLI can be tested
deterministically without a model. Real scores come only from `risk_core.score.Scorer`."""

from __future__ import annotations

from collections.abc import Sequence

from risk_core.candidates import candidate_mask
from risk_core.corpus import language_of
from risk_core.types import FileScores, FileToScore, LatentContribution, LineRisk

# Kept as aliases so that tests read as before; they ARE the real types (a renamed field breaks them).
FakeLatent = LatentContribution
FakeLineRisk = LineRisk
FakeFileScores = FileScores


class KeywordScorer:
    """A `risk_core.types.Scorer` (deterministic, tests only); records what it was asked."""

    def __init__(self, keywords: dict[str, float] | None = None, base: float = 0.1, candidates: bool = False):
        self.keywords = keywords or {"page * per_page": 0.93, "// per_page": 0.71, "==": 0.62}
        self.base = base
        self.candidates = candidates
        """Like the real scorer, leave out lines that are not scoring candidates (candidate_mask)."""
        self.calls: list[list[FileToScore]] = []
        self.default_threshold: float | None = None
        """No calibrated threshold, like a bundle without one (the pipeline then uses 0.5)."""

    def score(self, files: Sequence[FileToScore], top_latents: int = 5) -> list[FileScores]:
        self.calls.append(list(files))
        out: list[FileScores] = []
        for f in files:
            lines = f.text.split("\n")
            targets = f.target_lines or range(1, len(lines) + 1)
            mask = candidate_mask(f.text, language_of(f.path) or "unknown") if self.candidates else None
            scored: list[LineRisk] = []
            for n in targets:
                text = lines[n - 1]
                if not text.strip():
                    continue  # like the real scorer: a blank line holds no token
                if mask is not None and not mask[n - 1]:
                    continue  # nor does it score comments, string text or punctuation-only lines
                risk = max([r for k, r in self.keywords.items() if k in text], default=self.base)
                latents = [
                    FakeLatent(7, 2.5, round(risk - 0.5, 3), "test-double keyword <b>"),
                    FakeLatent(42, 0.5, -0.05, None),
                ][:top_latents]
                scored.append(FakeLineRisk(f.path, n, risk, text, latents))
            out.append(FakeFileScores(f.path, scored))
        return out
