"""The choice fields of the configs, as Literal types and the tuples of their values (torch-free).

A config field typed with one of these is checked against it in the config's ``__post_init__``; CLIs
offer the same tuples, so a value exists in one place.
"""

from __future__ import annotations

from typing import Literal, get_args

Pooling = Literal["mean", "last", "max"]
"""How a line's token features become one row (``encode.pool_lines``)."""
POOLING_MODES: tuple[Pooling, ...] = get_args(Pooling)

Framing = Literal["bare", "review"]
"""What the model reads: the code alone, or the code wrapped in a code-review chat prompt."""
FRAMINGS: tuple[Framing, ...] = get_args(Framing)

Reading = Literal["plain", "echo"]
"""Which reading of a window the features come from: ``plain`` (the code read once: a line's state has
seen only the lines above it) or ``echo`` (the code read twice in one pass, states of the second
reading: every line's state has seen the whole window, at twice the tokens; ``EncodeConfig.echo``)."""
READINGS: tuple[Reading, ...] = get_args(Reading)

BindFraming = Literal["bare", "review", "auto"]
"""A framing, or ``auto``: bind tries each and keeps the one with the higher validation AUROC."""
BIND_FRAMINGS: tuple[BindFraming, ...] = get_args(BindFraming)

FeatureSet = Literal["sae", "sae+surprise", "sae+raw", "raw", "raw+surprise"]
"""A probe's input: SAE latents or raw states, optionally with the line's token surprise; ``sae+raw``
is the latents followed by the raw states they encode (reasons read the latent part)."""
FEATURE_SETS: tuple[FeatureSet, ...] = get_args(FeatureSet)

SaeActivation = Literal["topk", "batchtopk"]
"""How an SAE picks a token's latents: exactly k (``topk``), or k on average over a training batch and
a learned threshold in use (``batchtopk``; ``SaeConfig.activation``)."""
SAE_ACTIVATIONS: tuple[SaeActivation, ...] = get_args(SaeActivation)

ProbeKind = Literal["logistic", "mlp"]
"""The line probe: sparse logistic regression, or an MLP with one hidden layer."""
PROBE_KINDS: tuple[ProbeKind, ...] = get_args(ProbeKind)


def check_choice(field: str, value: object, allowed: tuple[str, ...]) -> None:
    """A one-line UsageError when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        from risk_core.errors import UsageError

        raise UsageError(f"unknown {field} {value!r} ({' | '.join(allowed)})")
