"""Continued pretraining after a transplant (LAPT: language-adaptive pretraining).

A transplanted model starts with new embeddings that only approximate what the body
expects; a short run of its own pretraining objective on target-language text closes most
of the gap. This module runs it on the transformers :class:`~transformers.Trainer`: the
masked-LM objective for masked LMs and next-token prediction for causal LMs, texts packed
into fixed-length blocks, AdamW with linear warm-up and decay, held-out loss AND bits per
character (:func:`hf_vocabswap.evaluate.bits_per_character`) at every evaluation, resumable
safetensors checkpoints, and the two-phase recipe of Downey et al. (2023): first train only
the embeddings and the output head, then everything.

On a small corpus LAPT overfits after about two epochs (see ALGORITHMS.md): pass held-out
``eval_texts`` and compare the best and the last evaluation, or stop early.

Multi-GPU: the Trainer already runs under ``accelerate launch`` / ``torchrun`` (DDP);
nothing here needs to change for it. Every process tokenizes the corpus and computes the
held-out bits per character itself (the numbers are identical), so decisions based on
them (early stopping, best checkpoint) agree across processes. Sharded setups that hide the
full weights from each process (FSDP, DeepSpeed ZeRO-3) are not supported by the bits per
character evaluation.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers.trainer_utils import get_last_checkpoint

from .card import write_model_card
from .corpus import Corpus, first_chars
from .distill import TEACHER_KEYS, BlockText, DistillCollator, DistillConfig, Teacher, resolve_teacher
from .errors import CorpusError, ModelError, OutputExistsError, TokenizerError
from .record import RECORD_FILE, TransplantReport, read_record
from .evaluate import bits_per_character, causal_prefix, load_model_and_tokenizer, max_sequence_length, special_template
from .surgery import model_kind
from .fields import check_at_least
from .progress import progress_bar

logger = logging.getLogger(__name__)

__all__ = ["continue_pretraining", "TrainConfig", "pack_texts", "pack_texts_with_text", "embedding_parameters", "HISTORY_FILE"]

HISTORY_FILE = "lapt_history.json"
CONTEXT_CHARS = 64  # characters before a block's first piece that the teacher tokenizes with it, then drops


# ---------------------------------------------------------------------------------------
# Data: tokenize and pack into blocks
# ---------------------------------------------------------------------------------------


def pack_texts(tokenizer, texts, seq_length: int, *, kind: str, progress: bool = False) -> torch.Tensor:
    """Tokenize ``texts`` and cut the token stream into blocks of exactly ``seq_length`` ids.

    Masked LMs: texts are joined with the tokenizer's separator (``[SEP]``, ``</s>``) and
    every block is wrapped in the tokenizer's own specials (``[CLS] ... [SEP]``). Causal LMs:
    texts are joined with the eos token and every block starts with the prefix token that
    :func:`hf_vocabswap.evaluate.bits_per_character` also uses (``<bos>``; Gemma degenerates
    without it). The incomplete last block is dropped, so no padding is ever needed.

    Args:
        tokenizer (`PreTrainedTokenizerBase`): the model's tokenizer.
        texts (iterable of `str`): the training text.
        seq_length (`int`): tokens per block, special tokens included.
        kind (`str`): "masked" or "causal".
        progress (`bool`, *optional*, defaults to False): show a progress bar.

    Returns:
        `torch.Tensor`: ``(num_blocks, seq_length)`` token ids (int64).

    Raises:
        CorpusError: the text does not fill a single block.
    """
    if kind == "masked":
        prefix, suffix = special_template(tokenizer)
        joiner = suffix[-1:] or _ids(tokenizer, "sep_token_id", "eos_token_id")
    else:
        prefix, suffix = causal_prefix(tokenizer), []
        joiner = _ids(tokenizer, "eos_token_id")
    room = seq_length - len(prefix) - len(suffix)
    if room < 1:
        raise ModelError(f"seq_length={seq_length} leaves no room for text next to the special tokens {prefix + suffix}.")
    stream: list[int] = []
    batch: list[str] = []

    def flush():
        for ids in tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]:
            stream.extend(ids)
            stream.extend(joiner)
        batch.clear()

    for text in progress_bar(texts, group="train", desc="hf_vocabswap: tokenizing training text", unit=" texts", enabled=progress):
        batch.append(text)
        if len(batch) >= 1000:
            flush()
    flush()
    n_blocks = len(stream) // room
    if n_blocks == 0:
        raise CorpusError(
            f"The training text holds {len(stream)} tokens, fewer than one block of {room}: give more text "
            "or a smaller seq_length."
        )
    body = torch.tensor(stream[: n_blocks * room], dtype=torch.long).view(n_blocks, room)
    parts = []
    if prefix:
        parts.append(torch.tensor(prefix, dtype=torch.long).expand(n_blocks, -1))
    parts.append(body)
    if suffix:
        parts.append(torch.tensor(suffix, dtype=torch.long).expand(n_blocks, -1))
    return torch.cat(parts, dim=1).contiguous()


def _ids(tokenizer, *attrs) -> list[int]:
    for attr in attrs:
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            return [value]
    return []


def pack_texts_with_text(tokenizer, texts, seq_length: int, *, progress: bool = False) -> tuple[torch.Tensor, list[BlockText]]:
    """The causal blocks of :func:`pack_texts` (the same ids) and the characters of each block.

    Every block's :class:`~hf_vocabswap.distill.BlockText` holds the pieces of the documents it
    covers and the student's token offsets into them, so that a teacher can tokenize the same
    characters. Characters no token covers (whitespace a tokenizer drops) go with the token after
    them; the prefix and the eos between documents are zero-width.

    Raises:
        TokenizerError: the tokenizer is not a fast one (character offsets are needed).
        CorpusError: the text does not fill a single block.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TokenizerError(f"Distillation needs character offsets: {type(tokenizer).__name__} is not a fast tokenizer. Pass a fast one.")
    prefix, joiner = causal_prefix(tokenizer), _ids(tokenizer, "eos_token_id")
    room = seq_length - len(prefix)
    if room < 1:
        raise ModelError(f"seq_length={seq_length} leaves no room for text next to the special tokens {prefix}.")
    docs: list[str] = []
    stream: list[tuple[int, int, int, int]] = []  # (id, doc, start, end); doc -1 for the joiner
    for text in progress_bar(texts, group="train", desc="hf_vocabswap: tokenizing training text", unit=" texts", enabled=progress):
        docs.append(text)
    for first in range(0, len(docs), 1000):
        enc = tokenizer(docs[first : first + 1000], add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        for k, (ids, offsets) in enumerate(zip(enc["input_ids"], enc["offset_mapping"])):
            stream.extend((i, first + k, s, e) for i, (s, e) in zip(ids, offsets))
            stream.extend((j, -1, 0, 0) for j in joiner)
    n_blocks = len(stream) // room
    if n_blocks == 0:
        raise CorpusError(f"The training text holds {len(stream)} tokens, fewer than one block of {room}: give more text or a smaller seq_length.")
    body = torch.tensor([t[0] for t in stream[: n_blocks * room]], dtype=torch.long).view(n_blocks, room)
    blocks = torch.cat([torch.tensor(prefix, dtype=torch.long).expand(n_blocks, -1), body], dim=1) if prefix else body
    texts_of = [_block_text(docs, stream, b * room, (b + 1) * room, len(prefix)) for b in range(n_blocks)]
    return blocks.contiguous(), texts_of


def _block_text(docs: list[str], stream, lo: int, hi: int, n_prefix: int) -> BlockText:
    """The characters of ``stream[lo:hi]``: one piece per document, from the end of the document's
    previous token (its start for the first) to the end of its last token in the block, with up to
    ``CONTEXT_CHARS`` characters of the document before it (so a teacher tokenizes a piece that starts
    mid-document as a continuation, not as a new text)."""
    segments: list[str] = []
    contexts: list[str] = []
    offsets: list[tuple[int, int]] = [(0, 0)] * n_prefix
    base, doc, seg_start, prev_end = 0, None, 0, 0

    def close():
        if doc is not None:
            segments.append(docs[doc][seg_start:prev_end])
            contexts.append(docs[doc][max(0, seg_start - CONTEXT_CHARS):seg_start])

    for i in range(lo, hi):
        _, d, s, e = stream[i]
        if d < 0:
            offsets.append((base + prev_end - seg_start,) * 2 if doc is not None else (base, base))
            continue
        if d != doc:
            close()
            base += prev_end - seg_start if doc is not None else 0
            previous = stream[i - 1] if i > 0 else None
            seg_start = previous[3] if previous is not None and previous[1] == d else 0
            doc, prev_end = d, seg_start
        # a gap before the token joins it; a byte piece of a character the previous block's token ended becomes zero-width
        start, end = max(min(s, prev_end), seg_start), max(e, prev_end)
        offsets.append((base + start - seg_start, base + end - seg_start))
        prev_end = end
    close()
    return BlockText(segments, offsets, contexts)


class _Blocks(torch.utils.data.Dataset):
    """Fixed-length token blocks; items are 1-D id tensors, or ``{"input_ids", "block"}`` when
    ``indexed`` (the distillation collator finds each block's text by its index)."""

    def __init__(self, blocks: torch.Tensor, indexed: bool = False):
        self.blocks = blocks
        self.indexed = indexed

    def __len__(self) -> int:
        return self.blocks.shape[0]

    def __getitem__(self, i):
        return {"input_ids": self.blocks[i], "block": i} if self.indexed else self.blocks[i]


# ---------------------------------------------------------------------------------------
# Trainer with held-out bits per character and the embeddings-only phase
# ---------------------------------------------------------------------------------------


def embedding_parameters(model) -> list[torch.nn.Parameter]:
    """The parameters trained in the embeddings-only phase: the input embedding matrix, the
    output embedding matrix (the same tensor when tied) and the output bias (BERT's
    ``cls.predictions.bias``). Everything else, including position embeddings, embedding
    LayerNorm and the MLM head's transform, is "body"."""
    params = []
    inp = model.get_input_embeddings()
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for module in (inp, out):
        for name in ("weight", "bias"):
            p = getattr(module, name, None) if module is not None else None
            if isinstance(p, torch.nn.Parameter) and all(p is not q for q in params):
                params.append(p)
    return params


def _make_trainer_class():
    from transformers import Trainer  # lazy: Trainer pulls in accelerate, seconds at start-up; only training needs it

    class LaptTrainer(Trainer):
        """Trainer that adds held-out bits per character to every evaluation and trains
        only the embeddings during the first ``embeddings_only_steps`` optimizer steps.

        The embeddings-only phase keeps every parameter in the optimizer and in DDP (so the
        switch needs no re-wrapping and works with ``accelerate launch``) and drops the
        body's gradients after each backward pass: clipping then sees only the embeddings'
        gradients, and AdamW skips parameters without a gradient entirely (no update, no
        weight decay, no optimizer state) until the body is released.
        """

        def __init__(self, *args, bpc_texts=None, bpc_options=None, embeddings_only_steps: int = 0, teacher: Teacher | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.teacher = teacher
            if teacher is not None:
                teacher.model.to(self.args.device)
            self._distill_losses: list[float] = []
            self.bpc_texts = bpc_texts
            self.bpc_options = bpc_options or {}
            self.embeddings_only_steps = embeddings_only_steps
            trainable = {id(p) for p in embedding_parameters(self.model)}
            self._body_parameters = [p for p in self.model.parameters() if id(p) not in trainable]
            self._announced_release = False

        def training_step(self, model, inputs, num_items_in_batch=None):
            loss = super().training_step(model, inputs, num_items_in_batch)
            if self.state.global_step < self.embeddings_only_steps:
                for p in self._body_parameters:
                    p.grad = None
            elif self.embeddings_only_steps and not self._announced_release:
                self._announced_release = True
                logger.info("step %d: embeddings-only phase over, training the whole model", self.state.global_step)
            return loss

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.teacher is None or "teacher_input_ids" not in inputs:
                return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
            loss, outputs, distill_loss = _distilled_loss(self, model, inputs, num_items_in_batch)
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, *args, **kwargs):
            if "loss" in logs and self._distill_losses:
                logs["distill_loss"] = round(sum(self._distill_losses) / len(self._distill_losses), 6)
                self._distill_losses.clear()
            super().log(logs, *args, **kwargs)

        def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"):
            output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
            if self.bpc_texts:
                result = bits_per_character(self.model, self.processing_class, self.bpc_texts, progress=False, **self.bpc_options)
                output.metrics[f"{metric_key_prefix}_bpc"] = result["bits_per_character"]
            return output

    return LaptTrainer


def _distilled_loss(trainer, model, inputs, num_items_in_batch):
    """The student's own loss (weighted) plus the ALM loss against the teacher; records the latter for the log."""
    cfg = trainer.teacher.config
    extra = {k: inputs.pop(k) for k in TEACHER_KEYS}
    if cfg.hidden_weight > 0:
        inputs["output_hidden_states"] = True
    lm_loss, outputs = super(type(trainer), trainer).compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
    distill_loss = trainer.teacher.loss(outputs, inputs["input_ids"], extra)
    trainer._distill_losses.append(float(distill_loss.detach()))
    scale = 1.0
    if trainer.model_accepts_loss_kwargs and num_items_in_batch is not None:
        scale = 1.0 / trainer.current_gradient_accumulation_steps  # the LM loss is already scaled for accumulation
    return cfg.lm_weight * lm_loss + cfg.weight * scale * distill_loss, outputs, distill_loss


# ---------------------------------------------------------------------------------------
# The public function
# ---------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Every option of a continued-pretraining run (:func:`continue_pretraining`); fields of the same
    name given to :func:`continue_pretraining` as keywords override a config's.

    Attributes:
        max_steps (`int`, defaults to 100): optimizer steps in total (counting steps done before a resume).
        batch_size (`int`, defaults to 8): blocks per device per micro-batch.
        gradient_accumulation_steps (`int`, defaults to 1): micro-batches per optimizer step.
        learning_rate (`float`, defaults to 5e-5): peak learning rate.
        warmup_steps (`int`, defaults to 50): steps of linear warm-up from 0.
        weight_decay (`float`, defaults to 0.0): AdamW's decoupled weight decay (not applied
            to biases and LayerNorm weights).
        seq_length (`int`, defaults to 512): tokens per block, special tokens included; at most
            the model's position limit.
        eval_steps (`int`, defaults to 50): evaluate every this many steps.
        save_steps (`int`, optional): save a checkpoint every this many steps; defaults to ``eval_steps``.
        save_total_limit (`int`, optional): keep at most this many checkpoints (the best one is always kept).
        logging_steps (`int`, defaults to 10): log the training loss every this many steps.
        embeddings_only_steps (`int`, defaults to 0): length of the embeddings-only first phase,
            in optimizer steps.
        mlm_probability (`float`, defaults to 0.15): masking rate of the masked-LM objective (and
            of the bpc evaluation's groups).
        seed (`int`, defaults to 42): seeds initialization of the data order, masking and dropout.
        bf16 (`bool`, defaults to False): train under bfloat16 autocast (weights stay float32; on a
            machine without an accelerator this runs on the CPU). The evaluations (and a teacher)
            run under the same autocast, so their bits per character differ slightly from a
            float32 evaluation of the saved model.
        load_best_model_at_end (`bool`, defaults to False): save the best evaluated checkpoint
            (lowest ``eval_bpc``) as the final model instead of the last one. Needs ``eval_texts``
            and ``save_steps`` a multiple of ``eval_steps``.
        early_stopping_patience (`int`, optional): stop after this many evaluations without
            improvement of ``eval_bpc``. Implies ``load_best_model_at_end=True``.
        eval_max_chars (`int`, optional): evaluate on whole held-out samples up to this many characters.
        eval_batch_size (`int`, optional): batch size of the evaluations; defaults to ``batch_size``.
        task (`str`, optional): "masked" or "causal" to force the Auto class when loading by name.
        report_to (`str`, defaults to "none"): experiment trackers for the Trainer ("tensorboard", "wandb", "all", ...).
        training_args (`dict`, optional): further :class:`~transformers.TrainingArguments` fields;
            they override the values derived from the fields above.
    """

    max_steps: int = 100
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    warmup_steps: int = 50
    weight_decay: float = 0.0
    seq_length: int = 512
    eval_steps: int = 50
    save_steps: int | None = None
    save_total_limit: int | None = None
    logging_steps: int = 10
    embeddings_only_steps: int = 0
    mlm_probability: float = 0.15
    seed: int = 42
    bf16: bool = False
    load_best_model_at_end: bool = False
    early_stopping_patience: int | None = None
    eval_max_chars: int | None = None
    eval_batch_size: int | None = None
    task: str | None = None
    report_to: str = "none"
    training_args: dict | None = None


def _resolve_config(config: TrainConfig | None, overrides: dict) -> TrainConfig:
    """``config`` (or the defaults) with the keyword ``overrides``; unknown names are refused."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"continue_pretraining() got unknown option(s) {unknown}; the options are TrainConfig's fields: {sorted(names)}")
    return dataclasses.replace(config or TrainConfig(), **overrides)


def _check_counts(cfg: TrainConfig) -> None:
    """Refuse step counts and batch sizes below 1 and blocks below 2 tokens, before anything is loaded."""
    check_at_least(1, max_steps=cfg.max_steps, batch_size=cfg.batch_size, eval_steps=cfg.eval_steps, logging_steps=cfg.logging_steps,
                   gradient_accumulation_steps=cfg.gradient_accumulation_steps, eval_batch_size=cfg.eval_batch_size)
    check_at_least(2, seq_length=cfg.seq_length)


def continue_pretraining(
    model_or_path,
    train_texts_or_file,
    *,
    output_dir: str | os.PathLike,
    tokenizer=None,
    eval_texts=None,
    config: TrainConfig | None = None,
    teacher=None,
    teacher_tokenizer=None,
    distill: DistillConfig | None = None,
    resume: bool | str = False,
    overwrite: bool = False,
    progress: bool = True,
    callbacks: list | None = None,
    **overrides,
) -> dict:
    """Continue pretraining a (transplanted) model on target-language text (LAPT), optionally
    distilling from a teacher with another tokenizer (ALM, :mod:`hf_vocabswap.distill`).

    The objective follows the model (:func:`hf_vocabswap.surgery.model_kind`): masked LMs
    train with ``DataCollatorForLanguageModeling(mlm=True)`` (``mlm_probability`` masked,
    80/10/10), causal LMs with next-token prediction (``mlm=False``). Texts are tokenized
    and packed into blocks of ``seq_length`` tokens (see :func:`pack_texts`). The optimizer
    is AdamW with ``warmup_steps`` of linear warm-up then linear decay to zero at
    ``max_steps``. With ``eval_texts``, every ``eval_steps`` steps (and once before the
    first step) the held-out loss (``eval_loss``, same objective, random masking) and the
    held-out bits per character (``eval_bpc``, deterministic,
    :func:`hf_vocabswap.evaluate.bits_per_character` with ``max_length=seq_length``) are
    logged; the best evaluation (lowest ``eval_bpc``) and the last are reported.

    Checkpoints (safetensors, with optimizer, scheduler, RNG and trainer state) are written
    to ``output_dir/checkpoint-<step>`` every ``save_steps`` steps; ``resume=True``
    continues from the newest one at its saved step, with the data order and learning-rate
    schedule of an uninterrupted run (``max_steps`` may be raised when resuming).

    Two-phase recipe (Downey et al., 2023): for the first ``embeddings_only_steps``
    optimizer steps only the input embeddings, the output embeddings and the output bias
    are updated (see :func:`embedding_parameters`); the body (every other parameter) is
    frozen, then released. The learning-rate schedule runs across both phases.

    Distillation (causal student and teacher): every training block keeps its characters;
    the teacher tokenizes the same characters, runs frozen, in eval mode, without gradient,
    on the student's device under the same autocast, and the ALM loss on the chunks both
    tokenizations share (weight ``distill.weight``) is added to the student's own
    next-token loss (weight ``distill.lm_weight``). The log records ``distill_loss`` beside
    ``loss``; evaluations stay the student's own loss and bits per character. The teacher is
    not part of any checkpoint (give it again when resuming).

    At the end the final model (or, with ``load_best_model_at_end``, the best one) and its
    tokenizer are saved to ``output_dir``, loadable with the stock Auto classes, with
    ``lapt_history.json``: the evaluation curve, the training losses, the summary and, when
    distilled, the ``teacher`` (name, tokenizer, options).

    Args:
        model_or_path (`PreTrainedModel`, `str` or `os.PathLike`):
            A masked or causal LM: an object, a Hub id, a local folder, a ``.gguf`` file,
            or a :class:`~hf_vocabswap.TransplantResult`. Objects (and a result's model)
            are trained in place: pass a copy to keep the original.
        train_texts_or_file (`str`, `os.PathLike`, `list[str]` or `datasets.Dataset`):
            Training text: a UTF-8 file (one sample per line), a folder of ``.txt`` files,
            a list of strings or a dataset with a ``text`` column.
        output_dir (`str` or `os.PathLike`):
            Where checkpoints, the final model and ``lapt_history.json`` go.
        tokenizer (`PreTrainedTokenizerBase` or `str`, *optional*):
            The model's tokenizer; found from ``model_or_path`` when omitted.
        eval_texts (same types as ``train_texts_or_file``, *optional*):
            Held-out text for the evaluation curve. Without it nothing is evaluated, and
            overfitting cannot be seen.
        config (:class:`TrainConfig`, *optional*):
            The training options (defaults: ``TrainConfig()``).
        teacher (`bool`, `str`, `os.PathLike` or `PreTrainedModel`, *optional*):
            Distill from this causal LM: True or "source" for the source model recorded in
            the adapted model's ``vocabswap.json``; a Hub id, folder or ``.gguf`` file; or a
            model object (on the student's device; it is moved with the student).
        teacher_tokenizer (*optional*): the teacher's tokenizer (default: found from the teacher).
        distill (:class:`~hf_vocabswap.distill.DistillConfig`, *optional*): the distillation options.
        resume (`bool` or `str`, *optional*, defaults to False):
            True: continue from the newest ``checkpoint-*`` in ``output_dir`` (a warning
            and a fresh start when there is none and the folder is otherwise empty); a path:
            continue from that checkpoint.
        overwrite (`bool`, *optional*, defaults to False):
            Start afresh in a non-empty ``output_dir``, deleting its old checkpoints.
        progress (`bool`, *optional*, defaults to True): show progress bars.
        callbacks (`list[TrainerCallback]`, *optional*):
            Extra :class:`~transformers.TrainerCallback` objects for the Trainer.
        **overrides: :class:`TrainConfig` fields (``max_steps=``, ``bf16=``, ...); they
            override ``config``'s.

    Returns:
        `dict`: ``output_dir``, ``model_kind``, ``global_step``, ``resumed_from`` (the
        checkpoint or None), ``start_step`` (the step training began from), ``best``
        and ``last`` (``{"step", "eval_loss", "eval_bpc"}`` or None without evaluation),
        ``initial`` (the evaluation before the first step, if run), ``best_checkpoint``,
        ``final_model`` ("best" or "last"), ``history`` (the evaluation entries),
        ``train_loss`` (mean over this call), ``num_blocks``, ``num_train_tokens``,
        ``epochs`` (passes over the packed data), ``teacher`` (None or its description)
        and ``seconds``.

    Raises:
        OutputExistsError: ``output_dir`` holds files, and neither ``resume`` nor
            ``overwrite`` was given.
        CorpusError: the training text is missing or shorter than one block, or the best
            model / early stopping was asked for without ``eval_texts``.
        ModelError: the model is neither a masked nor a causal LM, or ``seq_length``
            exceeds its position limit; with a teacher: student or teacher not causal, or
            the teacher on another device.
        PathNotFoundError: the teacher path does not exist.
        TokenizerError: the teacher's tokenizer cannot encode the corpus (too many unknown tokens).
        FileNotFoundError: ``resume`` names a checkpoint that does not exist.
        TypeError: an override that is not a :class:`TrainConfig` field.
        OptionValueError: a step count or batch size below 1, or ``seq_length`` below 2
            (before anything is loaded).

    Example:
        >>> from hf_vocabswap import transplant_tokenizer
        >>> from hf_vocabswap.train import continue_pretraining, TrainConfig
        >>> result = transplant_tokenizer("FacebookAI/xlm-roberta-base", "my-org/uk-32k", method="fvt")
        >>> summary = continue_pretraining(result, "uk_train.txt", output_dir="xlmr-uk-lapt",
        ...                                eval_texts="uk_heldout.txt", config=TrainConfig(max_steps=400, eval_steps=50))
        >>> summary["best"], summary["last"]
    """
    cfg = _resolve_config(config, overrides)
    _check_counts(cfg)
    # lazy: the training stack pulls in accelerate, seconds at start-up; only training needs it
    from transformers import DataCollatorForLanguageModeling, EarlyStoppingCallback, TrainingArguments

    started = time.perf_counter()
    output = Path(output_dir)
    checkpoint = _checkpoint_to_resume(output, resume, overwrite)
    evaluate = eval_texts is not None
    load_best = cfg.load_best_model_at_end or cfg.early_stopping_patience is not None
    if load_best and not evaluate:
        raise CorpusError("load_best_model_at_end and early_stopping_patience need held-out text: pass eval_texts=...")

    model, tok, kind = _load_trainable(model_or_path, tokenizer, cfg.task, cfg.seq_length)
    texts = Corpus.coerce(train_texts_or_file)
    teach = None
    if teacher is not None and teacher is not False:
        teach = resolve_teacher(teacher, teacher_tokenizer, distill, model_or_path, model, tok, texts)
        blocks, blocks_text = pack_texts_with_text(tok, texts, cfg.seq_length, progress=progress)
        collator = DistillCollator(tok, teach.tokenizer, blocks_text)
    else:
        blocks = pack_texts(tok, texts, cfg.seq_length, kind=kind, progress=progress)
        collator = DataCollatorForLanguageModeling(tok, mlm=kind == "masked", mlm_probability=cfg.mlm_probability)
    held_out = _held_out_texts(eval_texts, cfg.eval_max_chars) if evaluate else None
    eval_blocks = _eval_blocks(tok, held_out, cfg.seq_length, kind) if evaluate else None
    logger.info("packed %d training blocks of %d tokens (%d tokens)", blocks.shape[0], cfg.seq_length, blocks.numel())

    args = _training_arguments(cfg, output, evaluate, checkpoint is None, load_best, progress)
    callbacks = list(callbacks or [])
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    trainer = _make_trainer_class()(
        model=model,
        args=TrainingArguments(**args),
        train_dataset=_Blocks(blocks, indexed=teach is not None),
        eval_dataset=_Blocks(eval_blocks) if eval_blocks is not None else None,
        data_collator=collator,
        processing_class=tok,
        callbacks=callbacks,
        bpc_texts=held_out,
        bpc_options=dict(max_length=cfg.seq_length, batch_size=cfg.eval_batch_size or cfg.batch_size, mlm_probability=cfg.mlm_probability, seed=0),
        embeddings_only_steps=cfg.embeddings_only_steps,
        teacher=teach,
    )
    start_step, train_output = _train(trainer, checkpoint)

    trainer.save_model(str(output))
    trainer.save_state()
    summary = _summary(trainer, kind, output, checkpoint, start_step, blocks, train_output, load_best)
    summary["teacher"] = teach.describe() if teach is not None else None
    summary["seconds"] = time.perf_counter() - started
    if trainer.is_world_process_zero():
        extra = {"seq_length": cfg.seq_length, "embeddings_only_steps": cfg.embeddings_only_steps, "mlm_probability": cfg.mlm_probability,
                 "early_stopping_patience": cfg.early_stopping_patience}
        arguments = _write_history(output, summary, trainer, args, extra)
        _complete_output(output, model_or_path, summary, arguments)
    _log_done(summary)
    return summary


def _training_arguments(cfg: TrainConfig, output: Path, evaluate: bool, fresh: bool, load_best: bool, progress: bool) -> dict:
    """The :class:`~transformers.TrainingArguments` fields of a run."""
    args = dict(
        output_dir=str(output),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size or cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type="linear",
        optim="adamw_torch",
        eval_strategy="steps" if evaluate else "no",
        eval_steps=cfg.eval_steps if evaluate else None,
        eval_on_start=evaluate and fresh,
        save_strategy="steps",
        save_steps=cfg.save_steps or cfg.eval_steps,
        save_total_limit=cfg.save_total_limit,
        logging_steps=cfg.logging_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=cfg.bf16,
        report_to=cfg.report_to,
        disable_tqdm=not progress,
        load_best_model_at_end=load_best,
        metric_for_best_model="eval_bpc" if evaluate else None,
        greater_is_better=False if evaluate else None,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=_has_accelerator(),
    )
    if cfg.bf16 and not _has_accelerator():
        args["use_cpu"] = True  # bf16 autocast on CPU; the Trainer refuses it otherwise
    args.update(cfg.training_args or {})
    return args


def _load_trainable(model_or_path, tokenizer, task, seq_length: int):
    """The model, its tokenizer and its kind, refused unless a masked or causal LM that fits ``seq_length``."""
    model, tok = load_model_and_tokenizer(model_or_path, tokenizer, task=task)
    kind = model_kind(model)
    if kind not in ("masked", "causal"):
        raise ModelError(
            f"Continued pretraining supports masked and causal LMs; {type(model).__name__} is {kind!r}. "
            "Load it with AutoModelForMaskedLM or AutoModelForCausalLM (encoder-decoder objectives are not implemented)."
        )
    limit = max_sequence_length(model, tok)
    if limit is not None and seq_length > limit:
        raise ModelError(f"seq_length={seq_length} exceeds the {limit} positions {type(model).__name__} has: use seq_length={limit} or less.")
    return model, tok, kind


def _eval_blocks(tok, held_out, seq_length: int, kind: str) -> torch.Tensor:
    """Held-out blocks of ``seq_length``; held-out text shorter than one block becomes one short block of all of it."""
    try:
        return pack_texts(tok, held_out, seq_length, kind=kind)
    except CorpusError:
        return pack_texts(tok, held_out, _short_block(tok, held_out, kind), kind=kind)


def _write_history(output: Path, summary: dict, trainer, args: dict, extra: dict) -> dict:
    """``lapt_history.json``: the summary, the training log and the arguments that matter (returned,
    so the transplant record's recipe is the same set)."""
    record = dict(summary)
    record["train_log"] = [e for e in trainer.state.log_history if "loss" in e]
    record["arguments"] = {k: v for k, v in args.items() if isinstance(v, (int, float, str, bool, type(None)))} | extra
    (output / HISTORY_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return record["arguments"]


def _train(trainer, checkpoint: Path | None):
    """Run the Trainer from ``checkpoint`` (or from the start); the step it began at and its output."""
    if checkpoint is not None:
        logger.info("resuming from %s", checkpoint)
    start_step = _checkpoint_step(checkpoint)
    return start_step, trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)


def _log_done(summary: dict) -> None:
    best, last = summary["best"], summary["last"]
    if best and last:
        logger.info("LAPT done at step %d: best eval_bpc %.4f at step %d, last %.4f", summary["global_step"], best["eval_bpc"], best["step"], last["eval_bpc"])


def training_section(summary: dict, arguments: dict) -> dict:
    """The record's ``training`` entry: the recipe, the curve's first, best and last points, the teacher."""
    keep = ("global_step", "initial", "best", "last", "final_model", "num_train_tokens", "epochs", "train_loss", "teacher")
    section = {k: summary.get(k) for k in keep}
    section["recipe"] = {k: v for k, v in arguments.items() if k not in ("output_dir", "report_to", "disable_tqdm")}
    section["curve"] = [{"step": e["step"], "eval_bpc": e["eval_bpc"]} for e in summary.get("history", [])]
    return section


def _transplant_record(model_or_path) -> TransplantReport | None:
    """The transplant record of what was trained: a result's report, or the input folder's ``vocabswap.json``."""
    report = getattr(model_or_path, "report", None)
    if isinstance(report, TransplantReport):
        return TransplantReport.from_dict(report.to_dict())
    if isinstance(model_or_path, (str, os.PathLike)) and (Path(model_or_path) / RECORD_FILE).is_file():
        return read_record(model_or_path)
    return None


def _complete_output(output: Path, model_or_path, summary: dict, arguments: dict) -> None:
    """Make ``output`` a complete hf_vocabswap output when a transplant was trained: its record with a
    ``training`` section and a card that says what training was done (no longer "untrained"). The
    Trainer's pickled ``training_args.bin`` is removed either way (the arguments are in the history)."""
    (output / "training_args.bin").unlink(missing_ok=True)
    report = _transplant_record(model_or_path)
    if report is None:
        return
    report.training = training_section(summary, arguments)
    report.write(output)
    write_model_card(output)


def _has_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "is_available"):
        return bool(accelerator.is_available())
    return torch.cuda.is_available()


