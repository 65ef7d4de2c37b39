"""Distillation across tokenizers: Approximate Likelihood Matching (ALM).

ALM (Minixhofer, Vulić and Ponti, 2025; reference implementation: tokenkit, JAX) lets a
student learn from a teacher whose tokenizer differs. Both tokenize the same characters;
:func:`align_chunks` finds the chunks of text whose start and end are token boundaries on
both sides; each model's log-likelihood of a chunk is the sum of its next-token
log-probabilities over the chunk's tokens (:func:`chunk_sums`); :func:`alm_loss` compares
the chunk probabilities, tempered, with a binary cross-entropy. With word-boundary
debiasing (tokenkit's recommended ``merge_by_space_prob+append_space``), chunks are merged
into groups that end where the teacher expects a new word, and each group's score adds the
model's probability that the next token starts a word.

The loss here is the binary cross-entropy minus the teacher's own binary entropy (a
constant for the student: the gradient is the reference's), so identical teacher and
student give exactly 0.

Only causal teachers and students are supported. The training loop lives in
:mod:`hf_vocabswap.train` (``continue_pretraining(..., teacher=...)``); this module holds
the alignment, the per-chunk sums, the loss and the collator that tokenizes each training
block's text for the teacher.
"""

from __future__ import annotations

import math
import os
from bisect import bisect_left
from dataclasses import asdict, dataclass, field

import torch

from .errors import ModelError, NotAnOutputFolderError, OptionValueError, TokenizerError
from .evaluate import causal_prefix, load_model_and_tokenizer
from .fields import check_at_least
from .loading import check_source_path
from .record import read_record
from .surgery import model_kind

__all__ = ["DistillConfig", "Alignment", "align_chunks", "chunk_sums", "alm_loss", "word_start_mask", "check_causal", "unknown_share",
           "Teacher", "resolve_teacher", "DistillCollator", "BlockText"]


@dataclass
class DistillConfig:
    """Options of cross-tokenizer distillation (ALM); defaults are tokenkit's where it has one."""

    weight: float = field(default=1.0, metadata={"help": "weight of the distillation loss added to the student's own next-token loss"})
    lm_weight: float = field(default=1.0, metadata={"help": "weight of the student's own next-token loss (0: distillation only)"})
    temperature: float = field(default=100.0, metadata={"help": "chunk probabilities are exp(log-likelihood / temperature) (tokenkit: 100)"})
    debias: bool = field(default=True, metadata={"help": "word-boundary debiasing: merge chunks until the teacher expects a new word, "
                                                          "append P(next token starts a word) (tokenkit: merge_by_space_prob+append_space)"})
    debias_threshold: float = field(default=0.1, metadata={"help": "a group ends where the teacher's P(next token starts a word) exceeds this (tokenkit: 0.1)"})
    hidden_weight: float = field(default=0.0, metadata={"help": "weight of the squared error between last hidden states at chunk ends, "
                                                                "normalized per channel by the teacher (0: off; needs equal hidden sizes)"})
    max_unknown_share: float = field(default=0.2, metadata={"help": "refuse a teacher tokenizer that turns more than this share of the corpus's tokens into <unk>"})

    def __post_init__(self):
        if self.temperature <= 0:
            raise OptionValueError(f"temperature must be above 0, not {self.temperature!r}.")
        if not 0 < self.debias_threshold < 1:
            raise OptionValueError(f"debias_threshold must lie between 0 and 1 (a probability), not {self.debias_threshold!r}.")
        check_at_least(0, weight=self.weight, lm_weight=self.lm_weight, hidden_weight=self.hidden_weight, max_unknown_share=self.max_unknown_share)


# ---------------------------------------------------------------------------------------
# Alignment
# ---------------------------------------------------------------------------------------


@dataclass
class Alignment:
    """Chunks of a text that both tokenizations can score.

    Attributes:
        spans: ``(start, end)`` character span of each chunk, in order, covering the text.
        student: chunk index of each student token; -1 for zero-width (special) tokens.
        teacher: the same for the teacher's tokens.
    """

    spans: list[tuple[int, int]]
    student: list[int]
    teacher: list[int]


def _boundaries(offsets, length: int) -> list[int]:
    """Character positions where one token ends and the next begins (characters no token covers,
    such as dropped whitespace, belong to the following token; the text's end is always one)."""
    real = [(s, e) for s, e in offsets if e > s]
    ends = [e for (_, e), (s, _) in zip(real, real[1:]) if s >= e]
    return sorted(set(ends) | {length})


