"""Real-bug experiments from feature caches: the stacked bind / held-out splits, their line features
(raw states, SAE latents, reconstructions, token surprise; mean- or max-pooled, or per token), and the
bind split's validation repositories. Used by ``scripts/realbugs-experiments``, ``scripts/realbugs-sae``
and the shipped bundle's recipe (``scripts/train-default-bundle``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import torch

from risk_core.artifacts import Bundle
from risk_core.choices import Framing
from risk_core.context_probe import LinePair
from risk_core.contrastive_sae import FixPairs, replaced_lines
from risk_core.data.from_git.diff import FixKind, fix_kind
from risk_core.data.from_git.mining import fixed_id
from risk_core.data.jsonl import read_jsonl
from risk_core.errors import UsageError
from risk_core.evaluate import probe_risk
from risk_core.feature_cache import line_rows, load_tokens, pool_rows
from risk_core.sae import SparseCoder


def slug(variant: str) -> str:
    """A directory name for a variant: 'sae:topk2x + context-gru (both)' -> 'sae-topk2x-context-gru-both'."""
    return "-".join("".join(c if c.isalnum() else " " for c in variant).split()).lower()


def variant_suffix(overrides: dict) -> str:
    """What context-probe settings beyond a variant's loss and members add to its name: ' [hidden=128]'
    (not the arch: the variant names it, context-gru or context-transformer)."""
    return "".join(f" [{k}={v}]" for k, v in overrides.items() if k != "arch")


def repo_of(sample) -> str:
    return sample.path.split(":", 1)[0]


class Split:
    """Caches + their samples, stacked: candidate rows, and features computed on demand (memoised).
    A cache still being written contributes the samples of its finished chunks; ``max_samples`` keeps
    the first that many of the stack (variants compared while an encoder still runs see the same data),
    and the ``extra`` parts are stacked after that cut, cut in turn at ``max_extra`` samples of their own."""

    def __init__(
        self,
        parts: list[str],
        layers: tuple[int, ...],
        max_samples: int | None = None,
        echo_layers: tuple[int, ...] = (),
        extra: list[str] | tuple[str, ...] = (),
        max_extra: int | None = None,
    ):
        self.samples, tokens = [], []
        self.n_capped = 0
        """Samples from ``parts`` (cut at ``max_samples``); those of ``extra`` follow them."""
        for spec, capped in [(p, True) for p in parts] + [(p, False) for p in extra]:
            limit = max_samples if capped else None if max_extra is None else self.n_capped + max_extra
            if limit is not None and len(self.samples) >= limit:
                continue
            cache, eq, data = spec.partition("=")
            if not eq:
                raise UsageError(f"expected CACHE=DATA.jsonl, got {spec!r}")
            t = load_tokens(cache, layers, partial=True, echo_layers=echo_layers)
            if not Path(data).is_file():
                raise UsageError(f"{data}: not found (the samples of the cache {cache})")
            part = read_jsonl(data)
            if len(part) < t.meta["n_samples"]:
                raise UsageError(f"{data}: {len(part)} samples, the cache {t.meta['n_samples']}: not its data")
            if limit is not None and len(self.samples) + t.meta["n_samples"] > limit:
                t = t.first_samples(limit - len(self.samples))
            t.token_sample = t.token_sample + len(self.samples)
            self.samples += part[: t.meta["n_samples"]]
            tokens.append(t)
            if capped:
                self.n_capped = len(self.samples)
        first = tokens[0]
        framings = sorted({t.meta["key"].get("framing", "bare") for t in tokens})
        if len(framings) > 1:
            raise UsageError(f"the caches {', '.join(parts)} were encoded in different framings: {', '.join(framings)}")
        self.framing: Framing = cast(Framing, framings[0])  # realbugs-features writes only Framing's values
        """How the caches' samples were framed when encoded (``realbugs-features --framing``)."""
        key = dict(first.meta["key"])
        if len(tokens) > 1:  # the stack's data is every part's, in order: one hash names them together
            key["data_sha256"] = hashlib.sha256(
                "+".join(t.meta["key"]["data_sha256"] for t in tokens).encode()
            ).hexdigest()
            key["parts"] = [t.meta["key"] for t in tokens]
        nll = [t.nll if t.nll is not None else torch.full((len(t.token_sample),), torch.nan) for t in tokens]

        def stack(pieces: list[torch.Tensor]) -> torch.Tensor:
            # One part is kept as it is: a copy of an 11k-sample cache is another 11 GB.
            return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

        self.tokens = type(first)(
            {"samples": [m for t in tokens for m in t.meta["samples"]], "n_samples": len(self.samples), "key": key},
            stack([t.token_sample for t in tokens]),
            stack([t.token_line for t in tokens]),
            {layer: stack([t.states[layer] for t in tokens]) for layer in layers},
            stack([t.token_ids for t in tokens]) if all(t.token_ids is not None for t in tokens) else None,
            stack(nll) if any(t.nll is not None for t in tokens) else None,
            None,
            {layer: stack([t.echo[layer] for t in tokens]) for layer in echo_layers},
        )
        self.rows = line_rows(self.tokens, [s.code for s in self.samples], [s.language for s in self.samples])
        self._memo: dict[str, torch.Tensor] = {}

    def raw(self, layer: int, pooling: str = "mean", echo: bool = False) -> torch.Tensor:
        """Pooled states of the candidate lines at ``layer``: the plain reading, or the second (``echo``)."""
        key = f"{'echo' if echo else 'raw'}{layer}@{pooling}"
        if key not in self._memo:
            self._memo[key] = pool_rows(self.states(layer, echo), self.rows, pooling)
        return self._memo[key]

    def states(self, layer: int, echo: bool = False) -> torch.Tensor:
        """Every cached token's state at ``layer``: the plain reading, or the second (``echo``)."""
        return self.tokens.echo[layer] if echo else self.tokens.states[layer]

    def sae(self, name: str, sae: SparseCoder, layer: int, pooling: str = "mean", echo: bool = False) -> torch.Tensor:
        key = f"sae:{name}@{pooling}"
        if key not in self._memo:
            states = self.states(layer, echo)
            self._memo[key] = pool_encoded(states, self.rows, sae.encode_dense, sae.num_latents, pooling)
        return self._memo[key]

    def recon(self, name: str, sae: SparseCoder, layer: int, echo: bool = False) -> torch.Tensor:
        key = f"recon:{name}"
        if key not in self._memo:
            states = self.states(layer, echo)
            self._memo[key] = pool_encoded(states, self.rows, reconstruct(sae), int(states.shape[1]))
        return self._memo[key]

    def token_features(self, fname: str, saes: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token features of the candidate lines' tokens [t, F] and each token's row [t]: raw states
        (``raw16``) or SAE latents (``sae:NAME``, of the reading the SAE was trained on), for probes that
        score tokens and pool the risk. ``saes``: {name: (SparseCoder, layer, echo)}."""
        sel = self.rows.token_row >= 0
        if fname.startswith("raw"):
            x = self.tokens.states[int(fname[3:])][sel].float()
        else:
            sae, layer, echo = saes[fname.removeprefix("sae:")]
            states = self.states(layer, echo)[sel]
            with torch.no_grad():
                x = torch.cat([sae.encode_dense(states[a : a + 8192].float()) for a in range(0, len(states), 8192)])
        return x, self.rows.token_row[sel]

    def surprise(self) -> torch.Tensor | None:
        if self.tokens.nll is None:
            return None
        return pool_rows(torch.nan_to_num(self.tokens.nll, nan=0.0).unsqueeze(1), self.rows, "max")[:, 0]

    def rows_where(self, mask: torch.Tensor) -> SimpleNamespace:
        """The candidate rows under ``mask`` [rows], as `real_bug_report` reads them (``.sample``, ``.label``)."""
        return SimpleNamespace(sample=self.rows.sample[mask], label=self.rows.label[mask])

    def train_val(self) -> tuple[list[int], list[int]]:
        """Training and validation sample indices: validation is whole repositories of the ``parts``
        (``bind_val_split``); the ``extra`` samples only ever train."""
        tr, va = bind_val_split(self.samples[: self.n_capped])
        return tr + list(range(self.n_capped, len(self.samples))), va

    def files(self, x: torch.Tensor, samples: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for s in samples:
            m = self.rows.sample == s
            if m.any():
                out.append((x[m], self.rows.label[m]))
        return out

    def line_pairs(
        self, samples: list[int], bug_rows: list[torch.Tensor], fix_rows: list[torch.Tensor]
    ) -> list[LinePair]:
        """The bug / fix pairs (``pair_rows``) whose two samples are both among ``samples``, numbered as
        ``files(x, samples)`` numbers its files and their lines (the context probe's pair term reads them)."""
        file_of: dict[int, int] = {}
        position = torch.full((len(self.rows.sample),), -1, dtype=torch.long)
        for s in samples:
            rows = torch.nonzero(self.rows.sample == s).squeeze(1)
            if len(rows):
                file_of[s] = len(file_of)
                position[rows] = torch.arange(len(rows))
        out = []
        for b, f in zip(bug_rows, fix_rows):
            sb, sf = int(self.rows.sample[b[0]]), int(self.rows.sample[f[0]])
            if sb in file_of and sf in file_of:
                out.append(LinePair(file_of[sb], position[b], file_of[sf], position[f]))
        return out


@torch.no_grad()
def pool_encoded(states: torch.Tensor, rows, fn, width: int, pooling: str = "mean", chunk: int = 8192) -> torch.Tensor:
    """Mean, max or last over each candidate line's tokens of ``fn(token states)`` [*, width]
    (``pool_rows`` with ``fn``: [T, width] never sits in memory whole); a line without tokens is 0."""
    pooled = pool_rows(states, rows, pooling, chunk, fn=fn, width=width)
    return pooled.masked_fill(pooled == -torch.inf, 0.0) if pooling == "max" else pooled


def pool_token_risk(token_risk: torch.Tensor, token_row: torch.Tensor, n_rows: int, mode: str) -> np.ndarray:
    """Line risk from its tokens' risks: ``max``, or ``softmax`` (log-mean-exp of the logits at
    temperature 1, a soft max that does not hang on one token)."""
    if mode == "max":
        out = torch.full((n_rows,), -torch.inf, dtype=torch.float64)
        out.scatter_reduce_(0, token_row, token_risk.double(), "amax")
        return out.numpy()
    logit = torch.logit(token_risk.double().clamp(1e-6, 1 - 1e-6))
    total = torch.zeros(n_rows, dtype=torch.float64).index_add_(0, token_row, logit.exp())
    count = torch.zeros(n_rows, dtype=torch.float64).index_add_(0, token_row, torch.ones_like(logit))
    return torch.sigmoid(torch.log(total / count.clamp_min(1))).numpy()


def centered_in_sample(x: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """Each row minus the mean of its sample's rows: what sets a line apart from the rest of its
    function, with the function's own style, language and repository taken out."""
    n = int(sample.max()) + 1 if len(sample) else 0
    sums = torch.zeros(n, x.shape[1], dtype=torch.float32).index_add_(0, sample, x.float())
    counts = torch.bincount(sample, minlength=n).clamp_min(1).unsqueeze(1)
    return x.float() - (sums / counts)[sample]


def reconstruct(sae: SparseCoder):
    def fn(x: torch.Tensor) -> torch.Tensor:
        top_acts, top_indices, _ = sae.encode(x)
        return sae.decode(top_acts, top_indices)

    return fn


def bundle_features(split: Split, bundle: Bundle) -> torch.Tensor:
    """A bundle's probe input for a split's rows: its SAE's latents (then the raw states, for sae+raw)."""
    c = bundle.cfg
    echo = c.reading == "echo"
    x = split.sae("shipped", bundle.sae, c.layer, c.pooling, echo)
    if c.features == "sae+raw":
        x = torch.cat([x, split.raw(c.layer, c.pooling, echo)], dim=1)
    elif c.features != "sae":
        raise SystemExit(f"error: bundle features {c.features!r} are not cached here")
    return x


@torch.no_grad()
def bundle_risk(split: Split, bundle: Bundle) -> np.ndarray:
    """A bundle's risk for each of a split's candidate rows, read from the split's cached states."""
    return probe_risk(bundle.probe, bundle_features(split, bundle), split.rows.sample)


def bind_val_split(samples, fraction: float = 0.15) -> tuple[list[int], list[int]]:
    """Training / validation sample indices of the bind split, by repository: the repositories whose
    name hashes lowest, about ``fraction`` of the samples (at least one repository)."""
    h = {r: hashlib.sha256(r.encode()).hexdigest() for r in {repo_of(s) for s in samples}}
    count: dict[str, int] = {}
    for s in samples:
        count[repo_of(s)] = count.get(repo_of(s), 0) + 1
    val_repos: set[str] = set()
    for r in sorted(h, key=lambda r: h[r]):
        if val_repos and sum(count[x] for x in val_repos) >= fraction * len(samples):
            break
        val_repos.add(r)
    va = [i for i, s in enumerate(samples) if repo_of(s) in val_repos]
    tr = [i for i, s in enumerate(samples) if repo_of(s) not in val_repos]
    return tr, va


def markdown_table(results: list[dict]) -> str:
    """The "what we tried" table: one row per variant, overall, per language and (where reported) per
    kind of fix and per audited class, with the number of bind samples it was trained on and its
    bind-validation top-1 / AUROC (what a choice may read)."""
    langs = sorted({lang for r in results for lang in r["by_language"]})
    kinds = sorted({k for r in results for k in r.get("by_fix_kind", {})})
    audited = sorted({k for r in results for k in r.get("by_audit", {})})
    fmt = lambda v: "–" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    pair = lambda c: f"{fmt(c['top1'])} / {fmt(c['auroc'])}" if c else "–"  # noqa: E731
    head = ["variant", "bind samples", "top-1", "top-3", "top-5", "AUROC", "false / 1k clean lines", "precision"]
    head += [f"{lang} top-1 / AUROC" for lang in langs]
    head += [f"fix: {k} top-1 / AUROC" for k in kinds]
    head += [f"audit: {k} top-1 / AUROC" for k in audited]
    head += ["validation top-1 / AUROC"]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in results:
        a = r["all"]
        n = r.get("bind_samples")
        kept = r.get("train_fix_kinds", "all")  # bound on some kinds of fix only (realbugs-experiments)
        name = r["variant"] if kept == "all" else f"{r['variant']}, bound on {' + '.join(kept)} fixes only"
        if r.get("train_only_samples"):  # realbugs-experiments --train-only
            name += f", {r['train_only_samples']:,} of them for training only"
        cells = [name, f"{n:,}" if n else "–"]
        cells += [fmt(a[k]) for k in ("top1", "top3", "top5", "auroc", "false_per_1000", "precision")]
        cells += [pair(r["by_language"].get(lang)) for lang in langs]
        cells += [pair(r.get("by_fix_kind", {}).get(k)) for k in kinds]
        cells += [pair(r.get("by_audit", {}).get(k)) for k in audited]
        cells.append(pair(r.get("validation")))
        rows.append("| " + " | ".join(cells) + " |")
    n_all = results[0]["all"] if results else {}
    rows.append("")
    rows.append(
        f"{n_all.get('n_bugs', 0)} held-out bugs, {n_all.get('n_lines', 0)} candidate lines (buggy and fixed versions)."
    )
    return "\n".join(rows) + "\n"


def numbered_code(code: str) -> str:
    """``code`` with each line's 1-based number before it (``12 | ...``), as a reader is shown a window."""
    lines = code.splitlines()
    width = len(str(len(lines)))
    return "\n".join(f"{i:>{width}} | {line}" for i, line in enumerate(lines, 1))


def within_sample_rank(scores: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """Each row's rank among its sample's rows, scaled to [0, 1] (1 = the sample's highest)."""
    out = np.zeros(len(scores))
    for s in np.unique(sample):
        rows = np.flatnonzero(sample == s)
        out[rows] = np.argsort(np.argsort(scores[rows], kind="stable"), kind="stable") / max(len(rows) - 1, 1)
    return out


def resumed_records(path: Path, field: str, want, refused: Callable[[object], str]) -> dict[str, dict]:
    """The records (by ``id``) a killed run left in the JSON-lines file ``path`` (none where there is
    none). Each must carry ``field`` equal to ``want``: a resumed run must not mix records made another
    way, so a record that does not is a one-line error, ``refused(its value)`` saying why."""
    done: dict[str, dict] = {}
    if path.is_file():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            rec = json.loads(line)
            if rec.get(field) != want:
                raise UsageError(f"{path}:{n}: {refused(rec.get(field))}")
            done[rec["id"]] = rec
    return done


AUDIT_ANSWERS = ("yes", "no", "unclear")


def is_audit_answer(answer) -> bool:
    """Whether ``answer`` is one bug's audit: ``defect`` and ``locatable`` each among ``AUDIT_ANSWERS``."""
    return isinstance(answer, dict) and all(answer.get(q) in AUDIT_ANSWERS for q in ("defect", "locatable"))


def audit_class(answer: dict) -> str:
    """A bug's class from its audit: ``defect`` (a defect the window shows, at a line a reviewer could
    point at), ``no defect`` (the fix repairs nothing the window shows wrong) or ``unclear``."""
    if answer.get("defect") == "yes" and answer.get("locatable") == "yes":
        return "defect"
    return "no defect" if answer.get("defect") == "no" else "unclear"


def read_results(path: str | Path) -> list[dict]:
    """The rows of a results file (``realbugs-experiments --out``)."""
    if not Path(path).is_file():
        raise UsageError(f"{path}: no such results file")
    return json.loads(Path(path).read_text())


def audit_classes(path: str | Path) -> dict[str, str]:
    """{bug id: ``audit_class``} from an audit file (``scripts/realbugs-reviewer audit`` writes one:
    ``{"bugs": {id: {"defect": ..., "locatable": ...}}}``, answers among ``AUDIT_ANSWERS``)."""
    try:
        bugs = json.loads(Path(path).read_text())["bugs"]
    except FileNotFoundError:
        raise UsageError(f"{path}: no such audit file") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UsageError(f'{path}: not an audit file (expected {{"bugs": {{id: {{"defect": ...}}}}}})') from None
    for bug_id, answer in bugs.items():
        if not is_audit_answer(answer):
            raise UsageError(f"{path}: {bug_id}: defect and locatable must each be one of {', '.join(AUDIT_ANSWERS)}")
    return {bug_id: audit_class(answer) for bug_id, answer in bugs.items()}


def fix_kinds(samples) -> dict[str, FixKind]:
    """{bug id: what its fix did to the labeled lines} for every bug whose fixed version (``fixed_id``)
    is among ``samples`` (a mined file holds both)."""
    fixed = {s.id: s for s in samples if not s.buggy_lines}
    return {
        s.id: fix_kind(s.code, fixed[fixed_id(s.id)].code, s.buggy_lines)
        for s in samples
        if s.buggy_lines and fixed_id(s.id) in fixed
    }


def keep_fix_kinds(samples, train: list[int], kinds: dict[str, FixKind], wanted: set[str]) -> list[int]:
    """The training samples ``train`` less the bugs whose fix is not of a ``wanted`` kind (clean samples
    stay). Every bug there needs a known kind: one without would be dropped silently otherwise."""
    unknown = [samples[i].id for i in train if samples[i].buggy_lines and samples[i].id not in kinds]
    if unknown:
        raise UsageError(f"{len(unknown)} bind bugs (e.g. {unknown[0]}) have no fixed version in the --fix-kinds data")
    return [i for i in train if not samples[i].buggy_lines or kinds[samples[i].id] in wanted]


def fix_pairs(split: Split, keep: list[int]) -> tuple[FixPairs, list[int]]:
    """The buggy / fixed line pairs among samples ``keep`` of a split (a bug and its fixed version both
    there), as token indices of the split's states; also the bug sample of each pair. Only candidate
    lines' tokens count (what the probe reads)."""
    ts = split.tokens.token_sample
    if len(ts) > 1 and bool((ts[1:] < ts[:-1]).any()):
        raise UsageError("the cache's tokens are not grouped by sample")
    starts = torch.searchsorted(ts, torch.arange(len(split.samples) + 1))
    kept = set(keep)
    index = {s.id: i for i, s in enumerate(split.samples) if i in kept}

    def tokens(i: int, lines: list[int]) -> torch.Tensor:
        a, b = int(starts[i]), int(starts[i + 1])
        wanted = torch.tensor(sorted({ln - 1 for ln in lines}), dtype=split.tokens.token_line.dtype)
        sel = torch.isin(split.tokens.token_line[a:b], wanted) & (split.rows.token_row[a:b] >= 0)
        return torch.nonzero(sel).squeeze(1) + a

    buggy, fixed, owners = [], [], []
    for i, s in enumerate(split.samples):
        j = index.get(fixed_id(s.id))
        if i not in kept or j is None or not s.buggy_lines:
            continue
        tb = tokens(i, s.buggy_lines)
        tf = tokens(j, replaced_lines(s.code, split.samples[j].code, s.buggy_lines))
        if len(tb) and len(tf):
            buggy.append(tb)
            fixed.append(tf)
            owners.append(i)
    return FixPairs(buggy, fixed), owners


def pair_rows(split: Split, pairs: FixPairs) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Each bug / fix pair's candidate rows of ``split``: the buggy lines' rows and the fixing lines' rows."""
    token_row = split.rows.token_row
    return [token_row[t].unique() for t in pairs.buggy], [token_row[t].unique() for t in pairs.fixed]


def group_mean(x: torch.Tensor, groups: list[torch.Tensor]) -> torch.Tensor:
    """[len(groups), *x.shape[1:]]: the mean of each group's rows of ``x``."""
    return torch.stack([x[g].float().mean(0) for g in groups]) if groups else x.new_zeros((0, *x.shape[1:]))


def pair_outcomes(scores, bug_rows: list[torch.Tensor], fix_rows: list[torch.Tensor]) -> torch.Tensor:
    """Per pair: 1 when its buggy lines score above the lines that fixed them (the mean score of each
    side), 0.5 on a tie, else 0. Whether a scorer tells a bug from its own fix, where a line-level probe
    can also be right by knowing only where code gets edited."""
    s = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    b, f = group_mean(s, bug_rows), group_mean(s, fix_rows)
    return (b > f).double() + 0.5 * (b == f).double()


def pair_accuracy(scores, bug_rows: list[torch.Tensor], fix_rows: list[torch.Tensor]) -> float | None:
    """The share of pairs whose buggy side scores higher (``pair_outcomes``); None without pairs."""
    return float(pair_outcomes(scores, bug_rows, fix_rows).mean()) if bug_rows else None
