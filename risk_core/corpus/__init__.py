"""Build a deduplicated multi-language code corpus for SAE pre-training (Stage 1).

Layout of a corpus directory::

    manifest.jsonl    one row per kept file: id, path, language, sha256, source, licence, n_bytes, split
    blobs/ab/<sha256> the file's bytes, content-addressed (dedup is free; the corpus is self-contained)
    corpus.json       summary: counts, bytes and approximate tokens per language and split, skip reasons

The split is a pure function of the content hash, so a file lands in the same split however the
corpus is rebuilt or extended: ``reserved`` is the pool that Stage 2 and evaluation draw from and that
SAE training never sees.

The package, one job a module: ``sources`` (enumerating files of directories, globs and archives),
``licences`` (which licence a tree is under), ``build`` (filters, dedup, splits, manifest), ``reader``
(``Corpus``: reading one back), ``recipe`` (the default corpus of this machine).
"""

from risk_core.corpus.build import CorpusConfig, CorpusSummary, build_corpus, skip_reason, split_of
from risk_core.corpus.licences import classify_licence
from risk_core.corpus.reader import MANIFEST, SPLITS, SUMMARY, Corpus, CorpusFile
from risk_core.corpus.recipe import recipe_sources
from risk_core.corpus.sources import iter_candidates
from risk_core.languages import EXTENSIONS as LANGUAGES  # bot/cli/corpus.py lists the languages from here
from risk_core.languages import language_of

__all__ = [
    "LANGUAGES",
    "MANIFEST",
    "SPLITS",
    "SUMMARY",
    "Corpus",
    "CorpusConfig",
    "CorpusFile",
    "CorpusSummary",
    "build_corpus",
    "classify_licence",
    "iter_candidates",
    "language_of",
    "recipe_sources",
    "skip_reason",
    "split_of",
]
