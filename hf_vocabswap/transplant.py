"""transplant_tokenizer(): plan (load, align, method) then apply (surgery, calibration, report).

The flow runs one way, top to bottom::

    plan_transplant(...)   load the source (in memory, or streamed: only the vocabulary tensors)
                           resolve the method (``auto`` is a registry entry like any other)
                           check the inputs, prepare and align the target tokenizer
                           the method's mixing plan
    apply_transplant(...)  surgery (input, untied output, biases, config ids)
                           the adapted tokenizer
                           output calibration (its own step, when asked or by the method's default)
                           the report, and the result (streamed results write the rest on save)

``transplant_tokenizer`` is the two in a row; :func:`plan_transplant` alone gives the plan and
everything it was made from without touching the model.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .calibration import CalibrationConfig, calibrate_new_tokens, new_token_ids
from .card import example_from_texts, validate_language
from .corpus import UNKNOWN_SHARE_WARNING, Corpus, first_chars
from .errors import CorpusError, MethodOptionError, NoOverlapError, TokenizerError
from .evaluate import tokenizer_stats
from .loading import TASK_AUTO_CLASSES, SourceModel, check_pair, check_source_path, load_tokenizer, open_source, tokenizer_fingerprint
from .methods import Method, MethodConfig, MethodContext, get_method
from .plan import MixingPlan
from .record import TransplantReport
from .result import TransplantResult
from .romanize import ROMANIZE_DEFAULT, Romanizer, get_romanizer, romanize_alignment
from .streaming import StreamingTransplantResult, open_streaming_source, wants_streaming
from .surgery import apply_plan, check_required_roles, find_embeddings, model_kind
from .vocab import VocabAlignment, align_vocabularies

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_METHOD", "PlannedTransplant", "adapted_tokenizer", "apply_transplant", "check_settings", "plan_transplant",
    "transplant_tokenizer",
]

DEFAULT_METHOD = "auto"


@dataclass
class PlannedTransplant:
    """Everything :func:`plan_transplant` decided, before the model is changed.

    Attributes:
        source: the loaded :class:`~hf_vocabswap.loading.SourceModel` (model, tokenizer, provenance,
            and the checkpoint when streamed).
        target_tokenizer: the tokenizer to transplant to (after the method's preparation, e.g. trim).
        alignment: the :class:`~hf_vocabswap.vocab.VocabAlignment` of source and target.
        method: the method that made the plan (``auto`` resolved), with its config.
        plan: the :class:`~hf_vocabswap.plan.MixingPlan`.
        corpus: the :class:`~hf_vocabswap.corpus.Corpus`, or None.
        seed: the seed of every random choice.
        device: where heavy maths runs.
        calibrate: the caller's ``calibrate`` (None: the method's default; a
            :class:`~hf_vocabswap.calibration.CalibrationConfig`: on, with its settings).
        auto_reason: why ``auto`` picked the method, when it did.
        started: ``time.perf_counter()`` at the start of planning.
        language: the target language's ISO 639 code(s) for the card, or None.
    """

    source: SourceModel
    target_tokenizer: Any
    alignment: VocabAlignment
    method: Method
    plan: MixingPlan
    corpus: Corpus | None
    seed: int
    device: str = "cpu"
    calibrate: bool | CalibrationConfig | None = None
    auto_reason: str | None = None
    started: float = field(default_factory=time.perf_counter)
    language: str | list[str] | None = None


def transplant_tokenizer(
    model,
    target_tokenizer,
    method: str = DEFAULT_METHOD,
    *,
    source_tokenizer=None,
    corpus=None,
    seed: int = 42,
    task: str | None = None,
    pad_to_multiple_of: int | None = None,
    device: str = "cpu",
    inplace: bool = False,
    low_memory: bool | None = None,
    calibrate: bool | CalibrationConfig | None = None,
    allow_mismatch: bool = False,
    language: str | list[str] | None = None,
    romanize: bool | str | Callable[[str], str] = ROMANIZE_DEFAULT,
    **method_options,
) -> TransplantResult:
    """Swap a model's vocabulary for ``target_tokenizer`` and initialize the new embeddings.

    Args:
        model: a transformers model object, a Hub id, a local model folder or a ``.gguf`` file.
        target_tokenizer: the new tokenizer (object, Hub id or folder). Use
            :func:`hf_vocabswap.train_tokenizer` to train one with the source's pipeline.
            ``method="trim"`` accepts ``None`` or the source tokenizer and trims it with the
            corpus (see :meth:`Method.prepare_target_tokenizer`).
        method: a registered method name (see :func:`hf_vocabswap.available_methods`), or
            "auto" (the default): the calibrated hybrid for causal and masked LMs given a corpus,
            FVT otherwise, as the committed quality benchmarks recommend
            (:mod:`hf_vocabswap.methods.auto`).
        source_tokenizer: the tokenizer the model was trained with; found from the model's
            name when omitted.
        corpus: target-language text (path, list of strings or ``datasets`` dataset) for
            methods that learn from it (FOCUS, the hybrid) and for calibration.
        seed: seeds every random choice; same inputs and seed give bit-identical weights.
        task: force "masked", "causal", "seq2seq" or "base" when loading by name.
        pad_to_multiple_of: round the vocabulary rows up to a multiple of this.
        device: where the methods' heavy maths runs ("cpu" or "cuda").
        inplace: modify a given model object instead of a deep copy of it.
        low_memory: read only the vocabulary tensors of a safetensors checkpoint and stream
            the rest when saving (:mod:`hf_vocabswap.streaming`). None (default): for folders
            and Hub ids of sharded safetensors; True: for any safetensors folder or Hub id.
        calibrate: after the surgery, shift the new tokens' output scores so that the model
            predicts each about as often as the corpus uses it (:mod:`hf_vocabswap.calibration`;
            causal, masked and encoder-decoder LMs; needs ``corpus``). None (default): the
            method's default (on for ``hybrid``, where the corpus allows it). A
            :class:`~hf_vocabswap.calibration.CalibrationConfig` calibrates with those settings.
        allow_mismatch: accept a ``source_tokenizer`` that does not look like the model's own (other
            special ids than the config's, or another vocabulary than the one saved with the model).
        language: ISO 639-1 or 639-3 code(s) of the target language (``"uk"``), recorded and
            written to the model card's ``language:`` field.
        romanize: give new tokens in scripts the source tokenizer covers poorly (measured) a
            romanized form that methods split with the source tokenizer, and match it to whole
            source tokens as extra anchors (:mod:`hf_vocabswap.romanize`). True: uroman (the
            ``romanize`` extra); a function ``str -> str``: that romanizer; False (default, as
            benchmarks/results/romanize_cpu.md found): none.
        **method_options: options of the chosen method (its config dataclass fields).

    Returns:
        A :class:`TransplantResult` with ``.model``, ``.tokenizer``, ``.report``,
        ``.plan`` and ``.save_pretrained(dir)`` / ``.push_to_hub(repo_id)``.

    Raises:
        CardError: ``language`` is not an ISO 639 code (checked before anything is loaded).
        ResourceError: ``romanize=True`` and uroman is not installed (checked before anything is loaded).
        UnknownMethodError: ``method`` is not registered.
        MethodOptionError: an option the method does not have, or calibration asked for a streamed model.
        CorpusError: the method needs a corpus and none (or an empty one) was given.
        MissingSpecialTokenError: the target lacks a special token the model uses.
        ModelError: the model has no input embeddings.
        MismatchError: a tokenizer does not belong to its model.
        NoOverlapError: the method needs shared tokens and there are none.

    Example:
        >>> from hf_vocabswap import transplant_tokenizer
        >>> result = transplant_tokenizer("FacebookAI/xlm-roberta-base", "my-org/uk-32k",
        ...                               method="focus", corpus="uk_train.txt")
        >>> print(result.report)
        >>> result.save_pretrained("xlmr-uk")
    """
    if pad_to_multiple_of is not None and (isinstance(pad_to_multiple_of, bool) or not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1):
        raise MethodOptionError(f"pad_to_multiple_of must be a positive integer (e.g. 64) or None, not {pad_to_multiple_of!r}.")
    planned = plan_transplant(
        model, target_tokenizer, method, source_tokenizer=source_tokenizer, corpus=corpus, seed=seed, task=task,
        device=device, inplace=inplace, low_memory=low_memory, calibrate=calibrate, allow_mismatch=allow_mismatch,
        language=language, romanize=romanize, **method_options,
    )
    return apply_transplant(planned, pad_to_multiple_of=pad_to_multiple_of)


def plan_transplant(
    model,
    target_tokenizer,
    method: str = DEFAULT_METHOD,
    *,
    source_tokenizer=None,
    corpus=None,
    seed: int = 42,
    task: str | None = None,
    device: str = "cpu",
    inplace: bool = False,
    low_memory: bool | None = None,
    calibrate: bool | CalibrationConfig | None = None,
    allow_mismatch: bool = False,
    language: str | list[str] | None = None,
    romanize: bool | str | Callable[[str], str] = ROMANIZE_DEFAULT,
    **method_options,
) -> PlannedTransplant:
    """Load, check and align, and make the method's plan; the model is not changed yet.

    Takes the arguments of :func:`transplant_tokenizer` (but ``pad_to_multiple_of``, which
    :func:`apply_transplant` takes) and raises its errors.

    Returns:
        A :class:`PlannedTransplant`; pass it to :func:`apply_transplant`.
    """
    started = time.perf_counter()
    check_settings(seed=seed, device=device, task=task)
    language = validate_language(language)
    romanizer = get_romanizer(romanize)
    corpus = Corpus.coerce(corpus)
    requested = get_method(method)
    _check_requested(requested, method_options, corpus, calibrate)
    # Every path is checked, and the target tokenizer loaded, before the model (minutes for a large one).
    check_source_path(model, what="model")
    check_source_path(source_tokenizer, what="source tokenizer")
    target_tokenizer = load_tokenizer(target_tokenizer, what="target tokenizer")
    streamed = bool(low_memory) or (low_memory is None and isinstance(model, (str, os.PathLike)) and wants_streaming(model))
    if streamed and calibrate:
        raise MethodOptionError(
            "calibrate=True runs the model on the corpus, which needs it in memory: pass low_memory=False "
            "(or calibrate=False to stream)."
        )
    if streamed:
        source = open_streaming_source(model, source_tokenizer, task=task)
    else:
        source = open_source(model, source_tokenizer, task=task, inplace=inplace)
    method_cls, auto_reason = requested.resolve(model_kind=model_kind(source.model), has_corpus=corpus is not None)
    if auto_reason:
        logger.info("method %s -> %s (%s)", requested.name, method_cls.name, auto_reason)
        method_options = _options_of(method_cls, method_options, requested.name)
    impl = method_cls(method_cls.config_class.from_options(method_cls.name, method_options))
    _check_corpus(impl, corpus)
    if streamed and calibrate is None and method_cls.calibrates_by_default:
        logger.warning("%s: output calibration is skipped when streaming (low_memory); it needs the model in memory", method_cls.name)
        calibrate = False
    target, alignment = _prepare_target(impl, target_tokenizer, source, corpus, allow_mismatch, romanizer)
    ctx = MethodContext.create(alignment, source.tokenizer, target, model=source.model, corpus=corpus, seed=seed, device=device)
    plan = impl.plan(ctx)
    if plan.num_target != len(target):
        raise RuntimeError(f"method {method_cls.name!r} planned {plan.num_target} rows for {len(target)} target tokens")
    if auto_reason:
        plan.stats["auto"] = auto_reason
    return PlannedTransplant(source, target, alignment, impl, plan, corpus, seed, device, calibrate, auto_reason, started, language)


def apply_transplant(planned: PlannedTransplant, *, pad_to_multiple_of: int | None = None) -> TransplantResult:
    """Apply a plan: surgery on the model, the adapted tokenizer, calibration, the report.

    Args:
        planned: what :func:`plan_transplant` returned (its model is changed in place).
        pad_to_multiple_of: round the vocabulary rows up to a multiple of this.

    Returns:
        A :class:`TransplantResult` (a :class:`~hf_vocabswap.streaming.StreamingTransplantResult`
        for a streamed source).

    Raises:
        CorpusError, ModelError: calibration cannot run on the corpus or the model.
    """
    model, plan, alignment = planned.source.model, planned.plan, planned.alignment
    surgery = apply_plan(
        model, plan, seed=planned.seed, source_to_target_special=alignment.source_to_target_special(),
        target_roles=alignment.target.roles, pad_to_multiple_of=pad_to_multiple_of,
    )
    tokenizer = adapted_tokenizer(planned.target_tokenizer, planned.source.tokenizer)
    calibration = _calibration_step(planned, tokenizer)
    if calibration is not None:
        plan.stats["calibration"] = calibration
    model.name_or_path = ""
    report = _report(planned, surgery)
    logger.info("%s", report.headline())
    parts = dict(model=model, tokenizer=tokenizer, report=report, plan=plan, alignment=alignment, source_tokenizer=planned.source.tokenizer)
    if planned.source.checkpoint is not None:
        return StreamingTransplantResult(**parts, checkpoint=planned.source.checkpoint)
    return TransplantResult(**parts)


def adapted_tokenizer(target, source):
    """A copy of the target tokenizer with the source's limits (``model_max_length``, ``padding_side``)."""
    tok = copy.deepcopy(target)
    if getattr(tok, "model_max_length", 0) > 1e20 and getattr(source, "model_max_length", 0) < 1e20:
        tok.model_max_length = source.model_max_length
    if getattr(tok, "padding_side", None) != getattr(source, "padding_side", None) and hasattr(source, "padding_side"):
        tok.padding_side = source.padding_side
    return tok


