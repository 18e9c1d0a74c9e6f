"""The artifact bundle: everything the scorer needs next to a model, in one directory.

```
bundle/
  cfg.json               ArtifactConfig
  sae/                   SparseCoder (cfg.json + sae.safetensors)
  probe/                 RiskProbe or ContextProbe on SAE line features (cfg.json + probe.safetensors)
  raw_probe/             optional: the same probe on raw pooled states (an evaluation baseline)
  latents.json           optional: {latent index: {"label", "clarity", "terms", "examples"}, "_method": {...}}
  metrics.json           training/validation metrics, data sha256, seed
```
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from risk_core.choices import (
    FEATURE_SETS,
    FRAMINGS,
    POOLING_MODES,
    READINGS,
    FeatureSet,
    Framing,
    Pooling,
    Reading,
    check_choice,
)
from risk_core.errors import UsageError

if TYPE_CHECKING:
    from risk_core.context_probe import ContextProbe
    from risk_core.encode import EncodeConfig
    from risk_core.probe import RiskProbe
    from risk_core.sae import SparseCoder

CFG_FILE = "cfg.json"
FORMAT_VERSION = 1


@dataclass
class ArtifactConfig:
    model_name: str
    """Model the bundle was bound on (registry name, HF id or path as given)."""
    model_sha256: str | None
    """sha256 of that model's source weights where known; the scorer refuses a different model."""
    d_model: int
    """Width of the model's hidden states."""
    layer: int = 12
    """hidden_states index the SAE and probe read."""
    pooling: Pooling = "mean"
    """How token features become line features (encode.pool_lines mode)."""
    framing: Framing = "bare"
    """bare (code alone) | review (wrapped in a code-review chat prompt)."""
    features: FeatureSet = "sae"
    """Probe input: sae | sae+surprise (see features.FEATURE_SETS)."""
    languages: list[str] = field(default_factory=list)
    """Languages the probe was bound on (others are cross-language use)."""
    format_version: int = FORMAT_VERSION
    """Bundle layout version."""
    reading: Reading = "plain"
    """plain (each window read once) | echo (read twice in one pass; the second reading's states)."""

    def __post_init__(self) -> None:
        check_choice("pooling", self.pooling, POOLING_MODES)
        check_choice("framing", self.framing, FRAMINGS)
        check_choice("probe features", self.features, FEATURE_SETS)
        check_choice("reading", self.reading, READINGS)

    def encode_config(self, **overrides) -> EncodeConfig:
        """How the model is run for this bundle's features: its layer, pooling and reading, and the
        logits only when its features use surprise. ``overrides``: other ``EncodeConfig`` fields."""
        from risk_core.encode import EncodeConfig

        settings = {
            "layer": self.layer,
            "pooling": self.pooling,
            "echo": self.reading == "echo",
            "surprise": "surprise" in self.features,
        }
        return EncodeConfig(**{**settings, **overrides})


def _optional_json(path: Path):
    """An optional JSON file of the bundle: None when absent, one-line UsageError when unreadable."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: unreadable bundle file ({err})") from None


def recorded_threshold(metrics: dict | None) -> float | None:
    """A bundle's calibrated finding threshold (metrics.json ``threshold``), where it records one."""
    value = (metrics or {}).get("threshold")
    return float(value) if isinstance(value, (int, float)) else None


def bundle_threshold(path: str | Path) -> float | None:
    """`recorded_threshold` of the bundle at ``path``, from its metrics.json alone (no weights read)."""
    return recorded_threshold(_optional_json(Path(path) / "metrics.json"))


def check_bundle_dir(path: str | Path) -> Path:
    """``path`` if it holds a bundle's config, else a one-line error: cheap, so that a wrong bundle is
    refused before (or without) the model's loading."""
    path = Path(path)
    if not (path / CFG_FILE).is_file():
        raise UsageError(f"{path}: not a bundle (no {CFG_FILE})")
    return path


