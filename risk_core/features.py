"""Line features of a file, the one definition shared by ``bind``, ``eval`` and the scorer.

For each file: per-token hidden states at the bundle's layer (``encode.encode_tokens``), SAE latents per
token (``encode_dense``, the distribution the SAE was trained on) pooled per line with the same
``encode.pool_lines`` as the raw states, and per-line token surprise (mean/max NLL, mean entropy).

Framing: ``bare`` encodes the code alone; ``review`` wraps it in the instruct model's chat prompt
("review this code for bugs"). The prompt prefix ends with a newline, so code line i is prompt line
i + offset and token line indices map back exactly; prompt tokens are dropped before pooling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from risk_core.candidates import candidate_mask
from risk_core.choices import FEATURE_SETS, FRAMINGS  # noqa: F401  (re-exported: bind, eval)
from risk_core.errors import UsageError
from risk_core.tokenizer import FastTokenizer

SURPRISE_NAMES = ("nll_mean", "nll_max", "entropy_mean")
_PLACEHOLDER = "\u2063CODE\u2063"


def uses_raw(feature_set: str) -> bool:
    """Whether a feature set reads the pooled raw states (so they must be kept)."""
    return "raw" in feature_set.split("+")


def raw_counterpart(feature_set: str) -> str:
    """The raw-state baseline's feature set beside a bundle's: its SAE part swapped for raw states."""
    return "raw+surprise" if feature_set.endswith("+surprise") else "raw"


def feature_matrix(feature_set: str, sae: Tensor | None, raw: Tensor | None, surprise: Tensor | None) -> Tensor:
    """The probe input for a feature set: sae | sae+surprise | sae+raw | raw | raw+surprise. A line whose
    only token is the file's first has no defined NLL: its surprise is 0. ``sae+raw`` puts the latents
    first, so a probe's first ``num_latents`` contributions are the latents'."""
    base, _, extra = feature_set.partition("+")
    x = sae if base == "sae" else raw
    if x is None:
        raise UsageError(f"feature set {feature_set!r} needs {base} features that were not computed")
    if extra == "raw":
        if raw is None:
            raise UsageError(f"feature set {feature_set!r} needs raw states that were not kept")
        x = torch.cat([x, raw], dim=1)
    if extra == "surprise":
        if surprise is None:
            raise UsageError("feature set with surprise needs EncodeConfig.surprise=True")
        x = torch.cat([x, torch.nan_to_num(surprise, nan=0.0)], dim=1)
    return x


@dataclass
class FileFeatures:
    line_numbers: list[int]
    """1-based line numbers of the rows (lines that hold at least one token of the code)."""
    raw: Tensor | None
    """[n, d_model] pooled raw hidden states (None when not kept)."""
    latents: Tensor | None
    """[n, num_latents] SAE latents, encoded per token then pooled (None without an SAE)."""
    surprise: Tensor | None
    """[n, 3] mean NLL, max NLL, mean entropy of the line's tokens (None when not computed)."""

    def matrix(self, feature_set: str) -> Tensor:
        """The probe input for a feature set: sae | sae+surprise | raw | raw+surprise."""
        return feature_matrix(feature_set, self.latents, self.raw, self.surprise)


