"""Click options generated from `bot.config.ReviewConfig`: the flag, its type (a choice field's words),
and its help from the field's docstring, so that a setting is described and constrained in one place
(after EleutherAI sparsify's ``__main__``, which builds its CLI from its config dataclasses).

Every generated option defaults to None, "not given": the config file, then the field's default,
decides (`ReviewConfig.replace` ignores None), so the default exists only on the dataclass.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from bot.config import CHOICES, ReviewConfig

F = TypeVar("F", bound=Callable[..., Any])

_CLICK_TYPES: dict[str, Any] = {"float": float, "int": int, "str": str}


@functools.cache
def _fields() -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(ReviewConfig)}


def _default_text(f: dataclasses.Field[Any]) -> str:
    value = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    return "unset" if value is None else json.dumps(value)


def config_option(name: str, *short: str, click_type: Any = None) -> Callable[[F], F]:
    """``--<name>`` (underscores as dashes) for the ReviewConfig field ``name``: type from the field
    (choices for a Literal field), help from its docstring plus the config key and its default.
    ``click_type`` overrides the type (e.g. a ``click.Path``)."""
    from bot.config_docs import field_docs

    f = _fields()[name]
    kind = str(f.type).replace(" ", "").split("|")[0]
    if click_type is None:
        click_type = click.Choice(CHOICES[name]) if name in CHOICES else _CLICK_TYPES[kind]
    doc = field_docs()[name]
    help_text = f"{doc} [config: {name}; default: {_default_text(f)}]"
    flag = "--" + name.replace("_", "-")
    return click.option(flag, *short, name, type=click_type, default=None, help=help_text)
