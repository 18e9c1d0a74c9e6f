"""A Qwen2 decoder stack in plain torch, up to the layer the review reads (the serving path).

What `pttrust review` needs of the model is the hidden states of one layer: the token embedding, the
first L blocks and, only when L is the last layer, the final norm. This file is that forward and
nothing else (no LM head, no KV cache, no generation, no training), small enough to read in one go,
so that a cold start imports torch alone instead of transformers' modeling stack. It computes what
transformers' ``Qwen2Model`` computes, in the same order of operations (tests/test_qwen2.py holds it
to <= 1e-5 of it at every layer): RMSNorm, q/k/v projections with bias and o_proj without,
grouped-query attention through ``scaled_dot_product_attention``, rotary embeddings on the two halves
of each head (the "default" rope), and the SwiGLU MLP.

The modules are built around tensors the caller maps from safetensors: nothing is allocated nor
randomly initialised. Their attribute names are those of the checkpoint (``embed_tokens``,
``layers.N.self_attn.q_proj``, ``norm``), and the stack answers what the encoder's hooks and the
benchmarks use of a transformers model: ``base_model`` (itself), ``layers``, ``norm``,
``get_input_embeddings()``, ``config``; a block's output is a tensor (the hooks take tensor or tuple).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class Qwen2Config:
    """The fields of a Qwen2 ``config.json`` that the forward uses."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    """Blocks of the whole model (the stack built may hold fewer: ``Qwen2Model.layers``)."""
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> Qwen2Config:
        heads = cfg["num_attention_heads"]
        rope = cfg.get("rope_parameters") or {}
        return cls(
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_hidden_layers=cfg["num_hidden_layers"],
            num_attention_heads=heads,
            num_key_value_heads=cfg.get("num_key_value_heads") or heads,
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
            rms_norm_eps=cfg.get("rms_norm_eps", 1e-6),
            # transformers 5 writes rope_parameters; older configs a top-level rope_theta.
            rope_theta=float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))),
        )


def unsupported(cfg: dict[str, Any], blocks: int) -> str | None:
    """Why the first ``blocks`` blocks of a model with config ``cfg`` are not what this file computes,
    or None when they are (then `Qwen2Model` gives transformers' hidden states)."""
    if cfg.get("model_type") != "qwen2":
        return f"model_type is {cfg.get('model_type')!r}, not qwen2"
    if cfg.get("hidden_act", "silu") != "silu":
        return f"hidden_act {cfg.get('hidden_act')!r}"
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind != "default":
        return f"rope type {kind!r}"
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        return "partial rotary embeddings"
    types = cfg.get("layer_types")
    if isinstance(types, list):
        sliding = any(t != "full_attention" for t in types[:blocks])
    else:  # transformers derives the layer types from these when the config has none
        window = cfg.get("sliding_window") if cfg.get("use_sliding_window") else None
        sliding = window is not None and blocks > cfg.get("max_window_layers", blocks)
    if sliding:
        return "sliding-window attention"
    return None


class Weights:
    """The checkpoint's tensors by name (without the ``model.`` prefix), handed to the modules as they
    are built, noting which were taken: a build takes every tensor given, and only those."""

    def __init__(self, state: dict[str, Tensor]):
        self.state, self.taken = state, set()

    def __call__(self, name: str) -> Tensor:
        if name not in self.state:
            raise KeyError(f"the weights lack {name}")
        self.taken.add(name)
        return self.state[name]


def linear(w: Weights, name: str, bias: bool) -> nn.Linear:
    """An ``nn.Linear`` whose parameters are the tensors ``name.weight`` (and ``name.bias``). Built
    around them: ``nn.Linear(...)`` would first draw random weights (and, on the meta device, import
    torch._dynamo for it). A plain ``nn.Linear``, so that int8 dynamic quantization replaces it."""
    weight = w(f"{name}.weight")
    layer = nn.Linear.__new__(nn.Linear)
    nn.Module.__init__(layer)
    layer.out_features, layer.in_features = weight.shape
    layer.weight = nn.Parameter(weight, requires_grad=False)
    layer.register_parameter("bias", nn.Parameter(w(f"{name}.bias"), requires_grad=False) if bias else None)
    return layer


class RMSNorm(nn.Module):
    def __init__(self, weight: Tensor, eps: float):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotary(position_ids: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos and sin [B, T, head_dim] of the default rope: frequency i of a head is shared by its
    dimensions i and i + head_dim / 2 (the two halves that ``rotate_half`` swaps)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = position_ids[..., None].float() * inv_freq.to(position_ids.device)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: Qwen2Config, w: Weights, prefix: str):
        super().__init__()
        self.n_head, self.n_kv, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_proj = linear(w, prefix + "q_proj", bias=True)  # hidden -> n_head * head_dim
        self.k_proj = linear(w, prefix + "k_proj", bias=True)  # hidden -> n_kv * head_dim
        self.v_proj = linear(w, prefix + "v_proj", bias=True)
        self.o_proj = linear(w, prefix + "o_proj", bias=False)  # n_head * head_dim -> hidden

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None) -> Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # [B, H, T, hd]
        k = self.k_proj(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)  # [B, KV, T, hd]
        v = self.v_proj(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # Grouped-query attention: each key/value head serves n_head / n_kv query heads (enable_gqa
        # shares them inside the kernel instead of copying k and v n_head / n_kv times).
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=mask is None and T > 1,
            scale=self.head_dim**-0.5,
            enable_gqa=self.n_head != self.n_kv,
        )
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, w: Weights, prefix: str):
        super().__init__()
        self.gate_proj = linear(w, prefix + "gate_proj", bias=False)
        self.up_proj = linear(w, prefix + "up_proj", bias=False)
        self.down_proj = linear(w, prefix + "down_proj", bias=False)

    def forward(self, x: Tensor) -> Tensor:
        # In place: the [tokens, intermediate] products are the largest tensors of the pass, and
        # on a CPU a fresh one costs page faults that take as long as the elementwise work itself.
        gate = F.silu(self.gate_proj(x), inplace=True)
        return self.down_proj(gate.mul_(self.up_proj(x)))


