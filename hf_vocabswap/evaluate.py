"""Tokenizer statistics and held-out likelihood in bits per character.

Bits per character (bpc) is the measure that stays comparable when the tokenizer changes:
the total negative log-likelihood a model assigns to a text, in bits, divided by the number
of characters of that text. A tokenizer that cuts the text into more pieces has more
predictions to make, but each is easier; per character the two are on the same scale.
Per-token loss and perplexity are not comparable across tokenizers.

What is predicted depends on the kind of model (:func:`hf_vocabswap.surgery.model_kind`):

- causal LMs: every token of the text, left to right (:func:`bits_per_character`);
- masked LMs: every token once, from a context where it and about ``mlm_probability`` of
  the other tokens are masked (a grouped pseudo-log-likelihood, see below);
- encoder-decoder models: every token of the text as the decoder's target, given an
  encoder input holding no text (the decoder used as a language model).

The three are different quantities: compare bpc between models of the same kind only.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from bisect import bisect_left, bisect_right
from contextlib import contextmanager
from pathlib import Path

import torch

from .corpus import Corpus, first_chars
from .errors import MissingSpecialTokenError, ModelError, TokenizerError
from .fields import check_at_least
from .loading import load_model, load_tokenizer, resolve_source
from .progress import progress_bar
from .surgery import model_kind

logger = logging.getLogger(__name__)

__all__ = [
    "tokenizer_stats",
    "bits_per_character",
    "evaluate_model",
    "format_results",
]

_WORD = re.compile(r"\S+")


# ---------------------------------------------------------------------------------------
# Tokenizer statistics
# ---------------------------------------------------------------------------------------


def tokenizer_stats(tokenizer, texts) -> dict:
    """How a tokenizer cuts a text: fertility, continued words, characters per token, unknowns.

    Words are the whitespace-separated pieces of each text (``text.split()``). Special tokens
    that the tokenizer's post-processor adds (``[CLS]``, ``<bos>`` ...) are not counted; special
    tokens written in the text itself are. Each token is attributed to the word holding its
    first non-space character (by the tokenizer's character offsets); a token made only of
    whitespace (a lone ``▁``) is attributed to the word that follows it.

    Args:
        tokenizer (`PreTrainedTokenizerBase`):
            The tokenizer to measure. Fast tokenizers use character offsets; slow ones are
            measured word by word instead.
        texts (`str` or `list[str]`):
            The text samples.

    Returns:
        `dict`: ``num_texts``, ``num_characters``, ``num_words``, ``num_tokens``,
        ``num_unknown`` (tokens equal to the unknown token), ``tokens_per_word`` (fertility),
        ``continued_words`` (proportion of words cut into more than one token),
        ``characters_per_token``, ``unknown_rate`` (unknown tokens / tokens) and
        ``tokens_spanning_words`` (tokens whose characters cover more than one word: a
        tokenizer that merges across spaces shows up here).

    Example:
        >>> from transformers import AutoTokenizer
        >>> tok = AutoTokenizer.from_pretrained("google-bert/bert-base-uncased")
        >>> tokenizer_stats(tok, ["tokenization works"])["continued_words"]
        0.5
    """
    if isinstance(texts, str):
        texts = [texts]
    texts = [t for t in texts if t]
    unk_id = getattr(tokenizer, "unk_token_id", None)
    n_chars = n_words = n_tokens = n_unk = n_continued = n_spanning = 0
    for text in texts:
        spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
        n_chars += len(text)
        n_words += len(spans)
        ids, per_word, spanning = _tokens_per_word(tokenizer, text, spans)
        n_tokens += len(ids)
        if unk_id is not None:
            n_unk += sum(1 for i in ids if i == unk_id)
        n_continued += sum(1 for c in per_word if c > 1)
        n_spanning += spanning
    return {
        "num_texts": len(texts),
        "num_characters": n_chars,
        "num_words": n_words,
        "num_tokens": n_tokens,
        "num_unknown": n_unk,
        "tokens_per_word": n_tokens / n_words if n_words else float("nan"),
        "continued_words": n_continued / n_words if n_words else float("nan"),
        "characters_per_token": n_chars / n_tokens if n_tokens else float("nan"),
        "unknown_rate": n_unk / n_tokens if n_tokens else 0.0,
        "tokens_spanning_words": n_spanning,
    }


def _tokens_per_word(tokenizer, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[int], int]:
    """(token ids, tokens per word, tokens spanning several words) for one text."""
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = enc["offset_mapping"]
    except (NotImplementedError, ValueError, TypeError):
        # Slow tokenizers have no offsets: measure each word on its own.
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        per_word = [len(tokenizer(text[s:e], add_special_tokens=False)["input_ids"]) for s, e in spans]
        return list(ids), per_word, 0
    ids = list(enc["input_ids"])
    starts = [s for s, _ in spans]
    per_word = [0] * len(spans)
    spanning = 0
    for start, end in offsets:
        segment = text[start:end]
        stripped = len(segment) - len(segment.lstrip())
        first = start + stripped
        if first < end:  # the token holds a visible character: the word containing it
            w = bisect_right(starts, first) - 1
            if w < 0 or first >= spans[w][1]:
                continue
            if end > spans[w][1]:
                spanning += 1
        else:  # whitespace-only or empty token: the word it sits in, else the next word
            w = bisect_right(starts, start) - 1
            if not (start == end and w >= 0 and start < spans[w][1]):
                w = bisect_left(starts, end)
            if w >= len(spans):
                continue
        per_word[w] += 1
    return ids, per_word, spanning


# ---------------------------------------------------------------------------------------
# Bits per character
# ---------------------------------------------------------------------------------------


def special_template(tokenizer) -> tuple[list[int], list[int]]:
    """The ids a tokenizer adds before and after a single text (its post-processor template)."""
    probe = "a b"
    with_special = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    without = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    n = len(without)
    for i in range(len(with_special) - n + 1):
        if with_special[i : i + n] == without:
            return with_special[:i], with_special[i + n :]
    return [], []


def causal_prefix(tokenizer) -> list[int]:
    """The token(s) every evaluated causal window starts with.

    The tokenizer's own template prefix when it adds one (Llama, Gemma: ``<bos>``); else its
    bos token; else its eos token (GPT-2/Qwen style, where the end-of-text token also opens
    a document); else nothing, and the first token of each window is not predicted.
    """
    prefix, _ = special_template(tokenizer)
    if prefix:
        return prefix
    for attr in ("bos_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            return [value]
    return []


def max_sequence_length(model, tokenizer=None) -> int | None:
    """The longest sequence the model's position table allows, or None when unbounded.

    RoBERTa-style tables number positions from ``padding_idx + 1``, so XLM-R's 514 rows
    hold 512 tokens.
    """
    limits = []
    config = getattr(model, "config", None)
    text_config = getattr(config, "text_config", None) or config
    table_rows = getattr(text_config, "max_position_embeddings", None)
    if isinstance(table_rows, int) and table_rows > 0 and getattr(text_config, "position_embedding_type", "absolute") == "absolute":
        base = getattr(model, "base_model", model)
        positions = getattr(getattr(base, "embeddings", None), "position_embeddings", None)
        pad = getattr(positions, "padding_idx", None)
        limits.append(table_rows - pad - 1 if isinstance(pad, int) else table_rows)
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < 1e9:
        limits.append(model_max)
    return min(limits) if limits else None


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def pad_token_id(tokenizer, model) -> int:
    """The id that pads a batch: the tokenizer's pad id, else the model config's, else 0."""
    for value in (getattr(tokenizer, "pad_token_id", None), getattr(model.config, "pad_token_id", None)):
        if isinstance(value, int):
            return value
    return 0


def bits_per_character(
    model,
    tokenizer,
    texts,
    *,
    max_length: int = 512,
    batch_size: int = 8,
    seed: int = 0,
    mlm_probability: float = 0.15,
    device: str | None = None,
    progress: bool = True,
) -> dict:
    """Held-out negative log-likelihood of ``texts`` in bits per character.

    ``bits_per_character = total NLL in nats / ln 2 / number of characters``, where the
    characters are those of the non-empty ``texts`` as given (before any normalization the
    tokenizer applies). Every token of every text is predicted exactly once, so the value is
    comparable between tokenizers for models of the same kind. The computation is
    deterministic, batched and runs under ``torch.no_grad()`` with the model in eval mode
    (its training mode is restored afterwards).

    - **Causal LMs**: each text is cut into windows of at most ``max_length`` tokens. Every
      window starts with the tokenizer's prefix token (the ``<bos>`` it adds, else its bos
      token, else its eos token; Gemma degenerates without a leading ``<bos>``), so the
      first token of each text (and of each later window) is predicted from it. Windows do
      not overlap: tokens after the first window see only the tokens of their own window.
      Without any prefix token the first token of each window cannot be predicted; those
      are counted in ``num_unpredicted``.
    - **Masked LMs** (grouped pseudo-log-likelihood): each text is cut into windows of at
      most ``max_length`` tokens including the tokenizer's own specials (``[CLS] ... [SEP]``).
      The tokens of a window are split at random into ``k = round(1 / mlm_probability)``
      groups of (nearly) equal size by a ``torch.Generator`` seeded with ``seed``; for each
      group one forward pass replaces exactly that group's tokens with the mask token (no
      80/10/10 replacement) and scores them. So every token is masked exactly once, about
      ``mlm_probability`` of a window is masked in each pass (as in MLM training), and the
      same ``seed`` gives the same number.
    - **Encoder-decoder models**: the encoder reads the tokenizer's template for an empty
      text (e.g. ``</s>`` for T5, ``<s></s>`` for BART) and the decoder predicts the text's
      tokens in windows of ``max_length``, each starting from
      ``config.decoder_start_token_id``. This measures the decoder as a language model;
      compare it between encoder-decoder models only.

    Args:
        model (`PreTrainedModel`):
            A masked, causal or encoder-decoder LM with its head.
        tokenizer (`PreTrainedTokenizerBase`):
            The tokenizer that belongs to ``model``.
        texts (`str` or `list[str]`):
            Held-out text samples; empty ones are skipped.
        max_length (`int`, *optional*, defaults to 512):
            Longest sequence fed to the model, special tokens included.
        batch_size (`int`, *optional*, defaults to 8):
            Sequences per forward pass. Causal LMs with large vocabularies need memory for
            ``batch_size x max_length x vocab`` logits: lower it if that does not fit.
        seed (`int`, *optional*, defaults to 0):
            Seeds the masked LM's grouping of tokens (unused for other kinds).
        mlm_probability (`float`, *optional*, defaults to 0.15):
            Share of a window masked in each pass for masked LMs.
        device (`str`, *optional*):
            Where to run; the model is moved there. Defaults to where the model is.
        progress (`bool`, *optional*, defaults to True):
            Show a progress bar (also off with ``HF_HUB_DISABLE_PROGRESS_BARS=1``).

    Returns:
        `dict`: ``bits_per_character``, ``bits_per_token`` (per predicted token, only
        comparable for one tokenizer), ``nll_nats`` (total), ``num_characters``,
        ``num_tokens`` (tokens predicted), ``num_unpredicted``, ``num_texts``,
        ``num_sequences`` (forward-pass rows), ``model_kind``, ``objective`` (a short
        description of what was predicted), ``seconds``.

    Raises:
        ModelError: the model has no language-modeling head (``model_kind`` "base"), or
            ``max_length`` is too small for the special tokens.
        MissingSpecialTokenError: a masked LM whose tokenizer has no mask token.
        TokenizerError: no text to evaluate.

    Example:
        >>> from transformers import AutoModelForCausalLM, AutoTokenizer
        >>> model = AutoModelForCausalLM.from_pretrained("gpt2")
        >>> tok = AutoTokenizer.from_pretrained("gpt2")
        >>> bits_per_character(model, tok, ["Hello world."], progress=False)["bits_per_character"]
    """
    if isinstance(texts, str):
        texts = [texts]
    texts = [t for t in texts if t]
    if not texts:
        raise TokenizerError("No text to evaluate: pass at least one non-empty text.")
    if max_length < 2:
        raise ModelError(f"max_length={max_length} leaves no room to predict a token; use at least 2 (512 is typical).")
    kind = model_kind(model)
    if kind == "base":
        raise ModelError(
            f"{type(model).__name__} has no language-modeling head, so it assigns no likelihood to text. "
            "Load it with AutoModelForMaskedLM / AutoModelForCausalLM / AutoModelForSeq2SeqLM."
        )
    started = time.perf_counter()
    if device is not None:
        model.to(device)
    run_device = _model_device(model)
    max_positions = max_sequence_length(model, tokenizer)
    if max_positions is not None and kind != "seq2seq" and max_length > max_positions:
        logger.info("max_length %d exceeds the model's %d positions: using %d", max_length, max_positions, max_positions)
        max_length = max_positions
    encoded = [list(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if kind == "causal":
                totals = _causal_nll(model, tokenizer, encoded, max_length, batch_size, run_device, progress)
            elif kind == "masked":
                totals = _masked_nll(model, tokenizer, encoded, max_length, batch_size, seed, mlm_probability, run_device, progress)
            else:
                totals = _seq2seq_nll(model, tokenizer, encoded, max_length, batch_size, run_device, progress)
    finally:
        model.train(was_training)
    nll, n_pred, n_unpred, n_seq, objective = totals
    n_chars = sum(len(t) for t in texts)
    return {
        "bits_per_character": nll / math.log(2) / n_chars,
        "bits_per_token": nll / math.log(2) / n_pred if n_pred else float("nan"),
        "nll_nats": nll,
        "num_characters": n_chars,
        "num_tokens": n_pred,
        "num_unpredicted": n_unpred,
        "num_texts": len(texts),
        "num_sequences": n_seq,
        "model_kind": kind,
        "objective": objective,
        "seconds": time.perf_counter() - started,
    }


def batched(items: list, size: int):
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def pad_batch(rows: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, attention_mask)``, both (len(rows), longest row) int64 on ``device``: rows right-padded with ``pad``."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids.to(device), mask.to(device)


@contextmanager
def _logits_only_at(model, selector: torch.Tensor):
    """Apply the output head only to the positions marked in ``selector`` (B x L bool).

    The vocabulary projection dominates the cost of small models with large vocabularies,
    and a masked LM needs only the masked positions: a pre-hook on the output embeddings
    hands them the selected hidden states, shape (1, N, H). Models whose head is not called
    as that module simply return full logits; :func:`_selected_logits` handles both.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not isinstance(head, torch.nn.Module):
        yield
        return

    def pre_hook(module, args):
        if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 3 and tuple(args[0].shape[:2]) == tuple(selector.shape):
            return (args[0][selector.to(args[0].device)].unsqueeze(0),) + tuple(args[1:])
        return None

    handle = head.register_forward_pre_hook(pre_hook)
    try:
        yield
    finally:
        handle.remove()


