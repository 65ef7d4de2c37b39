"""The method interface: a registry, per-method config dataclasses and the method context.

A method never touches the model. It looks at the vocabulary alignment (and whatever
resources it needs) and returns a :class:`~hf_vocabswap.plan.MixingPlan`: for every target
token, the sparse combination of source rows that builds it, or a fallback (random draw or
mean). Surgery then applies the same plan to the input embeddings, to untied output embeddings
and to the output bias, so every method is correct for every model family.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import pkgutil
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import MethodOptionError, UnknownMethodError
from ..fields import check_option_types
from ..plan import MixingPlan, PlanBuilder
from ..surgery import find_embeddings, model_kind

logger = logging.getLogger(__name__)

def recorded_value(value: Any) -> Any:
    """An option value as a record holds it: JSON values as they are (tuples as lists), objects
    (models, fastText instances) by their type only, as ``"<TypeName>"``."""
    if isinstance(value, (str, int, float, bool, type(None), list, tuple, dict)):
        return list(value) if isinstance(value, tuple) else value
    return f"<{type(value).__name__}>"


@dataclass
class MethodConfig:
    """Base of every method's options. Subclasses are dataclasses whose fields are the options.

    Field metadata ``help`` documents an option once: it feeds the CLI and the docs. Values are
    type-checked against the fields' annotations before a subclass's own ``__post_init__`` checks
    run, however the config is built (:func:`hf_vocabswap.fields.check_option_types`).
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__post_init__")

        def __post_init__(self):
            values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
            check_option_types(type(self), values, owner=f"{type(self).__name__} option", error=MethodOptionError)
            if own is not None:
                own(self)

        cls.__post_init__ = __post_init__

    @classmethod
    def from_options(cls, method: str, options: dict[str, Any]) -> "MethodConfig":
        """The config of ``method`` with ``options`` (field name -> value), checked by name and type.

        Raises:
            MethodOptionError: an option the method does not have, a value of the wrong type
                (:func:`hf_vocabswap.fields.check_option_types`), or one the config's own checks refuse.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise MethodOptionError(
                f"Method {method!r} has no option {', '.join(map(repr, unknown))}. "
                f"Its options are: {', '.join(sorted(names)) or 'none'}."
            )
        check_option_types(cls, options, owner=f"{method} option", error=MethodOptionError)
        return cls(**options)

    def to_dict(self) -> dict[str, Any]:
        """Every option and its value, as recorded in ``vocabswap.json`` (see :func:`recorded_value`)."""
        return {f.name: recorded_value(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def option_fields(cls) -> list[tuple[str, type, Any, str]]:
        """(name, type, default, help) of every option, for the CLI and the docs."""
        hints = typing.get_type_hints(cls)
        rows = []
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else None
            rows.append((f.name, hints.get(f.name, str), default, f.metadata.get("help", "")))
        return rows


@dataclass
class MethodContext:
    """Everything a method may look at. Methods must not modify any of it.

    Attributes:
        alignment: the :class:`~hf_vocabswap.vocab.VocabAlignment` of source and target.
        source_tokenizer, target_tokenizer: the two tokenizers.
        input_embeddings: the source input matrix (V_s x d), detached.
        output_embeddings: the source output matrix when it is not tied, else None.
        model: the source model (read-only).
        corpus: a :class:`~hf_vocabswap.corpus.Corpus` or None.
        seed: the seed of every random choice.
        device: where heavy maths may run ("cpu", "cuda").
        is_causal: whether the model predicts the next token (decides EEVE-style rules).
    """

    alignment: Any
    source_tokenizer: Any
    target_tokenizer: Any
    input_embeddings: torch.Tensor
    output_embeddings: torch.Tensor | None
    model: Any
    corpus: Any
    seed: int
    device: str = "cpu"
    is_causal: bool = False

    @classmethod
    def create(
        cls,
        alignment,
        source_tokenizer,
        target_tokenizer,
        *,
        model=None,
        input_embeddings: torch.Tensor | None = None,
        output_embeddings: torch.Tensor | None = None,
        corpus=None,
        seed: int = 42,
        device: str = "cpu",
        is_causal: bool | None = None,
    ) -> "MethodContext":
        """The context of one transplant: the embeddings (and kind) are read from ``model``.

        Args:
            alignment: :func:`hf_vocabswap.vocab.align_vocabularies` of the two tokenizers.
            source_tokenizer, target_tokenizer: the two tokenizers.
            model: the source model; its input matrix and untied output matrix are used.
            input_embeddings, output_embeddings: the matrices to use instead (a benchmark that
                has no model); ``input_embeddings`` is required when ``model`` is None.
            corpus: a :class:`~hf_vocabswap.corpus.Corpus` or None.
            seed: the seed of every random choice.
            device: where heavy maths may run.
            is_causal: overrides the kind read from ``model`` (False without a model).

        Raises:
            ModelError: ``model`` has no input embedding matrix.
            ValueError: neither ``model`` nor ``input_embeddings`` was given.
        """
        if model is not None and input_embeddings is None:
            handles = find_embeddings(model)
            input_embeddings, output_embeddings = handles.input_weight, handles.output_weight
        if input_embeddings is None:
            raise ValueError("MethodContext.create needs a model or input_embeddings")
        if is_causal is None:
            is_causal = model is not None and model_kind(model) == "causal"
        return cls(
            alignment=alignment, source_tokenizer=source_tokenizer, target_tokenizer=target_tokenizer,
            input_embeddings=input_embeddings, output_embeddings=output_embeddings, model=model, corpus=corpus,
            seed=seed, device=device, is_causal=is_causal,
        )

    @property
    def num_target(self) -> int:
        return len(self.alignment.target.forms)

    @property
    def num_source(self) -> int:
        return self.input_embeddings.shape[0]

    def base_builder(self) -> PlanBuilder:
        """A builder with every aligned token copied and everything else RANDOM."""
        builder = PlanBuilder(self.num_target, self.num_source)
        t2s = self.alignment.target_to_source
        matched = np.flatnonzero((t2s >= 0) & (t2s < self.num_source))
        builder.copy(matched, t2s[matched])
        return builder


class Method:
    """Base class of initialization methods. Subclass, set the class attributes, register.

    Class attributes:
        name: the registry key ("focus", "fvt", ...).
        config_class: the method's :class:`MethodConfig` dataclass.
        needs_corpus: whether ``transplant_tokenizer`` must receive a corpus.
        summary: one line for ``hf-vocabswap methods`` and the model card.
        citation: BibTeX of the method's paper, for the model card.
        calibrates_by_default: whether ``transplant_tokenizer(calibrate=None)`` calibrates the
            new tokens' output scores on the corpus (:mod:`hf_vocabswap.calibration`).
        needs_overlap: whether the method needs shared tokens (False for baselines that copy
            nothing, so a transplant without overlap is allowed for them).
        corpus_substitutes: options that, when set, give the method what it would learn from
            the corpus (FOCUS's prebuilt ``fasttext_model``), so ``needs_corpus`` is waived.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    needs_corpus: ClassVar[bool] = False
    summary: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    calibrates_by_default: ClassVar[bool] = False
    needs_overlap: ClassVar[bool] = True
    corpus_substitutes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: MethodConfig | None = None):
        self.config = config if config is not None else self.config_class()

    @classmethod
    def resolve(cls, *, model_kind: str, has_corpus: bool) -> tuple[type["Method"], str | None]:
        """The method that runs when this one is asked for, and why (None: this one, no reason).

        A dispatcher such as ``auto`` overrides it to choose a method from the model kind
        ("masked", "causal", "seq2seq" or "base") and whether a corpus was given.
        """
        return cls, None

    @classmethod
    def candidates(cls) -> tuple[str, ...]:
        """The registry names :meth:`resolve` may return (whose options this method accepts)."""
        return (cls.name,)

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Raise unless every option is one of this method's (for a dispatcher: of a method it may pick).

        Raises:
            MethodOptionError: an unknown option, or a value the config refuses.
        """
        if cls.candidates() == (cls.name,):
            cls.config_class.from_options(cls.name, options)
            return
        names = {f for name in cls.candidates() for f, *_ in get_method(name).config_class.option_fields()}
        unknown = sorted(set(options) - names)
        if unknown:
            raise MethodOptionError(
                f"Method {cls.name!r} picks one of {', '.join(cls.candidates())}, none of which has option "
                f"{', '.join(map(repr, unknown))}. Name the method whose option it is."
            )

    def needs_text(self) -> bool:
        """Whether this configuration needs a corpus: ``needs_corpus`` unless a substitute option is set."""
        return self.needs_corpus and not any(getattr(self.config, name, None) is not None for name in self.corpus_substitutes)

    def prepare_target_tokenizer(self, target_tokenizer, source_tokenizer, corpus):
        """The tokenizer to transplant to, given the user's target (None when none was given).

        A hook for methods that derive the target from the source (``trim`` removes the tokens
        the corpus never uses). Runs before alignment; the default returns the target unchanged.
        """
        return target_tokenizer

    def plan(self, ctx: MethodContext) -> MixingPlan:  # pragma: no cover - abstract
        """The mixing plan of every target token (the method's whole job).

        Args:
            ctx: the :class:`MethodContext` (read-only).

        Returns:
            A :class:`~hf_vocabswap.plan.MixingPlan` with one row per target token.
        """
        raise NotImplementedError

    def _device(self, ctx: MethodContext) -> str:
        """Where the method's maths runs: its own ``device`` option, else the transplant's.

        Raises:
            MethodOptionError: a CUDA device is asked for and none is available.
        """
        device = getattr(self.config, "device", None) or ctx.device or "cpu"
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise MethodOptionError(f"{self.name} device={device!r}, but no CUDA GPU is available. Use device='cpu'.")
        return device


_REGISTRY: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to the registry under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not name or not isinstance(name, str):
        raise TypeError(f"{cls.__name__} needs a string class attribute `name` to be registered")
    if not (isinstance(cls.config_class, type) and dataclasses.is_dataclass(cls.config_class)):
        raise TypeError(f"{cls.__name__}.config_class must be a dataclass subclassing MethodConfig")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"method {name!r} is already registered by {_REGISTRY[name].__qualname__}")
    _REGISTRY[name] = cls
    return cls


def load_all() -> None:
    """Import every module of the ``methods`` package once, so each registers its methods."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in ("base", "options", "mixing"):
            importlib.import_module(f"{__package__}.{info.name}")


_loaded = False


def get_method(name: str) -> type[Method]:
    """The registered method class named ``name``.

    Raises:
        UnknownMethodError: no method of that name is registered (the error lists them).
    """
    load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownMethodError(name, list(_REGISTRY)) from None


def available_methods() -> list[str]:
    """Every registered method name, sorted."""
    load_all()
    return sorted(_REGISTRY)
