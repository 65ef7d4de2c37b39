"""Options of the OFA method (the ``help`` metadata feeds the CLI and the docs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import options
from ..base import MethodConfig


@dataclass
class OFAConfig(MethodConfig):
    """Options of OFA (each field's ``help`` is its documentation and CLI help)."""
    word_vectors: Any = field(
        default=None,
        metadata={
            "help": "word vectors that cover the new language: multilingual (aligned) or target-language; a fastText "
            ".bin path or model, a .vec text file, or a gensim model. Source and target tokens both get vectors by "
            "tokenizing these words"
        },
    )
    max_words: int | None = field(
        default=None, metadata={"help": "use only the first N words of the vectors (the most frequent; default: all)"}
    )
    neighbors: int = options.neighbors_option()
    temperature: float = options.temperature_option()
    lowercase_match: bool = field(
        default=True,
        metadata={"help": "after exact overlap, also copy tokens whose lowercased text (same word-start flag) is a source token"},
    )
    keep_dim: int | None = field(
        default=None,
        metadata={
            "help": "factorize the embeddings: keep this many SVD primitives and build new tokens in coordinate space "
            "(default: no factorization, full dimension). The saved model is still a stock model (rank keep_dim)"
        },
    )
    factorized: bool = field(
        default=False,
        metadata={
            "help": "also return the factorized form (result.plan.factorization: primitives keep_dim x d and target "
            "coordinates V x keep_dim; default keep_dim: the full dimension)"
        },
    )
    factorized_file: str | None = field(
        default=None,
        metadata={"help": "write the factorized form (primitives, coordinates) to this safetensors file; implies factorized"},
    )
    fallback: str = options.fallback_option("tokens no word covers", " (the reference)")
    device: str | None = options.device_option()
    chunk_size: int | None = options.chunk_size_option()
    progress: bool = options.progress_option()

    def __post_init__(self):
        options.check_topk_mixing("OFA", self)
        options.check_at_least_one("OFA", self, "keep_dim", "chunk_size", "max_words")
        if self.factorized_file is not None:
            self.factorized = True
