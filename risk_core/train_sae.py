"""Train a SparseCoder on harvested activation shards: a readable, nanoGPT-style loop.

Adam with linear warm-up (sparsify's learning-rate rule by default), the TopK reconstruction loss plus
AuxK for dead latents, the decoder renormalised after every step. Batches are drawn from a few shards
at a time (bounded memory), shuffled with a fixed seed; which batch comes at which step is a pure
function of (seed, step), so a resumed run sees exactly the data of an uninterrupted one.

Data parallel under torchrun: every rank reads the same global batch and trains on its slice of it
under DDP; the loss is normalised by the *global* batch variance so that the averaged gradient equals
the single-process gradient.

Output directory (the layout sparsify/SAELens users know)::

    cfg.json          SaeConfig fields + training config, model name/sha256, layer, data hashes
    sae.safetensors   encoder.weight, encoder.bias, W_dec, b_dec, input_scale
    metrics.json      final validation metrics, number of training tokens, history
    metrics.jsonl     one line per log/validation event during training
    checkpoints/step_XXXXXXXX/{state.safetensors,state.json}   the last two good checkpoints
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from risk_core import dist
from risk_core.atomic import write_atomic_json
from risk_core.errors import PttrustError, UsageError
from risk_core.harvest import HARVEST_FILE, load_shard, write_atomic_safetensors
from risk_core.sae import SaeConfig, SparseCoder, default_lr

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    batch_size: int = 4096
    """Tokens per optimiser step (global, over all ranks)."""
    lr: float = 0.0
    """Adam learning rate; 0 = sparsify's rule 2e-4 / sqrt(num_latents / 2**14)."""
    lr_warmup_steps: int = 1000
    """Steps of linear warm-up from 0 to lr."""
    auxk_alpha: float = 1 / 32
    """Weight of the AuxK loss (sparsify's default)."""
    dead_feature_threshold: int = 10_000_000
    """A latent is dead when it has not fired for this many training tokens."""
    max_tokens: int = 0
    """Stop after this many training tokens; 0 = `epochs` passes over the harvested shards."""
    epochs: int = 1
    """Passes over the harvested shards (when max_tokens is 0)."""
    shards_in_memory: int = 4
    """Shards loaded and shuffled together: the memory bound and the shuffle window."""
    seed: int = 0
    """Seeds the SAE init and the data order."""
    log_every: int = 50
    """Steps between training-loss log lines."""
    val_every: int = 1000
    """Steps between validation passes (and one at the end)."""
    val_tokens: int = 65_536
    """Validation activation tokens used for FVU / L0 / dead fraction."""
    delta_ce: bool = True
    """Measure dCE: the LM loss increase when the SAE reconstruction replaces the layer's output."""
    ce_chunks: int = 8
    """Validation chunks used for dCE."""
    checkpoint_every: int = 1000
    """Steps between checkpoints."""
    init_tokens: int = 16_384
    """Tokens used to fit input_scale and the b_dec geometric median at the start."""
    save_dtype: str = "float32"
    """dtype of the final sae.safetensors: float16 halves a shipped SAE (checkpoints stay float32)."""


@dataclass
class _Group:
    epoch: int
    index: int
    shards: list[str]
    n_tokens: int
    first_step: int
    n_steps: int


# ---------------------------------------------------------------------------------------------
# Data


