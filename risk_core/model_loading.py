"""Loading a model (registry name, local directory or locally cached HF id) ready for encoding: only
the blocks up to the layer read, weights mapped from safetensors, optionally int8 on CPU. The weights'
origin and the one-time conversion into the cache are ``risk_core.models``."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from risk_core.errors import PttrustError, UsageError
from risk_core.models import DEFAULT_MODEL, REGISTRY, prepare, quiet_transformers

if TYPE_CHECKING:  # torch and transformers are heavy; import them only where a model is touched
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: PreTrainedModel
    """A causal LM (Qwen2ForCausalLM or any AutoModelForCausalLM), in eval mode, no grads."""
    tokenizer: PreTrainedTokenizerBase
    """A *fast* tokenizer (character offsets are needed to map tokens to lines)."""
    name: str
    """Registry name, HF id or path as given."""
    sha256: str | None
    """sha256 of the source weights where known (the registry GGUF), else None."""
    num_layers: int
    """Number of decoder blocks; valid layers are 0..num_layers (0 = embeddings)."""
    d_model: int
    """Width of the hidden states."""
    device: torch.device
    """Where the model's inputs go."""
    max_layer: int | None = None
    """Deepest hidden_states index the model can give: None (= ``num_layers``) for the whole causal LM;
    L when it was built only up to layer L (``load_model(up_to_layer=L)``): then it is the base model,
    without the LM head (no logits, so no surprise) and, below the last layer, without the final norm."""

    @property
    def deepest_layer(self) -> int:
        return self.num_layers if self.max_layer is None else self.max_layer


# --------------------------------------------------------------------------------------------------
# Loading


def _looks_like_hf_id(name: str) -> bool:
    """``org/model`` that is not a path on disk: worth a look in the local HF cache (never fetched)."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


QUANTIZE_CHOICES = ("auto", "nf4", "int8", "none")
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    device: str = "auto",
    quantize: str = "auto",
    dtype: str = "auto",
    *,
    up_to_layer: int | None = None,
    verify: bool = False,
    say: Callable[[str], None] | None = None,
) -> LoadedModel:
    """Load a registry model (preparing its cache on first use), a local directory or an HF id that is
    already in the local HF cache. CUDA defaults to bitsandbytes nf4, CPU to float32; ``--quantize
    int8`` on CPU is PyTorch dynamic quantization of the linear layers (int8 weights, float32
    activations). ``up_to_layer``: the deepest hidden_states index that will be read, when no logits
    are needed (features without surprise): only the blocks up to it are built and loaded, as the
    base model (see ``LoadedModel.max_layer``). ``say``: the caller's progress reporter (the one-time
    conversion reports through it)."""
    import torch

    if quantize not in QUANTIZE_CHOICES:
        raise UsageError(f"unknown quantization {quantize!r}; choose one of {', '.join(QUANTIZE_CHOICES)}")
    if dtype not in DTYPE_CHOICES:
        raise UsageError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_CHOICES)}")
    if up_to_layer is not None and up_to_layer < 0:
        raise UsageError(f"up_to_layer must be >= 0 (got {up_to_layer})")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        target = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("device cuda was asked for but no CUDA device is available")
    if quantize == "auto":
        quantize = "nf4" if target.type == "cuda" else "none"
    cpu_int8 = quantize == "int8" and target.type == "cpu"
    if quantize != "none" and target.type != "cuda" and not cpu_int8:
        raise UsageError(f"--quantize {quantize} needs a CUDA device (bitsandbytes); on {target.type} use none or int8")
    if dtype == "auto":
        dtype = "bfloat16" if target.type == "cuda" else "float32"
    if cpu_int8 and dtype != "float32":
        raise UsageError(f"--quantize int8 on cpu computes in float32; drop --dtype {dtype}")
    torch_dtype = getattr(torch, dtype)
    bnb = quantize != "none" and not cpu_int8

    sha256 = None
    if name_or_path in REGISTRY:
        path: str | Path = prepare(name_or_path, verify=verify, say=say)
        sha256 = REGISTRY[name_or_path].sha256
    else:
        path = name_or_path
        if not Path(path).is_dir() and not _looks_like_hf_id(path):
            raise UsageError(
                f"unknown model {name_or_path!r}: not a directory nor a registry name "
                f"(known: {', '.join(sorted(REGISTRY))})"
            )

    # safetensors only: a pytorch_model.bin is a pickle, and unpickling runs code from the directory.
    kwargs: dict = {"dtype": torch_dtype, "local_files_only": True, "use_safetensors": True}
    if bnb:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = (
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype)
            if quantize == "nf4"
            else BitsAndBytesConfig(load_in_8bit=True)
        )
    if target.type != "cpu":
        kwargs["device_map"] = {"": target.index or 0} if target.type == "cuda" else {"": str(target)}

    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    max_layer = None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        if up_to_layer is None:
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        else:
            config = AutoConfig.from_pretrained(path, local_files_only=True)
            max_layer = _truncate_config(config, up_to_layer)
            if bnb:  # bitsandbytes builds its own modules: transformers' loader, on the truncated config
                model = AutoModel.from_pretrained(path, config=config, **kwargs)
                _drop_final_norm(model, config, max_layer)
            else:
                model = _build_up_to(
                    Path(path) if Path(path).is_dir() else _hf_snapshot(str(path)),
                    config,
                    max_layer,
                    torch_dtype,
                    target,
                )
    except PttrustError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure of a model directory is one line, never a traceback
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if len(first) > 300:
            first = first[:299] + "…"
        hint = ""
        if Path(path).is_dir() and not any(Path(path).glob("*.safetensors")):
            hint = " (model directories must hold safetensors weights; pickled pytorch_model.bin is refused)"
        raise UsageError(f"cannot load model {name_or_path!r} from local files: {first}{hint}") from None
    if not tokenizer.is_fast:
        raise UsageError(f"model {name_or_path!r} has no fast tokenizer (tokenizer.json); offsets are needed")
    model.eval().requires_grad_(False)
    if cpu_int8:
        model = quantize_int8(model)
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    num_layers = cfg.num_hidden_layers if max_layer is None else cfg.pttrust_full_num_layers
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name_or_path,
        sha256=sha256,
        num_layers=num_layers,
        d_model=cfg.hidden_size,
        device=target,
        max_layer=max_layer,
    )


def quantize_int8(model):
    """Dynamic int8 quantization of every ``nn.Linear`` (weights int8 per tensor, activations
    quantized on the fly, float32 out), in place; the embeddings and norms stay float32."""
    import warnings

    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch.ao.quantization still works in torch 2.x but warns about its move to torchao.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def _truncate_config(config, up_to_layer: int) -> int:
    """Cut the (text) config to the blocks hidden_states[up_to_layer] needs; returns the deepest
    readable layer. Layer 0 (the embeddings) keeps one block: its input is what the hook reads."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    full = text.num_hidden_layers
    if up_to_layer > full:
        raise UsageError(f"layer {up_to_layer} is out of range: the model has layers 0..{full} (0 = embeddings)")
    keep = max(up_to_layer, 1)
    text.pttrust_full_num_layers = full
    text.num_hidden_layers = keep
    if isinstance(getattr(text, "layer_types", None), list):
        text.layer_types = text.layer_types[:keep]
    return up_to_layer


