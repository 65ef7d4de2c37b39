"""Options of the OFA method (the ``help`` metadata feeds the CLI and the docs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...errors import MethodOptionError
from ..base import MethodConfig

FALLBACKS = ("fvt", "random")


@dataclass
class OFAConfig(MethodConfig):
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
    neighbors: int = field(default=10, metadata={"help": "source tokens mixed into each new token (top-k by cosine similarity)"})
    temperature: float = field(default=0.1, metadata={"help": "softmax temperature over the top-k similarities"})
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
    fallback: str = field(
        default="fvt",
        metadata={
            "help": "tokens no word covers: 'fvt' = mean of the source subwords of their text, then a random draw; "
            "'random' = N(mean, std) of the source rows (the reference)"
        },
    )
    device: str | None = field(
        default=None, metadata={"help": "where the similarity and top-k run ('cpu', 'cuda'); default: the transplant's device"}
    )
    chunk_size: int | None = field(
        default=None, metadata={"help": "new tokens per similarity block (default: blocks of about 16M scores)"}
    )
    progress: bool = field(default=True, metadata={"help": "show progress bars"})

    def __post_init__(self):
        if self.fallback not in FALLBACKS:
            raise MethodOptionError(f"OFA option fallback must be one of {FALLBACKS}, not {self.fallback!r}.")
        if self.neighbors < 1:
            raise MethodOptionError(f"OFA option neighbors must be >= 1, not {self.neighbors}.")
        if not self.temperature > 0:
            raise MethodOptionError(f"OFA option temperature must be > 0, not {self.temperature}.")
        if self.keep_dim is not None and self.keep_dim < 1:
            raise MethodOptionError(f"OFA option keep_dim must be >= 1, not {self.keep_dim}.")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise MethodOptionError(f"OFA option chunk_size must be >= 1, not {self.chunk_size}.")
        if self.max_words is not None and self.max_words < 1:
            raise MethodOptionError(f"OFA option max_words must be >= 1, not {self.max_words}.")
        if self.factorized_file is not None:
            self.factorized = True