@dataclass
class Bundle:
    cfg: ArtifactConfig
    sae: SparseCoder
    probe: RiskProbe | ContextProbe
    raw_probe: RiskProbe | None = None
    latents: dict | None = None
    metrics: dict | None = None
    path: Path | None = None
    sae_source: Path | None = None
    """Directory the SAE was loaded from: copied verbatim, so its cfg.json keeps its training record."""

    def save(self, path: str | Path) -> None:
        import shutil

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / CFG_FILE).write_text(json.dumps(asdict(self.cfg), indent=2) + "\n")
        src = Path(self.sae_source) if self.sae_source else None
        if src is not None and (src / "cfg.json").is_file() and (src / "sae.safetensors").is_file():
            (path / "sae").mkdir(exist_ok=True)
            if src.resolve() != (path / "sae").resolve():
                for name in ("cfg.json", "sae.safetensors"):
                    shutil.copyfile(src / name, path / "sae" / name)
        else:
            self.sae.save(path / "sae")
        self.probe.save(path / "probe")
        if self.raw_probe is not None:
            self.raw_probe.save(path / "raw_probe")
        if self.latents is not None:
            (path / "latents.json").write_text(json.dumps(self.latents, indent=2) + "\n")
        if self.metrics is not None:
            (path / "metrics.json").write_text(json.dumps(self.metrics, indent=2) + "\n")
        self.path = path

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> Bundle:
        from risk_core.probe import RiskProbe, load_probe
        from risk_core.sae import SparseCoder

        path = check_bundle_dir(path)
        try:
            raw = json.loads((path / CFG_FILE).read_text())
            known = {f.name for f in fields(ArtifactConfig)}
            cfg = ArtifactConfig(**{k: v for k, v in raw.items() if k in known})
        except (ValueError, TypeError, UsageError) as err:
            raise UsageError(f"{path / CFG_FILE}: unreadable bundle config ({err})") from None
        sae = SparseCoder.load(path / "sae", device=device, expected_d_in=cfg.d_model)
        probe = load_probe(path / "probe", device=device)
        raw_probe = RiskProbe.load(path / "raw_probe", device=device) if (path / "raw_probe").is_dir() else None
        # A probe bound on another SAE would only fail deep in a matmul at scoring time.
        extra = 3 if cfg.features.endswith("+surprise") else 0  # features.SURPRISE_NAMES
        for name, p, width in (
            ("probe", probe, sae.num_latents + extra + (cfg.d_model if cfg.features == "sae+raw" else 0)),
            ("raw_probe", raw_probe, cfg.d_model + extra),
        ):
            if p is not None and p.cfg.n_features != width:
                raise UsageError(
                    f"{path / name} reads {p.cfg.n_features} features but this bundle's "
                    f"{cfg.features} features are {width} wide (bound on another SAE?)"
                )
        latents, metrics = _optional_json(path / "latents.json"), _optional_json(path / "metrics.json")
        return cls(cfg, sae, probe, raw_probe, latents, metrics, path, sae_source=path / "sae")

    def check_compatible(self, loaded) -> None:
        """Refuse (one line) a model other than the one the bundle was bound on."""
        c = self.cfg
        if loaded.d_model != c.d_model:
            raise UsageError(
                f"bundle was bound on a model with d_model={c.d_model}, but {loaded.name} has d_model={loaded.d_model}"
            )
        if c.model_sha256 and loaded.sha256 and loaded.sha256 != c.model_sha256:
            raise UsageError(
                f"bundle was bound on model sha256 {c.model_sha256[:12]}…, "
                f"but {loaded.name} has sha256 {loaded.sha256[:12]}…"
            )
        if c.layer > loaded.num_layers:
            raise UsageError(f"bundle reads layer {c.layer} but {loaded.name} has {loaded.num_layers} layers")

    def latent_label(self, index: int) -> str | None:
        """The latent's description, only where `risk_core.latent_labels.label_latents` found it clear.

        Entries written before descriptions were learned (no ``clarity``: bags of top tokens such
        as ``= / if / ' '``) are not descriptions and give None, so they are never shown."""
        if not self.latents:
            return None
        entry = self.latents.get(str(index))
        if not isinstance(entry, dict) or "clarity" not in entry:
            return None
        return entry.get("label") or None