# ---------------------------------------------------------------------------- the checks
def check_settings(*, seed, device, task) -> None:
    """Check the settings every transplant takes, before anything is loaded.

    Raises:
        MethodOptionError: ``seed`` is not an integer, ``device`` is not a torch device this
            machine has, or ``task`` is not one of the model kinds.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise MethodOptionError(f"seed must be an integer, not {seed!r}.")
    if task is not None and task not in TASK_AUTO_CLASSES:
        raise MethodOptionError(f"task must be one of {', '.join(sorted(TASK_AUTO_CLASSES))} (or None), not {task!r}.")
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise MethodOptionError(f"device {device!r} is not a torch device: use 'cpu' or 'cuda' (or 'cuda:N').") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise MethodOptionError(f"device {device!r} asks for a CUDA GPU, but none is available here: use device='cpu'.")
    if kind not in ("cpu", "cuda"):
        raise MethodOptionError(f"device {device!r} is not supported: use 'cpu' or 'cuda' (or 'cuda:N').")


def _check_requested(requested: type[Method], options: dict, corpus, calibrate) -> None:
    """Checks that need no model: options of the method (or of those ``auto`` may pick), corpus."""
    requested.check_options(options)
    if requested.candidates() == (requested.name,):
        _check_corpus(requested(requested.config_class.from_options(requested.name, options)), corpus)
    if calibrate and corpus is None:
        raise CorpusError("calibrate=True needs target-language text: pass corpus=... (or calibrate=False).")


def _options_of(method_cls: type[Method], options: dict, requested: str) -> dict:
    """The options a dispatcher (``auto``) was given that the method it picked has; the others are
    dropped with a warning (they belong to a method it could have picked)."""
    names = {f for f, *_ in method_cls.config_class.option_fields()}
    dropped = sorted(set(options) - names)
    if dropped:
        logger.warning("%s picked %s, which has no option %s: ignored", requested, method_cls.name, ", ".join(dropped))
    return {k: v for k, v in options.items() if k in names}


def _check_corpus(impl: Method, corpus) -> None:
    if corpus is None and impl.needs_text():
        raise CorpusError(
            f"Method {impl.name!r} learns from target-language text: pass corpus=... (a text file, "
            "a list of strings or a datasets dataset)."
        )


def _prepare_target(
    impl: Method, target_tokenizer, source: SourceModel, corpus, allow_mismatch: bool, romanizer: Romanizer | None = None,
) -> tuple[Any, VocabAlignment]:
    """The target tokenizer the method transplants to, aligned with the source's; checks both."""
    # Methods may derive the target from the source (trim); the default keeps it as given.
    target = impl.prepare_target_tokenizer(target_tokenizer, source.tokenizer, corpus)
    if target is None:
        raise TokenizerError(f"No target tokenizer was given, and method {impl.name!r} does not make one. Pass target_tokenizer=...")
    if allow_mismatch:
        check_pair(source.model, source.tokenizer, "source", rows_only=True)
    else:
        check_pair(source.model, source.tokenizer, "source", own_tokenizer=source.own_tokenizer)
    find_embeddings(source.model)  # fails early on models without input embeddings
    alignment = align_vocabularies(source.tokenizer, target)
    check_required_roles(source.model, alignment.source, alignment.target)
    logger.info("overlap: %d of %d target tokens (%s mode)", alignment.overlap_size, len(target), alignment.mode)
    if romanizer is not None:
        done = romanize_alignment(alignment, romanizer)
        logger.info(
            "romanization (%s): %d new tokens in %s romanized, %d match a source token, %d left to the method's rule",
            done["romanizer"], done["romanized"], ", ".join(done["poor_scripts"]) or "no poorly covered script",
            done["matched"], done["empty"] + done["unsegmented"],
        )
    if corpus is not None:
        warn_unknown_share(target, corpus)
    if alignment.overlap_size == 0 and impl.needs_overlap:
        raise NoOverlapError(
            "The source and target tokenizers share no token (not even special tokens by role), so "
            f"{impl.name!r} has nothing to copy from. Check that the target tokenizer is the one you meant, "
            "or use method='random'."
        )
    return target, alignment




