"""What each method needs beyond the model and the two tokenizers, built offline from real text.

:class:`Resources` builds, once and lazily, the fastText models and the stand-in helper model;
:data:`METHOD_RESOURCES` says which method gets what; :func:`method_setup` turns an entry name
into the options, target and corpus of its transplant. The method matrix of the test suite
(tests/test_method_matrix.py) uses the same providers, so a method the benchmark can run
offline is also tested offline.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from hf_vocabswap import Corpus, get_method
from hf_vocabswap.auxiliary.fasttext import FastTextParams, token_fasttext, train_fasttext

from .config import BenchConfig, split_variant, variant_options

logger = logging.getLogger("quality")


class Unavailable(Exception):
    """A method's resources cannot be built here; the message says why."""


@dataclass
class MethodSetup:
    """How to run one method: its options, the target it transplants to, and what was used.

    Attributes:
        options: the method's options (its config fields).
        target: ``"trained"`` (the trained target tokenizer) or ``"source"`` (the source
            tokenizer, for methods that make their own target from it, like ``trim``).
        corpus: whether the training split is passed as corpus.
        note: what resources were used (stand-ins are named here and in the results).
    """

    options: dict = field(default_factory=dict)
    target: str = "trained"
    corpus: bool = False
    note: str = ""


class _EmbeddingTable(torch.nn.Module):
    """Just an input embedding matrix, seen through the transformers accessors: a stand-in
    helper or donor model for CLP and OMP (the results name it by this class name,
    ``"<_EmbeddingTable>"``, as they did before the benchmark became a package).

    Args:
        weight: the embedding matrix (one row per token of the tokenizer it stands for).
        name: what the vectors are (the ``name_or_path`` methods record).
    """

    def __init__(self, weight: torch.Tensor, name: str):
        super().__init__()
        self.embed = torch.nn.Embedding.from_pretrained(weight, freeze=True)
        self.name_or_path = name

    def get_input_embeddings(self):
        return self.embed

    def get_output_embeddings(self):
        return None


class Resources:
    """Builds, once and lazily, the auxiliary resources that methods may need.

    Everything is made from the training split (never from held-out text): a token-level
    fastText model under the target tokenizer (the FOCUS paper's auxiliary embeddings, used by
    FOCUS through its cache and as the stand-in helper/donor model of CLP and OMP) and a
    word-level fastText model of the Ukrainian text (the stand-in word vectors of WECHSEL).

    Args:
        train_texts: the training text (a list of strings).
        target_tokenizer: the tokenizer the helper vectors are trained under.
        workdir: scratch folder (fastText cache, word corpus file).
        cfg: the benchmark setting (its ``clp_top_k``); None: CLP keeps its dense plan.
        bucket: fastText's hash buckets of the character n-grams of both stand-ins; None:
            fastText's 2,000,000 (800 MB a model at dim 100; the test suite's method matrix
            uses a few thousand to stay fast).
    """

    def __init__(self, train_texts: list[str], target_tokenizer, workdir: Path, cfg: BenchConfig | None = None, *,
                 bucket: int | None = None):
        self.train_texts = train_texts
        self.target_tokenizer = target_tokenizer
        self.workdir = Path(workdir)
        self.cfg = cfg
        self.bucket = bucket
        self._token_ft = None
        self._word_ft = None
        self._helper = None

    @property
    def fasttext_cache(self) -> Path:
        """The fastText cache folder shared by the stand-ins and FOCUS."""
        return self.workdir / "fasttext"

    @property
    def clp_top_k(self) -> int | None:
        """CLP's ``top_k`` of this setting (None: dense)."""
        return self.cfg.clp_top_k if self.cfg is not None else None

    def _params(self, **params) -> FastTextParams:
        return FastTextParams(**params) if self.bucket is None else FastTextParams(**params, bucket=self.bucket)

    def token_fasttext(self):
        """Token-level fastText (minCount 1, one thread): the stand-in helper/donor vectors of CLP and OMP."""
        if self._token_ft is None:
            self._token_ft, _ = token_fasttext(
                Corpus.coerce(self.train_texts), self.target_tokenizer, self._params(min_count=1),
                cache_dir=self.fasttext_cache, threads=1, progress=False,
            )
        return self._token_ft

    def word_fasttext(self):
        """Word-level fastText (cbow, dim 100, 5 epochs, minCount 2) on the raw training text."""
        if self._word_ft is None:
            path = self.workdir / "word_corpus.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(self.train_texts) + "\n", encoding="utf-8")
            self._word_ft = train_fasttext(path, self._params(min_count=2, epoch=5), threads=1)
        return self._word_ft

    def helper_model(self) -> _EmbeddingTable:
        """A model-like object whose input embeddings are the token-level fastText vectors of the
        target tokens: the stand-in for CLP's helper / OMP's donor (no small Ukrainian model
        with this tokenizer exists offline)."""
        if self._helper is None:
            ft = self.token_fasttext()
            tokens = self.target_tokenizer.convert_ids_to_tokens(list(range(len(self.target_tokenizer))))
            weight = torch.from_numpy(np.stack([ft.get_word_vector(t) for t in tokens]).astype("float32"))
            self._helper = _EmbeddingTable(weight, "token-level fastText vectors of the target tokens")
        return self._helper


