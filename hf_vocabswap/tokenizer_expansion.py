"""Vocabulary expansion: the source tokenizer plus new tokens learned on a target-language corpus.

Every source token keeps its string and its id; the new tokens take the ids after the
source's last one, in the order they were learned. Learning continues BPE training from the
source's own state:

1. the corpus is segmented by the source tokenizer exactly as it encodes text (its added
   tokens cut out, its normalizer, pre-tokenizer and model);
2. the tokens are grouped by word (:mod:`hf_vocabswap.tokenizer_words`: whitespace, script
   changes, digits); a source token that spans two words, unknown tokens and byte-fallback
   pieces ``<0xNN>`` are never merged;
3. the most frequent pair of adjacent tokens inside a word becomes a new token, every
   occurrence is merged, the pair counts are updated, and so on (as BPE training does, with
   incremental counts), ``min_frequency`` occurrences at least. A pair is skipped when its
   token would already exist (a source string, an added token or an earlier new token) or
   would not be one word on its own.

What the new tokens are, per model type, and what is guaranteed
----------------------------------------------------------------
- **BPE** (byte-level such as GPT-2, SentencePiece-style with byte fallback such as Gemma):
  each new token is a merge appended after the source's merges. A BPE encoder applies the
  lowest-ranked applicable merge first, so the new merges only ever apply to the source's
  finished segmentation: text in which no new merge applies is tokenized exactly as by the
  source, and the learned counts are exactly what the expanded tokenizer does on the corpus.
- **WordPiece**: each new entry is the pair's text (``a`` + ``b`` without its ``##``). WordPiece
  takes the longest vocabulary match, so text in which no new entry is matched is tokenized
  exactly as by the source. The counts are those of the merge simulation; the longest match
  may use a new entry elsewhere too.
- **Unigram**: each new piece is the pair's text, with the score of its corpus frequency on the
  source's log-probability scale: ``log(count / total) + c``, where ``c`` is the median of
  ``score - log(count / total)`` over the source pieces the corpus uses at least 10 times,
  and at least ``score(a) + score(b) + 1e-6`` so the piece beats the pair it replaces.
  Unigram picks the best-scoring segmentation: when it uses no new piece, it is the source's.

So for every model type: a text in which no added token occurs is tokenized exactly as by
the source. Characters the source vocabulary lacks stay byte-fallback pieces (or unknown
tokens): no new single-character token is added. The source's added and special tokens, its
post-processor, padding, special-token roles and chat template are kept.

Learning is deterministic, and the first ``k`` tokens of a longer expansion are the tokens an
expansion by ``k`` learns, so :class:`TokenizerExpansion` builds every size from one run::

    expansion = learn_expansion(tokenizer, "uk_train.txt", 16_000)
    for k in (1_000, 4_000, 16_000):
        expansion.tokenizer(k).save_pretrained(f"expanded-{k}")
"""

from __future__ import annotations

import heapq
import logging
import math
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import accumulate

from .corpus import Corpus
from .errors import CorpusError, TokenizerError
from .progress import progress_bar
from .tokenizer_json import (
    BYTE_PIECES,
    build_tokenizer,
    fast_backend,
    merge_pairs,
    merge_result,
    tokenizer_family,
    tokenizer_kwargs,
    tokenizer_spec,
    visible_text,
)
from .tokenizer_words import corpus_pieces, has_multi_digit_tokens, piece_splitter

logger = logging.getLogger(__name__)

__all__ = ["TokenizerExpansion", "check_add_tokens", "check_expandable", "expand_tokenizer", "learn_expansion"]

SUPPORTED_MODELS = ("BPE", "WordPiece", "Unigram")
_MIN_CALIBRATION_COUNT = 10