def align_chunks(text: str, student_offsets, teacher_offsets) -> Alignment:
    """The shortest chunks of ``text`` whose start and end are token boundaries in both tokenizations.

    Args:
        text: the characters both tokenizers saw.
        student_offsets: ``(start, end)`` character offsets of the student's tokens (from a fast
            tokenizer's ``return_offsets_mapping``); special tokens are zero-width (``start == end``)
            and belong to no chunk. Byte pieces of one character share its offsets.
        teacher_offsets: the same for the teacher.

    Returns:
        :class:`Alignment`.
    """
    length = len(text)
    common = sorted(set(_boundaries(student_offsets, length)) & set(_boundaries(teacher_offsets, length)))
    spans = list(zip([0] + common[:-1], common))

    def assign(offsets):
        return [-1 if e <= s else min(bisect_left(common, e), len(common) - 1) for s, e in offsets]

    return Alignment(spans, assign(student_offsets), assign(teacher_offsets))


# ---------------------------------------------------------------------------------------
# Per-token and per-chunk quantities
# ---------------------------------------------------------------------------------------


def word_start_mask(tokenizer, vocab_size: int) -> torch.Tensor:
    """Boolean ``(vocab_size,)``: tokens that start a word (a leading space marker or whitespace,
    no WordPiece continuation prefix) or are special; what word-boundary debiasing sums over."""
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    prefix = getattr(getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None), "continuing_subword_prefix", None)
    for token, i in tokenizer.get_vocab().items():
        if i >= vocab_size:
            continue
        if prefix:
            mask[i] = not token.startswith(prefix)
        else:
            mask[i] = token[:1] in ("Ġ", "▁", "Ċ", "ĉ") or token[:1].isspace() or token in ("<0x20>", "<0x0A>")
    for i in tokenizer.all_special_ids:
        if 0 <= i < vocab_size:
            mask[i] = True
    return mask


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """``(B, T)``: log-probability of each actual token given the ones before it (0 at position 0)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, input_ids[:, 1:, None])[..., 0]
    return torch.nn.functional.pad(logp, (1, 0))


def boundary_logprobs(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, T)``: log P(the token after position t starts a word or is special)."""
    logits = logits.float()
    return logits.masked_fill(~mask.to(logits.device), float("-inf")).logsumexp(-1) - logits.logsumexp(-1)


def chunk_sums(values: torch.Tensor, chunk_ids: torch.Tensor, n_chunks: int) -> torch.Tensor:
    """``(B, n_chunks)``: ``values`` summed over the tokens of each chunk (``chunk_ids`` -1: no chunk)."""
    index = torch.where(chunk_ids < 0, n_chunks, chunk_ids)
    out = torch.zeros(values.shape[0], n_chunks + 1, dtype=values.dtype, device=values.device)
    return out.scatter_add(1, index, values)[:, :n_chunks]


def chunk_last(chunk_ids: torch.Tensor, n_chunks: int) -> torch.Tensor:
    """``(B, n_chunks)``: position of each chunk's last token (0 for chunks without tokens)."""
    positions = torch.arange(chunk_ids.shape[1], device=chunk_ids.device).expand_as(chunk_ids)
    index = torch.where(chunk_ids < 0, n_chunks, chunk_ids)
    out = torch.zeros(chunk_ids.shape[0], n_chunks + 1, dtype=torch.long, device=chunk_ids.device)
    return out.scatter_reduce(1, index, positions, reduce="amax")[:, :n_chunks]


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, stable on both sides of -log 2."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def binary_kl(teacher_log: torch.Tensor, student_log: torch.Tensor) -> torch.Tensor:
    """Elementwise KL between Bernoulli(exp(teacher_log)) and Bernoulli(exp(student_log)):
    the binary cross-entropy minus the teacher's entropy (log-probabilities below 0)."""
    eps = 1e-6
    t, s = teacher_log.clamp(max=-eps), student_log.clamp(max=-eps)
    return t.exp() * (t - s) + (-torch.expm1(t)) * (_log1mexp(t) - _log1mexp(s))


