"""Per-token and per-line hidden states of a code LLM at one layer.

Token -> line rule: a token belongs to the line holding its first character. So a token that spans a
newline (``")\\n"``, ``"\\n    "``) belongs to the line where it starts, and a newline-only token belongs
to the line it ends; a line whose characters all sit inside the previous line's newline token (a
blank line swallowed by a ``"\\n\\n"`` token) holds no token and is reported in ``blank_lines``.
Lines are those of ``str.splitlines()``.

Long files are cut into sliding windows of ``window`` tokens; every token's state comes from a window
in which it sees at least ``min_context`` tokens of left context (or the start of the file). Windows of
all files are batched together with right padding: under a causal mask real tokens never attend to the
padding that follows them, and position ids restart at 0 in every row, so a row's result does not
depend on what it is batched with.
"""

from __future__ import annotations

import bisect
import ctypes
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from risk_core.errors import UsageError
from risk_core.model_loading import LoadedModel

POOLING_MODES = ("mean", "last", "max")


@dataclass
class EncodeConfig:
    layer: int = 12
    """hidden_states index: 0 = embeddings, L = output of block L (1-based); the last one is normed."""
    pooling: str = "mean"
    """How token states become a line state: mean | last | max."""
    window: int = 2048
    """Tokens per forward pass (the longest sequence the model is run on)."""
    min_context: int = 512
    """Left context every token has at least, in tokens, when a file needs several windows."""
    batch_size: int = 8
    """Windows per forward pass, at most, unless ``batch_tokens`` holds more (a pass holds windows of
    similar lengths, padded to its longest)."""
    batch_tokens: int = 4096
    """Padded tokens a pass of short windows is filled up to, beyond ``batch_size`` windows: a
    review's many few-line windows (imports, a class header) share passes instead of running eight at
    a time through small matmuls."""
    surprise: bool = False
    """Also compute per-token NLL and predictive entropy (needs the full forward, to the logits)."""
    extra_layers: tuple[int, ...] = ()
    """More hidden_states indices captured in the same forward pass (a layer sweep costs one pass)."""
    echo: bool = False
    """Also read every window a second time in the same sequence (its token ids twice) and keep the
    second copy's states in ``TokenStates.echo``: a causal model's state of line i then has seen the
    whole window, the lines after i included. Twice the tokens per pass; the first copy's states are
    exactly the plain ones (nothing precedes them), so one pass gives both."""


@dataclass
class TokenStates:
    states: Tensor
    """[n_tokens, d_model] float32 on CPU, at layer ``cfg.layer``."""
    token_lines: Tensor
    """[n_tokens] long, 0-based line index of each token."""
    n_lines: int
    """Number of lines in the file (``len(text.splitlines())``)."""
    nll: Tensor | None = None
    """[n_tokens] -log p(token | prefix); NaN for the first token of the file (no prefix)."""
    entropy: Tensor | None = None
    """[n_tokens] entropy (nats) of the distribution that predicted each token; NaN for the first."""
    extra: dict[int, Tensor] = field(default_factory=dict)
    """{layer: [n_tokens, d_model]} for each of ``cfg.extra_layers``."""
    echo: dict[int, Tensor] = field(default_factory=dict)
    """With ``cfg.echo``: {layer: [n_tokens, d_model]} of the second reading, for ``cfg.layer`` and
    every extra layer."""

    def read(self, cfg: EncodeConfig) -> Tensor:
        """The states features are made of under ``cfg``: the second reading's at ``cfg.layer`` with
        ``cfg.echo``, else the plain ones."""
        return self.echo[cfg.layer] if cfg.echo else self.states


@dataclass
class LineStates:
    states: Tensor
    """[n_encoded, d_model] pooled token states, one row per line that holds a token."""
    line_numbers: list[int]
    """1-based line numbers of the rows of ``states``."""
    blank_lines: list[int] = field(default_factory=list)
    """1-based lines that hold no token (reported, not dropped silently)."""
    surprise_mean: Tensor | None = None
    """[n_encoded] mean token NLL of each line (NaN-free tokens only); None unless cfg.surprise."""
    surprise_max: Tensor | None = None
    """[n_encoded] largest token NLL of each line."""
    entropy_mean: Tensor | None = None
    """[n_encoded] mean predictive entropy of each line."""


