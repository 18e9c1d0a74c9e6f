"""Test doubles for the review pipeline. NOT a real scorer: `KeywordScorer` gives a line a high
"risk" when it contains one of a few keywords, so that ranking, formats and the CLI can be tested
deterministically without a model. Real scores come only from `risk_core.score.Scorer`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FakeLatent:
    index: int
    activation: float
    contribution: float
    label: str | None


@dataclass
class FakeLineRisk:
    path: str
    line: int
    risk: float
    text: str
    latents: list = field(default_factory=list)


@dataclass
class FakeFileScores:
    path: str
    lines: list
    skipped: str | None = None


class KeywordScorer:
    """Deterministic stand-in with the `Scorer.score` signature; records what it was asked."""

    def __init__(self, keywords: dict[str, float] | None = None, base: float = 0.1, candidates: bool = False):
        self.keywords = keywords or {"page * per_page": 0.93, "// per_page": 0.71, "==": 0.62}
        self.base = base
        self.candidates = candidates
        """Like the real scorer, leave out lines that are not scoring candidates (candidate_mask)."""
        self.calls: list[list] = []

    def score(self, files, top_latents: int = 5):
        self.calls.append(list(files))
        out = []
        from risk_core.candidates import candidate_mask
        from risk_core.corpus import language_of

        for f in files:
            lines = f.text.split("\n")
            targets = f.target_lines or range(1, len(lines) + 1)
            mask = candidate_mask(f.text, language_of(f.path) or "unknown") if self.candidates else None
            scored = []
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