def alm_loss(student: dict, teacher: dict, chunk_valid: torch.Tensor, config: DistillConfig) -> torch.Tensor:
    """The ALM loss: mean over groups of the tempered binary KL of the chunk (group) probabilities.

    Args:
        student, teacher: ``{"ll": (B, C) chunk log-likelihoods, "boundary": (B, C) log P(a word
            starts after the chunk)}``; the teacher's without gradient.
        chunk_valid: ``(B, C)`` bool, True for chunks that exist.
        config: the options (temperature, debiasing).
    """
    valid = chunk_valid
    if not config.debias:
        t, s = teacher["ll"], student["ll"]
    else:
        last = valid & ~torch.nn.functional.pad(valid[:, 1:], (0, 1), value=False)
        ends = valid & ((teacher["boundary"] > math.log(config.debias_threshold)) | last)
        group = torch.cumsum(ends.long(), dim=1) - ends.long()
        group = torch.where(valid, group, -1)
        n = valid.shape[1]
        t = chunk_sums(teacher["ll"], group, n) + chunk_sums(torch.where(ends, teacher["boundary"], 0.0), group, n)
        s = chunk_sums(student["ll"], group, n) + chunk_sums(torch.where(ends, student["boundary"], 0.0), group, n)
        valid = torch.arange(n, device=valid.device)[None] < ends.sum(1, keepdim=True)
    kl = binary_kl(t / config.temperature, s / config.temperature)
    return (kl * valid).sum() / valid.sum().clamp(min=1)


def chunk_scores(logits: torch.Tensor, input_ids: torch.Tensor, chunk_ids: torch.Tensor, n_chunks: int, mask) -> dict:
    """``{"ll", "boundary", "last"}`` per chunk for one model's forward pass (see :func:`alm_loss`)."""
    ll = chunk_sums(token_logprobs(logits, input_ids), chunk_ids, n_chunks)
    last = chunk_last(chunk_ids, n_chunks)
    boundary = boundary_logprobs(logits, mask).gather(1, last) if mask is not None else torch.zeros_like(ll)
    return {"ll": ll, "boundary": boundary, "last": last}


def hidden_loss(student_hidden, teacher_hidden, student_last, teacher_last, valid) -> torch.Tensor:
    """Squared error between last hidden states at chunk ends, per channel normalized by the teacher's spread."""
    if student_hidden.shape[-1] != teacher_hidden.shape[-1]:
        raise ModelError(f"hidden_weight needs equal hidden sizes; student {student_hidden.shape[-1]}, teacher {teacher_hidden.shape[-1]}: set hidden_weight=0.")
    hs = student_hidden.float().gather(1, student_last[..., None].expand(-1, -1, student_hidden.shape[-1]))[valid]
    ht = teacher_hidden.float().gather(1, teacher_last[..., None].expand(-1, -1, teacher_hidden.shape[-1]))[valid]
    scale = ht.std(0, keepdim=True).clamp(min=1e-6) if ht.shape[0] > 1 else ht.abs().clamp(min=1e-6)
    return (((hs - ht) / scale) ** 2).mean()


# ---------------------------------------------------------------------------------------
# Checks and the teacher's side of each block
# ---------------------------------------------------------------------------------------


def check_causal(model, role: str) -> None:
    """Refuse a model that is not a causal LM (ALM here needs next-token log-probabilities on both sides)."""
    kind = model_kind(model)
    if kind != "causal":
        raise ModelError(
            f"Distillation supports causal LMs only; the {role} {type(model).__name__} is {kind!r}. "
            f"Give a causal {role} (AutoModelForCausalLM), or train without teacher=."
        )