def warn_unknown_share(tokenizer, corpus, *, max_chars: int = 200_000) -> float | None:
    """Warn when the target tokenizer turns more than 20% of the corpus into its unknown token.

    A corpus the tokenizer cannot read (another script, emoji, the wrong file) teaches the
    method and the calibration nothing about the tokens that matter. Measured on the corpus's
    first ``max_chars`` characters.

    Returns:
        The unknown share (None when the tokenizer has no unknown token or the sample no token).
    """
    unk = getattr(tokenizer, "unk_token_id", None)
    if not isinstance(unk, int):
        return None
    stats = tokenizer_stats(tokenizer, first_chars(corpus, max_chars))
    if not stats["num_tokens"]:
        return None
    share = stats["num_unknown"] / stats["num_tokens"]
    if share > UNKNOWN_SHARE_WARNING:
        logger.warning(
            "%.0f%% of the corpus's tokens are the target tokenizer's unknown token %r: the corpus is mostly text the "
            "target tokenizer cannot represent (wrong file or language?), so methods and calibration learn little from it.",
            100 * share, tokenizer.unk_token,
        )
    return share


# ------------------------------------------------------------------------- applying steps
def _calibration_step(planned: PlannedTransplant, tokenizer) -> dict | None:
    """Output calibration when asked (or by the method's default); its stats, or None when not run."""
    calibrate, method = planned.calibrate, planned.method
    if calibrate is False or (calibrate is None and not method.calibrates_by_default):
        return None
    model = planned.source.model
    if calibrate is None:
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        reason = "no corpus" if planned.corpus is None else (None if getattr(head, "weight", None) is not None else "the model has no LM head")
        if reason is not None:
            logger.info("calibration skipped: %s", reason)
            return {"skipped": reason}
    record: dict = {}
    if isinstance(calibrate, CalibrationConfig):
        config = calibrate
    else:  # the transplant's seed and device
        config = CalibrationConfig(seed=planned.seed, device=None if planned.device == "cpu" else planned.device)
    ids = new_token_ids(planned.plan, planned.alignment)
    stats = calibrate_new_tokens(model, tokenizer, planned.corpus, ids, config, record=record)
    planned.plan.calibration = record or None
    return stats


def _report(planned: PlannedTransplant, surgery: dict) -> TransplantReport:
    corpus, target = planned.corpus, planned.target_tokenizer
    config: MethodConfig = planned.method.config
    report = TransplantReport.build(
        method=planned.method.name,
        options=config.to_dict(),
        seed=planned.seed,
        alignment=planned.alignment,
        plan=planned.plan,
        surgery=surgery,
        provenance={
            **planned.source.provenance,
            "target_tokenizer": getattr(target, "name_or_path", None) or "<object>",
            "target_tokenizer_sha256": tokenizer_fingerprint(target),
            "corpus": corpus.description if corpus is not None else None,
            "corpus_sha256": corpus.content_hash() if corpus is not None else None,
        },
        model_kind=model_kind(planned.source.model),
        seconds=time.perf_counter() - planned.started,
    )
    # What the model card states about the target language and where the text came from.
    report.language = planned.language
    report.datasets = [corpus.hub_dataset.name] if corpus is not None and corpus.hub_dataset is not None else []
    report.example_text = example_from_texts(corpus) if corpus is not None else None
    return report