# --------------------------------------------------------------------------------------------------
# Tokens -> lines


def token_line_indices(text: str, offsets: list[tuple[int, int]]) -> tuple[Tensor, int]:
    """0-based line of each token (the line of its first character) and the number of lines."""
    lines = text.splitlines(keepends=True)
    starts, pos = [], 0
    for line in lines:
        starts.append(pos)
        pos += len(line)
    last = max(len(text) - 1, 0)
    idx = [bisect.bisect_right(starts, min(a, last)) - 1 for a, _ in offsets]
    return torch.tensor(idx, dtype=torch.long), len(lines)


# --------------------------------------------------------------------------------------------------
# Pooling


def pool_lines(features: Tensor, token_lines: Tensor, n_lines: int, mode: str) -> tuple[Tensor, list[int]]:
    """Pool per-token ``features`` ([n_tokens, F] or [n_tokens]) into one row per line holding a token.

    Returns the pooled rows (same trailing shape) and their 1-based line numbers, ascending. NaN
    values are ignored (a line whose values are all NaN pools to NaN), so per-token NLL with its
    undefined first token pools like any other feature.
    """
    if mode not in POOLING_MODES:
        raise UsageError(f"unknown pooling {mode!r}; choose one of {', '.join(POOLING_MODES)}")
    if token_lines.numel() and (token_lines.min() < 0 or token_lines.max() >= n_lines):
        raise ValueError(f"token_lines must lie in [0, {n_lines})")
    squeeze = features.dim() == 1
    x = features.unsqueeze(-1) if squeeze else features
    lines, row = torch.unique(token_lines, sorted=True, return_inverse=True)
    n_rows, width = lines.numel(), x.shape[-1]
    valid = ~torch.isnan(x)
    index = row.unsqueeze(-1).expand_as(x)
    if mode == "mean":
        total = x.new_zeros(n_rows, width).index_add_(0, row, torch.where(valid, x, 0))
        count = x.new_zeros(n_rows, width).index_add_(0, row, valid.to(x.dtype))
        pooled = total / count  # 0/0 = NaN where a line has no valid value
    elif mode == "max":
        filled = torch.where(valid, x, -math.inf)
        pooled = x.new_full((n_rows, width), -math.inf).scatter_reduce_(0, index, filled, "amax")
        pooled = torch.where(torch.isneginf(pooled) & ~_any_valid(valid, row, n_rows), math.nan, pooled)
    else:  # last: the last token of the line that has a value
        position = torch.arange(x.shape[0], device=x.device).unsqueeze(-1).expand_as(x)
        position = torch.where(valid, position, -1)
        last = torch.full((n_rows, width), -1, dtype=torch.long, device=x.device)
        last = last.scatter_reduce_(0, index, position, "amax")
        pooled = x.gather(0, last.clamp(min=0))
        pooled = torch.where(last < 0, math.nan, pooled)
    if squeeze:
        pooled = pooled.squeeze(-1)
    return pooled, [int(i) + 1 for i in lines]


def _any_valid(valid: Tensor, row: Tensor, n_rows: int) -> Tensor:
    return (
        torch.zeros(n_rows, valid.shape[-1], dtype=torch.long, device=valid.device).index_add_(0, row, valid.long()) > 0
    )


# --------------------------------------------------------------------------------------------------
# Windows and the truncated forward


@dataclass
class _Window:
    file: int
    start: int
    """First token of the window, in file coordinates."""
    keep: int
    """Tokens [start + keep, start + size) of this window are the ones kept from it."""
    ids: list[int]
    """The ids run through the model: the window's tokens, twice over when echoing."""
    size: int
    """Tokens of the file in this window (``len(ids)``, or half of it when echoing)."""


