"""The mixing plan: how every target token's row is built from source rows.

A method never touches the model. It returns a :class:`MixingPlan`: for every target token, the
sparse combination of source rows that builds it (CSR layout), or a fallback (a seeded random
draw or the mean row), and a label of how the token was made. Surgery applies the same plan to
the input embeddings, to an untied output matrix and to output biases; the record saves it
(:func:`save_plan`), so the card, ``explain()`` and the demo can show how each token was made.

Everything that builds or edits plans lives here, vectorized: :class:`PlanBuilder` (per-token
decisions, later ones overriding earlier ones), :meth:`MixingPlan.with_rows` (replace some rows
by CSR rows), :func:`blend_plans` (row-wise convex blend of two plans).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

__all__ = [
    "COMBINED", "COPIED", "KIND_NAMES", "MEAN", "RANDOM", "MixingPlan", "PlanBuilder", "blend_plans",
    "concat_ranges", "load_plan", "save_plan",
]

# How a target token was made. Values are stable: they are saved in vocabswap.json and the plan file.
COPIED, COMBINED, RANDOM, MEAN = 0, 1, 2, 3
KIND_NAMES = {COPIED: "copied", COMBINED: "combined", RANDOM: "random", MEAN: "mean"}


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])`` without a Python loop.

    Args:
        starts: (k,) int64 first positions; lengths: (k,) int64 range lengths (>= 0).

    Returns:
        (sum(lengths),) int64 positions.
    """
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    return np.repeat(starts - (ends - lengths), lengths) + np.arange(total, dtype=np.int64)


