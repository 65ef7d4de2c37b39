"""The method interface: a registry, per-method config dataclasses and the mixing plan.

A method never touches the model. It looks at the vocabulary alignment (and whatever
resources it needs) and returns a :class:`MixingPlan`: for every target token, the sparse
combination of source rows that builds it, or a fallback (random draw or mean). Surgery then
applies the same plan to the input embeddings, to untied output embeddings and to the
output bias, so every method is correct for every model family.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import MethodOptionError, UnknownMethodError

logger = logging.getLogger(__name__)

# How a target token was made. Values are stable: they are saved in vocabswap.json.
COPIED, COMBINED, RANDOM, MEAN = 0, 1, 2, 3
KIND_NAMES = {COPIED: "copied", COMBINED: "combined", RANDOM: "random", MEAN: "mean"}


@dataclass
class MixingPlan:
    """Target rows as sparse combinations of source rows, in CSR layout.

    Row ``t`` of the new matrix is ``sum(weights[k] * source[indices[k]] for k in
    range(indptr[t], indptr[t + 1]))`` when ``kinds[t]`` is COPIED or COMBINED; RANDOM rows
    are drawn from N(mean, std) of the source rows (per dimension, seeded, in id order);
    MEAN rows are the mean source row.

    Attributes:
        num_source: rows of the source matrix (V_s).
        indptr: int64 array (V_t + 1,).
        indices: int64 array (nnz,), source ids.
        weights: float64 array (nnz,).
        kinds: int8 array (V_t,), one of COPIED, COMBINED, RANDOM, MEAN.
        output: an optional separate plan for the output embeddings and bias (methods
            whose input and output rules differ, e.g. OMP or EEVE's first-subword rule).
        stats: method-specific numbers for the report (e.g. anchors used).
        calibration: set after output calibration (:mod:`hf_vocabswap.calibration`): arrays
            ``ids`` (k,), ``shifts`` (rounds, k) and, in "direction" mode, ``directions``
            (rounds, d); the output rows (or bias) of ``ids`` were moved by
            ``sum_r shifts[r] x directions[r]`` (or ``sum_r shifts[r]``) after the plan.
    """

    num_source: int
    indptr: np.ndarray
    indices: np.ndarray
    weights: np.ndarray
    kinds: np.ndarray
    output: "MixingPlan | None" = None
    stats: dict = field(default_factory=dict)
    calibration: dict | None = None

    @property
    def num_target(self) -> int:
        return len(self.kinds)

    def row(self, target_id: int) -> list[tuple[int, float]]:
        """(source id, weight) pairs of one target token, heaviest first."""
        a, b = self.indptr[target_id], self.indptr[target_id + 1]
        pairs = list(zip(self.indices[a:b].tolist(), self.weights[a:b].tolist()))
        return sorted(pairs, key=lambda p: -abs(p[1]))

    def ids_of(self, kind: int) -> list[int]:
        return np.flatnonzero(self.kinds == kind).tolist()

    def counts(self) -> dict[str, int]:
        return {name: int((self.kinds == k).sum()) for k, name in KIND_NAMES.items()}

    def apply(
        self,
        source: torch.Tensor,
        *,
        seed: int,
        fallback: str = "normal",
        num_rows: int | None = None,
        chunk_rows: int = 8192,
    ) -> torch.Tensor:
        """Build the target matrix from ``source`` (V_s x d, or V_s for a bias vector).

        Args:
            source: the source rows. Computation is in float32 (float64 for float64 input);
                the result has ``source``'s dtype, so COPIED rows are bit-exact.
            seed: seeds the generator of RANDOM rows.
            fallback: "normal" draws RANDOM rows from N(mean, std); "mean" uses the mean
                row instead (used for biases).
            num_rows: total rows of the result (>= V_t); extra padding rows get the mean.
            chunk_rows: target rows processed at once, to bound memory.

        Returns:
            A tensor of shape (num_rows or V_t, d) (or (num_rows,) for a vector).
        """
        vector = source.dim() == 1
        src = source[:, None] if vector else source
        if src.shape[0] < self.num_source:
            raise ValueError(f"source has {src.shape[0]} rows, the plan expects at least {self.num_source}")
        src = src[: self.num_source]
        work_dtype = torch.float64 if src.dtype == torch.float64 else torch.float32
        src = src.to(work_dtype)
        n_t = self.num_target
        total = max(num_rows or n_t, n_t)
        out = torch.zeros(total, src.shape[1], dtype=work_dtype, device=src.device)
        indptr = torch.from_numpy(self.indptr)
        indices = torch.from_numpy(self.indices).to(src.device)
        weights = torch.from_numpy(self.weights).to(device=src.device, dtype=work_dtype)
        # One sparse (CSR) x dense product per block of rows: no nnz x d gather, so dense
        # rows (CLP mixes every overlapping token) cost no more memory than sparse ones. Each
        # row's terms are summed in the same order whatever the blocking.
        for start in range(0, n_t, chunk_rows):
            stop = min(start + chunk_rows, n_t)
            a, b = int(indptr[start]), int(indptr[stop])
            if a == b:
                continue
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                block = torch.sparse_csr_tensor(
                    (indptr[start : stop + 1] - a).to(src.device),
                    indices[a:b],
                    weights[a:b],
                    size=(stop - start, src.shape[0]),
                    check_invariants=False,
                )
            out[start:stop] = block @ src
        mean = src.mean(0)
        mean_ids = torch.from_numpy(np.flatnonzero(self.kinds == MEAN)).to(src.device)
        out[mean_ids] = mean
        if total > n_t:
            out[n_t:] = mean
        random_ids = torch.from_numpy(np.flatnonzero(self.kinds == RANDOM)).to(src.device)
        if len(random_ids):
            if fallback == "mean" or src.shape[0] < 2:
                out[random_ids] = mean
            else:
                std = src.std(0)
                gen = torch.Generator(device="cpu").manual_seed(seed)
                draw = torch.normal(
                    mean.cpu().expand(len(random_ids), -1), std.cpu().expand(len(random_ids), -1), generator=gen
                )
                out[random_ids] = draw.to(src.device)
        out = out.to(source.dtype)
        return out[:, 0] if vector else out


class PlanBuilder:
    """Collects per-token decisions and produces a :class:`MixingPlan`.

    Later calls override earlier ones for the same target id, so a method can start with a
    fallback for everything and refine it. Tokens never assigned become RANDOM.
    """

    def __init__(self, num_target: int, num_source: int):
        self.num_target = num_target
        self.num_source = num_source
        self.kinds = np.full(num_target, RANDOM, dtype=np.int8)
        self._rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._copy = np.full(num_target, -1, dtype=np.int64)

    def copy(self, target_ids, source_ids) -> None:
        """Target rows that are exact copies of source rows."""
        target_ids = np.asarray(target_ids, dtype=np.int64)
        self._copy[target_ids] = np.asarray(source_ids, dtype=np.int64)
        self.kinds[target_ids] = COPIED
        for t in target_ids.tolist():
            self._rows.pop(t, None)

    def combine(self, target_id: int, source_ids, weights) -> None:
        """One target row as the weighted sum of source rows (zero weights are dropped)."""
        ids = np.asarray(source_ids, dtype=np.int64)
        w = np.asarray(weights, dtype=np.float64)
        keep = w != 0
        if not keep.any():
            self.fallback([target_id])
            return
        self._rows[int(target_id)] = (ids[keep], w[keep])
        self._copy[target_id] = -1
        self.kinds[target_id] = COMBINED

    def combine_many(self, target_ids, source_ids: np.ndarray, weights: np.ndarray) -> None:
        """Dense form: ``source_ids`` and ``weights`` of shape (n, k); zero weights dropped."""
        for t, ids, w in zip(np.asarray(target_ids).tolist(), np.asarray(source_ids), np.asarray(weights)):
            self.combine(t, ids, w)

    def fallback(self, target_ids, kind: int = RANDOM) -> None:
        target_ids = np.asarray(target_ids, dtype=np.int64)
        self.kinds[target_ids] = kind
        self._copy[target_ids] = -1
        for t in target_ids.tolist():
            self._rows.pop(t, None)

    def build(self, stats: dict | None = None, output: MixingPlan | None = None) -> MixingPlan:
        lengths = np.zeros(self.num_target, dtype=np.int64)
        lengths[self.kinds == COPIED] = 1
        for t, (ids, _) in self._rows.items():
            lengths[t] = len(ids)
        indptr = np.zeros(self.num_target + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        indices = np.zeros(indptr[-1], dtype=np.int64)
        weights = np.zeros(indptr[-1], dtype=np.float64)
        copied = np.flatnonzero(self.kinds == COPIED)
        indices[indptr[copied]] = self._copy[copied]
        weights[indptr[copied]] = 1.0
        for t, (ids, w) in self._rows.items():
            indices[indptr[t] : indptr[t + 1]] = ids
            weights[indptr[t] : indptr[t + 1]] = w
        if len(indices) and (indices.min() < 0 or indices.max() >= self.num_source):
            raise ValueError("a mixing plan refers to a source id outside the source vocabulary")
        return MixingPlan(self.num_source, indptr, indices, weights, self.kinds.copy(), output, dict(stats or {}))


@dataclass
class MethodConfig:
    """Base of every method's options. Subclasses are dataclasses whose fields are the options.

    Field metadata ``help`` documents an option once: it feeds the CLI and the docs.
    """

    @classmethod
    def from_options(cls, method: str, options: dict[str, Any]) -> "MethodConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise MethodOptionError(
                f"Method {method!r} has no option {', '.join(map(repr, unknown))}. "
                f"Its options are: {', '.join(sorted(names)) or 'none'}."
            )
        return cls(**options)

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (str, int, float, bool, type(None), list, tuple, dict)):
                out[f.name] = list(value) if isinstance(value, tuple) else value
            else:  # objects (models, fastText instances) are recorded by type only
                out[f.name] = f"<{type(value).__name__}>"
        return out

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
    """

    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    needs_corpus: ClassVar[bool] = False
    summary: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    calibrates_by_default: ClassVar[bool] = False

    def __init__(self, config: MethodConfig | None = None):
        self.config = config if config is not None else self.config_class()

    def prepare_target_tokenizer(self, target_tokenizer, source_tokenizer, corpus):
        """The tokenizer to transplant to, given the user's target (None when none was given).

        A hook for methods that derive the target from the source (``trim`` removes the tokens
        the corpus never uses). Runs before alignment; the default returns the target unchanged.
        """
        return target_tokenizer

    def plan(self, ctx: MethodContext) -> MixingPlan:  # pragma: no cover - abstract
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


def get_method(name: str) -> type[Method]:
    from . import load_all

    load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownMethodError(name, list(_REGISTRY)) from None


def available_methods() -> list[str]:
    from . import load_all

    load_all()
    return sorted(_REGISTRY)
