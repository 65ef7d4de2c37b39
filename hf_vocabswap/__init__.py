"""hf_vocabswap: swap a model's tokenizer and initialize the new embeddings well.

Public API::

    from hf_vocabswap import transplant_tokenizer, train_tokenizer
    result = transplant_tokenizer(model, target_tokenizer, corpus="uk.txt")   # method="auto"
    result.save_pretrained("out")
"""

from .version import __version__
from .card import CardInfo
from .corpus import Corpus
from .errors import VocabSwapError
from .hub import push_folder
from .methods import Method, MethodConfig, MixingPlan, available_methods, get_method, register_method
from .record import TransplantReport
from .result import TransplantResult
from .tokenizer_training import train_tokenizer
from .transplant import DEFAULT_METHOD, transplant_tokenizer
from .wrappers import (
    VocabSwapAutoModel,
    VocabSwapAutoModelForCausalLM,
    VocabSwapAutoModelForMaskedLM,
    VocabSwapAutoModelForSeq2SeqLM,
)

__all__ = [
    "CardInfo", "VocabSwapAutoModel", "VocabSwapAutoModelForCausalLM", "VocabSwapAutoModelForMaskedLM",
    "VocabSwapAutoModelForSeq2SeqLM", "push_folder",
    "Corpus", "DEFAULT_METHOD", "Method", "MethodConfig", "MixingPlan", "TransplantReport", "TransplantResult",
    "VocabSwapError", "available_methods", "get_method", "register_method", "train_tokenizer", "transplant_tokenizer",
    "__version__",
]