def _check_source_ids(indices: np.ndarray, num_source: int) -> None:
    if len(indices) and (indices.min() < 0 or indices.max() >= num_source):
        raise ValueError("a mixing plan refers to a source id outside the source vocabulary")


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
        factorization: OFA's low-rank factors of the new input matrix
            (:class:`hf_vocabswap.methods.ofa.Factorization`) when it was asked for, else None.
    """

    num_source: int
    indptr: np.ndarray
    indices: np.ndarray
    weights: np.ndarray
    kinds: np.ndarray
    output: "MixingPlan | None" = None
    stats: dict = field(default_factory=dict)
    calibration: dict | None = None
    factorization: Any = None

    @property
    def num_target(self) -> int:
        """Rows of the target matrix (V_t)."""
        return len(self.kinds)

    def row(self, target_id: int) -> list[tuple[int, float]]:
        """(source id, weight) pairs of one target token, heaviest first."""
        a, b = self.indptr[target_id], self.indptr[target_id + 1]
        pairs = list(zip(self.indices[a:b].tolist(), self.weights[a:b].tolist()))
        return sorted(pairs, key=lambda p: -abs(p[1]))

    def ids_of(self, kind: int) -> list[int]:
        """Target ids of one kind (COPIED, COMBINED, RANDOM or MEAN), ascending."""
        return np.flatnonzero(self.kinds == kind).tolist()

    def counts(self) -> dict[str, int]:
        """``{"copied", "combined", "random", "mean"}`` -> number of target tokens."""
        return {name: int((self.kinds == k).sum()) for k, name in KIND_NAMES.items()}

    def uncopied_ids(self, exclude=()) -> list[int]:
        """Target ids that are not COPIED from the source, except those in ``exclude`` (e.g. special ids)."""
        skip = {int(i) for i in exclude}
        return [int(i) for i in np.flatnonzero(self.kinds != COPIED) if int(i) not in skip]

    def entries(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The entries of ``rows`` in COO form: (target id, source id, weight) arrays, rows in the given order."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = np.diff(self.indptr)[rows]
        pos = concat_ranges(self.indptr[rows], lengths)
        return np.repeat(rows, lengths), self.indices[pos], self.weights[pos]

    def with_rows(self, targets, indptr, indices, weights) -> "MixingPlan":
        """This plan with the rows of ``targets`` replaced by COMBINED rows given in CSR form.

        The vectorized counterpart of calling :meth:`PlanBuilder.combine` once per row.

        Args:
            targets: (n,) distinct target ids.
            indptr: (n + 1,) offsets into ``indices`` / ``weights``; every row must be non-empty.
            indices: source ids of the new rows; weights: their weights (float64).

        Returns:
            A new :class:`MixingPlan` (``output`` and a copy of ``stats`` kept).

        Raises:
            ValueError: a row is empty, or a source id is outside the source vocabulary.
        """
        targets = np.asarray(targets, dtype=np.int64)
        indptr = np.asarray(indptr, dtype=np.int64)
        if len(targets) == 0:
            return self
        lengths = np.diff(self.indptr)
        new_lengths = np.diff(indptr)
        if (new_lengths <= 0).any():
            raise ValueError("with_rows needs at least one source row per target row")
        out_lengths = lengths.copy()
        out_lengths[targets] = new_lengths
        out_ptr = np.zeros(self.num_target + 1, dtype=np.int64)
        np.cumsum(out_lengths, out=out_ptr[1:])
        out_idx = np.zeros(out_ptr[-1], dtype=np.int64)
        out_w = np.zeros(out_ptr[-1], dtype=np.float64)
        keep = np.ones(self.num_target, dtype=bool)
        keep[targets] = False
        kept = np.flatnonzero(keep)
        src = concat_ranges(self.indptr[kept], lengths[kept])
        dst = concat_ranges(out_ptr[kept], lengths[kept])
        out_idx[dst] = self.indices[src]
        out_w[dst] = self.weights[src]
        dst = concat_ranges(out_ptr[targets], new_lengths)
        out_idx[dst] = np.asarray(indices, dtype=np.int64)
        out_w[dst] = np.asarray(weights, dtype=np.float64)
        _check_source_ids(out_idx, self.num_source)
        kinds = self.kinds.copy()
        kinds[targets] = COMBINED
        return MixingPlan(self.num_source, out_ptr, out_idx, out_w, kinds, self.output, dict(self.stats))

    def explain(self, target_id: int, tokenizer, source_tokenizer=None, top: int = 5) -> str:
        """How one target token's row was made, e.g. ``▁кіт: 0.62 x ▁кі + 0.38 x т``.

        Args:
            target_id: the target token's id.
            tokenizer: the target tokenizer (names the token).
            source_tokenizer: names the source tokens (``#id`` without it).
            top: at most this many terms are shown; the rest are counted.

        Raises:
            KeyError: ``target_id`` is not a target id of this plan.
        """
        if target_id is None or not 0 <= target_id < self.num_target:
            raise KeyError(f"token {target_id!r} is not in the target vocabulary")
        kind = int(self.kinds[target_id])
        name = tokenizer.convert_ids_to_tokens(target_id)
        if kind in (RANDOM, MEAN):
            return f"{name}: {KIND_NAMES[kind]} fallback"
        pairs = self.row(target_id)

        def label(sid):
            return source_tokenizer.convert_ids_to_tokens(sid) if source_tokenizer is not None else f"#{sid}"

        if kind == COPIED:
            return f"{name}: copied from {label(pairs[0][0])}"
        body = " + ".join(f"{w:.2f} x {label(s)}" for s, w in pairs[:top])
        more = f" + {len(pairs) - top} more" if len(pairs) > top else ""
        cal = self.calibration
        if cal and len(cal.get("ids", ())):
            hit = np.flatnonzero(np.asarray(cal["ids"]) == target_id)
            if len(hit):
                more += f"; output score shifted by {float(np.asarray(cal['shifts'])[:, hit[0]].sum()):+.2f} (calibration)"
        return f"{name}: {body}{more}"

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

        Raises:
            ValueError: ``source`` has fewer rows than the plan's source vocabulary.
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
        self._mix_into(out, src, chunk_rows)
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

    def _mix_into(self, out: torch.Tensor, src: torch.Tensor, chunk_rows: int) -> None:
        """Write the COPIED and COMBINED rows of the plan into ``out`` (V_t x d)."""
        indptr = torch.from_numpy(self.indptr)
        indices = torch.from_numpy(self.indices).to(src.device)
        weights = torch.from_numpy(self.weights).to(device=src.device, dtype=src.dtype)
        # One sparse (CSR) x dense product per block of rows: no nnz x d gather, so dense
        # rows (CLP mixes every overlapping token) cost no more memory than sparse ones. Each
        # row's terms are summed in the same order whatever the blocking.
        for start in range(0, self.num_target, chunk_rows):
            stop = min(start + chunk_rows, self.num_target)
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


class PlanBuilder:
    """Collects per-token decisions and produces a :class:`MixingPlan`.

    Later calls override earlier ones for the same target id, so a method can start with a
    fallback for everything and refine it. Tokens never assigned become RANDOM. Combined rows
    are kept in blocks of CSR rows (one per :meth:`combine_rows` call; single :meth:`combine`
    calls are gathered into one block) and assembled by :meth:`build` without a per-row loop.
    """

    def __init__(self, num_target: int, num_source: int):
        self.num_target = num_target
        self.num_source = num_source
        self.kinds = np.full(num_target, RANDOM, dtype=np.int8)
        self._copy = np.full(num_target, -1, dtype=np.int64)
        self._blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (indptr, indices, weights)
        self._owner = np.full(num_target, -1, dtype=np.int64)  # block holding a COMBINED row, or -1
        self._owner_row = np.zeros(num_target, dtype=np.int64)  # its row inside that block
        self._pending: list[tuple[int, np.ndarray, np.ndarray]] = []  # single rows not yet in a block

    def copy(self, target_ids, source_ids) -> None:
        """Target rows that are exact copies of source rows."""
        self._flush()
        target_ids = np.asarray(target_ids, dtype=np.int64)
        self._copy[target_ids] = np.asarray(source_ids, dtype=np.int64)
        self.kinds[target_ids] = COPIED
        self._owner[target_ids] = -1

    def combine(self, target_id: int, source_ids, weights) -> None:
        """One target row as the weighted sum of source rows (zero weights are dropped)."""
        ids = np.asarray(source_ids, dtype=np.int64).reshape(-1)
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if len(ids) != len(w):
            raise ValueError(f"{len(ids)} source ids but {len(w)} weights for target {target_id}")
        self._pending.append((int(target_id), ids, w))

    def combine_rows(self, target_ids, indptr, source_ids, weights) -> None:
        """Many target rows in CSR form (row ``i`` is ``source_ids[indptr[i]:indptr[i + 1]]``).

        Zero weights are dropped; a row left without any weight becomes a RANDOM fallback.
        Later rows for the same target id win, within the call as across calls.
        """
        self._flush()
        self._add_block(target_ids, indptr, source_ids, weights)

    def combine_many(self, target_ids, source_ids: np.ndarray, weights: np.ndarray) -> None:
        """Dense form: ``source_ids`` and ``weights`` of shape (n, k); zero weights dropped."""
        source_ids = np.asarray(source_ids)
        n, k = source_ids.shape
        self.combine_rows(target_ids, np.arange(n + 1, dtype=np.int64) * k, source_ids.reshape(-1), np.asarray(weights).reshape(-1))

    def fallback(self, target_ids, kind: int = RANDOM) -> None:
        """Target rows drawn at random (RANDOM) or set to the mean row (MEAN)."""
        self._flush()
        target_ids = np.asarray(target_ids, dtype=np.int64)
        self.kinds[target_ids] = kind
        self._copy[target_ids] = -1
        self._owner[target_ids] = -1

    def _flush(self) -> None:
        """Turn the single rows given by :meth:`combine` into one block, in call order."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        lengths = np.array([len(ids) for _, ids, _ in pending], dtype=np.int64)
        indptr = np.zeros(len(pending) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        self._add_block(
            np.array([t for t, _, _ in pending], dtype=np.int64), indptr,
            np.concatenate([ids for _, ids, _ in pending]), np.concatenate([w for _, _, w in pending]),
        )

    def _add_block(self, target_ids, indptr, source_ids, weights) -> None:
        targets = np.asarray(target_ids, dtype=np.int64).reshape(-1)
        indptr = np.asarray(indptr, dtype=np.int64)
        ids = np.asarray(source_ids, dtype=np.int64).reshape(-1)
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if len(indptr) != len(targets) + 1 or indptr[-1] != len(ids) or len(ids) != len(w):
            raise ValueError("combine_rows needs indptr of len(target_ids) + 1 entries ending at len(source_ids) == len(weights)")
        keep = w != 0
        row_of = np.repeat(np.arange(len(targets)), np.diff(indptr))
        lengths = np.bincount(row_of[keep], minlength=len(targets))
        kept_ptr = np.zeros(len(targets) + 1, dtype=np.int64)
        np.cumsum(lengths, out=kept_ptr[1:])
        block = len(self._blocks)
        self._blocks.append((kept_ptr, ids[keep], w[keep]))
        # The last row given for a repeated target id wins (numpy does not promise an order
        # for repeated indices in one assignment, so only the last occurrence is assigned).
        _, from_end = np.unique(targets[::-1], return_index=True)
        last = len(targets) - 1 - from_end
        chosen, empty = targets[last], lengths[last] == 0
        self._owner[chosen] = np.where(empty, -1, block)
        self._owner_row[chosen] = last
        self._copy[chosen] = -1
        self.kinds[chosen] = np.where(empty, RANDOM, COMBINED).astype(np.int8)

    def build(self, stats: dict | None = None, output: MixingPlan | None = None) -> MixingPlan:
        """The plan of every decision so far.

        Raises:
            ValueError: a row refers to a source id outside the source vocabulary.
        """
        self._flush()
        combined = np.flatnonzero((self.kinds == COMBINED) & (self._owner >= 0))
        # Every block's rows as one CSR matrix: row r of block b is global row row_base[b] + r.
        row_base = np.cumsum([0] + [len(ptr) - 1 for ptr, _, _ in self._blocks])
        entry_base = np.cumsum([0] + [len(ids) for _, ids, _ in self._blocks])
        starts_all = np.concatenate([ptr[:-1] + entry_base[b] for b, (ptr, _, _) in enumerate(self._blocks)] or [np.zeros(0, np.int64)])
        lengths_all = np.concatenate([np.diff(ptr) for ptr, _, _ in self._blocks] or [np.zeros(0, np.int64)])
        global_rows = row_base[self._owner[combined]] + self._owner_row[combined]
        lengths = np.zeros(self.num_target, dtype=np.int64)
        lengths[self.kinds == COPIED] = 1
        lengths[combined] = lengths_all[global_rows]
        indptr = np.zeros(self.num_target + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        indices = np.zeros(indptr[-1], dtype=np.int64)
        weights = np.zeros(indptr[-1], dtype=np.float64)
        copied = np.flatnonzero(self.kinds == COPIED)
        indices[indptr[copied]] = self._copy[copied]
        weights[indptr[copied]] = 1.0
        if len(combined):
            src = concat_ranges(starts_all[global_rows], lengths[combined])
            dst = concat_ranges(indptr[combined], lengths[combined])
            indices[dst] = np.concatenate([ids for _, ids, _ in self._blocks])[src]
            weights[dst] = np.concatenate([w for _, _, w in self._blocks])[src]
        _check_source_ids(indices, self.num_source)
        return MixingPlan(self.num_source, indptr, indices, weights, self.kinds.copy(), output, dict(stats or {}))


def blend_plans(local: MixingPlan, global_: MixingPlan, global_weight: float, stats: dict | None = None) -> MixingPlan:
    """Row-wise convex blend of two plans over the same vocabularies.

    COPIED rows come from ``local`` (both methods copy the same overlap). A row COMBINED in both
    becomes ``(1 - w) * local + w * global``; a row COMBINED in only one plan takes it; other rows
    keep ``local``'s fallback. Duplicate source ids in a row are summed.

    Raises:
        ValueError: the plans are over different vocabulary sizes.
    """
    n = local.num_target
    if global_.num_target != n or global_.num_source != local.num_source:
        raise ValueError("plans to blend must have the same target and source sizes")
    kinds = local.kinds.copy()
    both = (local.kinds == COMBINED) & (global_.kinds == COMBINED)
    only_global = (global_.kinds == COMBINED) & (local.kinds != COMBINED) & (local.kinds != COPIED)
    r1, c1, w1 = local.entries(np.flatnonzero((local.kinds == COPIED) | (local.kinds == COMBINED)))
    r2, c2, w2 = global_.entries(np.flatnonzero(both | only_global))
    scale1 = np.where(both[r1], 1.0 - global_weight, 1.0)
    scale2 = np.where(both[r2], global_weight, 1.0)
    rows = np.concatenate([r1, r2])
    cols = np.concatenate([c1, c2])
    vals = np.concatenate([w1 * scale1, w2 * scale2])
    keys = rows * np.int64(local.num_source) + cols
    unique, inverse = np.unique(keys, return_inverse=True)
    summed = np.zeros(len(unique))
    np.add.at(summed, inverse, vals)
    u_rows = unique // local.num_source
    keep = summed != 0
    u_rows, u_cols, summed = u_rows[keep], (unique % local.num_source)[keep], summed[keep]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(u_rows, minlength=n), out=indptr[1:])
    kinds[only_global] = COMBINED
    return MixingPlan(local.num_source, indptr, u_cols.astype(np.int64), summed, kinds, None, dict(stats or {}))


# ------------------------------------------------------------------------------ the plan file
_PLAN_ARRAYS = ("indptr", "indices", "weights", "kinds")
_PLAN_METADATA = "hf_vocabswap_plan"
_CALIBRATION_ARRAYS = ("ids", "shifts", "directions")


def save_plan(plan: MixingPlan, path) -> None:
    """Write ``plan`` (and its output plan and calibration) as safetensors; read back by :func:`load_plan`."""
    tensors = {name: torch.from_numpy(getattr(plan, name)) for name in _PLAN_ARRAYS}
    if plan.output is not None:
        tensors.update({f"output.{name}": torch.from_numpy(getattr(plan.output, name)) for name in _PLAN_ARRAYS})
    info = {"num_source": plan.num_source}
    cal = plan.calibration
    if cal:
        info["calibration_mode"] = str(cal["mode"])
        for key in _CALIBRATION_ARRAYS:
            if key in cal:
                tensors[f"calibration.{key}"] = torch.from_numpy(np.ascontiguousarray(cal[key]))
    # One metadata key: safetensors writes several in a random order, and the file's bytes must
    # not change from save to save.
    save_file(tensors, str(Path(path)), metadata={_PLAN_METADATA: json.dumps(info, sort_keys=True)})


def load_plan(path) -> MixingPlan:
    """The plan saved by :func:`save_plan` (``stats`` are in the record, not in this file).

    Raises:
        FileNotFoundError: there is no file at ``path``.
        KeyError: the file is not a plan file (a plan array or ``num_source`` is missing).
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no mixing plan file at {str(path)!r}")
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
        if _PLAN_METADATA in meta:
            meta = json.loads(meta[_PLAN_METADATA])
        num_source = int(meta["num_source"])  # older files have num_source (and calibration_mode) as keys
        t = {k: f.get_tensor(k) for k in f.keys()}
    output = None
    if "output.kinds" in t:
        output = MixingPlan(num_source, *(t[f"output.{name}"] for name in _PLAN_ARRAYS))
    plan = MixingPlan(num_source, *(t[name] for name in _PLAN_ARRAYS), output)
    if "calibration.ids" in t:
        plan.calibration = {"mode": meta.get("calibration_mode", "direction"),
                            **{k.split(".", 1)[1]: v for k, v in t.items() if k.startswith("calibration.")}}
    return plan
