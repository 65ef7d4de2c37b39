"""Models that already use the target tokenizer (CLP's helper, OMP's donor), and the plan
surgery shared by the methods that use them.

Such a model is given as a model object, a local folder, a Hub id or a ``.gguf`` file. Only its
embedding matrices are read. Row ``t`` of its input matrix must be target token ``t``: the row
count is checked against the target tokenizer, and when the model comes with a tokenizer of its
own (a folder, a Hub id, a GGUF file) the two vocabularies must be identical.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from transformers import AutoTokenizer

from ..errors import MethodOptionError, MismatchError
from ..gguf import load_gguf
from ..loading import is_gguf, load_model
from ..surgery import find_embeddings
from .base import Method, MethodContext

logger = logging.getLogger(__name__)


@dataclass
class TargetModelEmbeddings:
    """Embedding matrices of a model that uses the target tokenizer.

    Attributes:
        input: (V_t, d) input embeddings, one row per target token (padding rows cut off).
        output: (V_t, d) output embeddings when they are a separate (untied) tensor, else None.
        description: what was loaded, for the report.
    """

    input: torch.Tensor
    output: torch.Tensor | None
    description: str


class TargetModelMethod(Method):
    """Base of the methods that read such a model (CLP, OMP): their config option named by
    ``model_option`` gives it."""

    model_option: ClassVar[str]

    def load_target_model(self, ctx: MethodContext) -> TargetModelEmbeddings:
        """The embeddings of the model given by the ``model_option`` option (see :func:`target_model_embeddings`)."""
        return target_model_embeddings(
            getattr(self.config, self.model_option), ctx.target_tokenizer, option=self.model_option, method=self.name
        )


def target_model_option(use: str) -> Any:
    """The config field that names such a model (CLP's ``helper_model``, OMP's ``donor_model``);
    ``use`` says what the method does with it."""
    return field(
        default=None,
        metadata={
            "help": "required: a model that already uses the target tokenizer (model object, local folder, Hub id "
            f"or .gguf file); {use}"
        },
    )


def _allowed_padding(num_tokens: int) -> int:
    # Models pad their embedding matrix to a multiple of 64 or 128 (Qwen2: 271 extra rows);
    # far more rows than tokens means another tokenizer.
    return max(512, num_tokens // 50)


def target_model_embeddings(model, target_tokenizer, *, option: str, method: str) -> TargetModelEmbeddings:
    """Load ``model`` (object, folder, Hub id or GGUF file) and return its embeddings.

    Args:
        model: the model that already uses the target tokenizer.
        target_tokenizer: the transplant's target tokenizer.
        option: the option name that gave the model (for error messages).
        method: the method name (for error messages).

    Raises:
        MethodOptionError: no model was given.
        ModelError / ResourceError: the model cannot be loaded.
        MismatchError: its vocabulary is not the target tokenizer's (row count, or its own
            tokenizer's vocabulary differs).
    """
    if model is None:
        raise MethodOptionError(
            f"Method {method!r} needs a model that already uses the target tokenizer: pass {option}=... "
            f"(a model object, a local folder, a Hub id or a .gguf file; CLI: --{option.replace('_', '-')} PATH)."
        )
    own_tokenizer = None
    if isinstance(model, (str, os.PathLike)):
        description = str(model)
        if is_gguf(model):
            model, own_tokenizer = load_gguf(model)
        else:
            own_tokenizer = _try_tokenizer(model)
            model = load_model(model)
    else:
        description = getattr(model, "name_or_path", None) or f"<{type(model).__name__}>"
    if not hasattr(model, "get_input_embeddings"):
        raise MethodOptionError(
            f"{option} must be a transformers model, a folder, a Hub id or a .gguf file, not {type(model).__name__}."
        )
    handles = find_embeddings(model)
    n = len(target_tokenizer)
    rows = handles.input_weight.shape[0]
    if rows < n or rows - n > _allowed_padding(n):
        raise MismatchError(
            f"The {option} of {method!r} has {rows} embedding rows but the target tokenizer has {n} tokens, "
            f"so it does not use the target tokenizer. Pass a model trained with the target tokenizer."
        )
    if own_tokenizer is not None and own_tokenizer.get_vocab() != target_tokenizer.get_vocab():
        raise MismatchError(
            f"The {option} of {method!r} ({description}) comes with a tokenizer whose vocabulary differs from "
            "the target tokenizer's. Pass a model that uses the target tokenizer, or that tokenizer as target."
        )
    inp = handles.input_weight.detach()[:n]
    out = handles.output_weight.detach()[:n] if handles.output_weight is not None else None
    return TargetModelEmbeddings(inp, out, description)


def _try_tokenizer(path):
    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception:  # noqa: BLE001 - a model without a tokenizer is still usable (rows checked)
        return None


class CSRRows:
    """Collects, block by block, the kept entries of new tokens' rows and gives them in CSR form.

    For methods that compute a dense (rows x candidates) block of weights per step and keep some
    entries of it (CLP, OMP); the result feeds :meth:`MixingPlan.with_rows`.
    """

    def __init__(self):
        self._rows: list[np.ndarray] = []
        self._lengths: list[np.ndarray] = []
        self._columns: list[np.ndarray] = []
        self._weights: list[np.ndarray] = []

    def add(self, start: int, keep: torch.Tensor, columns: torch.Tensor, weights: torch.Tensor) -> None:
        """One block of rows ``start, start + 1, ...``.

        Args:
            keep: (B, K) bool, the entries to keep; a row with none is left out.
            columns: (B, K) column of each entry; weights: (B, K) its weight.
        """
        lengths = keep.sum(dim=1)
        has = lengths > 0
        self._rows.append((torch.nonzero(has)[:, 0] + start).cpu().numpy())
        self._lengths.append(lengths[has].cpu().numpy())
        self._columns.append(columns[keep].cpu().numpy())  # row-major: grouped by row, rows in order
        self._weights.append(weights[keep].to(torch.float64).cpu().numpy())

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, indptr, columns, weights)``: the rows that kept entries (int64), and their
        entries in CSR form (int64 columns, float64 weights)."""
        empty = np.zeros(0, dtype=np.int64)
        rows = np.concatenate(self._rows).astype(np.int64) if self._rows else empty
        lengths = np.concatenate(self._lengths) if self._lengths else empty
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        columns = np.concatenate(self._columns).astype(np.int64) if self._columns else empty
        weights = np.concatenate(self._weights).astype(np.float64) if self._weights else np.zeros(0)
        return rows, indptr, columns, weights


def resolve_device(device) -> str:
    """``device`` as a string, after checking that a CUDA device asked for exists.

    Raises:
        MethodOptionError: a CUDA device is asked for and none is available.
    """
    device = str(device or "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MethodOptionError(f"device={device!r}, but no CUDA GPU is available. Use device='cpu'.")
    return device