def unknown_share(tokenizer, texts, max_chars: int = 200_000) -> float:
    """Share of the tokens of (the first ``max_chars`` characters of) ``texts`` that are ``tokenizer``'s unknown token."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        return 0.0
    sample, used = [], 0
    for text in texts:
        sample.append(text)
        used += len(text)
        if used >= max_chars:
            break
    ids = [i for row in tokenizer(sample, add_special_tokens=False, verbose=False)["input_ids"] for i in row]
    return sum(i == unk for i in ids) / max(len(ids), 1)


def check_teacher_tokenizer(tokenizer, texts, limit: float) -> None:
    """Refuse a teacher tokenizer that is not fast or that cannot encode the corpus."""
    if not getattr(tokenizer, "is_fast", False):
        raise TokenizerError(f"The teacher tokenizer {type(tokenizer).__name__} is not a fast tokenizer: character offsets are needed. Pass a fast one.")
    share = unknown_share(tokenizer, texts)
    if share > limit:
        raise TokenizerError(
            f"The teacher tokenizer turns {100 * share:.1f}% of the corpus's tokens into its unknown token "
            f"(limit {100 * limit:.0f}%): it cannot encode this text. Use a teacher whose tokenizer covers the language."
        )


@dataclass
class BlockText:
    """The characters of one training block and the student's token offsets into them.

    Attributes:
        segments: the block's text pieces, one per document it touches, in order.
        offsets: ``(start, end)`` of each student token in the joined segments; zero-width for
            the specials (prefix, document separators).
        contexts: for each segment, the characters of its document just before it ("" when the
            segment starts its document): the teacher tokenizes them with the segment, then drops
            their tokens, so that a piece cut from the middle of a text is tokenized as the middle.
    """

    segments: list[str]
    offsets: list[tuple[int, int]]
    contexts: list[str] = field(default_factory=list)


def teacher_block(tokenizer, block: BlockText) -> tuple[list[int], list[tuple[int, int]]]:
    """The teacher's ids and offsets for a block: its prefix, then each segment, separated by its eos.

    A segment with context is tokenized after it; tokens that begin inside the context are dropped
    (the characters of one that straddles into the segment then go with the next token)."""
    ids = list(causal_prefix(tokenizer))
    offsets = [(0, 0)] * len(ids)
    eos = getattr(tokenizer, "eos_token_id", None)
    contexts = block.contexts or [""] * len(block.segments)
    encoded = tokenizer([c + s for c, s in zip(contexts, block.segments)], add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    base = 0
    for k, (seg_ids, seg_offsets) in enumerate(zip(encoded["input_ids"], encoded["offset_mapping"])):
        if k and isinstance(eos, int):
            ids.append(eos)
            offsets.append((base, base))
        skip = len(contexts[k])
        kept = [(i, s - skip, e - skip) for i, (s, e) in zip(seg_ids, seg_offsets) if s >= skip and (e > s or not skip)]
        ids.extend(i for i, _, _ in kept)
        offsets.extend((base + s, base + e) for _, s, e in kept)
        base += len(block.segments[k])
    return ids, offsets


class DistillCollator:
    """Stacks student blocks (labels = ids) and adds the teacher's ids and both sides' chunk ids.

    Items are ``{"input_ids", "block"}`` (training) or plain id tensors (evaluation: no teacher).
    """

    def __init__(self, student_tokenizer, teacher_tokenizer, blocks_text: list[BlockText]):
        self.student_tokenizer = student_tokenizer
        self.teacher_tokenizer = teacher_tokenizer
        self.blocks_text = blocks_text
        pad = teacher_tokenizer.pad_token_id
        self.teacher_pad = pad if isinstance(pad, int) else (teacher_tokenizer.eos_token_id or 0)

    def __call__(self, items):
        if not isinstance(items[0], dict):
            ids = torch.stack(list(items))
            return {"input_ids": ids, "labels": self._labels(ids)}
        ids = torch.stack([it["input_ids"] for it in items])
        rows = [self._align(int(it["block"])) for it in items]
        width = max(len(r[0]) for r in rows)
        n_chunks = max(len(r[2].spans) for r in rows)
        t_ids = torch.full((len(rows), width), self.teacher_pad, dtype=torch.long)
        t_mask = torch.zeros((len(rows), width), dtype=torch.long)
        t_chunk = torch.full((len(rows), width), -1, dtype=torch.long)
        s_chunk = torch.full(ids.shape, -1, dtype=torch.long)
        valid = torch.zeros((len(rows), n_chunks), dtype=torch.bool)
        for b, (tid, _, al) in enumerate(rows):
            t_ids[b, : len(tid)] = torch.tensor(tid)
            t_mask[b, : len(tid)] = 1
            t_chunk[b, : len(tid)] = torch.tensor(al.teacher)
            s_chunk[b] = torch.tensor(al.student)
            valid[b, : len(al.spans)] = True
        return {"input_ids": ids, "labels": self._labels(ids), "teacher_input_ids": t_ids, "teacher_attention_mask": t_mask,
                "teacher_chunks": t_chunk, "student_chunks": s_chunk, "chunk_valid": valid}

    def _labels(self, ids: torch.Tensor) -> torch.Tensor:
        labels = ids.clone()
        pad = self.student_tokenizer.pad_token_id
        if isinstance(pad, int):
            labels[labels == pad] = -100
        return labels

    def _align(self, i: int):
        block = self.blocks_text[i]
        tid, toffsets = teacher_block(self.teacher_tokenizer, block)
        return tid, toffsets, align_chunks("".join(block.segments), block.offsets, toffsets)


# ---------------------------------------------------------------------------------------
# The teacher
# ---------------------------------------------------------------------------------------

TEACHER_KEYS = ("teacher_input_ids", "teacher_attention_mask", "teacher_chunks", "student_chunks", "chunk_valid")


def _recorded_source(student_source) -> str:
    """The source model recorded in the adapted model's ``vocabswap.json``."""
    folder = getattr(student_source, "name_or_path", student_source)
    if hasattr(student_source, "report") and hasattr(student_source, "model"):
        source = student_source.report.provenance.get("source")
    else:
        try:
            source = read_record(folder).provenance.get("source") if isinstance(folder, (str, os.PathLike)) else None
        except NotAnOutputFolderError:
            source = None
    if not source or str(source).startswith("<"):
        raise ModelError(
            "teacher=True takes the source model recorded in the adapted model's vocabswap.json, and none is recorded "
            f"for {str(folder)!r}: pass the teacher's Hub id, folder or GGUF file (teacher='google/gemma-3-270m')."
        )
    return str(source)