class ShardData:
    """The harvested shards of one directory and a deterministic batch schedule over them."""

    def __init__(self, acts_dir: Path, cfg: TrainConfig):
        self.dir = acts_dir
        doc_path = acts_dir / HARVEST_FILE
        if not doc_path.is_file():
            raise UsageError(
                f"{acts_dir} holds no finished harvest ({HARVEST_FILE} missing); "
                "run or resume `pttrust pretrain harvest` first"
            )
        try:
            self.doc = json.loads(doc_path.read_text())
        except (OSError, ValueError) as err:
            raise UsageError(f"cannot read {doc_path}: {err}") from None
        self.shards = {n: s for n, s in self.doc["shards"].items()}
        self.train = [n for n in self.shards if n.startswith("train/")]
        self.val = [n for n in self.shards if n.startswith("val/")]
        if not self.train:
            raise UsageError(f"{acts_dir} has no training shards")
        self.cfg = cfg
        self.groups = self._plan()

    def load(self, name: str) -> dict[str, Tensor]:
        return load_shard(self.dir / name, self.shards[name]["sha256"])

    def _plan(self) -> list[_Group]:
        """Cut each epoch's seeded shard order into groups of ``shards_in_memory`` shards and give
        every group its range of global steps. Runs until max_tokens (or for ``epochs`` passes)."""
        cfg, B = self.cfg, self.cfg.batch_size
        budget_steps = math.ceil(cfg.max_tokens / B) if cfg.max_tokens else None
        groups, step, epoch = [], 0, 0
        per_epoch = sum(self.shards[s]["n_tokens"] for s in self.train) // B  # an upper bound
        while (step < budget_steps if budget_steps is not None else epoch < cfg.epochs) and per_epoch > 0:
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
            order = [self.train[i] for i in torch.randperm(len(self.train), generator=g).tolist()]
            step_at_epoch_start = step
            for gi in range(0, len(order), cfg.shards_in_memory):
                names = order[gi : gi + cfg.shards_in_memory]
                n = sum(self.shards[s]["n_tokens"] for s in names)
                n_steps = n // B  # a group's remainder is dropped, so every batch is full
                if budget_steps is not None:
                    n_steps = min(n_steps, budget_steps - step)
                if n_steps > 0:
                    groups.append(_Group(epoch, gi // cfg.shards_in_memory, names, n, step, n_steps))
                    step += n_steps
            epoch += 1
            if step == step_at_epoch_start:  # no group holds a full batch: more epochs would not help
                break
        if not groups:
            total = sum(self.shards[s]["n_tokens"] for s in self.train)
            raise UsageError(
                f"batch size {B} is larger than the harvested data a group of --shards-in-memory "
                f"shards holds ({total} tokens in all); lower --batch-size"
            )
        return groups

    @property
    def total_steps(self) -> int:
        return self.groups[-1].first_step + self.groups[-1].n_steps

    def batches(self, start_step: int = 0) -> Iterator[tuple[int, Tensor]]:
        """(step, [batch_size, d] fp16 CPU batch) from ``start_step`` on; loads only what is needed."""
        B = self.cfg.batch_size
        for grp in self.groups:
            if grp.first_step + grp.n_steps <= start_step:
                continue
            acts = torch.cat([self.load(n)["acts"] for n in grp.shards])
            g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + 7919 * grp.epoch + grp.index + 1)
            perm = torch.randperm(acts.shape[0], generator=g)
            for i in range(max(0, start_step - grp.first_step), grp.n_steps):
                yield grp.first_step + i, acts[perm[i * B : (i + 1) * B]]
            del acts

    def init_sample(self) -> Tensor:
        """The first tokens of the first batches: what input_scale and b_dec are fitted on."""
        grp = self.groups[0]
        acts = torch.cat([self.load(n)["acts"] for n in grp.shards])
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + 7919 * grp.epoch + grp.index + 1)
        perm = torch.randperm(acts.shape[0], generator=g)
        return acts[perm[: self.cfg.init_tokens]].float()

    def val_acts(self) -> Tensor | None:
        parts, n = [], 0
        for name in self.val:
            if n >= self.cfg.val_tokens:
                break
            a = self.load(name)["acts"]
            parts.append(a[: self.cfg.val_tokens - n])
            n += parts[-1].shape[0]
        return torch.cat(parts) if parts else None


