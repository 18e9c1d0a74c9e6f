"""How good an SAE is: reconstruction (FVU), sparsity (L0), dead latents, and dCE, the LM loss it costs.

Shared by training (periodic validation) and anything that judges a trained SAE on held-out states.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from risk_core.errors import UsageError
from risk_core.sae import SparseCoder


@torch.no_grad()
def evaluate_sae(sae: SparseCoder, acts: Tensor, batch: int = 4096) -> dict[str, float | int]:
    """FVU (over the whole set), L0 and the fraction of latents that never fire on ``acts``."""
    dev = sae.W_dec.device
    sse = 0.0
    fired = torch.zeros(sae.num_latents, dtype=torch.bool, device=dev)
    l0 = 0.0
    x_all = acts.float()
    scale = sae.input_scale
    y_mean = (x_all.mean(0) * float(scale)).to(dev)
    tv = 0.0
    for a in range(0, x_all.shape[0], batch):
        x = x_all[a : a + batch].to(dev)
        out = sae(x)
        y = x * scale
        sse += float((y - out.sae_out * scale).pow(2).sum())
        tv += float((y - y_mean).pow(2).sum())
        active = out.latent_acts > 0
        l0 += float(active.sum())
        fired[out.latent_indices[active]] = True
    n = x_all.shape[0]
    return {
        "fvu": sse / tv,
        "l0": l0 / n,
        "val_never_fired_fraction": 1.0 - float(fired.float().mean()),
        "val_tokens": n,
    }


@torch.no_grad()
def delta_ce(
    loaded: Any,
    sae: Any,
    layer: int,
    input_ids: Tensor,
    skip_first: int = 1,
    cache: dict[str, float] | None = None,
) -> dict[str, float | int]:
    """Mean next-token loss with the layer's output as is and with the SAE reconstruction spliced in
    (a forward hook replacing hidden_states[layer]) on the given chunks; positions < skip_first keep
    their original state (the SAE never saw them) and are not scored. ``cache`` keeps the clean loss
    between calls: it does not change during training and costs a full forward.

    ``loaded`` is a ``risk_core.model_loading.LoadedModel``; ``sae`` anything with ``W_dec`` whose call returns
    an object with ``sae_out`` (a SparseCoder, or a stand-in in tests)."""
    from risk_core.encode import decoder_layers

    model = loaded.model
    if layer == 0:
        raise UsageError("dCE at layer 0 (embeddings) is not supported")
    module = model.base_model.norm if layer == loaded.num_layers else decoder_layers(model)[layer - 1]
    head = model.get_output_embeddings()
    dev = loaded.device

    def splice(_m: Any, _inp: Any, out: Any) -> Any:
        h = out[0] if isinstance(out, tuple) else out
        flat = h[:, skip_first:].reshape(-1, h.shape[-1])
        rec = sae(flat.to(sae.W_dec.device, torch.float32)).sae_out
        h = h.clone()
        h[:, skip_first:] = rec.reshape(h.shape[0], -1, h.shape[-1]).to(h.device, h.dtype)
        return (h, *out[1:]) if isinstance(out, tuple) else h

    def mean_ce() -> float:
        total, count = 0.0, 0
        for row in input_ids:
            ids = row.long()[None].to(dev)
            final = model.base_model(input_ids=ids, use_cache=False).last_hidden_state
            for a in range(max(skip_first, 0), ids.shape[1] - 1, 256):  # logits piecewise: V is large
                b = min(a + 256, ids.shape[1] - 1)
                logits = head(final[:, a:b]).float()
                total += float(
                    torch.nn.functional.cross_entropy(
                        logits.reshape(-1, logits.shape[-1]), ids[:, a + 1 : b + 1].reshape(-1), reduction="sum"
                    )
                )
                count += b - a
        return total / count

    if cache is not None and "ce_clean" in cache:
        clean = cache["ce_clean"]
    else:
        clean = mean_ce()
        if cache is not None:
            cache["ce_clean"] = clean
    handle = module.register_forward_hook(splice)
    try:
        spliced = mean_ce()
    finally:
        handle.remove()
    return {"ce_clean": clean, "ce_spliced": spliced, "delta_ce": spliced - clean, "ce_chunks": len(input_ids)}