def _checkpoint_to_resume(output: Path, resume, overwrite: bool) -> Path | None:
    if isinstance(resume, (str, os.PathLike)) and not isinstance(resume, bool):
        path = Path(resume)
        if not path.is_dir():
            raise FileNotFoundError(f"Checkpoint folder {str(path)!r} does not exist. Pass resume=True to use the newest checkpoint in output_dir.")
        return path
    has_content = output.is_dir() and any(output.iterdir())
    if resume:
        last = get_last_checkpoint(str(output)) if output.is_dir() else None
        if last is not None:
            return Path(last)
        if has_content and not overwrite:
            raise OutputExistsError(output)
        logger.warning("resume=True but %s holds no checkpoint-* folder: starting from step 0", output)
    elif has_content:
        if not overwrite:
            raise OutputExistsError(output)
        for old in output.glob("checkpoint-*"):
            if old.is_dir():
                shutil.rmtree(old)
        (output / HISTORY_FILE).unlink(missing_ok=True)
    return None


def _checkpoint_step(checkpoint: Path | None) -> int:
    if checkpoint is None:
        return 0
    state = checkpoint / "trainer_state.json"
    if state.is_file():
        return int(json.loads(state.read_text(encoding="utf-8")).get("global_step", 0))
    try:
        return int(checkpoint.name.rsplit("-", 1)[-1])
    except ValueError:
        return 0


