"""Configs are the one source of their defaults: choice fields are Literal types checked on construction,
and every field says what it is in a docstring."""

from __future__ import annotations

import ast
import inspect
import json
from dataclasses import fields
from typing import get_args

import pytest

from risk_core import choices
from risk_core.artifacts import ArtifactConfig, Bundle
from risk_core.bind import BindConfig
from risk_core.corpus import CorpusConfig
from risk_core.data.from_git import Rules
from risk_core.errors import UsageError
from risk_core.harvest import HarvestConfig
from risk_core.latent_labels import LabelConfig
from risk_core.probe import ProbeConfig
from risk_core.sae import SaeConfig
from risk_core.train_sae import TrainConfig

CONFIGS = [
    ArtifactConfig,
    BindConfig,
    CorpusConfig,
    HarvestConfig,
    LabelConfig,
    ProbeConfig,
    Rules,
    SaeConfig,
    TrainConfig,
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.__name__)
def test_every_config_field_has_a_docstring(cfg):
    tree = ast.parse(inspect.getsource(cfg))
    body = tree.body[0].body
    documented = {
        st.target.id
        for st, nxt in zip(body, body[1:])
        if isinstance(st, ast.AnnAssign)
        and isinstance(nxt, ast.Expr)
        and isinstance(nxt.value, ast.Constant)
        and isinstance(nxt.value.value, str)
    }
    assert {f.name for f in fields(cfg)} - documented == set()


def test_choice_tuples_are_the_literal_types():
    assert choices.POOLING_MODES == get_args(choices.Pooling) == ("mean", "last", "max")
    assert choices.FRAMINGS == ("bare", "review") and choices.BIND_FRAMINGS == (*choices.FRAMINGS, "auto")
    assert choices.PROBE_KINDS == ("logistic", "mlp")
    from risk_core import features

    assert features.FRAMINGS is choices.FRAMINGS and features.FEATURE_SETS is choices.FEATURE_SETS


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ProbeConfig(kind="svm"), "unknown probe kind 'svm' (logistic | mlp)"),
        (lambda: BindConfig(framing="chat"), "unknown framing 'chat' (bare | review | auto)"),
        (lambda: BindConfig(features="raw"), "unknown probe features 'raw' (sae | sae+surprise)"),
        (lambda: BindConfig(pooling="sum"), "unknown pooling 'sum' (mean | last | max)"),
        (lambda: ArtifactConfig("m", None, 8, pooling="median"), "unknown pooling 'median'"),
        (lambda: ArtifactConfig("m", None, 8, framing="auto"), "unknown framing 'auto' (bare | review)"),
        (lambda: TrainConfig(save_dtype="int8"), "save dtype must be one of float32, float16, bfloat16"),
    ],
)
def test_a_bad_choice_is_one_usage_error_at_construction(make, message):
    with pytest.raises(UsageError) as err:
        make()
    assert message in str(err.value)


def test_a_bundle_with_an_unknown_pooling_is_refused_in_one_line(tmp_path):
    (tmp_path / "cfg.json").write_text(
        json.dumps({"model_name": "m", "model_sha256": None, "d_model": 8, "pooling": "sum"})
    )
    with pytest.raises(UsageError, match=r"cfg.json: unreadable bundle config \(unknown pooling 'sum'"):
        Bundle.load(tmp_path)
