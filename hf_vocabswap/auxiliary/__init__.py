"""Auxiliary embedding spaces that methods use to compare target tokens (fastText, ...).

An auxiliary space gives target tokens vectors learned from target-language text, so a
method can find which source tokens a new token resembles. Training is cached on disk.
"""

from __future__ import annotations

from .fasttext import (
    FastTextAuxiliary,
    FastTextParams,
    default_cache_dir,
    fasttext_cache_path,
    load_fasttext,
    token_fasttext,
    token_fasttext_file,
    train_fasttext,
    train_fasttext_file,
    write_token_corpus,
)

__all__ = [
    "FastTextAuxiliary",
    "FastTextParams",
    "default_cache_dir",
    "fasttext_cache_path",
    "load_fasttext",
    "token_fasttext",
    "token_fasttext_file",
    "train_fasttext",
    "train_fasttext_file",
    "write_token_corpus",
]
