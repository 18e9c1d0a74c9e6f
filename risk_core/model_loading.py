"""Loading a model (registry name, local directory or locally cached HF id) ready for encoding: only
the blocks up to the layer read, weights mapped from safetensors, optionally int8 on CPU. The weights'
origin and the one-time conversion into the cache are ``risk_core.models``.

Two engines. ``torch`` (the review's: a Qwen2 stack up to a layer, on CPU, in float32, bfloat16 or
int8) is ``risk_core.qwen2`` and ``risk_core.tokenizer``: it never imports transformers, and it maps a
copy of the blocks in the compute dtype that the first load writes beside the weights
(``FLOAT32_BLOCKS``, ``BFLOAT16_BLOCKS``), so a load converts nothing. ``transformers`` is everything
else (CUDA and bitsandbytes, the whole causal LM with its head, other architectures);
``load_model(engine=...)`` picks one or says why it cannot."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from risk_core.errors import PttrustError, UsageError
from risk_core.models import DEFAULT_MODEL, REGISTRY, prepare, quiet_transformers

if TYPE_CHECKING:  # torch and transformers are heavy; import them only where a model is touched
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from risk_core.tokenizer import FastTokenizer

log = logging.getLogger(__name__)

Engine = Literal["torch", "transformers"]
ENGINE_CHOICES = ("auto", "torch", "transformers")
TORCH_DTYPES = ("float32", "bfloat16")
"""What the torch engine computes in (int8 quantization computes in float32)."""


class Encoder(Protocol):
    """What the encoder and its callers use of a loaded model, whichever engine built it: a
    transformers ``PreTrainedModel`` or a ``risk_core.qwen2.Qwen2Model``."""

    @property
    def config(self) -> Any:
        """hidden_size, intermediate_size, num_attention_heads, num_key_value_heads, ..."""
        ...

    @property
    def base_model(self) -> torch.nn.Module:
        """The decoder stack: ``.layers`` (its blocks) and ``.norm``, called with ``input_ids``,
        ``attention_mask``, ``position_ids``, ``use_cache`` (its output has ``last_hidden_state``)."""
        ...

    def get_input_embeddings(self) -> torch.nn.Module: ...

    def get_output_embeddings(self) -> torch.nn.Module | None: ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


class TextTokenizer(Protocol):
    """What the encoder and its callers use of a tokenizer: a transformers fast tokenizer or a
    ``risk_core.tokenizer.FastTokenizer``."""

    @property
    def is_fast(self) -> bool: ...

    @property
    def pad_token_id(self) -> int | None: ...

    def __call__(self, text: Any, *args: Any, **kwargs: Any) -> Mapping[str, Any]:
        """``input_ids`` (and, with ``return_offsets_mapping=True``, ``offset_mapping``) of a text or
        of each text of a list."""
        ...

    def decode(self, token_ids: list[int], skip_special_tokens: bool = False) -> str | list[str]: ...


@dataclass
class LoadedModel:
    model: Encoder
    """A causal LM (Qwen2ForCausalLM or any AutoModelForCausalLM), in eval mode, no grads; or, loaded
    up to a layer, the base model (transformers') or the ``risk_core.qwen2`` stack (engine torch)."""
    tokenizer: TextTokenizer
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

    engine: Engine = "transformers"
    """Which code runs the model: transformers' (``model`` is a ``PreTrainedModel``, ``tokenizer``
    transformers') or ``risk_core.qwen2`` and ``risk_core.tokenizer`` (no transformers import)."""

    @property
    def deepest_layer(self) -> int:
        return self.num_layers if self.max_layer is None else self.max_layer

    @property
    def dtype(self) -> str:
        """What the blocks compute in ("float32", "bfloat16", ...): the first block's first parameter's
        dtype (the embedding table may be stored in another; int8 blocks compute in float32)."""
        from risk_core.encode import decoder_layers

        return str(next(decoder_layers(self.model)[0].parameters()).dtype).removeprefix("torch.")

    @property
    def causal_lm(self) -> PreTrainedModel:
        """The transformers model, for what only it has (``generate``, the LM head)."""
        if self.engine != "transformers":
            raise UsageError(f"{self.name} was loaded by the {self.engine} engine: it has no generate nor LM head")
        return cast("PreTrainedModel", self.model)

    @property
    def hf_tokenizer(self) -> PreTrainedTokenizerBase:
        """The transformers tokenizer, for what only it has (padding, tensors, the chat template)."""
        if self.engine != "transformers":
            raise UsageError(f"{self.name} was loaded by the {self.engine} engine: its tokenizer is tokenizers' own")
        return cast("PreTrainedTokenizerBase", self.tokenizer)


# --------------------------------------------------------------------------------------------------
# Loading


def _looks_like_hf_id(name: str) -> bool:
    """``org/model`` that is not a path on disk: worth a look in the local HF cache (never fetched)."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


QUANTIZE_CHOICES = ("auto", "nf4", "int8", "none")
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")


def review_dtype(device: str = "auto", quantize: str = "auto") -> str:
    """What a review computes in, for ``dtype`` auto: bfloat16 where it is fast (CUDA, and CPUs with a
    bfloat16 fast path: ``fast_cpu_bf16``), float32 elsewhere and under int8 (which computes in float32).
    Line risks move by thousandths between the two (docs/performance.md)."""
    import torch

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if quantize == "int8" and not cuda:
        return "float32"
    return "bfloat16" if cuda or fast_cpu_bf16() else "float32"


def fast_cpu_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware: AMX tiles (Xeon Sapphire Rapids and
    later; ~3.5x float32's speed) or AVX-512 BF16 dot products without AMX (AMD Zen 4, Xeon Cooper
    Lake; ~2.8x on a 2-core Zen 4). Either way line risks move by a few thousandths
    (docs/performance.md). Without either, bfloat16 is emulated, orders of magnitude slower than float32."""
    import torch

    def supported(name: str) -> bool:
        probe = getattr(torch.cpu, name, None)
        return bool(probe and probe())

    return supported("_is_amx_tile_supported") or supported("_is_avx512_bf16_supported")


_KEEP_FREED_BYTES = 1 << 30
"""Blocks up to this size are served from (and freed back to) the heap, not mapped afresh each time."""


def keep_freed_memory() -> bool:
    """Let this process's C heap keep the memory torch frees on CPU instead of handing it back.

    A forward pass allocates and frees tensors of tens of MB per block (the MLP's [tokens,
    intermediate] products). glibc serves each of those with a fresh ``mmap`` and unmaps it on free,
    so every one costs page faults and zeroing, which in bfloat16 took as long as the elementwise
    work itself (a 12-block pass of 2,048 tokens: 0.87 s, 0.65 s with this; docs/performance.md).
    Raising glibc's mmap and trim thresholds keeps freed blocks for reuse (the ``MALLOC_*`` variables
    do the same but only when set before the process starts). The process's resident memory stays at
    its peak instead of shrinking between passes; the peak itself does not grow. True where it took
    effect (glibc); elsewhere nothing changes."""
    import ctypes
    import ctypes.util

    global _heap_kept
    if _heap_kept is None:
        _heap_kept = False
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name) if name else None
            mallopt = getattr(libc, "mallopt", None)
        except OSError:
            mallopt = None
        if mallopt is not None:
            m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
            _heap_kept = bool(mallopt(m_mmap_threshold, _KEEP_FREED_BYTES)) and bool(
                mallopt(m_trim_threshold, 2 * _KEEP_FREED_BYTES)
            )
    return _heap_kept