def _selected_logits(logits: torch.Tensor, selector: torch.Tensor) -> torch.Tensor:
    n = int(selector.sum())
    if logits.dim() == 3 and logits.shape[0] == 1 and logits.shape[1] == n and tuple(selector.shape) != (1, n):
        return logits[0]
    return logits[selector.to(logits.device)]


def _sum_nll(logits: torch.Tensor, targets: torch.Tensor, chunk: int = 2048) -> float:
    """Sum over rows of -log softmax(logits)[target], in float32, a chunk of rows at a time."""
    total = 0.0
    for i in range(0, logits.shape[0], chunk):
        total += float(torch.nn.functional.cross_entropy(logits[i : i + chunk].float(), targets[i : i + chunk], reduction="sum"))
    return total


def _score(model, rows, pad, batch_size, device, progress, desc, encoder_ids=None):
    """Total NLL of the rows' targets. A row is (input ids, positions, target ids): the logits
    at each position predict the target at the same index. For encoder-decoder models the
    input ids are the decoder's and ``encoder_ids`` is the encoder input of every row."""
    nll, n_pred = 0.0, 0
    for batch in progress_bar(list(batched(rows, batch_size)), group="evaluate", desc=desc, enabled=progress):
        ids, mask = pad_batch([r[0] for r in batch], pad, device)
        selector = torch.zeros(ids.shape, dtype=torch.bool)
        targets = []
        for i, (_, positions, tgt) in enumerate(batch):
            selector[i, positions] = True
            # selector order is row-major: sort each row's targets by position
            targets.extend(t for _, t in sorted(zip(positions, tgt)))
        if not targets:
            continue
        if encoder_ids is None:
            inputs = {"input_ids": ids, "attention_mask": mask}
        else:
            enc = torch.tensor([encoder_ids] * len(batch), dtype=torch.long, device=device)
            inputs = {"input_ids": enc, "attention_mask": torch.ones_like(enc), "decoder_input_ids": ids, "decoder_attention_mask": mask}
        with _logits_only_at(model, selector):
            logits = model(**inputs).logits
        picked = _selected_logits(logits, selector)
        nll += _sum_nll(picked, torch.tensor(targets, dtype=torch.long, device=picked.device))
        n_pred += len(targets)
    return nll, n_pred