def check_add_tokens(add_tokens, trim: bool = False) -> int:
    """Validate a number of tokens to add.

    Args:
        add_tokens: the number (an ``int``; None counts as 0 when ``trim`` is True).
        trim: whether the source is trimmed first (then 0 is allowed: trimming only).

    Returns:
        The number as an ``int``.

    Raises:
        TokenizerError: when ``add_tokens`` is not an integer, is negative, or is 0 (or None)
            without ``trim``.
    """
    if add_tokens is None and trim:
        return 0
    if isinstance(add_tokens, bool) or not isinstance(add_tokens, int):
        raise TokenizerError(f"add_tokens must be a whole number of tokens to add (e.g. 4000), not {add_tokens!r}.")
    if add_tokens < 0 or (add_tokens == 0 and not trim):
        raise TokenizerError(
            f"add_tokens={add_tokens} adds nothing: pass add_tokens >= 1, or trim=True (CLI: --trim) "
            "with add_tokens=0 to only trim the source to the corpus."
        )
    return add_tokens


def check_expandable(tokenizer) -> dict:
    """The spec of ``tokenizer`` when expansion supports it.

    Returns:
        Its ``tokenizer.json`` as a dict.

    Raises:
        TokenizerError: when the tokenizer is not fast, or its model is not BPE, WordPiece or Unigram.
    """
    spec = tokenizer_spec(fast_backend(tokenizer))
    model_type = spec["model"].get("type")
    if model_type not in SUPPORTED_MODELS:
        raise TokenizerError(
            f"Cannot add tokens to a {model_type} tokenizer: expansion supports {', '.join(SUPPORTED_MODELS)} "
            "models. Train a new tokenizer instead (train_tokenizer with vocab_size)."
        )
    return spec


# ----------------------------------------------------------------------------- the source
@dataclass
class _Source:
    """The tokenizer being expanded, read once."""

    tokenizer: object
    spec: dict
    model_type: str
    family: str
    strings: set[str]  # every token string of the source: new tokens must differ
    next_id: int  # the id of the first new token
    frozen: set[int]  # ids never merged: unknown and byte-fallback pieces
    individual_digits: bool  # digit runs are split into single digits (no multi-digit source token)
    scores: dict[int, float] = field(default_factory=dict)  # Unigram: source id -> score

    @property
    def model(self) -> dict:
        return self.spec["model"]

    def join(self, a: str, b: str) -> str:
        """The string of the token made of ``a`` followed by ``b``."""
        prefix = self.model.get("continuing_subword_prefix") or ""
        if self.model_type == "BPE":
            return merge_result(a, b, len(prefix))
        if self.model_type == "WordPiece":
            prefix = prefix or "##"
            return a + (b[len(prefix):] if b.startswith(prefix) else b)
        return a + b


def _read_source(tokenizer) -> _Source:
    spec = check_expandable(tokenizer)
    backend = fast_backend(tokenizer)
    model = spec["model"]
    model_type = model["type"]
    vocab = backend.get_vocab(with_added_tokens=True)
    if model_type == "Unigram":
        strings = {p for p, _ in model["vocab"]} | set(vocab)
    else:
        strings = set(model["vocab"]) | set(vocab)
    frozen = {i for t, i in vocab.items() if t in BYTE_PIECES} if model.get("byte_fallback") else set()
    unk = model.get("unk_token")
    if unk in vocab:
        frozen.add(vocab[unk])
    if model.get("unk_id") is not None:
        frozen.add(int(model["unk_id"]))
    scores = {i: float(s) for i, (_, s) in enumerate(model["vocab"])} if model_type == "Unigram" else {}
    family = tokenizer_family(spec)
    prefix = model.get("continuing_subword_prefix") if model_type == "WordPiece" else None
    individual_digits = not has_multi_digit_tokens(backend.get_vocab(with_added_tokens=False), family, prefix)
    return _Source(tokenizer, spec, model_type, family, strings, max(vocab.values()) + 1, frozen, individual_digits, scores)