class Block(nn.Module):
    def __init__(self, cfg: Qwen2Config, w: Weights, prefix: str):
        super().__init__()
        self.input_layernorm = RMSNorm(w(prefix + "input_layernorm.weight"), cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, w, prefix + "self_attn.")
        self.post_attention_layernorm = RMSNorm(w(prefix + "post_attention_layernorm.weight"), cfg.rms_norm_eps)
        self.mlp = MLP(w, prefix + "mlp.")

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Output(NamedTuple):
    last_hidden_state: Tensor
    """The output of the last block built (after the final norm when the stack has it)."""


class Qwen2Model(nn.Module):
    """The forward in the blocks' dtype (float32, or bfloat16 on CPUs with a fast path for it):
    embedding, ``n_blocks`` blocks and, with ``final_norm`` (the stack reaches the last layer), the
    final norm; without it ``norm`` is an ``nn.Identity`` (hidden_states[L] of a lower layer is never
    normed).

    Its parameters *are* the tensors of ``state`` (checkpoint names without the ``model.`` prefix),
    nothing is allocated nor initialised; the embedding table may be stored in another dtype than the
    blocks (float16, mapped): its rows are cast to the blocks' dtype when looked up."""

    _dtype: torch.dtype

    def __init__(self, cfg: Qwen2Config, state: dict[str, Tensor], n_blocks: int, final_norm: bool):
        super().__init__()
        w = Weights(state)
        self.config = cfg
        self.embed_tokens = nn.Embedding.from_pretrained(w("embed_tokens.weight"), freeze=True)
        self.layers = nn.ModuleList(Block(cfg, w, f"layers.{i}.") for i in range(n_blocks))
        self._dtype = state["layers.0.mlp.down_proj.weight"].dtype if n_blocks else torch.float32
        self.norm: nn.Module = RMSNorm(w("norm.weight"), cfg.rms_norm_eps) if final_norm else nn.Identity()
        if w.taken != set(state):
            raise KeyError(f"the stack has no place for {sorted(set(state) - w.taken)[0]}")
        self.eval()

    @property
    def base_model(self) -> Qwen2Model:
        return self

    @property
    def dtype(self) -> torch.dtype:
        """What the blocks compute in: their weights' dtype as built (float32 without blocks; int8
        quantization, applied afterwards, computes in float32 too)."""
        return self._dtype

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def get_output_embeddings(self) -> None:
        """No LM head: this stack serves hidden states only."""
        return None

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        use_cache: bool = False,
    ) -> Output:
        """``input_ids`` [B, T]; ``attention_mask`` [B, T] of 1 (token) / 0 (padding), None for none;
        ``position_ids`` [B, T] (default 0..T-1). ``use_cache`` is accepted and ignored (no cache)."""
        B, T = input_ids.shape
        x = self.embed_tokens(input_ids).to(self.dtype)  # the table may be stored in float16
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device).expand(B, -1)
        cos, sin = rotary(position_ids, self.config.head_dim, self.config.rope_theta)
        cos, sin = cos.to(self.dtype), sin.to(self.dtype)  # computed in float32, applied in the blocks' dtype
        mask = None
        if attention_mask is not None:  # causal, and no query sees a padding key: [B, 1, T, T] bool
            causal = torch.ones(T, T, dtype=torch.bool, device=input_ids.device).tril()
            mask = causal[None, None] & attention_mask.bool()[:, None, None, :]
            # A padding query before any token (left padding) would see no key at all and turn NaN,
            # and 0 x NaN is NaN in the tokens' attention sums: let every query see itself.
            mask |= torch.eye(T, dtype=torch.bool, device=input_ids.device)
        for block in self.layers:
            x = block(x, cos, sin, mask)
        return Output(self.norm(x))