STANDIN_HELPER = (
    "stand-in {role}: token-level fastText vectors (dim 100, minCount 1) of the target tokens, trained on the "
    "training split (no small model that uses the target tokenizer exists offline)"
)
STANDIN_WORD_VECTORS = (
    "stand-in: one word-level fastText model of the Ukrainian training split for both sides, align='none' "
    "(no English-Ukrainian dictionary or pretrained fastText vectors offline)"
)


def _focus_setup(res: Resources) -> MethodSetup:
    return MethodSetup(corpus=True, note="fastText trained on the training split (FOCUS defaults: minCount 10, character n-gram vectors for rarer tokens)")


def _clp_setup(res: Resources) -> MethodSetup:
    options = {"helper_model": res.helper_model()}
    note = STANDIN_HELPER.format(role="helper")
    if res.clp_top_k:
        options["top_k"] = res.clp_top_k
        note += f"; top_k={res.clp_top_k} (the dense plan would not fit the GPU bundle)"
    return MethodSetup(options=options, note=note)


def _omp_setup(res: Resources) -> MethodSetup:
    return MethodSetup(options={"donor_model": res.helper_model()}, note=STANDIN_HELPER.format(role="donor"))


def _wechsel_setup(res: Resources) -> MethodSetup:
    ft = res.word_fasttext()
    return MethodSetup(
        options={"source_fasttext": ft, "target_fasttext": ft, "align": "none"}, note=STANDIN_WORD_VECTORS
    )


def _ofa_setup(res: Resources) -> MethodSetup:
    # OFA needs multilingual word vectors covering source and target tokens in one space; the
    # word-level fastText model of the Ukrainian text is passed for every vectors option.
    fields = [f.name for f in dataclasses.fields(get_method("ofa").config_class)]
    wanted = [n for n in fields if "fasttext" in n or n.endswith("vectors") or n == "word_vectors"]
    if not wanted:
        raise Unavailable("OFA needs multilingual word vectors (e.g. ColexNet+); none exist offline")
    ft = res.word_fasttext()
    return MethodSetup(
        options={n: ft for n in wanted},
        note="word-level fastText of the Ukrainian training split (target-language vectors; no multilingual "
        "aligned vectors such as ColexNet+ exist offline)",
    )


def _trim_setup(res: Resources) -> MethodSetup:
    return MethodSetup(
        target="source", corpus=True,
        note="its own target: the source tokenizer minus the tokens the training split never uses",
    )


# How to provide each method's resources. Methods not listed run with the training text as
# corpus when they need one, and nothing else; a missing resource then skips them with the
# method's own error message as the reason.
def _auto_setup(res: Resources) -> MethodSetup:
    return MethodSetup(corpus=True, note="the default: the training split as corpus, so auto picks the calibrated hybrid (FVT for seq2seq)")


METHOD_RESOURCES: dict[str, Callable[[Resources], MethodSetup]] = {
    "auto": _auto_setup,
    "focus": _focus_setup,
    "clp": _clp_setup,
    "omp": _omp_setup,
    "wechsel": _wechsel_setup,
    "ofa": _ofa_setup,
    "trim": _trim_setup,
}

# Options set on every method whose config has them: quiet, single-threaded fastText (bit-
# identical), one cache for the trained fastText models.
COMMON_OPTIONS = {"progress": False, "threads": 1}


def method_setup(name: str, res: Resources) -> MethodSetup:
    """The :class:`MethodSetup` of benchmark entry ``name`` (a method or a variant of one).

    Args:
        name: a registered method, or a variant of one (see :func:`config.split_variant`).
        res: where the resources come from.

    Returns:
        The setup, with the common options the method's config has, ``cache_dir`` in the shared
        fastText cache, the provider's options and the entry's ``@`` options.

    Raises:
        Unavailable: the method's resources cannot be built here.
        UnknownMethodError: ``name`` names no registered method.
    """
    entry, name = name, split_variant(name)[0]
    cls = get_method(name)
    provider = METHOD_RESOURCES.get(name)
    if provider is not None:
        setup = provider(res)
    else:
        setup = MethodSetup(corpus=bool(cls.needs_corpus), note="the training split as corpus" if cls.needs_corpus else "")
    setup.corpus = setup.corpus or bool(cls.needs_corpus)
    # A dispatcher (auto) passes on the options of the methods it may pick.
    fields = {f.name for name_ in cls.candidates() for f in dataclasses.fields(get_method(name_).config_class)}
    options = {k: v for k, v in COMMON_OPTIONS.items() if k in fields}
    if "cache_dir" in fields:
        options["cache_dir"] = str(res.fasttext_cache)
    dropped = sorted(set(setup.options) - fields)
    if dropped:
        logger.warning("%s has no option(s) %s: not passed", name, ", ".join(dropped))
    options.update({k: v for k, v in setup.options.items() if k in fields})
    options.update(variant_options(entry))
    setup.options = options
    return setup
