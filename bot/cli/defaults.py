"""CLI defaults taken from the bundle shipped for the embedded model, so that `pttrust encode`,
`pretrain harvest`, `bind` and `sweep-layers` read the layer and use the L1 that the shipped bundle
was made with (`risk_core/weights/<model>/cfg.json`, `probe/cfg.json`); a checkout without the bundle
falls back to layer 12 and L1 1e-3."""

from __future__ import annotations

import json
from pathlib import Path

FALLBACK_LAYER = 12
FALLBACK_L1 = 1e-3


def _shipped(name: str) -> dict:
    import risk_core
    from risk_core.models import DEFAULT_MODEL

    path = Path(risk_core.__file__).parent / "weights" / DEFAULT_MODEL / name
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


DEFAULT_LAYER: int = int(_shipped("cfg.json").get("layer", FALLBACK_LAYER))
"""hidden_states index the shipped bundle reads."""
# The L1 of the shipped bundle's linear probe: its probe, or beside a context probe its raw-state probe.
DEFAULT_L1: float = float(_shipped("probe/cfg.json").get("l1", _shipped("raw_probe/cfg.json").get("l1", FALLBACK_L1)))
"""L1 penalty the shipped bundle's probe was trained with."""
