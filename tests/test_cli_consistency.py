"""Every command spells the shared options the same way, and the defaults agree with the shipped
bundle (layer, L1)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bot.cli import main
from bot.cli.defaults import DEFAULT_L1, DEFAULT_LAYER

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "risk_core" / "weights" / "qwen2.5-coder-0.5b"
SHORT = {"--model": "-m", "--out": "-o", "--bundle": "-b", "--quiet": "-q", "--layer": "-l"}


def _commands(group: click.Group, prefix: str = ""):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", cmd


def test_shared_options_have_the_same_short_form_everywhere():
    missing = []
    for name, cmd in _commands(main):
        for param in cmd.params:
            opts = set(param.opts) | set(param.secondary_opts)
            for long, short in SHORT.items():
                if long in opts and short not in opts:
                    missing.append(f"{name} {long} (no {short})")
    assert not missing, missing


def test_defaults_agree_with_the_shipped_bundle():
    assert DEFAULT_LAYER == json.loads((SHIPPED / "cfg.json").read_text())["layer"]
    probe = json.loads((SHIPPED / "probe" / "cfg.json").read_text())
    linear = probe if "l1" in probe else json.loads((SHIPPED / "raw_probe" / "cfg.json").read_text())
    assert DEFAULT_L1 == linear["l1"]
    defaults = {}
    for name, cmd in _commands(main):
        for param in cmd.params:
            if param.name in ("layer", "l1") and param.default is not None:
                defaults[(name, param.name)] = param.default
    assert defaults[("encode", "layer")] == DEFAULT_LAYER
    assert defaults[("pretrain harvest", "layer")] == DEFAULT_LAYER
    assert defaults[("bind", "l1")] == DEFAULT_L1 and defaults[("sweep-layers", "l1")] == DEFAULT_L1