# ----------------------------------------------------------------------------- the corpus
def _word_runs(src: _Source, corpus: Corpus, progress: bool) -> Counter:
    """The corpus as the source tokenizes it, cut into runs of token ids that lie inside one word.

    Returns:
        A ``Counter`` of id tuples (runs of one token included, for the token totals).
    """
    backend = fast_backend(src.tokenizer)
    split = piece_splitter(src.family, src.individual_digits)
    added = src.spec.get("added_tokens") or []
    normalizer = backend.normalizer
    normalized = [normalizer.normalize_str(a["content"]) if normalizer is not None else a["content"]
                  for a in added if a.get("normalized")]
    runs: Counter = Counter()
    for piece in corpus_pieces(corpus, backend, [a["content"] for a in added], progress=progress,
                               normalized_specials=normalized):
        ends = list(accumulate(len(w.encode("utf-8")) for w in split(piece)))
        run: list[int] = []
        word = 0
        for token in backend.model.tokenize(piece):
            start, end = token.offsets  # in bytes of the piece
            while ends[word] <= start:
                word += 1
                if run:
                    runs[tuple(run)] += 1
                    run = []
            if end > ends[word] or token.id in src.frozen:  # spans two words, or never merged
                if run:
                    runs[tuple(run)] += 1
                    run = []
                continue
            run.append(token.id)
        if run:
            runs[tuple(run)] += 1
    if not runs:
        raise CorpusError(f"Corpus {corpus.description!r} holds no text the source tokenizes into mergeable tokens.")
    return runs


# ----------------------------------------------------------------------------- learning
class _PairCounts:
    """Counts of adjacent id pairs over weighted runs, updated incrementally as pairs merge."""

    def __init__(self, runs: list[list[int]], weights: list[int]):
        self.runs, self.weights = runs, weights
        self.count: dict[tuple[int, int], int] = defaultdict(int)
        self.where: dict[tuple[int, int], set[int]] = defaultdict(set)
        self._dirty: dict[tuple[int, int], int] = {}  # pair -> its count before the current merge
        for r in range(len(runs)):
            self._add(r, 1)
        self._heap = [(-c, a, b) for (a, b), c in self.count.items() if c > 0]
        heapq.heapify(self._heap)
        self._dirty.clear()

    def _add(self, r: int, sign: int) -> None:
        ids, w = self.runs[r], self.weights[r] * sign
        for pair in zip(ids, ids[1:]):
            self._dirty.setdefault(pair, self.count[pair])
            self.count[pair] += w
            if sign > 0:
                self.where[pair].add(r)

    def best(self, min_count: int, skip: set) -> tuple[tuple[int, int], int] | None:
        """The most frequent pair not in ``skip`` (ties: lowest ids), or None below ``min_count``."""
        while self._heap:
            c, a, b = self._heap[0]
            if -c != self.count.get((a, b)) or (a, b) in skip:
                heapq.heappop(self._heap)  # stale entry (a newer one holds the current count) or skipped
                continue
            return ((a, b), -c) if -c >= min_count else None
        return None

    def merge(self, pair: tuple[int, int], new_id: int) -> None:
        """Replace every occurrence of ``pair`` (left to right) by ``new_id`` and update the counts."""
        a, b = pair
        for r in self.where.pop(pair, ()):
            ids = self.runs[r]
            if not any(x == a and y == b for x, y in zip(ids, ids[1:])):
                continue
            self._add(r, -1)
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            self.runs[r] = out
            self._add(r, 1)
        for p, before in self._dirty.items():
            if self.count[p] != before and self.count[p] > 0:
                heapq.heappush(self._heap, (-self.count[p], p[0], p[1]))
        self._dirty.clear()


def _unigram_offset(src: _Source, runs: Counter) -> tuple[float, int]:
    """(``c`` of the module docstring, the corpus's token total)."""
    used: Counter = Counter()
    for ids, n in runs.items():
        for i in ids:
            used[i] += n
    total = sum(used.values())
    ratios = [src.scores[i] - math.log(c / total) for i, c in used.items()
              if c >= _MIN_CALIBRATION_COUNT and i in src.scores]
    if not ratios:
        ratios = [src.scores[i] - math.log(c / total) for i, c in used.items() if i in src.scores]
    return (statistics.median(ratios) if ratios else 0.0), total