# ---------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate_sae(sae: SparseCoder, acts: Tensor, batch: int = 4096) -> dict:
    """FVU (over the whole set), L0 and the fraction of latents that never fire on ``acts``."""
    dev = sae.W_dec.device
    sse = 0.0
    fired = torch.zeros(sae.num_latents, dtype=torch.bool, device=dev)
    l0 = 0.0
    x_all = acts.float()
    y_mean = (x_all.mean(0) * float(sae.input_scale)).to(dev)
    tv = 0.0
    for a in range(0, x_all.shape[0], batch):
        x = x_all[a : a + batch].to(dev)
        out = sae(x)
        y = x * sae.input_scale
        sse += float((y - out.sae_out * sae.input_scale).pow(2).sum())
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
    loaded, sae: SparseCoder, layer: int, input_ids: Tensor, skip_first: int = 1, cache: dict | None = None
) -> dict:
    """Mean next-token loss with the layer's output as is and with the SAE reconstruction spliced in
    (a forward hook replacing hidden_states[layer]) on the given chunks; positions < skip_first keep
    their original state (the SAE never saw them) and are not scored. ``cache`` keeps the clean loss
    between calls: it does not change during training and costs a full forward."""
    from risk_core.encode import decoder_layers

    model = loaded.model
    if layer == 0:
        raise UsageError("dCE at layer 0 (embeddings) is not supported")
    module = model.base_model.norm if layer == loaded.num_layers else decoder_layers(model)[layer - 1]
    head = model.get_output_embeddings()
    dev = loaded.device

    def splice(_m, _inp, out):
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


# ---------------------------------------------------------------------------------------------
# Checkpoints


def _save_checkpoint(
    out: Path, step: int, sae: SparseCoder, opt: torch.optim.Adam, since_fired: Tensor, meta: dict
) -> None:
    ckdir = out / "checkpoints"
    final = ckdir / f"step_{step:08d}"
    tmp = ckdir / f".step_{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, exist_ok=True)
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
    tmp.rename(final)
    for old in sorted(ckdir.glob("step_*"))[:-2]:  # keep the last two good ones
        shutil.rmtree(old, ignore_errors=True)


def _latest_checkpoint(out: Path) -> tuple[Path, dict, dict[str, Tensor]] | None:
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


def _restore(sae: SparseCoder, opt: torch.optim.Adam, tensors: dict[str, Tensor]) -> Tensor:
    sae.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("sae.")})
    for name, p in sae.named_parameters():
        st = {}
        for key in ("step", "exp_avg", "exp_avg_sq"):
            t = tensors.get(f"adam.{name}.{key}")
            if t is not None:
                st[key] = t.to(p.device) if key != "step" else t
        if st:
            opt.state[p] = st
    return tensors["since_fired"]


# ---------------------------------------------------------------------------------------------
# The loop


LogFn = Callable[[dict], None]


