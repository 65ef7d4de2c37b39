"""FOCUS maths as plain tensor functions: sparsemax and chunked cosine-similarity mixing.

Sparsemax (Martins & Astudillo, 2016) is the Euclidean projection of a score vector onto
the probability simplex: sort ``z`` descending, ``k = max{k : 1 + k z_(k) > sum_{j<=k}
z_(j)}``, ``tau = (sum_{j<=k} z_(j) - 1) / k``, ``p = max(z - tau, 0)``. The condition holds
exactly for a prefix of the sorted scores; the row-wise version below finds ``tau`` from the
top few scores and sorts only rows whose support is long (see
:func:`sparsemax_threshold`).
"""

from __future__ import annotations

import numpy as np
import torch

from ...progress import progress_bar


def sparsemax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Sparsemax along ``dim`` by a full sort (the definition; any shape).

    Returns:
        A tensor shaped like ``z``: non-negative, summing to 1 along ``dim``, usually sparse.
    """
    z = z.transpose(dim, -1)
    ranked, _ = torch.sort(z, dim=-1, descending=True)
    shifted_cumsum = ranked.cumsum(-1) - 1
    k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
    support = (k * ranked > shifted_cumsum).sum(-1, keepdim=True)
    tau = shifted_cumsum.gather(-1, support - 1) / support.to(z.dtype)
    return (z - tau).clamp_min(0).transpose(dim, -1)


def _threshold_from_sorted(ranked: torch.Tensor) -> torch.Tensor:
    """``tau = max_j (sum of the top j - 1) / j`` for rows sorted descending (float64 result).

    ``f(j) = (S_j - 1) / j`` rises exactly while ``1 + j z_(j) > S_j`` (j is in the support)
    and falls after, so its maximum over any prefix window is ``tau`` when the support
    ends inside the window, and a lower bound otherwise.
    """
    shifted_cumsum = ranked.to(torch.float64).cumsum(1) - 1
    ranks = torch.arange(1, ranked.shape[1] + 1, dtype=torch.float64, device=ranked.device)
    return (shifted_cumsum / ranks).amax(1)


def sparsemax_threshold(scores: torch.Tensor, windows: tuple[int, ...] = (32, 1024)) -> torch.Tensor:
    """The sparsemax threshold ``tau`` of every row of ``scores`` (n, m), in float64.

    The top ``windows[0]`` scores settle every row whose support is shorter than that (one
    cheap top-k pass); the rows left open try the next window, and only rows whose support
    outgrows every window are sorted in full.
    """
    n, m = scores.shape
    tau = torch.empty(n, dtype=torch.float64, device=scores.device)
    rows = torch.arange(n, device=scores.device)
    for k in [w for w in windows if w < m] + [m]:
        block = scores if len(rows) == n else scores[rows]
        if k == m:
            top, _ = torch.sort(block, dim=1, descending=True)
        else:
            top = torch.topk(block, k, dim=1, largest=True, sorted=True).values
        tau[rows] = _threshold_from_sorted(top)
        if k == m:
            break
        # The support may go on past the window while the window's last score is inside it.
        rows = rows[top[:, -1].to(torch.float64) > tau[rows]]
        if len(rows) == 0:
            break
    return tau


def sparsemax_rows(scores: torch.Tensor, windows: tuple[int, ...] = (32, 1024)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sparsemax of every row of ``scores`` (n, m), returned as its non-zero entries.

    Returns:
        ``(rows, columns, weights)``, 1-D, in row-major order; weights in float64.
    """
    n, m = scores.shape
    if n == 0 or m == 0:
        empty = torch.zeros(0, dtype=torch.long, device=scores.device)
        return empty, empty, torch.zeros(0, dtype=torch.float64, device=scores.device)
    tau = sparsemax_threshold(scores, windows)
    inside = scores > tau[:, None].to(scores.dtype)
    rows, columns = torch.nonzero(inside, as_tuple=True)
    weights = scores[rows, columns].to(torch.float64) - tau[rows]
    keep = weights > 0  # rounding at the threshold: never keep a zero or negative weight
    return rows[keep], columns[keep], weights[keep]


def _next_windows(support_sizes: np.ndarray) -> tuple[int, ...]:
    """Top-k windows for the next block, sized from this block's supports.

    Small supports (well-separated similarities) keep the cheap 32-window; long ones (the
    flat similarities of fastText vectors trained on little text) skip straight to a window
    that holds almost every support, saving a pass and a copy of the scores.
    """
    typical = float(np.percentile(support_sizes, 95)) if len(support_sizes) else 0.0
    if typical < 24:
        return (32, 1024)
    first = 1 << int(np.ceil(np.log2(typical * 1.25)))
    return (first,) if first >= 1024 else (first, 1024)


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (rows of zeros stay zero)."""
    norms = x.norm(dim=1, keepdim=True)
    return x / torch.where(norms > 0, norms, torch.ones_like(norms))


def auto_chunk_rows(num_columns: int, budget_elements: int = 1 << 24) -> int:
    """Rows per chunk so that one (rows x num_columns) score block has about ``budget_elements``."""
    return max(1, budget_elements // max(1, num_columns))


def sparsemax_mixing(
    queries: np.ndarray | torch.Tensor,
    keys: np.ndarray | torch.Tensor,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    chunk_size: int | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FOCUS weights: sparsemax over the cosine similarities of each query to all keys.

    Args:
        queries: (n, d) auxiliary vectors of the tokens to build (non-zero rows).
        keys: (m, d) auxiliary vectors of the anchors (non-zero rows).
        device: where the similarity and sparsemax run.
        dtype: precision of the similarity matmul (weights are always float64).
        chunk_size: query rows per block; default keeps a block near 16M scores.
        progress: show a progress bar over blocks.

    Returns:
        CSR arrays ``(indptr (n + 1,) int64, key_ids (nnz,) int32, weights (nnz,) float64)``:
        row ``i`` mixes keys ``key_ids[indptr[i]:indptr[i+1]]`` with the matching weights
        (summing to 1).
    """
    q = torch.as_tensor(queries)
    kx = torch.as_tensor(keys)
    n = q.shape[0]
    indptr = np.zeros(n + 1, dtype=np.int64)
    if n == 0:
        return indptr, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    if kx.shape[0] == 0:
        raise ValueError("sparsemax_mixing needs at least one key")
    keys_n = normalize_rows(kx.to(device=device, dtype=dtype)).T.contiguous()
    step = chunk_size or auto_chunk_rows(keys_n.shape[1])
    counts = np.zeros(n, dtype=np.int64)
    all_cols, all_weights = [], []
    windows: tuple[int, ...] = (32, 1024)
    for start in progress_bar(
        range(0, n, step), group="method", desc="hf_vocabswap: FOCUS sparsemax", unit=" blocks", enabled=progress
    ):
        block = normalize_rows(q[start : start + step].to(device=device, dtype=dtype))
        scores = block @ keys_n
        rows, cols, weights = sparsemax_rows(scores, windows)
        block_counts = torch.bincount(rows, minlength=block.shape[0]).cpu().numpy()
        counts[start : start + block.shape[0]] = block_counts
        windows = _next_windows(block_counts)
        all_cols.append(cols.to(torch.int32).cpu().numpy())  # anchor positions: int32 halves the buffer
        all_weights.append(weights.cpu().numpy())
        del scores
    np.cumsum(counts, out=indptr[1:])
    return indptr, np.concatenate(all_cols), np.concatenate(all_weights)