_heap_kept: bool | None = None


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    device: str = "auto",
    quantize: str = "auto",
    dtype: str = "auto",
    *,
    up_to_layer: int | None = None,
    verify: bool = False,
    say: Callable[[str], None] | None = None,
    engine: str = "auto",
) -> LoadedModel:
    """Load a registry model (preparing its cache on first use), a local directory or an HF id that is
    already in the local HF cache. CUDA defaults to bitsandbytes nf4, CPU to float32; ``--quantize
    int8`` on CPU is PyTorch dynamic quantization of the linear layers (int8 weights, float32
    activations); ``dtype`` auto is bfloat16 on CUDA, float32 on CPU (the review asks for bfloat16
    where the CPU has a fast path for it: ``review_dtype``). ``up_to_layer``: the deepest
    hidden_states index that will be read, when no logits are needed (features without surprise):
    only the blocks up to it are built and loaded, as the base model (see ``LoadedModel.max_layer``).
    ``say``: the caller's progress reporter (the one-time conversion reports through it). ``engine``:
    ``auto`` takes ``torch`` (no transformers import, see the module doc) where it can serve the
    request, else ``transformers``; naming one insists on it."""
    import torch

    if engine not in ENGINE_CHOICES:
        raise UsageError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINE_CHOICES)}")
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
    if target.type == "cpu":
        keep_freed_memory()
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

    if engine != "transformers":
        why_not = "" if up_to_layer is not None else "it serves hidden states up to a layer, not the causal LM"
        if not why_not and (target.type != "cpu" or quantize not in ("none", "int8") or dtype not in TORCH_DTYPES):
            why_not = (
                f"it runs on cpu in float32, bfloat16 or int8 (asked: {target.type}, {dtype}, quantize {quantize})"
            )
        if not why_not:
            assert up_to_layer is not None, "checked above"
            lean = _load_torch_engine(name_or_path, path, up_to_layer, cpu_int8, say, dtype)
            if isinstance(lean, LoadedModel):
                lean.sha256 = sha256
                return lean
            why_not = lean
        if engine == "torch":
            raise UsageError(f"the torch engine cannot load {name_or_path!r}: {why_not}")
        log.debug("loading %s with transformers: %s", name_or_path, why_not)

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
        first = _first_line(err)
        hint = ""
        if Path(path).is_dir() and not _weight_files(Path(path)):  # the engine's own block copies are no weights
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


