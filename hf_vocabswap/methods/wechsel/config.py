"""Options of the WECHSEL method (the ``help`` metadata feeds the CLI and the docs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...errors import MethodOptionError
from ..base import MethodConfig

SUBWORD_VECTOR_MODES = ("fasttext", "words")
ALIGN_MODES = ("dictionary", "none")
FALLBACKS = ("fvt", "random")


@dataclass
class WECHSELConfig(MethodConfig):
    source_fasttext: Any = field(
        default=None,
        metadata={
            "help": "word vectors of the model's language: a fastText .bin path or model object (a .vec file or "
            "gensim model with subword_vectors='words'); with download=True also a language code such as 'en'"
        },
    )
    target_fasttext: Any = field(
        default=None,
        metadata={"help": "word vectors of the new language, in the same forms as source_fasttext (e.g. 'de' with download=True)"},
    )
    dictionary: Any = field(
        default=None,
        metadata={
            "help": "bilingual dictionary, source-language word first: a FreeDict dictd file "
            "(/usr/share/dictd/freedict-eng-deu.index), a Ding/trans file, a two-column TSV, or a list of pairs; "
            "with download=True also a WECHSEL dictionary name such as 'german'"
        },
    )
    reverse_dictionary: bool = field(
        default=False, metadata={"help": "the dictionary lists the new language's word first (e.g. FreeDict deu-eng): swap its sides"}
    )
    align: str = field(
        default="dictionary",
        metadata={"help": "'dictionary': orthogonal Procrustes on dictionary pairs; 'none': the two vector spaces are already aligned"},
    )
    subword_vectors: str = field(
        default="fasttext",
        metadata={
            "help": "'fasttext': a token's vector is fastText's vector of its text (subword n-grams); 'words': the "
            "frequency-weighted mean of the vectors of words whose tokenization contains the token"
        },
    )
    max_words: int | None = field(
        default=None, metadata={"help": "with subword_vectors='words': use only the most frequent N words (default: all)"}
    )
    neighbors: int = field(default=10, metadata={"help": "source tokens mixed into each new token (top-k by cosine similarity)"})
    temperature: float = field(default=0.1, metadata={"help": "softmax temperature over the top-k similarities"})
    faithful: bool = field(
        default=False,
        metadata={
            "help": "reproduce wechsel 0.0.4 exactly: no overlap copy (only special tokens whose string is in both "
            "vocabularies), vectors of decode(id).strip(), every source token a candidate, duplicate case-variant "
            "dictionary pairs kept, a random draw for tokens without a vector (drawn by hf_vocabswap's seeded generator). "
            "On a GPU, exact ties at the k-th neighbour go to the lowest source id instead of NumPy's argpartition choice"
        },
    )
    copy_overlap: bool = field(
        default=True,
        metadata={
            "help": "default mode: tokens of both vocabularies (same bytes and word-start flag) keep their source row; "
            "False mixes them like new tokens (WECHSEL's choice); special tokens always match by role"
        },
    )
    fallback: str = field(
        default="fvt",
        metadata={
            "help": "default mode, tokens without a vector (e.g. whitespace): 'fvt' = mean of the source subwords "
            "of their text, then a random draw; 'random' = N(mean, std) of the source rows"
        },
    )
    download: bool = field(
        default=False,
        metadata={
            "help": "allow downloading what is given by name (fastText cc.<lang>.300.bin, WECHSEL dictionaries) into "
            "cache_dir; never done otherwise"
        },
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "where downloads go (default: $HF_VOCABSWAP_CACHE/resources or ~/.cache/hf_vocabswap/resources)"}
    )
    device: str | None = field(
        default=None, metadata={"help": "where the similarity and top-k run ('cpu', 'cuda'); default: the transplant's device"}
    )
    chunk_size: int | None = field(
        default=None, metadata={"help": "new tokens per similarity block (default: blocks of about 16M scores)"}
    )
    progress: bool = field(default=True, metadata={"help": "show progress bars"})

    def __post_init__(self):
        if self.align not in ALIGN_MODES:
            raise MethodOptionError(f"WECHSEL option align must be one of {ALIGN_MODES}, not {self.align!r}.")
        if self.subword_vectors not in SUBWORD_VECTOR_MODES:
            raise MethodOptionError(
                f"WECHSEL option subword_vectors must be one of {SUBWORD_VECTOR_MODES}, not {self.subword_vectors!r}."
            )
        if self.fallback not in FALLBACKS:
            raise MethodOptionError(f"WECHSEL option fallback must be one of {FALLBACKS}, not {self.fallback!r}.")
        if self.neighbors < 1:
            raise MethodOptionError(f"WECHSEL option neighbors must be >= 1, not {self.neighbors}.")
        if not self.temperature > 0:
            raise MethodOptionError(f"WECHSEL option temperature must be > 0, not {self.temperature}.")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise MethodOptionError(f"WECHSEL option chunk_size must be >= 1, not {self.chunk_size}.")
        if self.max_words is not None and self.max_words < 1:
            raise MethodOptionError(f"WECHSEL option max_words must be >= 1, not {self.max_words}.")