def _causal_nll(model, tokenizer, encoded, max_length, batch_size, device, progress):
    prefix = causal_prefix(tokenizer)
    room = max_length - len(prefix)
    if room < 1:
        raise ModelError(f"max_length={max_length} is too small for the prefix tokens {prefix}.")
    first = max(len(prefix), 1)  # position of the first predicted token in a window
    rows, n_unpred = [], 0
    for ids in encoded:
        for start in range(0, len(ids), room):
            window = prefix + ids[start : start + room]
            n_unpred += first - len(prefix)
            if len(window) > first:
                rows.append((window, list(range(first - 1, len(window) - 1)), window[first:]))
    nll, n_pred = _score(model, rows, pad_token_id(tokenizer, model), batch_size, device, progress, "Bits per character (causal)")
    objective = f"next-token, windows of {max_length} starting with {prefix or 'no prefix'}"
    return nll, n_pred, n_unpred, len(rows), objective


def _masked_nll(model, tokenizer, encoded, max_length, batch_size, seed, mlm_probability, device, progress):
    mask_id = getattr(tokenizer, "mask_token_id", None)
    if not isinstance(mask_id, int):
        raise MissingSpecialTokenError("mask", "the model is a masked LM, whose likelihood is measured by masking tokens")
    if not 0 < mlm_probability <= 1:
        raise ValueError(f"mlm_probability must be in (0, 1], not {mlm_probability}")
    prefix, suffix = special_template(tokenizer)
    room = max_length - len(prefix) - len(suffix)
    if room < 1:
        raise ModelError(f"max_length={max_length} is too small for the special tokens {prefix + suffix}.")
    k = max(1, round(1 / mlm_probability))
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for ids in encoded:
        for start in range(0, len(ids), room):
            chunk = ids[start : start + room]
            groups = min(k, len(chunk))
            order = torch.randperm(len(chunk), generator=generator).tolist()
            members: list[list[int]] = [[] for _ in range(groups)]
            for rank, pos in enumerate(order):
                members[rank % groups].append(len(prefix) + pos)
            window = prefix + chunk + suffix
            for positions in members:
                positions.sort()
                masked = list(window)
                for p in positions:
                    masked[p] = mask_id
                rows.append((masked, positions, [window[p] for p in positions]))
    nll, n_pred = _score(model, rows, pad_token_id(tokenizer, model), batch_size, device, progress, "Bits per character (masked)")
    objective = f"masked pseudo-log-likelihood, each token masked once in {k} seeded groups (seed {seed})"
    return nll, n_pred, 0, len(rows), objective


