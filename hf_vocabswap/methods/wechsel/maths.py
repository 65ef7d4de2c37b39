"""WECHSEL maths as plain functions: Procrustes, and the reference's own top-k softmax arithmetic.

Shapes are given in each docstring. The mixing kernels WECHSEL shares with other methods (top-k
softmax mixing, subword vectors from word vectors) are in :mod:`hf_vocabswap.methods.mixing`.
"""

from __future__ import annotations

import numpy as np
import torch

from ...progress import progress_bar


def orthogonal_procrustes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The orthogonal ``R`` (d x d) minimizing ``||a @ R - b||_F`` for pairs of rows ``a``, ``b`` (n x d).

    ``R = U V^T`` where ``U S V^T`` is the SVD of ``a^T b`` (Schönemann, 1966). Computed in the
    dtype of the inputs.
    """
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"Procrustes needs two (n, d) arrays of one shape, got {a.shape} and {b.shape}")
    u, _, vt = np.linalg.svd(a.T @ b)
    return u @ vt


def _reference_unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows divided by (norm + 1e-8), then by their norm again (zero rows stay zero).

    The two steps, in this order and in NumPy float64, are the arithmetic of the WECHSEL
    reference (its own normalization, then scikit-learn's ``cosine_similarity``), so that
    similarities come out bit for bit the same and exact ties break the same way.
    """
    x = x / (np.linalg.norm(x, axis=1)[:, np.newaxis] + 1e-8)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    norms[norms < 10 * np.finfo(norms.dtype).eps] = 1.0
    return x / norms[:, None]


def reference_topk_softmax_mixing(
    vectors: np.ndarray,
    rows: np.ndarray,
    keys: np.ndarray,
    *,
    k: int = 10,
    temperature: float = 0.1,
    batch_size: int = 1024,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`hf_vocabswap.methods.mixing.topk_softmax_mixing` computed the way ``wechsel`` 0.0.4 computes it (CPU, NumPy).

    Fastext vectors of short strings are often exactly parallel (e.g. ``tv`` and ``mtv``), so
    the 10th and 11th neighbour of a token can tie exactly. To pick the same neighbour as the
    reference, the similarities are computed with the same operations (float64, the same
    normalizations, one product per block of ``batch_size`` consecutive target ids) and the
    neighbours chosen with ``np.argpartition`` wherever the k-th and (k+1)-th scores tie.

    Args:
        vectors: (n_t, d) float64 vectors of ALL target tokens (blocks are cut by target id).
        rows: ids of the target tokens to mix (others are computed but ignored).
        keys: (m, d) float64 vectors of the candidate source tokens.

    Returns:
        CSR ``(indptr, key_ids, weights, sims)`` for ``rows`` in the given order, neighbours
        most similar first.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    keys_n = _reference_unit_rows(np.asarray(keys, dtype=np.float64))
    n_t = vectors.shape[0]
    kk = min(k, keys_n.shape[0])
    # The reference normalizes the whole target matrix before cutting blocks.
    first = vectors / (np.linalg.norm(vectors, axis=1)[:, np.newaxis] + 1e-8)
    wanted = np.zeros(n_t, dtype=bool)
    wanted[rows] = True
    cols = np.zeros((n_t, kk), dtype=np.int64)
    sims = np.zeros((n_t, kk), dtype=np.float64)
    blocks = range(0, n_t, batch_size)
    for start in progress_bar(blocks, group="method", desc="WECHSEL nearest source tokens (faithful)", enabled=progress):
        stop = min(start + batch_size, n_t)
        if not wanted[start:stop].any():
            continue
        block = first[start:stop]
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        norms[norms < 10 * np.finfo(norms.dtype).eps] = 1.0
        scores = (block / norms[:, None]) @ keys_n.T
        local = np.flatnonzero(wanted[start:stop])
        # The top k are unambiguous unless the k-th and (k+1)-th scores tie exactly; only those
        # rows need argpartition (slow on rows with many equal scores) to pick as the reference.
        width = min(kk + 1, keys_n.shape[0])
        values, top = torch.topk(torch.from_numpy(scores[local]), width, dim=1)
        values, top = values.numpy(), top.numpy()
        tied = values[:, kk - 1] == values[:, kk] if width > kk else np.zeros(len(local), dtype=bool)
        cols[start + local] = top[:, :kk]
        sims[start + local] = values[:, :kk]
        for j in np.flatnonzero(tied).tolist():
            row = scores[local[j]]
            best = np.argpartition(row, -kk)[-kk:]
            order = np.argsort(-row[best], kind="stable")
            cols[start + local[j]] = best[order]
            sims[start + local[j]] = row[best[order]]
    cols, sims = cols[rows], sims[rows]
    z = np.exp(sims / temperature)
    weights = z / z.sum(axis=1, keepdims=True)
    indptr = np.arange(len(rows) + 1, dtype=np.int64) * kk
    return indptr, cols.reshape(-1), weights.reshape(-1), sims.reshape(-1)