def _drop_final_norm(model, config, max_layer: int) -> None:
    """Below the last layer the final norm is never run (the forward stops at the layer read)."""
    import torch

    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if max_layer < text.pttrust_full_num_layers and isinstance(getattr(model, "norm", None), torch.nn.Module):
        model.norm = torch.nn.Identity()


def _hf_snapshot(name: str) -> Path:
    """The local snapshot directory of an HF id (never fetched)."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(name, local_files_only=True))


_SAFETENSORS_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64", "I64": "int64"}


def mapped_safetensors(directory: Path) -> dict:
    """{name: tensor} of every ``*.safetensors`` file of ``directory``, each a view into the file mapped
    read-only-private (copy on write): nothing is read until a tensor is used, and tensors never
    used (upper layers, the LM head) are never read at all."""
    import torch

    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise UsageError(f"{directory} holds no safetensors weights (pickled pytorch_model.bin is refused)")
    tensors = {}
    for file in files:
        with open(file, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        size = file.stat().st_size
        # cast: the stub of from_file is _StorageBase's (-> _StorageBase | TypedStorage), but called on
        # UntypedStorage it returns an UntypedStorage.
        storage = cast("torch.UntypedStorage", torch.UntypedStorage.from_file(str(file), shared=False, nbytes=size))
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            dtype = getattr(torch, _SAFETENSORS_DTYPES.get(meta["dtype"], ""), None)
            if dtype is None:
                raise UsageError(f"{file.name}: tensor {name} has unsupported dtype {meta['dtype']}")
            begin, end = meta["data_offsets"]
            # The bytes of one tensor: a 1-D uint8 view, contiguous, so its stride is (1,).
            raw = torch.empty(0, dtype=torch.uint8).set_(storage, 8 + n + begin, (end - begin,), (1,))
            tensors[name] = raw.view(dtype).view(meta["shape"])
    return tensors


def _build_up_to(path: Path, config, max_layer: int, dtype, target):
    """The base model of ``config`` (already truncated) built on the meta device, its weights taken
    from the mapped safetensors with ``assign``: nothing is randomly initialised and then overwritten,
    and checkpoint tensors the truncated model has no place for are never read. Non-persistent
    buffers (rotary frequencies), which no checkpoint holds, are computed by building their module."""
    import torch
    from transformers import AutoModel

    with torch.device("meta"):
        model = AutoModel.from_config(config, dtype=dtype)
    _drop_final_norm(model, config, max_layer)
    wanted = model.state_dict(keep_vars=True)
    embeddings = model.get_input_embeddings()
    embedding_key = next((k for k, v in wanted.items() if v is embeddings.weight), None)
    prefix = f"{model.base_model_prefix}."
    state = {}
    for key, tensor in mapped_safetensors(path).items():
        name = key[len(prefix) :] if key.startswith(prefix) else key
        if name not in wanted or name in state:
            continue
        if name == embedding_key and target.type == "cpu":
            # The table is read a row per token: it stays a view of the file in its stored dtype and
            # its rows are cast when looked up (the hook below), so the 150k-row table is never
            # converted nor copied, only the pages of the tokens used are ever read.
            state[name] = tensor
        else:
            state[name] = tensor.to(device=target, dtype=dtype)  # a view of the file when nothing changes
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise UsageError(f"model weights lack {len(missing)} tensors the layers need (first: {missing[0]})")
    model.load_state_dict(state, strict=True, assign=True)
    if embeddings.weight.dtype != dtype:
        embeddings.register_forward_hook(lambda module, args, out: out.to(dtype))
    for module_name, module in list(model.named_modules()):
        if any(b.is_meta for b in module.buffers(recurse=False)):
            if not hasattr(module, "config"):
                raise UsageError(f"cannot build {type(module).__name__} ({module_name}) outside the meta device")
            with torch.device(target):
                fresh = type(module)(config=module.config)
            model.set_submodule(module_name, fresh)
    return model
