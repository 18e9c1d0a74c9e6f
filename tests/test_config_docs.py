"""The .pttrust.yml reference and JSON Schema are generated from ReviewConfig and kept current."""

from __future__ import annotations

import dataclasses
import json

import jsonschema
import pytest
import yaml

from bot.config import ReviewConfig, load_config
from bot.config_docs import REFERENCE, SCHEMA, field_docs, json_schema, reference_markdown
from risk_core.errors import UsageError


def test_docs_and_schema_are_up_to_date():
    hint = "regenerate with: python -m bot.config_docs"
    assert REFERENCE.read_text(encoding="utf-8") == reference_markdown(), hint
    assert json.loads(SCHEMA.read_text(encoding="utf-8")) == json_schema(), hint


def test_every_key_is_documented():
    docs = field_docs()
    text = REFERENCE.read_text(encoding="utf-8")
    for f in dataclasses.fields(ReviewConfig):
        assert docs.get(f.name), f.name
        assert f"| `{f.name}` |" in text


@pytest.mark.parametrize(
    "text, ok",
    [
        ("threshold: 0.7\nmax_comments: 4\nai_pr_labels: [bot-made]\n", True),
        ("authored_by: ai\nfail_above: null\n", True),
        ("", True),
        ("threshhold: 0.2\n", False),
        ("threshold: 1.5\n", False),
        ("skip_paths: vendor\n", False),
        ("authored_by: robots\n", False),
        ("max_comments: -1\n", False),
    ],
)
def test_the_schema_agrees_with_the_loader(tmp_path, text, ok):
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    path = tmp_path / ".pttrust.yml"
    path.write_text(text)
    assert validator.is_valid(yaml.safe_load(text)) == ok
    if ok:
        load_config(path)
    else:
        with pytest.raises(UsageError):
            load_config(path)
