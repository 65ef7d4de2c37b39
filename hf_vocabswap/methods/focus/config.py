"""Options of the FOCUS method (one dataclass; the ``help`` metadata feeds the CLI and docs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...errors import MethodOptionError
from .. import options
from ..base import MethodConfig

AUXILIARY_MODES = ("token", "word")
RARE_TOKEN_RULES = ("subword", "fvt", "random")


@dataclass
class FOCUSConfig(MethodConfig):
    """Options of FOCUS (each field's ``help`` is its documentation and CLI help)."""
    faithful: bool = field(
        default=False,
        metadata={
            "help": "reproduce deepfocus 1.0.1 exactly: its canonical forms and collision rule for the overlap, "
            "fastText minCount 10, and a random draw for every token without an auxiliary vector"
        },
    )
    fasttext_model: Any = field(
        default=None,
        metadata={
            "help": "a fastText .bin path or model object to use instead of training one on the corpus "
            "(token level: trained on text tokenized by the target tokenizer; word level: pretrained word vectors)"
        },
    )
    auxiliary: str = field(
        default="token",
        metadata={
            "help": "'token': fastText trained on the corpus tokenized by the target tokenizer (the paper's setting); "
            "'word': vectors of each token's text from a pretrained fastText word model (needs fasttext_model)"
        },
    )
    dim: int | None = field(
        default=None,
        metadata={"help": "fastText dimension: 100 when training; when set, a given model must have it"},
    )
    epochs: int = field(default=3, metadata={"help": "fastText training epochs"})
    min_count: int = field(
        default=10,
        metadata={
            "help": "fastText minCount when training: tokens seen fewer times get no vector of their own (the "
            "reference's 10; default mode then embeds them from character n-grams, see rare_tokens)"
        },
    )
    neg: int = field(default=10, metadata={"help": "fastText negative samples"})
    lr: float = field(default=0.05, metadata={"help": "fastText learning rate"})
    window: int = field(default=5, metadata={"help": "fastText context window (ws)"})
    minn: int = field(default=3, metadata={"help": "fastText shortest character n-gram"})
    maxn: int = field(default=6, metadata={"help": "fastText longest character n-gram (0: no subword vectors)"})
    bucket: int = field(default=2_000_000, metadata={"help": "fastText n-gram hash buckets (model size grows with it)"})
    threads: int | None = field(
        default=None,
        metadata={"help": "fastText training threads (default: all CPUs; 1 gives bit-identical models run to run)"},
    )
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "where trained fastText models are cached (default: $HF_VOCABSWAP_CACHE/fasttext or ~/.cache/hf_vocabswap/fasttext)"},
    )
    exact_match: bool = field(default=True, metadata={"help": "tokens with the same canonical form overlap (are copied)"})
    fuzzy_match: bool = field(
        default=False, metadata={"help": "also match tokens ignoring case and the word-start marker"}
    )
    match_symbols: bool = field(
        default=False,
        metadata={"help": "also match number, punctuation and whitespace tokens ignoring the word-start marker"},
    )
    rare_tokens: str = field(
        default="subword",
        metadata={
            "help": "new tokens without their own fastText vector (default mode): 'subword' embeds them from "
            "fastText's character n-grams and mixes anchors by sparsemax, falling back to the mean of their "
            "source subwords (FVT); 'fvt' goes straight to the source-subword mean; 'random' draws them (the reference)"
        },
    )
    device: str | None = options.device_option("the similarity and sparsemax")
    chunk_size: int | None = options.chunk_size_option(", ~64 MB")
    progress: bool = options.progress_option()

    def __post_init__(self):
        options.check_choice("FOCUS", self, "auxiliary", AUXILIARY_MODES)
        options.check_choice("FOCUS", self, "rare_tokens", RARE_TOKEN_RULES)
        if self.auxiliary == "word" and self.fasttext_model is None:
            raise MethodOptionError(
                "FOCUS with auxiliary='word' needs a pretrained fastText word model: pass "
                "fasttext_model='cc.<lang>.300.bin' (from https://fasttext.cc/docs/en/crawl-vectors.html)."
            )
        options.check_at_least_one("FOCUS", self, "chunk_size")
        if self.min_count < 1:
            raise MethodOptionError(f"FOCUS option min_count must be >= 1, not {self.min_count}.")