def _is_one_word(src: _Source, text: str, split) -> bool:
    """Whether a new token's text is one word on its own (no boundary inside it in any context)."""
    prefix = src.model.get("continuing_subword_prefix") or ("##" if src.model_type == "WordPiece" else "")
    if prefix and text.startswith(prefix):
        text = text[len(prefix):]
    if src.family == "byte_level" and "\ufffd" in visible_text(text, src.family):
        return True  # part of a character: its neighbours decide, and pairs were counted inside words
    return len(split(text)) == 1


@dataclass
class TokenizerExpansion:
    """New tokens learned on top of a source tokenizer, in the order they were learned.

    Build it with :func:`learn_expansion`; :meth:`tokenizer` gives the source expanded by the
    first ``k`` of them (the same tokenizer an expansion by ``k`` learns).

    Attributes:
        source: the source tokenizer.
        tokens: the new token strings; ``tokens[i]`` gets id ``first_id + i``.
        pairs: the two tokens each new token joins (BPE: its merge rule).
        counts: how often the pair occurred in the corpus when it was joined.
        scores: Unigram scores of the new pieces (empty for other models).
        first_id: the id of the first new token (the source's last id + 1).
    """

    source: object
    tokens: list[str]
    pairs: list[tuple[str, str]]
    counts: list[int]
    scores: list[float]
    first_id: int

    def __len__(self) -> int:
        return len(self.tokens)

    def tokenizer(self, num_tokens: int | None = None):
        """The source plus the first ``num_tokens`` new tokens (all when None).

        Returns:
            A ``transformers.PreTrainedTokenizerFast`` with every source token at its id and
            the new ones after them; the source's pipeline, special tokens, roles and chat template.

        Raises:
            TokenizerError: when ``num_tokens`` is negative or more than were learned.
        """
        k = len(self.tokens) if num_tokens is None else num_tokens
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= len(self.tokens):
            raise TokenizerError(f"num_tokens must be a whole number from 0 to {len(self.tokens)} (learned), not {num_tokens!r}.")
        src = _read_source(self.source)
        spec = dict(src.spec)
        spec["model"] = _expanded_model(src, self.tokens[:k], self.pairs[:k], self.scores[:k])
        expanded = build_tokenizer(spec, self.source, **tokenizer_kwargs(self.source))
        n = self.first_id
        if len(expanded) != n + k or expanded.convert_ids_to_tokens(list(range(n))) != self.source.convert_ids_to_tokens(list(range(n))):
            raise TokenizerError("The expanded tokenizer does not keep every source token at its id; please report this.")
        return expanded


def _expanded_model(src: _Source, tokens: list[str], pairs: list[tuple[str, str]], scores: list[float]) -> dict:
    """The source's model spec with the new tokens after its last id (holes filled first)."""
    model = dict(src.model)
    ids = fast_backend(src.tokenizer).get_vocab(with_added_tokens=True)
    by_id = {i: t for t, i in ids.items()}
    if src.model_type == "Unigram":
        # Added tokens past the pieces (e.g. a last <mask>) hold their ids as pieces the
        # model never reaches (the added-token matcher takes them first).
        floor = min(src.scores.values()) if src.scores else 0.0
        vocab = [list(p) for p in model["vocab"]]
        vocab += [[by_id[i], floor] for i in range(len(vocab), src.next_id)]
        model["vocab"] = vocab + [[t, s] for t, s in zip(tokens, scores)]
        return model
    vocab = dict(model["vocab"])
    present = set(vocab.values())
    for i in range(src.next_id):  # an id held only by an added token would be given away otherwise
        if i not in present:
            vocab[by_id[i]] = i
    vocab.update({t: src.next_id + j for j, t in enumerate(tokens)})
    model["vocab"] = vocab
    if src.model_type == "BPE":
        model["merges"] = [list(p) for p in merge_pairs(src.model)] + [list(p) for p in pairs]
    return model