def _first_line(err: Exception, limit: int = 300) -> str:
    """The first line of an error's message (its type's name when it has none), at most ``limit``
    characters: what a failed load says in its one-line error."""
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    return first if len(first) <= limit else first[: limit - 1] + "…"


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


FLOAT32_BLOCKS = "blocks-float32.safetensors"
"""The float32 copy of a model directory's blocks (and final norm) that the torch engine maps: written
by the first load that needs it, beside the weights, under the tensors' own names, with the size and
mtime of the source files in its metadata so that changed weights rebuild it."""
BFLOAT16_BLOCKS = "blocks-bfloat16.safetensors"
"""The same copy in bfloat16, for the torch engine's ``dtype="bfloat16"``."""
_BLOCK_COPIES = {"float32": (FLOAT32_BLOCKS, "F32", 4), "bfloat16": (BFLOAT16_BLOCKS, "BF16", 2)}
"""dtype -> (file, safetensors dtype, bytes per element) of the torch engine's copies of the blocks."""


def _weight_files(directory: Path) -> list[Path]:
    copies = {file for file, _, _ in _BLOCK_COPIES.values()}
    return sorted(f for f in directory.glob("*.safetensors") if f.name not in copies)


def _read_header(file: Path) -> tuple[int, dict]:
    """(header length, header) of a safetensors file."""
    with open(file, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        return n, json.loads(fh.read(n))


def _map_file(file: Path, header_len: int, header: dict) -> dict:
    """{name: tensor} of one safetensors file, each a view into the file mapped copy-on-write."""
    import torch

    # cast: the stub of from_file is _StorageBase's (-> _StorageBase | TypedStorage), but called on
    # UntypedStorage it returns an UntypedStorage.
    size = file.stat().st_size
    storage = cast("torch.UntypedStorage", torch.UntypedStorage.from_file(str(file), shared=False, nbytes=size))
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype = getattr(torch, _SAFETENSORS_DTYPES.get(meta["dtype"], ""), None)
        if dtype is None:
            raise UsageError(f"{file.name}: tensor {name} has unsupported dtype {meta['dtype']}")
        begin, end = meta["data_offsets"]
        if 8 + header_len + end > size:
            raise UsageError(f"{file.name} is truncated (tensor {name} ends past the end of the file)")
        # The bytes of one tensor: a 1-D uint8 view, contiguous, so its stride is (1,).
        raw = torch.empty(0, dtype=torch.uint8).set_(storage, 8 + header_len + begin, (end - begin,), (1,))
        tensors[name] = raw.view(dtype).view(meta["shape"])
    return tensors


def mapped_safetensors(directory: Path) -> dict:
    """{name: tensor} of every ``*.safetensors`` file of ``directory`` (the weights, not the torch
    engine's ``FLOAT32_BLOCKS``), each a view into the file mapped read-only-private (copy on write):
    nothing is read until a tensor is used, and tensors never used (upper layers, the LM head) are
    never read at all."""
    files = _weight_files(directory)
    if not files:
        raise UsageError(f"{directory} holds no safetensors weights (pickled pytorch_model.bin is refused)")
    tensors = {}
    for file in files:
        tensors.update(_map_file(file, *_read_header(file)))
    return tensors


def _source_stamp(directory: Path) -> str:
    """Name, size and mtime of each weight file: what a float32 copy was made from."""
    return ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in _weight_files(directory))


