"""Binding: train the risk probe on labeled lines for one (model, layer, SAE) and write the bundle.

Lines of one program are correlated (same function, same style), so the validation split that
calibrates the probe and reports its metrics is drawn by source path, never by line.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from risk_core.artifacts import ArtifactConfig, Bundle
from risk_core.candidates import candidate_mask
from risk_core.choices import (
    BIND_FRAMINGS,
    FRAMINGS,
    POOLING_MODES,
    READINGS,
    BindFraming,
    FeatureSet,
    Framing,
    Pooling,
    Reading,
    check_choice,
)
from risk_core.errors import UsageError
from risk_core.evaluate import cell
from risk_core.features import line_table, raw_counterpart
from risk_core.probe import ProbeConfig, train_probe

_BIND_FEATURES: tuple[FeatureSet, ...] = ("sae", "sae+surprise")  # a bundle's probe reads SAE latents


@dataclass
class BindConfig:
    layer: int = 12
    """hidden_states index to read (must match the SAE's training layer)."""
    pooling: Pooling = "mean"
    """Token -> line pooling (encode.pool_lines mode)."""
    framing: BindFraming = "bare"
    """bare | review | auto (try both, keep the one with the higher validation AUROC)."""
    reading: Reading = "plain"
    """plain (each sample read once) | echo (read twice in one pass, features of the second reading)."""
    features: FeatureSet = "sae"
    """Probe input: sae | sae+surprise."""
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    """Probe hyper-parameters."""
    val_fraction: float = 0.2
    """Share of source paths held out for calibration and validation metrics."""
    seed: int = 0
    """Seed of the split, the probe and the learning-curve subsets."""
    languages: list[str] = field(default_factory=list)
    """Only bind on these languages (empty = all in the data)."""
    curve: tuple[int, ...] = (100, 1000, 10000)
    """Training sizes (labeled lines) of the learning curve."""
    raw_probe: bool = True
    """Also train the same probe on raw pooled states (the eval baseline, saved as raw_probe/)."""
    label_latents: int = 32
    """Label this many of the probe's heaviest latents in latents.json (0 = skip)."""
    label_files: int = 200
    """Programs encoded to find each labeled latent's top examples."""

    def __post_init__(self) -> None:
        check_choice("pooling", self.pooling, POOLING_MODES)
        check_choice("framing", self.framing, BIND_FRAMINGS)
        check_choice("reading", self.reading, READINGS)
        check_choice("probe features", self.features, _BIND_FEATURES)


def split_by_source(samples, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic split of sample indices by ``path`` (all mutants of a file fall on one side)."""
    paths = sorted({s.path for s in samples})

    def bucket(p):
        return int(hashlib.sha256(f"{seed}:{p}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    val_paths = {p for p in paths if bucket(p) < val_fraction}
    if not val_paths or len(val_paths) == len(paths):
        # Too few sources for a by-path split: fall back to a by-sample split (noted in metrics).
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(samples))
        n_val = max(1, int(round(len(samples) * val_fraction)))
        return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())
    train = [i for i, s in enumerate(samples) if s.path not in val_paths]
    val = [i for i, s in enumerate(samples) if s.path in val_paths]
    return train, val


def _rows(table, sample_ids) -> torch.Tensor:
    keep = torch.zeros(int(table.sample_index.max()) + 1, dtype=torch.bool)
    keep[torch.tensor(sample_ids, dtype=torch.long)] = True
    return torch.nonzero(keep[table.sample_index]).squeeze(1)


def _fit_eval(table, tr, va, feature_set, pcfg, device="cpu"):
    x = table.matrix(feature_set)
    xt, yt = x[tr].to(device), table.labels[tr]
    xv, yv = x[va].to(device), table.labels[va]
    probe = train_probe(xt, yt, pcfg, xv, yv)
    with torch.no_grad():
        r = probe.risk(xv).double().cpu().numpy()
        uncal = torch.sigmoid(probe.logits(xv)).double().cpu().numpy()
    metrics = cell(r, yv.numpy(), table.sample_index[va].numpy(), probabilistic=True)
    metrics["ece_uncalibrated"] = cell(uncal, yv.numpy(), table.sample_index[va].numpy(), True)["ece"]
    nz = int((probe.feature_weights() > 0).sum())
    metrics["nonzero_weights"] = nz
    return probe, metrics


def bind(
    loaded,
    sae,
    samples,
    cfg: BindConfig,
    data_sha256: str | None = None,
    enc_cfg=None,
    progress=None,
    log=lambda msg: None,
) -> Bundle:
    """Train the probe (and raw-state baseline) on ``samples``; return the bundle (not yet saved)."""
    from risk_core.encode import EncodeConfig

    if sae.d_in != loaded.d_model:
        raise UsageError(f"SAE reads d_in={sae.d_in} but the model has d_model={loaded.d_model}")
    if cfg.languages:
        samples = [s for s in samples if s.language in cfg.languages]
    # Line labels are needed: failing samples without buggy_lines carry sample-level labels only.
    samples = [s for s in samples if s.buggy_lines or s.passed is True]
    if len(samples) < 4:
        raise UsageError(f"binding needs line-labeled samples; found {len(samples)}")
    enc_cfg = enc_cfg or EncodeConfig()
    enc_cfg.layer, enc_cfg.pooling, enc_cfg.echo = cfg.layer, cfg.pooling, cfg.reading == "echo"
    enc_cfg.surprise = "surprise" in cfg.features
    train_ids, val_ids = split_by_source(samples, cfg.val_fraction, cfg.seed)
    t0 = time.time()

    framings: list[Framing] = list(FRAMINGS) if cfg.framing == "auto" else [cfg.framing]
    tried = {}
    best = None
    for framing in framings:
        log(f"encoding {len(samples)} samples ({framing} framing)")
        table = line_table(
            loaded, samples, enc_cfg, sae=sae, framing=framing, keep_raw=cfg.raw_probe, progress=progress
        )
        tr, va = _rows(table, train_ids), _rows(table, val_ids)
        if table.labels[tr].sum() == 0 or table.labels[va].sum() == 0:
            raise UsageError("binding needs buggy lines in both the training and the validation split")
        probe, val = _fit_eval(table, tr, va, cfg.features, cfg.probe, loaded.device)
        tried[framing] = val
        if best is None or (val["auroc"] or 0) > (tried[best[0]]["auroc"] or 0):
            best = (framing, table, tr, va, probe)
    if best is None:  # framings is never empty: "auto" lists them all, otherwise the one asked for
        raise UsageError("no framing to bind")
    framing, table, tr, va, probe = best
    metrics: dict = {
        "data_sha256": data_sha256,
        "seed": cfg.seed,
        "config": asdict(cfg),
        "n_samples": len(samples),
        "n_train_samples": len(train_ids),
        "n_val_samples": len(val_ids),
        "n_train_lines": int(len(tr)),
        "n_val_lines": int(len(va)),
        "train_buggy_lines": int(table.labels[tr].sum()),
        "framing": framing,
        "framing_tried": tried,
        "val": {"pttrust": tried[framing]},
    }
    raw_probe = None
    raw_set = raw_counterpart(cfg.features)
    if cfg.raw_probe:
        log("training the raw-state baseline probe")
        raw_probe, raw_val = _fit_eval(table, tr, va, raw_set, cfg.probe, loaded.device)
        metrics["val"]["raw-probe"] = raw_val

    # Learning curve: whole training programs in a seeded order until the line budget is reached.
    rng = np.random.default_rng(cfg.seed)
    prog_order = rng.permutation(sorted(set(table.sample_index[tr].tolist())))
    si_tr = table.sample_index[tr]
    curve = []
    sizes = sorted({n for n in cfg.curve if n < len(tr)} | {int(len(tr))})
    for n in sizes:
        chosen, count = [], 0
        counts = torch.bincount(si_tr)
        for p in prog_order:
            chosen.append(int(p))
            count += int(counts[p])
            if count >= n:
                break
        sub = _rows(table, chosen)
        sub = sub[torch.isin(sub, tr)]
        if table.labels[sub].sum() == 0:
            continue
        point: dict[str, Any] = {"lines": int(len(sub)), "programs": len(chosen)}
        for name, fs in (
            (("pttrust", cfg.features), ("raw-probe", raw_set)) if cfg.raw_probe else (("pttrust", cfg.features),)
        ):
            x = table.matrix(fs)
            xv = x[va].to(loaded.device)
            p = train_probe(x[sub].to(loaded.device), table.labels[sub], cfg.probe, xv, table.labels[va])
            with torch.no_grad():
                r = p.risk(xv).double().cpu().numpy()
            c = cell(r, table.labels[va].numpy(), table.sample_index[va].numpy(), True)
            point[name] = {"auroc": c["auroc"], "top1": c["top1"], "top3": c["top3"]}
        curve.append(point)
    metrics["learning_curve"] = curve
    metrics["seconds"] = round(time.time() - t0, 1)

    langs = sorted({s.language for s in samples})
    acfg = ArtifactConfig(
        model_name=loaded.name,
        model_sha256=loaded.sha256,
        d_model=loaded.d_model,
        layer=cfg.layer,
        pooling=cfg.pooling,
        framing=framing,
        features=cfg.features,
        languages=langs,
        reading=cfg.reading,
    )
    probe, raw_probe = probe.cpu(), raw_probe.cpu() if raw_probe is not None else None
    bundle = Bundle(acfg, sae, probe, raw_probe, None, metrics)
    if cfg.label_latents > 0:
        from risk_core.evaluate import label_latents

        log("labelling the probe's heaviest latents")
        lab_enc = EncodeConfig(**{**asdict(enc_cfg), "surprise": False})
        pick = [samples[i] for i in train_ids[: cfg.label_files]]
        bundle.latents = label_latents(
            loaded,
            bundle,
            [s.code for s in pick],
            [s.language for s in pick],
            lab_enc,
            n_latents=cfg.label_latents,
            buggy_lines=[s.buggy_lines for s in pick],
        )
    return bundle


def sweep_layers(
    loaded,
    samples,
    layers: list[int],
    pooling: str = "mean",
    probe_cfg: ProbeConfig | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    batch_files: int = 16,
    progress=None,
) -> dict:
    """Validation metrics of the raw-state probe at each of ``layers``, all read in one forward pass.

    The cheap way to choose the layer the SAE is trained on: the layer whose plain states separate
    buggy from correct lines best on held-out sources is the one worth a dictionary.
    """
    from risk_core.encode import EncodeConfig, encode_tokens, pool_lines
    from risk_core.features import LineTable

    layers = sorted(set(layers))
    samples = [s for s in samples if s.buggy_lines]
    if len(samples) < 4:
        raise UsageError(f"a layer sweep needs line-labeled samples; found {len(samples)}")
    enc = EncodeConfig(layer=layers[-1], pooling=pooling, extra_layers=tuple(layers[:-1]))
    rows_si, rows_ln, rows_y = [], [], []
    xs: dict[int, list] = {layer: [] for layer in layers}
    for b in range(0, len(samples), batch_files):
        chunk = samples[b : b + batch_files]
        for k, (s, ts) in enumerate(zip(chunk, encode_tokens(loaded, [s.code for s in chunk], enc))):
            mask = candidate_mask(s.code, s.language)
            pooled = {
                layer: pool_lines(ts.extra.get(layer, ts.states), ts.token_lines, ts.n_lines, pooling)
                for layer in layers
            }
            line_numbers = pooled[layers[0]][1]
            keep = [i for i, ln in enumerate(line_numbers) if ln <= len(mask) and mask[ln - 1]]
            if not keep:
                continue
            idx = torch.tensor(keep, dtype=torch.long)
            lns = [line_numbers[i] for i in keep]
            rows_si.append(torch.full((len(keep),), b + k, dtype=torch.long))
            rows_ln.append(torch.tensor(lns, dtype=torch.long))
            rows_y.append(torch.tensor([1.0 if ln in set(s.buggy_lines) else 0.0 for ln in lns]))
            for layer in layers:
                xs[layer].append(pooled[layer][0][idx])
        if progress:
            progress(min(b + batch_files, len(samples)), len(samples))
    if not rows_si:
        raise UsageError("no candidate code lines in the data")
    train_ids, val_ids = split_by_source(samples, val_fraction, seed)
    si, ln, y = torch.cat(rows_si), torch.cat(rows_ln), torch.cat(rows_y)
    report = {
        "layers": {},
        "n_samples": len(samples),
        "n_lines": int(len(y)),
        "seed": seed,
        "pooling": pooling,
        "probe": asdict(probe_cfg or ProbeConfig()),
    }
    for layer in layers:
        table = LineTable(si, ln, y, None, torch.cat(xs[layer]), None)
        tr, va = _rows(table, train_ids), _rows(table, val_ids)
        _, metrics = _fit_eval(table, tr, va, "raw", probe_cfg or ProbeConfig(), loaded.device)
        report["layers"][str(layer)] = metrics
    report["best_layer"] = int(max(layers, key=lambda layer: report["layers"][str(layer)]["auroc"] or 0))
    return report