def plan_windows(n_tokens: int, window: int, min_context: int) -> list[tuple[int, int, int]]:
    """(start, end, keep_from) of each window: tokens [keep_from, end) are taken from [start, end).

    Consecutive windows overlap by ``min_context`` tokens so that every kept token after the first
    window sees at least that much left context.
    """
    spans, kept = [], 0
    while kept < n_tokens:
        start = max(kept - min_context, 0)
        end = min(start + window, n_tokens)
        spans.append((start, end, kept))
        kept = end
    return spans


class _StopForward(Exception):
    pass


def decoder_layers(model) -> torch.nn.ModuleList:
    base = model.base_model
    layers = getattr(base, "layers", None)
    if layers is None:
        raise UsageError(f"cannot find the decoder layers of {type(model).__name__}")
    return layers


def _register_capture(loaded: LoadedModel, layer: int, store: dict, stop: bool):
    """Hook that records ``hidden_states[layer]`` into ``store[layer]`` and, if ``stop``, ends the
    forward right there, so that no block past the layer read is ever run.

    Hooks rather than re-implementing the decoder loop: the model's own code builds the masks and
    rotary embeddings, so this works unchanged for any decoder-only HF model and for bitsandbytes.
    """
    layers = decoder_layers(loaded.model)

    def record(h: Tensor | tuple[Tensor, ...]) -> None:
        store[layer] = h[0] if isinstance(h, tuple) else h
        if stop:
            raise _StopForward

    def before_block(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        record(args[0] if args else kwargs["hidden_states"])

    def after_module(module: torch.nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        record(output)

    if layer == 0:  # hidden_states[0] is whatever enters the first block
        return layers[0].register_forward_pre_hook(before_block, with_kwargs=True)
    if layer == loaded.num_layers:  # HF's last hidden state is taken after the final norm
        norm = loaded.model.base_model.norm
        assert isinstance(norm, torch.nn.Module), "a decoder-only HF base model ends in a norm module"
        return norm.register_forward_hook(after_module)
    return layers[layer - 1].register_forward_hook(after_module)


def _check(loaded: LoadedModel, cfg: EncodeConfig) -> None:
    for layer in (cfg.layer, *cfg.extra_layers):
        if not 0 <= layer <= loaded.num_layers:
            raise UsageError(
                f"layer {layer} is out of range: {loaded.name} has layers 0..{loaded.num_layers} (0 = embeddings)"
            )
        if layer > loaded.deepest_layer:
            raise UsageError(
                f"layer {layer} is above layer {loaded.deepest_layer}, the deepest {loaded.name} was loaded to"
            )
    if cfg.surprise and loaded.max_layer is not None:
        raise UsageError(f"surprise needs the LM head, but {loaded.name} was loaded only up to a layer")
    if cfg.pooling not in POOLING_MODES:
        raise UsageError(f"unknown pooling {cfg.pooling!r}; choose one of {', '.join(POOLING_MODES)}")
    if cfg.window < 1 or not 0 <= cfg.min_context < cfg.window:
        raise UsageError(f"need window >= 1 and 0 <= min_context < window (got {cfg.window}, {cfg.min_context})")
    if cfg.echo and not 0 <= cfg.min_context < cfg.window // 2:
        raise UsageError(f"echo reads each window twice: need min_context < window / 2 (got {cfg.min_context})")
    if cfg.batch_size < 1:
        raise UsageError(f"batch_size must be >= 1 (got {cfg.batch_size})")
    if cfg.batch_tokens < 1:
        raise UsageError(f"batch_tokens must be >= 1 (got {cfg.batch_tokens})")


@torch.inference_mode()
def encode_tokens(loaded: LoadedModel, texts: list[str], cfg: EncodeConfig) -> list[TokenStates]:
    """Layer ``cfg.layer`` state of every token of every text (and NLL/entropy if ``cfg.surprise``)."""
    _check(loaded, cfg)
    tok = loaded.tokenizer
    enc = tok(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    windows: list[_Window] = []
    lines: list[tuple[Tensor, int]] = []
    copies = 2 if cfg.echo else 1
    for f, (text, ids, offsets) in enumerate(zip(texts, enc["input_ids"], enc["offset_mapping"])):
        lines.append(token_line_indices(text, offsets))
        for start, end, keep_from in plan_windows(len(ids), cfg.window // copies, cfg.min_context):
            windows.append(_Window(f, start, keep_from - start, ids[start:end] * copies, end - start))

    n_tok = [len(ids) for ids in enc["input_ids"]]
    states = [torch.empty(n, loaded.d_model) for n in n_tok]
    extra = [{layer: torch.empty(n, loaded.d_model) for layer in cfg.extra_layers} for n in n_tok]
    layers = (cfg.layer, *cfg.extra_layers)
    echo = [{layer: torch.empty(n, loaded.d_model) for layer in layers} if cfg.echo else {} for n in n_tok]
    nll = [torch.full((n,), math.nan) for n in n_tok] if cfg.surprise else None
    ent = [torch.full((n,), math.nan) for n in n_tok] if cfg.surprise else None

    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    # transformers types pad_token_id like convert_tokens_to_ids (int or a list of them); one token is one id.
    assert isinstance(pad_id, int), f"pad_token_id should be one token id, got {pad_id!r}"
    # Longest first, so that a batch groups windows of similar length and wastes little on padding.
    order = sorted(range(len(windows)), key=lambda i: -len(windows[i].ids))
    for batch in _passes([windows[i] for i in order], cfg):
        ids, mask = padded([w.ids for w in batch], pad_id)
        positions = torch.arange(ids.shape[1]).expand(len(batch), -1)
        hidden, stats = forward_states(loaded, ids, mask, positions, cfg)
        for r, w in enumerate(batch):
            n = w.size
            lo, hi = w.start + w.keep, w.start + n
            states[w.file][lo:hi] = hidden[cfg.layer][r, w.keep : n].float().cpu()
            for layer in cfg.extra_layers:
                extra[w.file][layer][lo:hi] = hidden[layer][r, w.keep : n].float().cpu()
            for layer in echo[w.file]:
                echo[w.file][layer][lo:hi] = hidden[layer][r, n + w.keep : 2 * n].float().cpu()
            if stats is not None:
                assert nll is not None and ent is not None, "stats come only with cfg.surprise, as nll and ent do"
                # stats[:, t] is about the prediction of token t from positions < t of the row
                nll[w.file][max(lo, 1) : hi] = stats[0][r, max(w.keep, 1) : n]
                ent[w.file][max(lo, 1) : hi] = stats[1][r, max(w.keep, 1) : n]
        if stats is not None:
            release_freed_memory()

    return [
        TokenStates(
            states=states[f],
            token_lines=lines[f][0],
            n_lines=lines[f][1],
            nll=nll[f] if nll else None,
            entropy=ent[f] if ent else None,
            extra=extra[f],
            echo=echo[f],
        )
        for f in range(len(texts))
    ]


def padded(seqs: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Token id lists as one right-padded batch: ids [B, longest] and the attention mask (1 = token)."""
    ids = torch.full((len(seqs), max(map(len, seqs))), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, seq in enumerate(seqs):
        ids[r, : len(seq)] = torch.tensor(seq)
        mask[r, : len(seq)] = 1
    return ids, mask


def _passes(windows: list[_Window], cfg: EncodeConfig) -> Iterator[list[_Window]]:
    """Windows (longest first) cut into forward passes of similar lengths (each at least 3/4 of the
    pass's first, so padding stays under a quarter): up to ``batch_size`` windows, or more while the
    pass stays within ``batch_tokens`` padded tokens."""
    batch: list[_Window] = []
    for w in windows:
        if batch:
            width = len(batch[0].ids)
            room = (len(batch) + 1) * width <= max(cfg.batch_tokens, cfg.batch_size * width)
            if not room or 4 * len(w.ids) < 3 * width:  # full, or the next would be mostly padding
                yield batch
                batch = []
        batch.append(w)
    if batch:
        yield batch


def forward_states(loaded: LoadedModel, ids: Tensor, mask: Tensor, positions: Tensor, cfg: EncodeConfig):
    """{layer: hidden states} at ``cfg.layer`` and ``cfg.extra_layers`` for a batch and, with
    ``cfg.surprise``, per-token (NLL, entropy) as two [B, T] CPU tensors (column 0 undefined)."""
    model, device = loaded.model, loaded.device
    # Without padding the plain causal mask is exact, and attention kernels are fastest without one.
    attention_mask = None if bool(mask.all()) else mask.to(device)
    ids, positions = ids.to(device), positions.to(device)
    store: dict = {}
    layers = sorted({cfg.layer, *cfg.extra_layers})
    # Only the deepest capture may stop the pass, and none when the logits are needed.
    hooks = [_register_capture(loaded, layer, store, stop=not cfg.surprise and layer == layers[-1]) for layer in layers]
    try:
        if not cfg.surprise:
            try:
                model.base_model(input_ids=ids, attention_mask=attention_mask, position_ids=positions, use_cache=False)
            except _StopForward:
                pass
            return store, None
        final = model.base_model(
            input_ids=ids, attention_mask=attention_mask, position_ids=positions, use_cache=False
        ).last_hidden_state
    finally:
        for hook in hooks:
            hook.remove()
    return store, _surprise(model.get_output_embeddings(), final, ids)


def release_freed_memory() -> None:
    """Hand the heap pages the process has freed back to the OS (glibc's ``malloc_trim``; a no-op on
    other C libraries)."""
    # glibc keeps freed heap pages for reuse, and a surprise pass frees logits buffers of a new size every
    # window, which the next window cannot reuse: an encode with --surprise held 15 GB after 64 samples
    # and was OOM-killed at 200; with a trim after each pass it holds 1.8 GB, for no measurable time.
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)


def _surprise(head, final: Tensor, ids: Tensor, chunk: int = 256) -> tuple[Tensor, Tensor]:
    # The logits of a 2k-token window over a 150k vocabulary are >1 GB in float32; a chunk at a time
    # keeps the peak small.
    B, T = ids.shape
    nll = torch.full((B, T), math.nan)
    ent = torch.full((B, T), math.nan)
    for a in range(0, T - 1, chunk):
        b = min(a + chunk, T - 1)
        logp = torch.log_softmax(head(final[:, a:b]).float(), dim=-1)
        target = ids[:, a + 1 : b + 1].unsqueeze(-1)
        nll[:, a + 1 : b + 1] = -logp.gather(-1, target).squeeze(-1).cpu()
        ent[:, a + 1 : b + 1] = -(logp.exp() * logp).sum(-1).cpu()
    return nll, ent


def encode_lines(loaded: LoadedModel, texts: list[str], cfg: EncodeConfig) -> list[LineStates]:
    """Per-line states of every text: ``encode_tokens`` followed by ``pool_lines``."""
    out = []
    for ts in encode_tokens(loaded, texts, cfg):
        states, numbers = pool_lines(ts.states, ts.token_lines, ts.n_lines, cfg.pooling)
        held = set(numbers)
        result = LineStates(
            states=states, line_numbers=numbers, blank_lines=[n for n in range(1, ts.n_lines + 1) if n not in held]
        )
        if ts.nll is not None:
            result.surprise_mean = pool_lines(ts.nll, ts.token_lines, ts.n_lines, "mean")[0]
            result.surprise_max = pool_lines(ts.nll, ts.token_lines, ts.n_lines, "max")[0]
            assert ts.entropy is not None, "encode_tokens computes entropy whenever it computes nll"
            result.entropy_mean = pool_lines(ts.entropy, ts.token_lines, ts.n_lines, "mean")[0]
        out.append(result)
    return out