def seq2seq_inputs(model, tokenizer) -> tuple[int, list[int]]:
    """(decoder start id, encoder input ids) with which an encoder-decoder model's decoder is
    read as a language model: the encoder gets the tokenizer's template for an empty text."""
    start_id = getattr(model.config, "decoder_start_token_id", None)
    if start_id is None:
        start_id = getattr(getattr(model, "generation_config", None), "decoder_start_token_id", None)
    if isinstance(start_id, list):
        start_id = start_id[0]
    if not isinstance(start_id, int):
        start_id = pad_token_id(tokenizer, model)
    encoder_ids = list(tokenizer("", add_special_tokens=True)["input_ids"])
    if not encoder_ids:
        eos = getattr(tokenizer, "eos_token_id", None)
        encoder_ids = [eos if isinstance(eos, int) else pad_token_id(tokenizer, model)]
    return start_id, encoder_ids


def _seq2seq_nll(model, tokenizer, encoded, max_length, batch_size, device, progress):
    start_id, encoder_ids = seq2seq_inputs(model, tokenizer)
    rows = []
    for ids in encoded:
        for start in range(0, len(ids), max_length):
            window = ids[start : start + max_length]
            rows.append(([start_id] + window[:-1], list(range(len(window))), window))
    nll, n_pred = _score(model, rows, pad_token_id(tokenizer, model), batch_size, device, progress, "Bits per character (seq2seq)", encoder_ids=encoder_ids)
    objective = f"decoder likelihood of the text given encoder input {encoder_ids}, windows of {max_length}"
    return nll, n_pred, 0, len(rows), objective


