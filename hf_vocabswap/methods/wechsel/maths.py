"""WECHSEL and OFA maths as plain functions: Procrustes, subword vectors, top-k softmax mixing.

Shapes are given in each docstring. Similarities run in chunks of target tokens with one
matrix product and one ``topk`` per chunk, on any torch device.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch


def orthogonal_procrustes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The orthogonal ``R`` (d x d) minimizing ``||a @ R - b||_F`` for pairs of rows ``a``, ``b`` (n x d).

    ``R = U V^T`` where ``U S V^T`` is the SVD of ``a^T b`` (Schönemann, 1966). Computed in the
    dtype of the inputs.
    """
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"Procrustes needs two (n, d) arrays of one shape, got {a.shape} and {b.shape}")
    u, _, vt = np.linalg.svd(a.T @ b)
    return u @ vt


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm; all-zero rows stay zero. Shape (n, d) -> (n, d)."""
    norms = x.norm(dim=1, keepdim=True)
    return x / torch.where(norms > 0, norms, torch.ones_like(norms))


def topk_softmax_mixing(
    queries: np.ndarray | torch.Tensor,
    keys: np.ndarray | torch.Tensor,
    *,
    k: int = 10,
    temperature: float = 0.1,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = None,
    progress: bool = False,
    desc: str = "hf_vocabswap: nearest source tokens",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For every query, its ``k`` most cosine-similar keys and weights ``softmax(sim / temperature)``.

    Args:
        queries: (n, d) vectors of the tokens to build.
        keys: (m, d) vectors of the candidate source tokens.
        k: neighbours per query (``min(k, m)`` are returned).
        temperature: softmax temperature over the top-k similarities.
        device: where the similarity and top-k run.
        dtype: precision of the similarity product (weights are float64). float64 by default:
            vectors averaged from many word vectors are often nearly collinear (cosines of
            0.9999), and float32 then orders neighbours by rounding noise.
        chunk_size: query rows per block (default: blocks of about 16M scores).
        progress: show a progress bar over blocks.

    Returns:
        ``(indptr (n + 1,), key_ids (n * kk,), weights (n * kk,), sims (n * kk,))`` in CSR
        layout, each row's neighbours most similar first (equal similarities: lower key id
        first, and at the k-th place the lower key ids are chosen, so every device picks the
        same neighbours); every row has ``kk = min(k, m)`` entries and its weights sum to 1.
    """
    from tqdm.auto import tqdm

    q = torch.as_tensor(queries)
    keys_t = torch.as_tensor(keys)
    n, m = q.shape[0], keys_t.shape[0]
    kk = min(k, m)
    if n and not m:
        raise ValueError("top-k mixing needs at least one key")
    keys_n = normalize_rows(keys_t.to(device=device, dtype=dtype)).T.contiguous()
    step = chunk_size or max(1, (1 << 24) // max(1, m))  # ~16M scores per block
    all_cols, all_sims = [], []
    for start in tqdm(range(0, n, step), desc=desc, unit=" blocks", disable=not progress, leave=False):
        block = normalize_rows(q[start : start + step].to(device=device, dtype=dtype))
        scores = block @ keys_n
        width = min(kk + 1, m)
        values, top = torch.topk(scores, width, dim=1, largest=True, sorted=True)
        sims, cols = values[:, :kk].to(torch.float64).cpu().numpy(), top[:, :kk].cpu().numpy()
        if width > kk:
            # Exact ties at the k-th place (identical token vectors are common) go to the lowest
            # source ids, whatever order the device's top-k returns them in.
            for i in torch.nonzero(values[:, kk - 1] == values[:, kk]).flatten().tolist():
                row, v = scores[i], values[i, kk - 1]
                above = torch.nonzero(row > v).flatten()
                equal = torch.nonzero(row == v).flatten()[: kk - len(above)]
                chosen = torch.cat([above, equal])
                cols[i] = chosen.cpu().numpy()
                sims[i] = row[chosen].to(torch.float64).cpu().numpy()
        order = np.lexsort((cols, -sims), axis=1)  # most similar first, ties by source id
        all_cols.append(np.take_along_axis(cols, order, 1))
        all_sims.append(np.take_along_axis(sims, order, 1))
        del scores
    cols = np.concatenate(all_cols).astype(np.int64) if all_cols else np.zeros((0, kk), dtype=np.int64)
    sims = np.concatenate(all_sims) if all_sims else np.zeros((0, kk), dtype=np.float64)
    z = sims / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True)) if n else z
    weights = z / z.sum(axis=1, keepdims=True) if n else z
    indptr = np.arange(n + 1, dtype=np.int64) * kk
    return indptr, cols.reshape(-1), weights.reshape(-1), sims.reshape(-1)


