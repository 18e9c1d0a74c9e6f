"""Cached hidden states of labeled samples, so that probe experiments cost seconds, not hours.

A cache directory is keyed by (model sha256, layers, data sha256) and holds, per chunk of samples, one
``chunk_NNNNN.safetensors`` with every token's state at each cached layer (float16), the token -> line
map and, where asked, each token's NLL. Chunks are written atomically as they finish, so a killed run
resumes at the first missing chunk. ``load_cache`` pools tokens into the candidate lines' features.

Pooling here is the scorer's: ``encode.pool_lines`` over a line's tokens, candidate lines only
(``candidates.candidate_mask``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from risk_core.candidates import candidate_mask
from risk_core.choices import POOLING_MODES, Framing
from risk_core.data.jsonl import Sample
from risk_core.encode import EncodeConfig, TokenStates, encode_tokens
from risk_core.errors import UsageError
from risk_core.features import code_tokens, frame_text

FORMAT_VERSION = 1


def data_sha256(samples: list[Sample]) -> str:
    """Hash of what is encoded: each sample's language and code, in order."""
    h = hashlib.sha256()
    for s in samples:
        h.update(s.language.encode() + b"\0" + s.code.encode("utf-8") + b"\0")
    return h.hexdigest()


def cache_key(
    model_sha256: str,
    layers: tuple[int, ...],
    data_hash: str,
    surprise: bool,
    echo: bool = False,
    dtype: str = "float32",
    framing: str = "bare",
) -> dict:
    key = {
        "format_version": FORMAT_VERSION,
        "model_sha256": model_sha256,
        "layers": list(layers),
        "data_sha256": data_hash,
        "surprise": surprise,
    }
    # Only when set, so that the caches written before these existed keep their key.
    if echo:
        key["echo"] = True
    if framing != "bare":
        key["framing"] = framing
    if dtype != "float32":  # the dtype the model computed in (states differ by ~1% in bfloat16)
        key["dtype"] = dtype
    return key