def learn_expansion(tokenizer, corpus, max_tokens: int, *, min_frequency: int = 2, progress: bool = True) -> TokenizerExpansion:
    """Learn up to ``max_tokens`` new tokens on ``corpus`` on top of ``tokenizer`` (see the module docstring).

    Args:
        tokenizer: the source: a fast BPE, WordPiece or Unigram tokenizer.
        corpus: anything :class:`hf_vocabswap.corpus.Corpus` accepts.
        max_tokens: how many tokens to learn at most (>= 1).
        min_frequency: a pair is joined only when it occurs at least this often.
        progress: show progress bars (group ``hf_vocabswap.tokenizer``).

    Returns:
        A :class:`TokenizerExpansion`; it holds fewer than ``max_tokens`` tokens (and a warning
        says how many) when the corpus has no more pairs of ``min_frequency`` occurrences.

    Raises:
        TokenizerError: when the tokenizer is not fast or its model is not supported, or
            ``max_tokens``/``min_frequency`` is not a positive integer.
        CorpusError: when the corpus is missing, empty or gives no token.
    """
    check_add_tokens(max_tokens)
    if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 1:
        raise TokenizerError(f"min_frequency must be a positive integer, not {min_frequency!r}.")
    src = _read_source(tokenizer)
    corpus = Corpus.coerce(corpus)
    start = time.perf_counter()
    runs = _word_runs(src, corpus, progress)
    offset, total = _unigram_offset(src, runs) if src.model_type == "Unigram" else (0.0, 0)
    pairs = _PairCounts([list(r) for r in runs], list(runs.values()))
    strings = {i: t for t, i in fast_backend(tokenizer).get_vocab(with_added_tokens=True).items()}
    split = piece_splitter(src.family, src.individual_digits)
    taken, skip = set(src.strings), set()
    out = TokenizerExpansion(tokenizer, [], [], [], [], src.next_id)
    scores = dict(src.scores)
    with progress_bar(total=max_tokens, group="tokenizer", desc="Learning new tokens", enabled=progress) as bar:
        while len(out.tokens) < max_tokens:
            found = pairs.best(min_frequency, skip)
            if found is None:
                break
            (a, b), count = found
            text = src.join(strings[a], strings[b])
            if text in taken or not _is_one_word(src, text, split):
                skip.add((a, b))
                continue
            new_id = src.next_id + len(out.tokens)
            pairs.merge((a, b), new_id)
            strings[new_id] = text
            taken.add(text)
            out.tokens.append(text)
            out.pairs.append((strings[a], strings[b]))
            out.counts.append(count)
            if src.model_type == "Unigram":
                scores[new_id] = max(math.log(count / total) + offset, scores[a] + scores[b] + 1e-6)
                out.scores.append(scores[new_id])
            bar.update(1)
    logger.info("expansion: learned %d new tokens in %.1f s", len(out.tokens), time.perf_counter() - start)
    if len(out.tokens) < max_tokens:
        logger.warning(
            "The corpus supports only %d new tokens occurring at least %d times (asked for %d): all %d were "
            "added. Use more text or a lower min_frequency for more.", len(out.tokens), min_frequency, max_tokens,
            len(out.tokens),
        )
    return out


def expand_tokenizer(tokenizer, corpus, add_tokens: int, *, min_frequency: int = 2, progress: bool = True):
    """``tokenizer`` plus ``add_tokens`` new tokens learned on ``corpus``.

    Args:
        tokenizer, corpus, min_frequency, progress: as for :func:`learn_expansion`.
        add_tokens: how many tokens to add (fewer, with a warning, when the corpus supports fewer).

    Returns:
        A ``transformers.PreTrainedTokenizerFast``: every source token keeps its string and id.

    Raises:
        TokenizerError, CorpusError: as :func:`learn_expansion`.
    """
    return learn_expansion(tokenizer, corpus, add_tokens, min_frequency=min_frequency, progress=progress).tokenizer()