def _held_out_texts(eval_texts, max_chars: int | None) -> list[str]:
    return first_chars(Corpus.coerce(eval_texts), max_chars)


def _short_block(tokenizer, texts, kind: str) -> int:
    n = sum(len(ids) + 1 for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"])
    prefix, suffix = special_template(tokenizer) if kind == "masked" else (causal_prefix(tokenizer), [])
    return max(n, 1) + len(prefix) + len(suffix)


def _summary(trainer, kind, output, checkpoint, start_step, blocks, train_output, loaded_best) -> dict:
    evals = []
    for entry in trainer.state.log_history:
        if "eval_loss" in entry or "eval_bpc" in entry:
            evals.append({
                "step": entry.get("step"),
                "epoch": entry.get("epoch"),
                "eval_loss": entry.get("eval_loss"),
                "eval_bpc": entry.get("eval_bpc"),
            })
    scored = [e for e in evals if e["eval_bpc"] is not None and math.isfinite(e["eval_bpc"])]
    best = min(scored, key=lambda e: (e["eval_bpc"], e["step"])) if scored else None
    last = evals[-1] if evals else None
    initial = evals[0] if evals and evals[0]["step"] == 0 else None
    steps_per_epoch = max(1, math.ceil(blocks.shape[0] / (trainer.args.train_batch_size * trainer.args.gradient_accumulation_steps * trainer.args.world_size)))
    return {
        "output_dir": str(output),
        "model_kind": kind,
        "global_step": trainer.state.global_step,
        "resumed_from": str(checkpoint) if checkpoint is not None else None,
        "start_step": start_step,
        "initial": initial,
        "best": best,
        "last": last,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "final_model": "best" if loaded_best and best is not None else "last",
        "history": evals,
        "train_loss": getattr(train_output, "training_loss", None),
        "num_blocks": int(blocks.shape[0]),
        "num_train_tokens": int(blocks.numel()),
        "epochs": trainer.state.global_step / steps_per_epoch,
    }
