"""Resumable SAE training checkpoints: the SAE, Adam's moments and the dead-latent counters of a step.

``checkpoints/step_XXXXXXXX/{state.safetensors,state.json}`` is written under a temporary name and
renamed whole; the last two are kept, and a damaged newest one falls back to the one before.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from risk_core.atomic import write_atomic_json, write_error
from risk_core.sae import SparseCoder
from risk_core.shards import write_atomic_safetensors

log = logging.getLogger(__name__)


def save_checkpoint(
    out: Path, step: int, sae: SparseCoder, opt: torch.optim.Optimizer, since_fired: Tensor, meta: dict[str, Any]
) -> None:
    """Write the checkpoint of ``step`` under ``out/checkpoints`` (whole or not at all), keep the last two."""
    ckdir = out / "checkpoints"
    final = ckdir / f"step_{step:08d}"
    tmp = ckdir / f".step_{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(err, tmp) from None
    tensors = {f"sae.{k}": v.detach().cpu() for k, v in sae.state_dict().items()}
    names = {id(p): n for n, p in sae.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p)
            if st:
                for key, val in st.items():
                    tensors[f"adam.{names[id(p)]}.{key}"] = torch.as_tensor(val).detach().cpu()
    tensors["since_fired"] = since_fired.cpu()
    write_atomic_safetensors(tensors, tmp / "state.safetensors")
    write_atomic_json({**meta, "step": step}, tmp / "state.json")
    shutil.rmtree(final, ignore_errors=True)
    try:
        tmp.rename(final)
    except OSError as err:
        raise write_error(err, final) from None
    for old in sorted(ckdir.glob("step_*"))[:-2]:  # keep the last two good ones
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(out: Path) -> tuple[Path, dict[str, Any], dict[str, Tensor]] | None:
    """Newest checkpoint whose files load; a damaged newest one falls back to the one before."""
    from safetensors.torch import load_file

    for ck in sorted((out / "checkpoints").glob("step_*"), reverse=True):
        try:
            meta = json.loads((ck / "state.json").read_text())
            tensors = load_file(str(ck / "state.safetensors"))
            return ck, meta, tensors
        except Exception as err:  # any damage: try the previous one
            log.warning("skipping damaged checkpoint %s: %s", ck, err)
    return None


def restore_checkpoint(sae: SparseCoder, opt: torch.optim.Optimizer, tensors: dict[str, Tensor]) -> Tensor:
    """Load a checkpoint's tensors into the SAE and Adam's state; returns the dead-latent counters."""
    sae.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("sae.")})
    for name, p in sae.named_parameters():
        st: dict[str, Tensor] = {}
        for key in ("step", "exp_avg", "exp_avg_sq"):
            t = tensors.get(f"adam.{name}.{key}")
            if t is not None:
                st[key] = t.to(p.device) if key != "step" else t
        if st:
            opt.state[p] = st
    return tensors["since_fired"]