def build_cache(
    loaded,
    samples: list[Sample],
    layers: tuple[int, ...],
    out: str | Path,
    surprise: bool = False,
    chunk: int = 32,
    batch_size: int = 8,
    progress=None,
    stop_after: int | None = None,
    echo: bool = False,
    framing: Framing = "bare",
    timings: dict[str, float] | None = None,
) -> Path:
    """Encode ``samples`` into ``out`` (resuming where chunks exist). Returns ``out``. ``stop_after``
    encodes only the chunks that cover the first N samples: a prefix that ``load_tokens(partial=True)``
    reads, under the key of the whole data (a later run continues it). ``echo`` also keeps each
    sample's second reading (``EncodeConfig.echo``) as ``echo<layer>``, from the same pass. ``framing``
    encodes each sample as ``features.frame_text`` frames it (``review``: inside a code-review chat
    prompt, as ``pttrust bind --framing review`` and the scorer read it) and keeps the code's tokens
    alone, at the code's own line numbers. ``timings``, where given, gains the seconds spent in the
    model's passes (``model``) and in assembling and writing chunks (``write``): on a GPU the second
    can be the bound."""
    out = Path(out)
    spent = timings if timings is not None else {}
    spent.setdefault("model", 0.0)
    spent.setdefault("write", 0.0)
    layers = tuple(sorted(set(layers)))
    key = cache_key(loaded.sha256, layers, data_sha256(samples), surprise, echo, loaded.dtype, framing)
    meta_path = out / "cache.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if old.get("key") != key:
            raise UsageError(f"{out}: holds a cache for other data/model/layers; use another --out")
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "key": key,
        "chunk": chunk,
        "n_samples": len(samples),
        "samples": [
            {
                "id": s.id,
                "language": s.language,
                "path": s.path,
                "buggy_lines": s.buggy_lines,
                "operator": s.operator,
                "n_lines": len(s.code.splitlines()),
            }
            for s in samples
        ],
    }
    _atomic_write(meta_path, json.dumps(meta).encode())
    cfg = EncodeConfig(layer=layers[-1], extra_layers=layers[:-1], surprise=surprise, batch_size=batch_size, echo=echo)
    n_chunks = (len(samples) + chunk - 1) // chunk
    if stop_after is not None:
        n_chunks = min(n_chunks, (stop_after + chunk - 1) // chunk)
    for c in range(n_chunks):
        path = out / f"chunk_{c:05d}.safetensors"
        if not path.exists():
            part = samples[c * chunk : (c + 1) * chunk]
            framed = [frame_text(s.code, s.language, framing, loaded.tokenizer) for s in part]
            texts = [text for text, _ in framed]
            t0 = time.perf_counter()
            states = encode_tokens(loaded, texts, cfg)
            t1 = time.perf_counter()
            spent["model"] += t1 - t0
            ids = loaded.tokenizer(texts, add_special_tokens=False)["input_ids"]
            if framing != "bare":  # keep the code's tokens, at the code's line numbers
                keeps = [
                    code_tokens(t.token_lines, offset, len(s.code.splitlines()))
                    for t, (_, offset), s in zip(states, framed, part)
                ]
                states = [_select(t, keep, offset) for t, keep, (_, offset) in zip(states, keeps, framed)]
                ids = [torch.tensor(row)[keep].tolist() for row, keep in zip(ids, keeps)]
            tensors = {
                "token_ids": torch.tensor([t for row in ids for t in row], dtype=torch.int32),
                "token_sample": torch.cat(
                    [torch.full((len(t.token_lines),), c * chunk + i) for i, t in enumerate(states)]
                ),
                "token_line": torch.cat([t.token_lines for t in states]),
            }
            for layer in layers:
                per = [t.states if layer == cfg.layer else t.extra[layer] for t in states]
                tensors[f"layer{layer}"] = torch.cat(per).to(torch.float16)
                if echo:
                    tensors[f"echo{layer}"] = torch.cat([t.echo[layer] for t in states]).to(torch.float16)
            if surprise:
                tensors["nll"] = torch.cat([t.nll for t in states if t.nll is not None]).float()
                tensors["entropy"] = torch.cat([t.entropy for t in states if t.entropy is not None]).float()
            tmp = path.with_suffix(".tmp")
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
            os.replace(tmp, path)
            spent["write"] += time.perf_counter() - t1
        if progress:
            progress(min((c + 1) * chunk, len(samples)), len(samples))
    return out


def _select(states: TokenStates, keep: Tensor, offset: int) -> TokenStates:
    """The tokens ``keep`` picks of a framed text's states, their lines shifted back by the prompt's."""
    pick = lambda t: None if t is None else t[keep]  # noqa: E731
    return TokenStates(
        states=states.states[keep],
        token_lines=states.token_lines[keep] - offset,
        n_lines=states.n_lines - offset,
        nll=pick(states.nll),
        entropy=pick(states.entropy),
        extra={layer: x[keep] for layer, x in states.extra.items()},
        echo={layer: x[keep] for layer, x in states.echo.items()},
    )


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class CachedTokens:
    """Every token of every sample of a cache, stacked."""

    meta: dict
    """cache.json: key, per-sample metadata."""
    token_sample: Tensor
    """[T] sample index of each token."""
    token_line: Tensor
    """[T] 0-based line of each token."""
    states: dict[int, Tensor]
    """{layer: [T, d_model] float16}."""
    token_ids: Tensor | None
    """[T] int32 token ids (None in caches written before they were kept)."""
    nll: Tensor | None
    """[T] NLL of each token (NaN for a file's first token), when cached."""
    entropy: Tensor | None
    echo: dict[int, Tensor] = field(default_factory=dict)
    """{layer: [T, d_model] float16} of the second reading (``EncodeConfig.echo``), where loaded."""

    def first_samples(self, n: int) -> CachedTokens:
        """The tokens of samples 0..n-1 alone (``meta`` says n samples)."""
        keep = self.token_sample < n
        pick = lambda t: None if t is None else t[keep]  # noqa: E731
        meta = {**self.meta, "n_samples": n, "samples": self.meta["samples"][:n]}
        return CachedTokens(
            meta,
            self.token_sample[keep],
            self.token_line[keep],
            {layer: x[keep] for layer, x in self.states.items()},
            pick(self.token_ids),
            pick(self.nll),
            pick(self.entropy),
            {layer: x[keep] for layer, x in self.echo.items()},
        )


def load_tokens(
    path: str | Path, layers: tuple[int, ...] | None = None, partial: bool = False, echo_layers: tuple[int, ...] = ()
) -> CachedTokens:
    """All chunks of a complete cache; ``layers`` picks which layers' states to load, ``echo_layers``
    which layers' second readings (a cache built with ``echo``). With ``partial``, the leading chunks
    that are on disk (a run still going): ``meta["n_samples"]`` says how many."""
    path = Path(path)
    if not (path / "cache.json").is_file():
        raise UsageError(f"{path}: not a feature cache (no cache.json)")
    meta = json.loads((path / "cache.json").read_text())
    n_chunks = (meta["n_samples"] + meta["chunk"] - 1) // meta["chunk"]
    missing = [c for c in range(n_chunks) if not (path / f"chunk_{c:05d}.safetensors").exists()]
    if missing and partial and missing[0] > 0:
        n_chunks = missing[0]
        meta = {**meta, "n_samples": n_chunks * meta["chunk"], "samples": meta["samples"][: n_chunks * meta["chunk"]]}
    elif missing:
        raise UsageError(f"{path}: cache incomplete ({len(missing)} of {n_chunks} chunks missing)")
    held = tuple(meta["key"]["layers"])
    layers = held if layers is None else layers
    for layer in layers:
        if layer not in held:
            raise UsageError(f"{path}: no layer {layer} in the cache (it holds layers {', '.join(map(str, held))})")
    if echo_layers and not meta["key"].get("echo"):
        raise UsageError(f"{path}: the cache holds no echo states (build it with echo)")
    for layer in echo_layers:
        if layer not in held:
            raise UsageError(f"{path}: no layer {layer} in the cache (it holds layers {', '.join(map(str, held))})")
    files = [str(path / f"chunk_{c:05d}.safetensors") for c in range(n_chunks)]
    sizes = []  # tokens of each chunk: every per-token tensor of a chunk has that many rows
    for file in files:
        with safe_open(file, "pt") as f:
            sizes.append(f.get_slice("token_sample").get_shape()[0])
            stored = set(f.keys())

    def cat(key: str) -> Tensor:
        # One tensor, filled a chunk at a time: loading every chunk and then concatenating them
        # held each state twice, 22 GB at the peak for an 11 GB cache of 11k samples.
        out: Tensor | None = None
        at = 0
        for file, size in zip(files, sizes):
            with safe_open(file, "pt") as f:
                piece = f.get_tensor(key)
            if out is None:
                out = torch.empty((sum(sizes), *piece.shape[1:]), dtype=piece.dtype)
            out[at : at + size] = piece
            at += size
        assert out is not None, "a cache has at least one chunk"
        return out

    def optional(key: str) -> Tensor | None:
        return cat(key) if key in stored else None

    return CachedTokens(
        meta,
        cat("token_sample"),
        cat("token_line"),
        {layer: cat(f"layer{layer}") for layer in layers},
        optional("token_ids"),
        optional("nll"),
        optional("entropy"),
        {layer: cat(f"echo{layer}") for layer in echo_layers},
    )


@dataclass
class LineRows:
    """Candidate lines of every sample: the rows probes train on and are evaluated on."""

    sample: Tensor
    """[n] sample index of each row."""
    line: Tensor
    """[n] 1-based line number."""
    label: Tensor
    """[n] 1.0 on the sample's buggy lines."""
    token_row: Tensor
    """[T] row index of each cached token (-1 for tokens of non-candidate lines)."""


def line_rows(tokens: CachedTokens, codes: list[str], languages: list[str]) -> LineRows:
    """Rows for the candidate lines that hold a token, in sample then line order."""
    samples = tokens.meta["samples"]
    key = tokens.token_sample * 1_000_000 + tokens.token_line
    uniq, inverse = torch.unique(key, return_inverse=True)
    u_sample, u_line = uniq // 1_000_000, uniq % 1_000_000
    masks = [candidate_mask(code, lang) for code, lang in zip(codes, languages)]
    keep = torch.tensor(
        [bool(masks[s][ln]) if ln < len(masks[s]) else False for s, ln in zip(u_sample.tolist(), u_line.tolist())],
        dtype=torch.bool,
    )
    row_of_uniq = torch.full((len(uniq),), -1, dtype=torch.long)
    row_of_uniq[keep] = torch.arange(int(keep.sum()))
    bug = [set(s["buggy_lines"]) for s in samples]
    label = torch.tensor(
        [1.0 if (ln + 1) in bug[s] else 0.0 for s, ln in zip(u_sample[keep].tolist(), u_line[keep].tolist())]
    )
    return LineRows(u_sample[keep], u_line[keep] + 1, label, row_of_uniq[inverse])


def pool_rows(
    values: Tensor,
    rows: LineRows,
    mode: str = "mean",
    chunk: int = 8192,
    fn: Callable[[Tensor], Tensor] | None = None,
    width: int | None = None,
) -> Tensor:
    """Pool per-token ``values`` [T, d] into [n_rows, d] over each row's tokens (mean, max, or the
    row's last token: ``encode.pool_lines``'s modes), in float32, a chunk of tokens at a time (a float32
    copy of 11k samples' states would not fit). With ``fn``, pool ``fn(values)`` [T, width] instead
    (e.g. SAE latents), never held whole either. A row without tokens is 0 (mean, last) or -inf (max)."""
    if mode not in POOLING_MODES:
        raise UsageError(f"unknown pooling {mode!r}; choose one of {', '.join(POOLING_MODES)}")
    n, d = int(rows.line.shape[0]), values.shape[1] if fn is None else width
    if d is None:
        raise UsageError("pool_rows with fn needs the width of its output")
    if mode == "last":
        sel = rows.token_row >= 0
        last = torch.full((n,), -1, dtype=torch.long)
        last.scatter_reduce_(0, rows.token_row[sel], torch.arange(len(sel))[sel], "amax")
        filled = (last >= 0).nonzero()[:, 0]
        out = torch.zeros(n, d)
        for a in range(0, len(filled), chunk):
            vals = values[last[filled[a : a + chunk]]].float()
            out[filled[a : a + chunk]] = vals if fn is None else fn(vals).float()
        return out
    out = torch.zeros(n, d) if mode == "mean" else torch.full((n, d), -torch.inf)
    count = torch.zeros(n)
    for a in range(0, values.shape[0], chunk):
        r = rows.token_row[a : a + chunk]
        sel = r >= 0
        if not sel.any():
            continue
        idx, vals = r[sel], values[a : a + chunk][sel].float()
        if fn is not None:
            vals = fn(vals).float()
        if mode == "mean":
            out.index_add_(0, idx, vals)
            count.index_add_(0, idx, torch.ones(len(idx)))
        else:
            out.scatter_reduce_(0, idx.unsqueeze(1).expand_as(vals), vals, "amax")
    return out / count.clamp_min(1).unsqueeze(1) if mode == "mean" else out


def export_harvest(
    tokens: CachedTokens,
    layer: int,
    out: str | Path,
    model: str,
    train_samples: set[int],
    val_samples: set[int],
    shard_tokens: int = 65_536,
    ctx_len: int = 256,
    echo: bool = False,
) -> Path:
    """Write the cached states of one layer as a harvest directory (``harvest.HARVEST_FILE`` + shards +
    validation chunks for dCE), so that ``train_sae.train`` trains an SAE on them like on any harvest.
    ``train_samples``/``val_samples`` pick the samples of each split (a split by repository). ``echo``:
    the second reading's states (loaded with ``echo_layers``); the dCE chunks stay plain token ids, so
    the dCE of such an SAE is measured on the plain reading (its FVU is on the states it encodes)."""
    from dataclasses import asdict

    from risk_core.atomic import write_atomic_json
    from risk_core.harvest import FORMAT_VERSION as HARVEST_FORMAT
    from risk_core.harvest import HARVEST_FILE, VAL_CHUNKS_FILE, HarvestConfig, write_atomic_safetensors

    out = Path(out)
    if tokens.token_ids is None:
        raise UsageError("this cache keeps no token ids (written by an older version): rebuild it to export")
    token_ids = tokens.token_ids
    acts = tokens.echo[layer] if echo else tokens.states[layer]
    shards: dict[str, dict] = {}
    val_chunks = None
    # A sample's first token is the attention sink (a huge-norm outlier), skipped as harvest's skip_first does.
    first = torch.ones(len(tokens.token_sample), dtype=torch.bool)
    first[1:] = tokens.token_sample[1:] != tokens.token_sample[:-1]
    for split, chosen in (("train", train_samples), ("val", val_samples)):
        pick = torch.tensor([int(s) in chosen for s in tokens.token_sample.tolist()], dtype=torch.bool) & ~first
        idx = pick.nonzero().squeeze(1)
        if split == "train":  # a fixed shuffle, so shards mix repositories
            idx = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(0))]
        for i, a in enumerate(range(0, len(idx), shard_tokens)):
            part = idx[a : a + shard_tokens]
            name = f"{split}/shard_{i:05d}.safetensors"
            tensors = {
                "acts": acts[part].to(torch.float16),
                "token_ids": token_ids[part].to(torch.int32),
                "file_ids": tokens.token_sample[part].to(torch.int32),
                "line_ids": tokens.token_line[part].to(torch.int32),
            }
            (out / split).mkdir(parents=True, exist_ok=True)
            write_atomic_safetensors(tensors, out / name)
            shards[name] = {"sha256": hashlib.sha256((out / name).read_bytes()).hexdigest(), "n_tokens": len(part)}
        if split == "val" and len(idx) >= ctx_len:
            n = len(idx) // ctx_len
            ids = token_ids[idx[: n * ctx_len]].to(torch.long).reshape(n, ctx_len)
            write_atomic_safetensors({"input_ids": ids}, out / VAL_CHUNKS_FILE)
            val_chunks = {
                "file": VAL_CHUNKS_FILE,
                "sha256": hashlib.sha256((out / VAL_CHUNKS_FILE).read_bytes()).hexdigest(),
                "n_chunks": n,
            }
    cfg = HarvestConfig(
        layer=layer,
        tokens=sum(s["n_tokens"] for n, s in shards.items() if n.startswith("train/")),
        ctx_len=ctx_len,
        shard_tokens=shard_tokens,
        skip_first=1,
    )
    doc = {
        "format": HARVEST_FORMAT,
        "config": asdict(cfg),
        "model": model,
        "model_sha256": tokens.meta["key"]["model_sha256"],
        "corpus_manifest_sha256": tokens.meta["key"]["data_sha256"],
        "d_model": int(acts.shape[1]),
        "n_tokens": {
            sub: sum(s["n_tokens"] for n, s in shards.items() if n.startswith(sub + "/")) for sub in ("train", "val")
        },
        "shards": shards,
        "corpus_dir": None,
        "val_chunks": val_chunks,
        "source": "feature_cache",
        "reading": "echo" if echo else "plain",
    }
    write_atomic_json(doc, out / HARVEST_FILE)
    return out