@dataclass
class Teacher:
    """A frozen causal teacher, its tokenizer and the distillation options (see :func:`resolve_teacher`)."""

    model: object
    tokenizer: object
    config: DistillConfig
    name: str
    student_mask: torch.Tensor | None = None
    teacher_mask: torch.Tensor | None = None

    def describe(self) -> dict:
        """The ``teacher`` entry of ``lapt_history.json``."""
        return {"name": self.name, "model_class": type(self.model).__name__, "tokenizer": getattr(self.tokenizer, "name_or_path", None) or type(self.tokenizer).__name__,
                "tokenizer_vocab_size": len(self.tokenizer), "options": asdict(self.config)}

    def loss(self, student_outputs, student_ids: torch.Tensor, extra: dict) -> torch.Tensor:
        """The distillation loss of one batch, given the student's forward outputs (with gradient)."""
        cfg = self.config
        with torch.no_grad():
            t_out = self.model(input_ids=extra["teacher_input_ids"], attention_mask=extra["teacher_attention_mask"], output_hidden_states=cfg.hidden_weight > 0)
        n = extra["chunk_valid"].shape[1]
        t = chunk_scores(t_out.logits, extra["teacher_input_ids"], extra["teacher_chunks"], n, self.teacher_mask if cfg.debias else None)
        s = chunk_scores(student_outputs.logits, student_ids, extra["student_chunks"], n, self.student_mask if cfg.debias else None)
        loss = alm_loss(s, {k: v.detach() for k, v in t.items()}, extra["chunk_valid"], cfg)
        if cfg.hidden_weight > 0:
            loss = loss + cfg.hidden_weight * hidden_loss(student_outputs.hidden_states[-1], t_out.hidden_states[-1], s["last"], t["last"], extra["chunk_valid"])
        return loss


def resolve_teacher(teacher, teacher_tokenizer, config: DistillConfig | None, student_source, student, student_tokenizer, texts) -> Teacher:
    """Load and check the teacher of ``continue_pretraining(..., teacher=...)``.

    Args:
        teacher: True or "source" (the source recorded in the adapted model's ``vocabswap.json``),
            a Hub id, folder or ``.gguf`` file, or a model object.
        teacher_tokenizer: its tokenizer (default: found from the teacher).
        config: the options (default :class:`DistillConfig`).
        student_source: what the student was given as (a folder, a result, an object).
        student: the student model; student_tokenizer: its tokenizer.
        texts: the training corpus (to check the teacher can encode it).

    Raises:
        PathNotFoundError: the teacher path does not exist.
        ModelError: teacher or student not causal, teacher on another device, nothing recorded.
        TokenizerError: the teacher tokenizer is not fast or cannot encode the corpus.
    """
    config = config or DistillConfig()
    check_causal(student, "student")
    if teacher is True or teacher == "source":
        teacher = _recorded_source(student_source)
    check_source_path(teacher, what="teacher")
    name = str(teacher) if isinstance(teacher, (str, os.PathLike)) else getattr(teacher, "name_or_path", None) or type(teacher).__name__
    model, tok = load_model_and_tokenizer(teacher, teacher_tokenizer, task="causal")
    check_causal(model, "teacher")
    t_dev, s_dev = next(model.parameters()).device, next(student.parameters()).device
    if isinstance(teacher, torch.nn.Module) and t_dev != s_dev:
        raise ModelError(f"The teacher is on {t_dev} and the student on {s_dev}: put both on the same device (teacher.to({str(s_dev)!r})).")
    check_teacher_tokenizer(tok, texts, config.max_unknown_share)
    model.eval()  # frozen: its forward runs under no_grad (requires_grad is left alone: the object may be a parent others are copied from)
    masks = (word_start_mask(student_tokenizer, student.get_input_embeddings().num_embeddings), word_start_mask(tok, model.get_input_embeddings().num_embeddings))
    return Teacher(model, tok, config, name, *masks)