def block_copies(
    directory: Path, source: dict, names: list[str], dtype: str = "float32", say: Callable[[str], None] | None = None
) -> dict:
    """``{name: tensor in dtype}`` of the source tensors ``names`` (stored in another dtype), mapped from
    the directory's copy in that dtype (``FLOAT32_BLOCKS``, ``BFLOAT16_BLOCKS``), so that a load converts
    nothing. The copy is (re)written when it is missing, was made from other weights, or lacks some of
    ``names`` (it then keeps what it held, so loads up to different layers share one file); where it
    cannot be written (a read-only directory, a full disk) the tensors are converted in memory."""
    import torch

    name, _, _ = _BLOCK_COPIES[dtype]
    file = directory / name
    fmt = f"pttrust-{dtype}-blocks/1"
    stamp = _source_stamp(directory)
    held: list[str] = []
    try:
        n, header = _read_header(file)
        meta = header.get("__metadata__") or {}
        if meta.get("format") == fmt and meta.get("source") == stamp:
            held = [k for k in header if k != "__metadata__"]
            if set(names) <= set(held):
                mapped = _map_file(file, n, header)
                return {k: mapped[k] for k in names}
    except (OSError, ValueError, KeyError, UsageError):
        pass  # missing or unreadable: written below
    wanted = sorted({*names, *(k for k in held if k in source)})
    try:
        if say:
            say(f"writing a {dtype} copy of {len(wanted)} tensors to {file} (once; later loads map it)")
        _write_copy(file, source, wanted, {"format": fmt, "source": stamp}, dtype)
        mapped = _map_file(file, *_read_header(file))
        return {k: mapped[k] for k in names}
    except (PttrustError, OSError, ValueError) as err:
        log.info("converting the blocks to %s in memory: %s", dtype, err)
        return {k: source[k].to(getattr(torch, dtype)) for k in names}