def plain_encoder(tokenizer) -> Callable[[list[str]], list[list[int]]]:
    """texts -> token ids of each, without special tokens, padding or truncation.

    Works on a copy of the tokenizer's backend: the backend a transformers tokenizer holds may
    have padding or truncation switched on by an earlier call (padding would add pad ids to
    every shorter text of a batch).
    """
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()

    def encode(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]

    return encode


def word_containment_vectors(
    encode: Callable[[list[str]], list[list[int]]],
    num_tokens: int,
    words: Sequence[str],
    word_vectors: np.ndarray,
    variants: Sequence[Callable[[str], str]],
    word_weights: np.ndarray | None = None,
    *,
    batch_size: int = 5000,
) -> tuple[np.ndarray, np.ndarray]:
    """Token vectors as the weighted mean of the vectors of the words whose tokenization contains them.

    Every word is tokenized once per variant (e.g. as is, with a leading space); in each
    tokenization every distinct token records the word once, so a token met in two variants of
    a word counts the word twice (as the WECHSEL and OFA references do).

    Args:
        encode: texts -> token ids of each (no special tokens).
        num_tokens: rows of the result (the tokenizer's size).
        words: (W,) words, rows of ``word_vectors``.
        word_vectors: (W, d) float array.
        variants: functions making the text to tokenize from a word.
        word_weights: (W,) weight of each word (e.g. its frequency); uniform when None.

    Returns:
        ``(vectors (num_tokens, d) float64, hits (num_tokens,) int64)``: rows of tokens no word
        contains are zero and have 0 hits.
    """
    d = word_vectors.shape[1]
    total = np.zeros((num_tokens, d), dtype=np.float64)
    mass = np.zeros(num_tokens, dtype=np.float64)
    hits = np.zeros(num_tokens, dtype=np.int64)
    weights = np.ones(len(words), dtype=np.float64) if word_weights is None else np.asarray(word_weights, dtype=np.float64)
    vec_t = torch.from_numpy(np.asarray(word_vectors, dtype=np.float64))
    total_t = torch.from_numpy(total)
    for start in range(0, len(words), batch_size):
        chunk = list(words[start : start + batch_size])
        tok_idx, word_idx = [], []
        for variant in variants:
            for j, ids in enumerate(encode([variant(w) for w in chunk])):
                for t in set(ids):
                    if 0 <= t < num_tokens:
                        tok_idx.append(t)
                        word_idx.append(start + j)
        if not tok_idx:
            continue
        t_arr = np.asarray(tok_idx, dtype=np.int64)
        w_arr = np.asarray(word_idx, dtype=np.int64)
        w = weights[w_arr]
        np.add.at(mass, t_arr, w)
        np.add.at(hits, t_arr, 1)
        total_t.index_add_(0, torch.from_numpy(t_arr), vec_t[torch.from_numpy(w_arr)] * torch.from_numpy(w)[:, None])
    covered = mass > 0
    total[covered] /= mass[covered, None]
    return total, hits


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
    """:func:`topk_softmax_mixing` computed the way ``wechsel`` 0.0.4 computes it (CPU, NumPy).

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
    from tqdm.auto import tqdm

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
    for start in tqdm(range(0, n_t, batch_size), desc="hf_vocabswap: WECHSEL nearest source tokens (faithful)", disable=not progress, leave=False):
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
