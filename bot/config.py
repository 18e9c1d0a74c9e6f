"""`.pttrust.yml`: the review settings a team keeps in its repository, overridable by flags.

The file is read with yaml's node API so that every validation error names its line, e.g.
``.pttrust.yml:7: threshold must be a number between 0 and 1, got 'high'``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, cast, get_args

import yaml

from risk_core.errors import UsageError

DEFAULT_AI_AUTHOR_GLOBS = [
    "*[bot]",
    "copilot*",
    "devin-ai-integration*",
    "claude*",
    "cursor*",
    "codex*",
    "openai-codex*",
    "sweep-ai*",
    "aider*",
    "gemini-code-assist*",
    "jules*",
    "amazon-q-developer*",
    "codegen-sh*",
]
DEFAULT_SKIP_PATHS = [
    "vendor/**",
    "third_party/**",
    "node_modules/**",
    "dist/**",
    "build/**",
    "*.min.js",
    "*.min.css",
    "*.map",
    "*_pb2.py",
    "*_pb2_grpc.py",
    "*.pb.go",
    "*.generated.*",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "poetry.lock",
    "Cargo.lock",
    "go.sum",
]


AuthoredBy = Literal["all", "ai"]
FilterMode = Literal["added", "diff_context", "file"]
OnSkip = Literal["fail", "warn"]
AUTHORED_BY: tuple[AuthoredBy, ...] = get_args(AuthoredBy)
FILTER_MODES: tuple[FilterMode, ...] = get_args(FilterMode)
ON_SKIP: tuple[OnSkip, ...] = get_args(OnSkip)
CHOICES: dict[str, tuple[str, ...]] = {"authored_by": AUTHORED_BY, "filter_mode": FILTER_MODES, "on_skip": ON_SKIP}
"""The fields whose value is one of a few words, and those words (the Literal types above)."""
_CHOICE_TYPES = {"AuthoredBy", "FilterMode", "OnSkip"}


def is_authored_by(value: object) -> bool:
    return value in AUTHORED_BY


def authored_by_problem(value: object) -> str:
    """What is wrong with an ``authored_by`` value, for a message naming where it came from: the one
    wording of this check (the config key, ``--authored-by`` and the Action's input all use it)."""
    return f"must be 'ai' or 'all', got {value!r}"


class ConfigFieldError(UsageError):
    """A bad value of one config field (``field``), so that a caller can say where it was set."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


MARKER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
"""A job's marker name: it goes into an HTML comment (`bot.publish.markers`), so a short plain word."""


@dataclass
class ReviewConfig:
    threshold: float | None = None
    """A line is a finding when its calibrated risk is above this (0..1); unset: the bundle's calibrated
    default (set for one false finding per 300 clean lines of its validation repositories' real code, in
    every function length; MODEL_CARD.md gives what it makes on held-out code), 0.5 for a bundle without
    one."""
    max_comments: int = 10
    """At most this many findings are posted per review (0 = no limit)."""
    max_comments_per_file: int = 3
    """At most this many findings per file (0 = no limit)."""
    merge_gap: int = 1
    """Risky lines at most this far apart join one multi-line finding (1 = only adjacent lines)."""
    max_files: int = 200
    """Files past this many in a diff are skipped with a reason (0 = no limit)."""
    max_added_lines: int = 5000
    """Added lines past this many per review are skipped file by file with a reason (0 = no limit)."""
    max_file_bytes: int = 1_000_000
    """Files larger than this on the new side are skipped with a reason (0 = no limit)."""
    authored_by: AuthoredBy | None = None
    """Which added lines to score: all | ai (None: ai on GitHub, all for local diffs)."""
    ai_author_globs: list[str] = field(default_factory=lambda: list(DEFAULT_AI_AUTHOR_GLOBS))
    """Author/committer logins, names or email local parts marking AI commits (* ? wildcards, case-insensitive)."""
    ai_coauthor_globs: list[str] = field(default_factory=lambda: list(DEFAULT_AI_AUTHOR_GLOBS))
    """Names/emails in a Co-authored-by: trailer that mark a commit as AI-assisted."""
    ai_trailers: list[str] = field(default_factory=lambda: ["Generated-by", "Assisted-by"])
    """Commit trailers whose mere presence marks a commit as AI-written."""
    ai_pr_labels: list[str] = field(default_factory=lambda: ["ai-generated"])
    """PR labels that mark every added line of the PR as AI-written."""
    paths: list[str] = field(default_factory=list[str])
    """Only files matching one of these globs are reviewed (gitattributes-style; empty = every file)."""
    filter_mode: FilterMode = "added"
    """Lines scored in a changed file: added | diff_context (also the hunks' context lines) | file (all)."""
    skip_paths: list[str] = field(default_factory=lambda: list(DEFAULT_SKIP_PATHS))
    """Globs of generated/vendored paths that are never scored (.gitattributes is honoured too)."""
    model: str | None = None
    """Model registry name, HF directory or path (None: the embedded default)."""
    bundle: str | None = None
    """Artifact bundle directory (SAE + probe) matching the model (None: the packaged default)."""
    top_latents: int = 5
    """At most this many reasons (latents that push the risk up and have a clear description) per line."""
    fail_above: float | None = None
    """Exit 1 when a reported finding's risk is above this (None: never fail); lines under threshold never trip it."""
    on_skip: OnSkip | None = None
    """With a gate (fail_above): fail | warn when files with added lines went unscored (a limit, too
    large, unreadable). None: fail. A gate must not pass what it did not look at."""
    templates: str | None = None
    """Directory of jinja2 templates overriding the packaged ones (relative to the config file)."""
    marker: str = ""
    """Name of this job's hidden comment markers on GitHub (letters, digits, . _ -; empty: the default),
    so that two jobs reviewing one repository (a monorepo) each update only their own review comments,
    summary and check run (named "PtTrust risk review (<marker>)" unless a check name is set)."""

    def replace(self, **overrides: Any) -> ReviewConfig:
        """A copy with the given fields replaced; None values (flags not given) are ignored."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **given)  # validated by __post_init__

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigFieldError naming the field (`load_config` adds its line)."""

        def bad(name: str, msg: str) -> ConfigFieldError:
            return ConfigFieldError(name, f"{name} {msg}")

        for name in ("threshold",):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise bad(name, f"must be between 0 and 1, got {v}")
        if self.fail_above is not None and not 0.0 <= self.fail_above <= 1.0:
            raise bad("fail_above", f"must be between 0 and 1, got {self.fail_above}")
        for name in (
            "max_comments",
            "max_comments_per_file",
            "max_files",
            "max_added_lines",
            "max_file_bytes",
            "merge_gap",
            "top_latents",
        ):
            if getattr(self, name) < 0:
                raise bad(name, f"must be >= 0, got {getattr(self, name)}")
        if self.filter_mode not in FILTER_MODES:
            raise bad("filter_mode", f"must be one of {', '.join(FILTER_MODES)}, got {self.filter_mode!r}")
        if self.on_skip is not None and self.on_skip not in ON_SKIP:
            raise bad("on_skip", f"must be 'fail' or 'warn', got {self.on_skip!r}")
        if self.authored_by is not None and not is_authored_by(self.authored_by):
            raise bad("authored_by", authored_by_problem(self.authored_by))
        if self.marker and not MARKER_NAME.fullmatch(self.marker):
            raise bad("marker", f"must be letters, digits, '.', '_' or '-' (at most 40), got {self.marker!r}")


_FIELD_TYPES = {f.name: f.type for f in fields(ReviewConfig)}


def _convert(name: str, value: Any, loc: str) -> Any:
    """Check one value against its field's declared type (the annotations are strings)."""
    kind = _FIELD_TYPES[name].replace(" ", "")
    optional = "None" in kind
    if value is None:
        if optional:
            return None
        raise UsageError(f"{loc}: {name} must not be empty")
    if kind.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{loc}: {name} must be a number, got {value!r}")
        return float(value)
    if kind.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{loc}: {name} must be an integer, got {value!r}")
        return value
    if kind.startswith("list"):
        if not isinstance(value, list):
            raise UsageError(f"{loc}: {name} must be a list of strings")
        items = cast("list[object]", value)
        if not all(isinstance(v, str) for v in items):
            raise UsageError(f"{loc}: {name} must be a list of strings")
        return items
    if kind.startswith("str") or kind.split("|")[0] in _CHOICE_TYPES:  # a choice: checked by validate
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UsageError(f"{loc}: {name} must be a string, got {value!r}")
        return str(value)
    raise AssertionError(f"unhandled config type {kind}")  # a programming error, not user input


def load_config(path: str | Path | None) -> ReviewConfig:
    """Read `.pttrust.yml`; None or a missing default file gives the defaults.

    Unknown keys, wrong types and out-of-range values raise UsageError with ``file:line:``.
    """
    if path is None:
        return ReviewConfig()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"config not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read config {path}: {err}") from None
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UsageError(f"{path}{line}: invalid YAML: {problem}") from None
    if root is None:
        return ReviewConfig()
    if not isinstance(root, yaml.MappingNode):
        raise UsageError(f"{path}:{root.start_mark.line + 1}: the config must be a mapping of keys")
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    loader = yaml.SafeLoader("")
    for key_node, value_node in root.value:
        loc = f"{path}:{key_node.start_mark.line + 1}"
        key = key_node.value
        if key not in _FIELD_TYPES:
            known = ", ".join(sorted(_FIELD_TYPES))
            raise UsageError(f"{loc}: unknown key {key!r} (known: {known})")
        if key in values:
            raise UsageError(f"{loc}: duplicate key {key!r}")
        # types-PyYAML leaves the node parameter untyped.
        value: Any = loader.construct_object(value_node, deep=True)  # pyright: ignore[reportUnknownMemberType]
        values[key] = _convert(key, value, f"{path}:{value_node.start_mark.line + 1}")
        where[key] = f"{path}:{value_node.start_mark.line + 1}"
    if values.get("templates"):
        # Relative to the config file, so that a repo's .pttrust.yml works from any directory.
        values["templates"] = str((path.parent / values["templates"]).resolve())
    try:
        return ReviewConfig(**values)
    except ConfigFieldError as err:
        raise UsageError(f"{where[err.field]}: {err}" if err.field in where else str(err)) from None