def _write_copy(file: Path, source: dict, names: list[str], metadata: dict[str, str], dtype: str) -> None:
    """A safetensors file of ``source[names]`` in ``dtype``, written a tensor at a time (the converted
    model is never whole in memory), atomically."""
    import ctypes

    import torch

    from risk_core.atomic import atomic_path

    _, code, width = _BLOCK_COPIES[dtype]
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name in names:
        nbytes = source[name].numel() * width
        header[name] = {"dtype": code, "shape": list(source[name].shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the data starts 8-aligned, as safetensors writes it
    with atomic_path(file) as tmp, open(tmp, "wb") as fh:
        fh.write(len(blob).to_bytes(8, "little"))
        fh.write(blob)
        for name in names:
            t = source[name].to(getattr(torch, dtype)).contiguous()
            fh.write(ctypes.string_at(t.data_ptr(), t.numel() * width))


def _load_torch_engine(
    name: str,
    path: str | Path,
    up_to_layer: int,
    cpu_int8: bool,
    say: Callable[[str], None] | None,
    dtype: str = "float32",
) -> LoadedModel | str:
    """The torch engine's load of ``path`` up to ``up_to_layer``, or why it cannot serve it (then the
    caller may take transformers). Never imports transformers."""
    from risk_core import qwen2
    from risk_core.tokenizer import FastTokenizer, UnsupportedTokenizer

    directory = Path(path)
    if not directory.is_dir():
        if not _looks_like_hf_id(str(path)):
            return f"{path} is not a directory"
        try:
            directory = _hf_snapshot(str(path))
        except Exception as err:  # noqa: BLE001 - not in the local HF cache: transformers says it in one line
            return f"no local snapshot of {path} ({type(err).__name__})"
    try:
        cfg = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f"config.json is unreadable ({type(err).__name__})"
    if not isinstance(cfg, dict) or not isinstance(cfg.get("num_hidden_layers"), int):
        return "config.json has no num_hidden_layers"
    full = cfg["num_hidden_layers"]
    if up_to_layer > full:
        raise UsageError(f"layer {up_to_layer} is out of range: the model has layers 0..{full} (0 = embeddings)")
    blocks = max(up_to_layer, 1)  # layer 0 (the embeddings) is what enters the first block: its hook reads it
    problem = qwen2.unsupported(cfg, blocks)
    if problem:
        return problem
    if not _weight_files(directory):
        return "no safetensors weights"
    try:
        tokenizer: FastTokenizer = FastTokenizer.qwen2(directory)
    except UnsupportedTokenizer as err:
        return f"tokenizer: {err}"
    try:
        config = qwen2.Qwen2Config.from_dict(cfg)
        model = _build_qwen2(directory, config, blocks, final_norm=up_to_layer == full, say=say, dtype=dtype)
    except PttrustError:
        raise
    except Exception as err:  # noqa: BLE001 - as the transformers path: one line, never a traceback
        raise UsageError(f"cannot load model {name!r} from {directory}: {_first_line(err)}") from None
    if cpu_int8:
        model = quantize_int8(model)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        sha256=None,
        num_layers=full,
        d_model=config.hidden_size,
        device=next(model.parameters()).device,
        max_layer=up_to_layer,
        engine="torch",
    )


def _build_qwen2(
    directory: Path, config, blocks: int, final_norm: bool, say: Callable[[str], None] | None, dtype: str = "float32"
):
    """The ``risk_core.qwen2`` stack of ``blocks`` blocks, its parameters mapped: the embedding table
    from the weights as stored (its rows are cast when looked up), the blocks from their copy in
    ``dtype`` (the dtype the stack computes in)."""
    import torch

    from risk_core.qwen2 import Qwen2Model

    source = mapped_safetensors(directory)
    wanted = ["embed_tokens.weight"] + [
        k.removeprefix("model.")
        for k in source
        if k.removeprefix("model.").startswith(tuple(f"layers.{i}." for i in range(blocks)))
    ]
    if final_norm:
        wanted.append("norm.weight")
    key_of = {}
    for key in source:
        key_of.setdefault(key.removeprefix("model."), key)  # "model.x" and "x" alike; the first wins
    missing = [w for w in wanted if w not in key_of]
    if missing:
        raise UsageError(f"model weights lack {len(missing)} tensors the layers need (first: {missing[0]})")
    state = {w: source[key_of[w]] for w in wanted}
    convert = [key_of[w] for w in wanted if w != "embed_tokens.weight" and state[w].dtype != getattr(torch, dtype)]
    if convert:
        copies = block_copies(directory, source, convert, dtype, say)
        state.update({w: copies[key_of[w]] for w in wanted if key_of[w] in copies})
    return Qwen2Model(config, state, blocks, final_norm=final_norm)


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