# ---------------------------------------------------------------------------------------
# One call for a model folder and a text file
# ---------------------------------------------------------------------------------------


def load_model_and_tokenizer(model_or_path, tokenizer=None, task: str | None = None):
    """(model, tokenizer) from a model object, a Hub id, a folder, a GGUF file or a
    :class:`~hf_vocabswap.TransplantResult`.

    Raises:
        TokenizerError: a model object without a name was given and no tokenizer.
    """
    if hasattr(model_or_path, "model") and hasattr(model_or_path, "tokenizer") and not hasattr(model_or_path, "get_input_embeddings"):
        return model_or_path.model, load_tokenizer(tokenizer) if tokenizer is not None else model_or_path.tokenizer
    if isinstance(model_or_path, (str, os.PathLike)):
        if str(model_or_path).endswith(".gguf"):
            model, tok, _ = resolve_source(model_or_path, tokenizer, task=task)
            return model, tok
        model = load_model(str(model_or_path), task=task)
        return model, load_tokenizer(tokenizer if tokenizer is not None else str(model_or_path))
    if tokenizer is None:
        name = getattr(model_or_path, "name_or_path", None)
        if not name:
            raise TokenizerError(
                "The model was given as an object without a name_or_path, so its tokenizer cannot be "
                "found. Pass tokenizer=... (the tokenizer that belongs to the model)."
            )
        tokenizer = name
    return model_or_path, load_tokenizer(tokenizer)


