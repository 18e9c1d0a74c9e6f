"""The tokenizer of a Qwen2 model directory without transformers: ``tokenizers.Tokenizer.from_file``
set up as transformers 5's ``AutoTokenizer.from_pretrained`` sets it up for a ``qwen2`` model.

For ``model_type`` qwen2 transformers always takes its ``Qwen2Tokenizer`` (whatever
``tokenizer_class`` the directory names, unless it ships its own code), which rebuilds the tokenizer
from the file's vocabulary and merges with its own normalizer (NFC), pre-tokenizer (the Qwen2 split
regex, then byte-level) and byte-level decoder, whatever the file says. The same components are set
here on the file's tokenizer, so ids and character offsets are the same (tests/test_qwen2.py compares
them on code with unicode, tabs and CRLF). Truncation and padding stay off, as transformers turns
them off for a call that asks for neither. A directory set up otherwise (its own tokenizer code,
other BPE settings, special tokens the file lacks) is `UnsupportedTokenizer`: load transformers'.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# The pre-tokenizer regex of transformers' Qwen2Tokenizer (tokenization_qwen2.PRETOKENIZE_REGEX).
QWEN2_PRETOKENIZE_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""  # noqa: E501
# Qwen2Tokenizer's defaults for the special tokens tokenizer_config.json does not name.
_QWEN2_DEFAULTS = {"unk_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
# The BPE settings Qwen2Tokenizer rebuilds its model with (an empty affix is no affix).
_QWEN2_BPE = {"dropout": None, "unk_token": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False}
_NAMED_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# transformers maps these checkpoints (config _name_or_path) to its plain backend instead.
_PLAIN_BACKEND_IDS = ("deepseek-ai/deepseek-r1-distill-llama-", "deepseek-ai/deepseek-coder-")


class UnsupportedTokenizer(ValueError):
    """The directory's tokenizer is set up by transformers in a way not reproduced here."""


def _content(token: Any) -> str | None:
    """A special token of tokenizer_config.json: a string or an AddedToken dict."""
    if isinstance(token, dict):
        return token.get("content")
    return token if isinstance(token, str) else None


class FastTokenizer:
    """What the encoder's callers use of a transformers fast tokenizer: ``__call__`` (ids and
    character offsets), ``pad_token_id``, ``decode``, ``is_fast``."""

    is_fast = True

    def __init__(self, backend: Tokenizer, pad_token_id: int | None):
        self.backend = backend
        self.pad_token_id = pad_token_id

    @classmethod
    def qwen2(cls, directory: Path) -> FastTokenizer:
        """The tokenizer of the Qwen2 model in ``directory`` (tokenizer.json, tokenizer_config.json)."""
        from tokenizers import Regex, decoders, normalizers, pre_tokenizers
        from tokenizers import Tokenizer as Backend
        from tokenizers.models import BPE

        directory = Path(directory)
        file = directory / "tokenizer.json"
        if not file.is_file():
            raise UnsupportedTokenizer(f"{directory} has no tokenizer.json")
        try:
            config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
            name = json.loads((directory / "config.json").read_text(encoding="utf-8")).get("_name_or_path")
        except (OSError, ValueError, AttributeError):
            raise UnsupportedTokenizer(f"{directory} has no readable tokenizer_config.json / config.json") from None
        if "auto_map" in config:
            raise UnsupportedTokenizer("the directory ships its own tokenizer code")
        if isinstance(name, str) and name.lower().startswith(_PLAIN_BACKEND_IDS):
            raise UnsupportedTokenizer(f"transformers loads {name}'s tokenizer with another class")
        if (directory / "special_tokens_map.json").exists() or config.get("added_tokens_decoder"):
            # Older layouts whose special and added tokens transformers merges into the file's.
            raise UnsupportedTokenizer("special_tokens_map.json / added_tokens_decoder")
        backend = Backend.from_file(str(file))
        model = backend.model
        if (
            not isinstance(model, BPE)
            or any(getattr(model, k, v) != v for k, v in _QWEN2_BPE.items())  # older tokenizers lack some
            or (model.continuing_subword_prefix or "") != ""
            or (model.end_of_word_suffix or "") != ""
        ):
            raise UnsupportedTokenizer("tokenizer.json has other BPE settings than Qwen2Tokenizer's")
        backend.normalizer = normalizers.NFC()
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(
                    add_prefix_space=bool(config.get("add_prefix_space") or False), use_regex=False
                ),
            ]
        )
        backend.decoder = decoders.ByteLevel()
        named = {k: _content(config[k]) if k in config else _QWEN2_DEFAULTS.get(k) for k in _NAMED_TOKENS}
        for key, token in named.items():  # transformers would add a special token the vocabulary lacks
            if token is not None and backend.token_to_id(token) is None:
                raise UnsupportedTokenizer(f"{key} {token!r} is not in tokenizer.json")
        backend.no_truncation()
        backend.no_padding()
        pad = named["pad_token"]
        return cls(backend, None if pad is None else backend.token_to_id(pad))

    def __call__(
        self, text: str | Sequence[str], *, add_special_tokens: bool = True, return_offsets_mapping: bool = False
    ) -> dict[str, list[Any]]:
        """``input_ids`` (and ``offset_mapping``: (start, end) character offsets of each token) of a
        text, or of each text of a list, as transformers' tokenizer gives them."""
        batched = not isinstance(text, str)
        encodings = self.backend.encode_batch(list(text) if batched else [text], add_special_tokens=add_special_tokens)
        out: dict[str, list[Any]] = {"input_ids": [e.ids for e in encodings]}
        if return_offsets_mapping:
            out["offset_mapping"] = [e.offsets for e in encodings]
        return out if batched else {k: v[0] for k, v in out.items()}

    def decode(self, token_ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self.backend.decode(list(token_ids), skip_special_tokens=skip_special_tokens)

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)