def train(
    acts_dir: str | Path,
    out: str | Path,
    sae_cfg: SaeConfig,
    cfg: TrainConfig,
    model: str | None = None,
    device: str = "auto",
    resume: bool = True,
    log_fn: LogFn | None = None,
    loaded=None,
) -> dict:
    """Train an SAE on the harvest in ``acts_dir``; returns the final metrics document."""
    info = dist.init()
    acts_dir, out = Path(acts_dir), Path(out)
    if cfg.batch_size % info.world:
        raise UsageError(f"batch size {cfg.batch_size} must be divisible by the number of processes {info.world}")
    data = ShardData(acts_dir, cfg)
    doc = data.doc
    d_in = int(doc["d_model"])
    if sae_cfg.d_in and sae_cfg.d_in != d_in:
        raise UsageError(f"SAE d_in={sae_cfg.d_in} does not match the harvested states' width {d_in}")
    layer = int(doc["config"]["layer"])
    skip_first = int(doc["config"]["skip_first"])
    dev = torch.device(dist.device(info, device))

    torch.manual_seed(cfg.seed)
    sae = SparseCoder(d_in, sae_cfg, device=dev)
    lr = cfg.lr or default_lr(sae.num_latents)
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    since_fired = torch.zeros(sae.num_latents, dtype=torch.long, device=dev)

    run_fp = {"sae": asdict(sae.cfg), "train": asdict(cfg), "harvest_sha256": _harvest_fp(doc)}
    start_step, history, tokens_seen = 0, [], 0
    ck = _latest_checkpoint(out) if resume else None
    if ck is not None:
        path, meta, tensors = ck
        if _weights_settings(meta.get("run")) != _weights_settings(run_fp):
            raise UsageError(f"{out} holds a training run with other settings; use another --out or --no-resume")
        since_fired = _restore(sae, opt, tensors).to(dev)
        start_step, history, tokens_seen = meta["step"], meta["history"], meta["tokens_seen"]
        log.info("resuming from %s", path)
    else:
        sae.fit_to_data(data.init_sample().to(dev))
    if info.is_main:
        try:
            out.mkdir(parents=True, exist_ok=True)
            # The log restarts from what the checkpoint knew: lines a killed run wrote after its last
            # checkpoint would otherwise appear twice.
            (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
        except OSError as err:
            raise PttrustError(f"cannot write to {out}: {err.strerror}") from None

    ddp = sae
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp = DDP(sae, device_ids=[dev.index] if dev.type == "cuda" else None)

    val = data.val_acts()
    loaded_model = loaded
    ce_ids = None
    if cfg.delta_ce and info.is_main:
        ce_ids = _val_chunks(acts_dir, doc, cfg.ce_chunks)
        if ce_ids is not None and loaded_model is None:
            from risk_core.models import load_model

            loaded_model = load_model(model or doc["model"], device=str(dev))
            if loaded_model.d_model != d_in:
                raise UsageError(
                    f"model {model or doc['model']} has d_model={loaded_model.d_model}, the harvest {d_in}"
                )

    def emit(rec: dict) -> None:
        if not info.is_main:
            return
        history.append(rec)
        try:
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
        except OSError as err:
            raise PttrustError(f"cannot write {out / 'metrics.jsonl'}: {err.strerror}") from None
        if log_fn:
            log_fn(rec)

    ce_cache: dict = {}

    def validate(step: int) -> dict:
        rec: dict = {
            "event": "val",
            "step": step,
            "tokens": tokens_seen,
            "dead_fraction": float((since_fired >= cfg.dead_feature_threshold).float().mean()),
        }
        if val is not None:
            rec.update(evaluate_sae(sae, val))
        if ce_ids is not None and loaded_model is not None:
            rec.update(delta_ce(loaded_model, sae, layer, ce_ids, skip_first, cache=ce_cache))
        return rec

    B, W, R = cfg.batch_size, info.world, info.rank
    total_steps = data.total_steps
    meta_base = {"run": run_fp}
    t0, t_last, last_step = time.perf_counter(), time.perf_counter(), start_step
    step = start_step
    for step, batch in data.batches(start_step):
        # The whole global batch is on every rank: its variance normalises every rank's loss.
        x = batch.to(dev, torch.float32)
        y = x * sae.input_scale
        total_variance = (y - y.mean(0)).pow(2).sum()
        x_local = x[R * B // W : (R + 1) * B // W]

        for g in opt.param_groups:  # linear warm-up, then constant (sparsify's schedule)
            g["lr"] = lr * min(1.0, (step + 1) / max(1, cfg.lr_warmup_steps))
        dead_mask = since_fired >= cfg.dead_feature_threshold
        res = ddp(x_local, dead_mask=dead_mask if cfg.auxk_alpha > 0 else None, total_variance=total_variance)
        # DDP averages gradients over ranks; scaling by W turns that average into the sum of
        # the ranks' shares of the global loss, i.e. the single-process gradient.
        loss = (res.fvu + cfg.auxk_alpha * res.auxk_loss) * W
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sae.set_decoder_norm_to_unit_norm()

        fired = torch.zeros(sae.num_latents, dtype=torch.long, device=dev)
        fired[res.latent_indices[res.latent_acts > 0]] = 1
        dist.all_reduce(fired, info, "max")
        since_fired += B
        since_fired[fired.bool()] = 0
        tokens_seen += B
        done = step + 1

        if done % cfg.log_every == 0 or done == total_steps:
            stats = torch.stack([res.fvu.detach(), res.auxk_loss.detach()])
            dist.all_reduce(stats, info)  # per-rank shares of the global fvu / auxk sum up
            now = time.perf_counter()
            emit(
                {
                    "event": "train",
                    "step": done,
                    "tokens": tokens_seen,
                    "fvu": float(stats[0]),
                    "auxk_loss": float(stats[1]),
                    "lr": opt.param_groups[0]["lr"],
                    "dead_fraction": float(dead_mask.float().mean()),
                    "tokens_per_s": (done - last_step) * B / max(now - t_last, 1e-9),
                    "total_steps": total_steps,
                }
            )
            t_last, last_step = now, done
        if done % cfg.val_every == 0 and done != total_steps and info.is_main:
            emit(validate(done))
        if done % cfg.checkpoint_every == 0 and done != total_steps:
            if info.is_main:
                try:
                    _save_checkpoint(
                        out, done, sae, opt, since_fired, {**meta_base, "history": history, "tokens_seen": tokens_seen}
                    )
                except OSError as err:
                    what = "out of disk space" if err.errno == 28 else f"cannot write ({err.strerror})"
                    raise PttrustError(f"{what} saving a checkpoint in {out / 'checkpoints'}") from None
            dist.barrier(info)

    final: dict = {}
    if info.is_main:
        final = validate(total_steps)
        emit(final)
        metrics = {
            "training_tokens": tokens_seen,
            "statement": (
                f"trained on {tokens_seen:,} activation tokens ({total_steps:,} steps of {B:,}) "
                f"drawn from {sum(s['n_tokens'] for n, s in data.shards.items() if n.startswith('train/')):,} "
                f"harvested train tokens of layer {layer}"
            ),
            "steps": total_steps,
            "final": final,
            "history": history,
            "wall_s_this_session": time.perf_counter() - t0,
        }
        extra = {
            "layer": layer,
            "hookpoint": f"layers.{layer - 1}"
            if 0 < layer < int(doc.get("num_layers", 10**9))
            else f"hidden_states.{layer}",
            "training": asdict(cfg) | {"lr_effective": lr, "world_size": info.world},
            "model": {"name": doc["model"], "sha256": doc.get("model_sha256"), "d_model": d_in},
            "corpus_manifest_sha256": doc["corpus_manifest_sha256"],
            "harvest": {"config": doc["config"], "sha256": _harvest_fp(doc)},
            "shards": {n: s["sha256"] for n, s in data.shards.items()},
        }
        sae.save(out, extra=extra, dtype=getattr(torch, cfg.save_dtype))
        write_atomic_json(metrics, out / "metrics.json")
    dist.barrier(info)
    # A gloo group left alive at interpreter exit can abort the process ("terminate called ...").
    dist.shutdown(info)
    return final


# How often to log, validate or checkpoint does not change the weights: a resumed run may differ there.
_BOOKKEEPING = {"log_every", "val_every", "val_tokens", "delta_ce", "ce_chunks", "checkpoint_every", "save_dtype"}


def _weights_settings(run: dict | None) -> dict | None:
    """The part of a run's settings that must match for a checkpoint to be resumed."""
    if run is None:
        return None
    return {**run, "train": {k: v for k, v in run.get("train", {}).items() if k not in _BOOKKEEPING}}


def _harvest_fp(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc["shards"], sort_keys=True).encode()).hexdigest()


def _val_chunks(acts_dir: Path, doc: dict, n: int) -> Tensor | None:
    vc = doc.get("val_chunks")
    if not vc:
        log.warning("no validation chunks in the harvest: dCE skipped")
        return None
    return load_shard_plain(acts_dir / vc["file"], vc["sha256"])["input_ids"][:n]


def load_shard_plain(path: Path, sha256: str) -> dict[str, Tensor]:
    from safetensors.torch import load as st_load

    try:
        data = path.read_bytes()
    except OSError as err:
        raise PttrustError(f"cannot read {path}: {err.strerror}") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise PttrustError(f"{path} is corrupted (sha256 mismatch); rerun the harvest to rebuild it")
    return st_load(data)