def evaluate_model(
    model_or_path,
    texts_or_file,
    *,
    tokenizer=None,
    task: str | None = None,
    max_length: int = 512,
    batch_size: int = 8,
    seed: int = 0,
    mlm_probability: float = 0.15,
    max_chars: int | None = None,
    device: str | None = None,
    progress: bool = True,
) -> dict:
    """Tokenizer statistics and bits per character of a model on held-out text.

    Args:
        model_or_path (`PreTrainedModel`, `str` or `os.PathLike`):
            A model object, a Hub id, a local model folder, a ``.gguf`` file, or a
            :class:`~hf_vocabswap.TransplantResult`.
        texts_or_file (`str`, `os.PathLike`, `list[str]` or `datasets.Dataset`):
            Held-out text: a UTF-8 file (one sample per line), a folder of ``.txt`` files, a
            list of strings or a dataset with a ``text`` column. Never evaluate on text the
            tokenizer or the model was trained on.
        tokenizer (`PreTrainedTokenizerBase` or `str`, *optional*):
            The model's tokenizer; loaded from ``model_or_path`` when omitted.
        task (`str`, *optional*):
            "masked", "causal" or "seq2seq" to force the Auto class when loading by name.
        max_length (`int`, *optional*, defaults to 512):
            Window length, see :func:`bits_per_character`.
        batch_size (`int`, *optional*, defaults to 8):
            Sequences per forward pass.
        seed (`int`, *optional*, defaults to 0):
            Seeds the masked LM's grouping of tokens.
        mlm_probability (`float`, *optional*, defaults to 0.15):
            Share of tokens masked per pass for masked LMs.
        max_chars (`int`, *optional*):
            Use whole samples until this many characters are collected.
        device (`str`, *optional*):
            "cpu", "cuda", ...; defaults to where the model is.
        progress (`bool`, *optional*, defaults to True):
            Show progress bars.

    Returns:
        `dict`: ``model`` (its name), ``model_kind``, ``texts`` (description of the text
        source), ``tokenizer`` (:func:`tokenizer_stats`) and ``bpc``
        (:func:`bits_per_character`), plus ``bits_per_character`` at the top level.

    Raises:
        CorpusError: the text file does not exist, is not UTF-8 or holds no text.
        ModelError: the model cannot be loaded or has no language-modeling head.
        TokenizerError: the tokenizer cannot be found or loaded.

    Example:
        >>> from hf_vocabswap.evaluate import evaluate_model, format_results
        >>> results = evaluate_model("xlmr-uk", "uk_heldout.txt")
        >>> print(format_results(results))
    """
    check_at_least(1, batch_size=batch_size)
    check_at_least(2, max_length=max_length)
    corpus = Corpus.coerce(texts_or_file)
    texts = first_chars(corpus, max_chars)
    model, tok = load_model_and_tokenizer(model_or_path, tokenizer, task=task)
    name = (
        str(model_or_path)
        if isinstance(model_or_path, (str, os.PathLike))
        else getattr(model, "name_or_path", None) or type(model).__name__
    )
    stats = tokenizer_stats(tok, texts)
    bpc = bits_per_character(
        model, tok, texts, max_length=max_length, batch_size=batch_size, seed=seed,
        mlm_probability=mlm_probability, device=device, progress=progress,
    )
    logger.info("%s: %.4f bits per character on %d characters", name, bpc["bits_per_character"], bpc["num_characters"])
    return {
        "model": name,
        "model_kind": bpc["model_kind"],
        "texts": corpus.description,
        "bits_per_character": bpc["bits_per_character"],
        "tokenizer": stats,
        "bpc": bpc,
    }


