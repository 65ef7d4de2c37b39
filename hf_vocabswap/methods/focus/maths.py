"""FOCUS maths as plain tensor functions: sparsemax and chunked cosine-similarity mixing.

Sparsemax (Martins & Astudillo, 2016) is the Euclidean projection of a score vector onto
the probability simplex: sort ``z`` descending, ``k = max{k : 1 + k z_(k) > sum_{j<=k}
z_(j)}``, ``tau = (sum_{j<=k} z_(j) - 1) / k``, ``p = max(z - tau, 0)``. The condition holds
exactly for a prefix of the sorted scores; the row-wise version below finds ``tau`` from the
top few scores and sorts only rows whose support is long (see
:func:`sparsemax_threshold`).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

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


def _newton_threshold(top: torch.Tensor, max_steps: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``tau`` of each row of ``top`` (any order) by Newton steps on ``sum max(z - tau, 0) = 1``.

    ``tau <- (sum_{z > tau} z - 1) / #{z > tau}`` is Newton's step on that convex, piecewise
    linear function: from any start it lands at or below the root and then climbs to it,
    stopping when the support stops changing (a handful of steps). It starts from the mean
    bound ``(sum(top) - 1) / k``, which is below the threshold of the whole row. Sums are in
    float64; for float32 scores they are exact (every partial sum of up to 2^20 float32
    cosines fits a float64 mantissa), so ``tau`` does not depend on the order of the scores
    and equals the sorted-prefix formula bit for bit.

    Returns:
        ``(tau, done)``: float64 thresholds, and whether each row's support settled.
    """
    top = top.to(torch.float64)
    tau = (top.sum(1) - 1) / top.shape[1]
    count = torch.full_like(tau, -1, dtype=torch.long)
    done = torch.zeros(len(tau), dtype=torch.bool, device=top.device)
    for _ in range(max_steps):
        inside = top > tau[:, None]
        new_count = inside.sum(1)
        done = new_count == count
        if bool(done.all()):
            break
        tau = torch.where(done, tau, (torch.where(inside, top, 0.0).sum(1) - 1) / new_count)
        count = new_count
    return tau, done


def _threshold_from_sorted(ranked: torch.Tensor) -> torch.Tensor:
    """``tau = max_j (sum of the top j - 1) / j`` for rows sorted descending (float64 result).

    ``f(j) = (S_j - 1) / j`` rises exactly while ``1 + j z_(j) > S_j`` (j is in the support)
    and falls after, so its maximum over all prefixes is ``tau``.
    """
    shifted_cumsum = ranked.to(torch.float64).cumsum(1) - 1
    ranks = torch.arange(1, ranked.shape[1] + 1, dtype=torch.float64, device=ranked.device)
    return (shifted_cumsum / ranks).amax(1)


def sparsemax_threshold(scores: torch.Tensor, windows: tuple[int, ...] = (32, 1024)) -> torch.Tensor:
    """The sparsemax threshold ``tau`` of every row of ``scores`` (n, m), in float64.

    The top ``windows[0]`` scores of each row (an unsorted top-k, no sort) settle every row
    whose support is shorter than that, by :func:`_newton_threshold`; rows whose support may
    go on past the window (its smallest score is still above ``tau``) try the next window,
    and only rows whose support outgrows every window use the whole row. A row whose Newton
    steps do not settle (not seen; a guard against rounding) is sorted in full.
    """
    n, m = scores.shape
    tau = torch.empty(n, dtype=torch.float64, device=scores.device)
    rows = torch.arange(n, device=scores.device)
    for k in [w for w in windows if w < m] + [m]:
        block = scores if len(rows) == n else scores[rows]
        top = block if k == m else torch.topk(block, k, dim=1, largest=True, sorted=False).values
        found, done = _newton_threshold(top)
        if not bool(done.all()):
            stuck = torch.nonzero(~done)[:, 0]
            found[stuck] = _threshold_from_sorted(torch.sort(block[stuck], dim=1, descending=True).values)
        tau[rows] = found
        if k == m:
            break
        # The support may go on past the window while the window's smallest score is inside it.
        rows = rows[top.amin(1).to(torch.float64) > found]
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

    The first window holds nearly every support of the last block (its 99th percentile plus
    a margin, in steps of 32), so most rows settle in one unsorted top-k; the rest get twice
    that, then the whole row.
    """
    typical = float(np.percentile(support_sizes, 99)) if len(support_sizes) else 0.0
    first = max(32, 32 * int(np.ceil(typical * 1.15 / 32)))
    return (first, 2 * first)


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (rows of zeros stay zero)."""
    norms = x.norm(dim=1, keepdim=True)
    return x / torch.where(norms > 0, norms, torch.ones_like(norms))


