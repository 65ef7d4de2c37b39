"""Mixing kernels that several methods share, as plain functions.

- subword means (FVT, and the FVT fallbacks of OFA, WECHSEL, trim and the hybrid):
  :func:`decompose`, :func:`combine_subword_means`, :func:`subword_mean_plan`;
- top-k softmax mixing over cosine similarities (WECHSEL, OFA, the hybrid):
  :func:`topk_softmax_mixing`;
- token vectors from word vectors (WECHSEL's frequency-weighted means, OFA):
  :func:`plain_encoder`, :func:`word_containment_vectors`.

Shapes are given in each docstring. Similarities run in chunks of query rows with one matrix
product and one ``topk`` per chunk, on any torch device. A method imports these kernels from
here, never from another method's module.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from tokenizers import Tokenizer

from ..plan import MixingPlan
from ..progress import progress_bar

# How the output rows of new tokens are made by subword means: their mean, or the first subword's (EEVE).
OUTPUT_RULES = ("mean", "first")

__all__ = [
    "OUTPUT_RULES",
    "combine_subword_means", "decompose", "normalize_rows", "plain_encoder", "subword_mean_plan",
    "topk_softmax_mixing", "word_containment_vectors",
]


# ------------------------------------------------------------------------------ subword means
def decompose(ctx, target_ids) -> dict[int, list[int]]:
    """Source ids of each target token's text, split by the source tokenizer (may be empty).

    A token romanized by :mod:`hf_vocabswap.romanize` is split in its romanized form.
    """
    src = ctx.alignment.source
    out = {}
    for t in target_ids:
        form = ctx.alignment.decomposition_form(t)
        out[t] = [] if form is None else [s for s in src.segment(form) if s < ctx.num_source]
    return out


def combine_subword_means(builder, ctx, target_ids) -> dict[int, list[int]]:
    """Set each target token that the source tokenizer can split to the mean of its pieces' rows.

    Returns every token's pieces (empty where nothing represents its text; those rows are left
    as the builder had them).
    """
    pieces = decompose(ctx, target_ids)
    rows = [(t, ids) for t, ids in pieces.items() if ids]
    lengths = np.array([len(ids) for _, ids in rows], dtype=np.int64)
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    builder.combine_rows(
        [t for t, _ in rows], indptr,
        np.array([s for _, ids in rows for s in ids], dtype=np.int64), np.repeat(1.0 / np.maximum(lengths, 1), lengths),
    )
    return pieces


def subword_mean_plan(ctx, output_rule: str = "mean") -> tuple[MixingPlan, dict[int, list[int]]]:
    """FVT's plan: overlap copied, every other token the mean of its source subwords.

    Args:
        ctx: the :class:`~hf_vocabswap.methods.MethodContext`.
        output_rule: "mean" (one plan for input and output) or "first": the output rows of new
            tokens are their first subword's (EEVE's rule for causal LMs), in ``plan.output``.

    Returns:
        ``(plan, pieces)``: the plan, and each new token's source pieces (empty where none).

    Raises:
        ValueError: ``output_rule`` is neither "mean" nor "first".
    """
    builder = ctx.base_builder()
    new_ids = np.flatnonzero(ctx.alignment.target_to_source < 0)
    pieces = combine_subword_means(builder, ctx, new_ids.tolist())
    stats = {"decomposed": int(sum(1 for v in pieces.values() if v)), "undecomposable": int(sum(1 for v in pieces.values() if not v))}
    output = None
    if output_rule == "first":
        out_builder = ctx.base_builder()
        for t, ids in pieces.items():
            if ids:
                out_builder.combine(t, ids[:1], [1.0])
        output = out_builder.build()
    elif output_rule != "mean":
        raise ValueError(f"output_rule must be 'mean' or 'first', not {output_rule!r}")
    return builder.build(stats, output), pieces


# ------------------------------------------------------------------------ similarity mixing
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
    desc: str = "nearest source tokens",
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
    q = torch.as_tensor(queries)
    keys_t = torch.as_tensor(keys)
    n, m = q.shape[0], keys_t.shape[0]
    kk = min(k, m)
    if n and not m:
        raise ValueError("top-k mixing needs at least one key")
    keys_n = normalize_rows(keys_t.to(device=device, dtype=dtype)).T.contiguous()
    step = chunk_size or max(1, (1 << 24) // max(1, m))  # ~16M scores per block
    all_cols, all_sims = [], []
    for start in progress_bar(range(0, n, step), group="method", desc=desc, enabled=progress, unit=" blocks"):
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


# ------------------------------------------------------------------ vectors from word vectors
def plain_encoder(tokenizer) -> Callable[[list[str]], list[list[int]]]:
    """texts -> token ids of each, without special tokens, padding or truncation.

    Works on a copy of the tokenizer's backend: the backend a transformers tokenizer holds may
    have padding or truncation switched on by an earlier call (padding would add pad ids to
    every shorter text of a batch).
    """
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