def format_results(results, *, markdown: bool = True) -> str:
    """A short table of one or several :func:`evaluate_model` results.

    Args:
        results (`dict` or `list[dict]`):
            What :func:`evaluate_model` returned, one per model.
        markdown (`bool`, *optional*, defaults to True):
            A Markdown table; otherwise aligned plain-text columns.

    Returns:
        `str`: one row per model with bits per character, tokens per word, continued
        words, characters per token, unknown rate and the counts used.

    Example:
        >>> print(format_results([evaluate_model("a", "t.txt"), evaluate_model("b", "t.txt")]))
    """
    if isinstance(results, dict):
        results = [results]
    header = ["model", "kind", "bits/char", "tokens/word", "continued words", "chars/token", "unk rate", "tokens", "chars"]
    rows = []
    for r in results:
        s, b = r.get("tokenizer", {}), r.get("bpc", {})
        rows.append([
            Path(str(r.get("model", "?"))).name or str(r.get("model", "?")),
            str(r.get("model_kind", b.get("model_kind", "?"))),
            f"{r.get('bits_per_character', b.get('bits_per_character', float('nan'))):.4f}",
            f"{s.get('tokens_per_word', float('nan')):.3f}",
            f"{100 * s.get('continued_words', float('nan')):.1f}%",
            f"{s.get('characters_per_token', float('nan')):.3f}",
            f"{100 * s.get('unknown_rate', float('nan')):.2f}%",
            str(b.get("num_tokens", s.get("num_tokens", ""))),
            str(b.get("num_characters", s.get("num_characters", ""))),
        ])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    fmt = lambda row: "  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(row) for row in rows])