def auto_chunk_rows(num_columns: int, budget_elements: int = 1 << 19, min_rows: int = 64) -> int:
    """Query rows per block: one (rows x num_columns) float32 score block of about
    ``budget_elements`` (2 MB, so the top-k and Newton passes run from cache), at least
    ``min_rows`` rows so the similarity product stays a real matrix product."""
    return max(min_rows, budget_elements // max(1, num_columns))


class _BlockMixer:
    """The sparsemax rows of one block of queries against every key, in a reused score buffer.

    A fresh (rows x keys) allocation per block costs more in page faults than the product
    itself, so each thread keeps one buffer of ``step`` rows.
    """

    def __init__(self, q: torch.Tensor, keys_n: torch.Tensor, step: int, device, dtype, windows, threads: int | None):
        self.q, self.keys_n, self.step, self.device, self.dtype = q, keys_n, step, device, dtype
        self.windows, self.threads, self.local = windows, threads, threading.local()

    def __call__(self, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.threads is not None:
            torch.set_num_threads(self.threads)  # per worker thread: blocks run in parallel, each op on one core
        buffer = getattr(self.local, "buffer", None)
        if buffer is None:
            buffer = self.local.buffer = torch.empty(self.step, self.keys_n.shape[1], dtype=self.dtype, device=self.device)
        block = normalize_rows(self.q[start : start + self.step].to(device=self.device, dtype=self.dtype))
        scores = buffer[: block.shape[0]]
        torch.matmul(block, self.keys_n, out=scores)
        rows, cols, weights = sparsemax_rows(scores, self.windows)
        counts = torch.bincount(rows, minlength=block.shape[0]).cpu().numpy()
        # anchor positions as int32: halves the largest buffer
        return counts, cols.to(torch.int32).cpu().numpy(), weights.cpu().numpy()


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

    The queries go in cache-sized blocks (one matrix product into a reused buffer, then
    :func:`sparsemax_rows`). On the CPU the blocks run on a pool of one thread per core,
    each op single-threaded: thousands of small multi-threaded ops would spend their time in
    thread barriers, and collapse when other processes share the cores. The first block
    sizes the top-k windows of the rest; the result does not depend on the blocking.

    Args:
        queries: (n, d) auxiliary vectors of the tokens to build (non-zero rows).
        keys: (m, d) auxiliary vectors of the anchors (non-zero rows).
        device: where the similarity and sparsemax run.
        dtype: precision of the similarity matmul (weights are always float64).
        chunk_size: query rows per block; default keeps a block near 2 MB of scores.
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
    step = min(n, chunk_size or auto_chunk_rows(keys_n.shape[1]))
    # A small first block sizes the top-k windows of the rest (its rows mostly overflow the
    # first guess of 32, which costs a second pass).
    head = min(n, 64)
    starts = [0, *range(head, n, step)]
    first = _BlockMixer(q, keys_n, head, device, dtype, (32, 1024), None)(0)
    on_cpu = torch.device(device).type == "cpu"
    workers = torch.get_num_threads() if on_cpu else 1
    mixer = _BlockMixer(q, keys_n, step, device, dtype, _next_windows(first[0]), 1 if workers > 1 else None)
    results = [first]
    bar = progress_bar(total=len(starts), group="method", desc="hf_vocabswap: FOCUS sparsemax", unit=" blocks", enabled=progress)
    try:
        bar.update(1)
        if workers > 1 and len(starts) > 1:
            with ThreadPoolExecutor(workers) as pool:
                for result in pool.map(mixer, starts[1:]):
                    results.append(result)
                    bar.update(1)
        else:
            for start in starts[1:]:
                results.append(mixer(start))
                bar.update(1)
    finally:
        if workers > 1:
            torch.set_num_threads(workers)  # the pool's threads set it to 1
        bar.close()
    np.cumsum(np.concatenate([r[0] for r in results]), out=indptr[1:])
    return indptr, np.concatenate([r[1] for r in results]), np.concatenate([r[2] for r in results])
