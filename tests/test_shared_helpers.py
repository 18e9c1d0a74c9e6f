"""The helpers with one home: the language table, the file hash, the write error."""

from __future__ import annotations

import errno
import hashlib

import pytest

from risk_core import languages
from risk_core.atomic import write_error
from risk_core.hashing import file_sha256


def test_one_language_table_answers_for_every_reader():
    from risk_core import corpus
    from risk_core.data import from_git, mutate

    assert corpus.language_of is languages.language_of
    assert mutate.language_of("a/b.go") == "go" and mutate.language_of("x.ts") is None  # no TS operators
    assert mutate.language_of("bundle.min.js") is None  # generated, like everywhere else
    assert set(from_git.EXTENSIONS.values()) == set(languages.MINED_LANGUAGES)
    assert all(languages.EXTENSIONS[ext] == lang for ext, lang in from_git.EXTENSIONS.items())
    assert languages.MUTATION_LANGUAGES <= set(languages.TREE_SITTER_GRAMMARS)


def test_language_table_is_torch_free():
    import subprocess
    import sys

    code = "import sys, risk_core.languages; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_file_sha256_matches_hashlib_across_block_boundaries(tmp_path):
    p = tmp_path / "blob"
    data = bytes(range(256)) * 41
    p.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert file_sha256(p) == expected and file_sha256(p, block=1000) == expected and file_sha256(str(p)) == expected


def test_write_error_names_a_full_disk(tmp_path):
    target = tmp_path / "x.bin"
    assert str(write_error(OSError(errno.ENOSPC, "No space left on device"), target)) == (
        f"out of disk space writing {target}"
    )
    assert str(write_error(OSError(errno.EACCES, "Permission denied"), target)) == (
        f"cannot write {target}: Permission denied"
    )


@pytest.mark.parametrize("name", ["hashing", "languages", "shards"])
def test_shared_modules_import(name):
    import importlib

    importlib.import_module(f"risk_core.{name}")
