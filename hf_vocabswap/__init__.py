"""hf_vocabswap: swap a model's tokenizer and initialize the new embeddings well.

Public API::

    from hf_vocabswap import transplant_tokenizer, train_tokenizer
    result = transplant_tokenizer(model, target_tokenizer, method="focus", corpus="uk.txt")
    result.save_pretrained("out")
"""

__version__ = "0.1.0"

from .corpus import Corpus  # noqa: E402
from .errors import VocabSwapError  # noqa: E402
from .methods import Method, MethodConfig, MixingPlan, available_methods, get_method, register_method  # noqa: E402
from .result import TransplantReport, TransplantResult  # noqa: E402
from .transplant import DEFAULT_METHOD, transplant_tokenizer  # noqa: E402
from .card import CardInfo  # noqa: E402
from .hub import push_folder  # noqa: E402
from .wrappers import (  # noqa: E402
    VocabSwapAutoModel,
    VocabSwapAutoModelForCausalLM,
    VocabSwapAutoModelForMaskedLM,
    VocabSwapAutoModelForSeq2SeqLM,
)


def train_tokenizer(*args, **kwargs):
    """Train a target tokenizer with the source tokenizer's pipeline (see
    :func:`hf_vocabswap.tokenizer_training.train_tokenizer`)."""
    from .tokenizer_training import train_tokenizer as _train

    return _train(*args, **kwargs)


__all__ = [
    "CardInfo", "VocabSwapAutoModel", "VocabSwapAutoModelForCausalLM", "VocabSwapAutoModelForMaskedLM",
    "VocabSwapAutoModelForSeq2SeqLM", "push_folder",
    "Corpus", "DEFAULT_METHOD", "Method", "MethodConfig", "MixingPlan", "TransplantReport", "TransplantResult",
    "VocabSwapError", "available_methods", "get_method", "register_method", "train_tokenizer", "transplant_tokenizer",
    "__version__",
]
