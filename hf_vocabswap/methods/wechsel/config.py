"""Options of the WECHSEL method (the ``help`` metadata feeds the CLI and the docs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import options
from ..base import MethodConfig

SUBWORD_VECTOR_MODES = ("fasttext", "words")
ALIGN_MODES = ("dictionary", "none")


@dataclass
class WECHSELConfig(MethodConfig):
    """Options of WECHSEL (each field's ``help`` is its documentation and CLI help)."""
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
    neighbors: int = options.neighbors_option()
    temperature: float = options.temperature_option()
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
    fallback: str = options.fallback_option("default mode, tokens without a vector (e.g. whitespace)")
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
    device: str | None = options.device_option()
    chunk_size: int | None = options.chunk_size_option()
    progress: bool = options.progress_option()

    def __post_init__(self):
        options.check_choice("WECHSEL", self, "align", ALIGN_MODES)
        options.check_choice("WECHSEL", self, "subword_vectors", SUBWORD_VECTOR_MODES)
        options.check_topk_mixing("WECHSEL", self)
        options.check_at_least_one("WECHSEL", self, "chunk_size", "max_words")