def frame_text(code: str, language: str, framing: str, tokenizer=None) -> tuple[str, int]:
    """(text to encode, number of prompt lines before the code's first line)."""
    if framing == "bare":
        return code, 0
    if framing != "review":
        raise UsageError(f"unknown framing {framing!r} ({' | '.join(FRAMINGS)})")
    if isinstance(tokenizer, FastTokenizer):
        raise UsageError("the review framing needs the chat template: load the model with engine='transformers'")
    user = f"Review this {language} code and find the line with the bug.\n```{language}\n{_PLACEHOLDER}\n```"
    template = None
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        try:
            template = tokenizer.apply_chat_template(
                [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
            )
        except Exception:  # a template that needs other roles/fields: fall back to the plain prompt
            template = None
    if not template or _PLACEHOLDER not in template:
        template = f"# {user}\n"
    pre, post = template.split(_PLACEHOLDER, 1)
    assert pre.endswith("\n")
    body = code if code.endswith("\n") else code + "\n"
    return pre + body + post.lstrip("\n"), pre.count("\n")


def code_tokens(token_lines: Tensor, offset: int, n_lines: int) -> Tensor:
    """Mask of the tokens that belong to the code in a text ``frame_text`` made: their line, less the
    ``offset`` prompt lines before the code, lies in [0, n_lines). The prompt's tokens are dropped."""
    shifted = token_lines - offset
    return (shifted >= 0) & (shifted < n_lines)


def compute_features(
    loaded, codes: list[str], languages: list[str], enc_cfg, sae=None, framing: str = "bare", keep_raw: bool = True
) -> list[FileFeatures]:
    """Line features for each code text (see module doc). ``enc_cfg`` is an ``encode.EncodeConfig``;
    its ``pooling`` is used for raw states, latents and surprise alike (surprise max uses max); with its
    ``echo``, raw states and latents come from the second reading (surprise from the first)."""
    from risk_core.encode import encode_tokens, pool_lines

    texts, offsets = [], []
    for code, lang in zip(codes, languages):
        t, off = frame_text(code, lang, framing, loaded.tokenizer)
        texts.append(t)
        offsets.append(off)
    out: list[FileFeatures] = []
    toks = encode_tokens(loaded, texts, enc_cfg)
    for code, ts, off in zip(codes, toks, offsets):
        n_lines = len(code.splitlines())
        keep = code_tokens(ts.token_lines, off, n_lines)
        tl = ts.token_lines[keep] - off
        states = ts.read(enc_cfg)[keep].float()
        if tl.numel() == 0:
            out.append(FileFeatures([], None, None, None))
            continue
        raw, line_numbers = pool_lines(states, tl, n_lines, enc_cfg.pooling)
        latents = None
        if sae is not None:
            dev = next(sae.parameters()).device
            with torch.no_grad():
                chunks = [
                    sae.encode_dense(states[i : i + 1024].to(dev)).float().cpu()
                    for i in range(0, states.shape[0], 1024)
                ]
            latents, _ = pool_lines(torch.cat(chunks), tl, n_lines, enc_cfg.pooling)
        surprise = None
        if ts.nll is not None:
            nll = ts.nll[keep].float().unsqueeze(1)
            ent = (ts.entropy[keep].float() if ts.entropy is not None else torch.zeros(tl.shape[0])).unsqueeze(1)
            s_mean, _ = pool_lines(nll, tl, n_lines, "mean")
            s_max, _ = pool_lines(nll, tl, n_lines, "max")
            e_mean, _ = pool_lines(ent, tl, n_lines, "mean")
            surprise = torch.cat([s_mean, s_max, e_mean], dim=1)
        out.append(FileFeatures(list(line_numbers), raw.float() if keep_raw else None, latents, surprise))
    return out


@dataclass
class LineTable:
    """Candidate lines of many samples, stacked: the rows bind trains on and eval scores."""

    sample_index: Tensor
    """[n] index of each row's sample in the input list."""
    line_numbers: Tensor
    """[n] 1-based line number of each row."""
    labels: Tensor
    """[n] 1.0 where the line is in the sample's buggy_lines."""
    sae: Tensor | None
    """[n, num_latents] pooled SAE latents."""
    raw: Tensor | None
    """[n, d_model] pooled raw states."""
    surprise: Tensor | None
    """[n, 3] mean NLL, max NLL, mean entropy (NaN-free: a line without a defined NLL gets 0)."""

    def matrix(self, feature_set: str) -> Tensor:
        return feature_matrix(feature_set, self.sae, self.raw, self.surprise)

    def subset(self, rows: Tensor) -> LineTable:
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return LineTable(
            self.sample_index[rows],
            self.line_numbers[rows],
            self.labels[rows],
            pick(self.sae),
            pick(self.raw),
            pick(self.surprise),
        )


def line_table(
    loaded,
    samples,
    enc_cfg,
    sae=None,
    framing: str = "bare",
    keep_raw: bool = True,
    batch_files: int = 16,
    progress=None,
) -> LineTable:
    """Features of the candidate lines (``candidates.candidate_mask``) of every sample, in batches of files so
    that per-token SAE activations of the whole data set never sit in memory at once."""
    rows_si, rows_ln, rows_y, xs_sae, xs_raw, xs_sur = [], [], [], [], [], []
    for b in range(0, len(samples), batch_files):
        chunk = samples[b : b + batch_files]
        feats = compute_features(
            loaded,
            [s.code for s in chunk],
            [s.language for s in chunk],
            enc_cfg,
            sae=sae,
            framing=framing,
            keep_raw=keep_raw,
        )
        for k, (s, ff) in enumerate(zip(chunk, feats)):
            if not ff.line_numbers:
                continue
            mask = candidate_mask(s.code, s.language)
            keep = [i for i, ln in enumerate(ff.line_numbers) if ln <= len(mask) and mask[ln - 1]]
            if not keep:
                continue
            idx = torch.tensor(keep, dtype=torch.long)
            lns = [ff.line_numbers[i] for i in keep]
            bug = set(s.buggy_lines)
            rows_si.append(torch.full((len(keep),), b + k, dtype=torch.long))
            rows_ln.append(torch.tensor(lns, dtype=torch.long))
            rows_y.append(torch.tensor([1.0 if ln in bug else 0.0 for ln in lns]))
            if ff.latents is not None:
                xs_sae.append(ff.latents[idx])
            if ff.raw is not None:
                xs_raw.append(ff.raw[idx])
            if ff.surprise is not None:
                xs_sur.append(torch.nan_to_num(ff.surprise[idx], nan=0.0))
        if progress:
            progress(min(b + batch_files, len(samples)), len(samples))
    if not rows_si:
        raise UsageError("no candidate code lines in the data")
    cat = lambda xs: torch.cat(xs) if xs else None  # noqa: E731
    return LineTable(torch.cat(rows_si), torch.cat(rows_ln), torch.cat(rows_y), cat(xs_sae), cat(xs_raw), cat(xs_sur))
