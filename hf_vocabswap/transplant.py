"""transplant_tokenizer(): load -> align vocabularies -> plan (method) -> surgery -> result."""

from __future__ import annotations

import copy
import logging
import os
import time

import numpy as np

from .corpus import Corpus
from .errors import CorpusError, MethodOptionError, NoOverlapError, TokenizerError
from .loading import check_pair, load_tokenizer, resolve_source, tokenizer_fingerprint
from .methods import MethodContext, get_method
from .result import TransplantReport, TransplantResult
from .surgery import apply_plan, check_required_roles, find_embeddings, model_kind
from .vocab import align_vocabularies

logger = logging.getLogger(__name__)

DEFAULT_METHOD = "auto"


def resolve_auto_method(model, corpus, task: str | None = None) -> tuple[str, str]:
    """The method ``"auto"`` stands for, and why, from the committed quality benchmarks.

    benchmarks/results: on causal Gemma-3-270m -> 32k Ukrainian (H200) the hybrid (top-10
    neighbours at weight 0.1, output calibration) led zero-shot (2.545 bits/char; FVT 2.865,
    FOCUS 2.751) and after 400 LAPT steps (1.909; FVT 1.917, FOCUS 2.113); on the masked
    splade-tiny -> 8k Ukrainian CPU benchmark it led too (quality_cpu.md). So: causal and masked
    LMs with a corpus get the hybrid; seq2seq models (no benchmark covers them) and transplants
    without a corpus get FVT, which needs none (``calibrate=True`` works for seq2seq too).
    """
    kind = task or _kind_of(model)
    if corpus is None:
        return "fvt", "no corpus given: FVT needs none"
    if kind in ("causal", "masked"):
        return "hybrid", f"{kind} LM with a corpus: the calibrated hybrid led zero-shot and after LAPT in benchmarks/results"
    return "fvt", f"{kind} model: no benchmark covers it; FVT (calibrate=True also works for it)"


def _kind_of(model) -> str:
    if hasattr(model, "get_input_embeddings"):
        return model_kind(model)
    if isinstance(model, (str, os.PathLike)):
        if str(model).endswith(".gguf"):
            return "causal"
        try:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(model)
        except Exception:  # noqa: BLE001 - loading reports the real problem later
            return "base"
        arch = (getattr(config, "architectures", None) or [""])[0]
        if getattr(config, "is_encoder_decoder", False):
            return "seq2seq"
        if "MaskedLM" in arch:
            return "masked"
        if "CausalLM" in arch or "LMHead" in arch:
            return "causal"
    return "base"


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
    calibrate: bool | None = None,
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
            "auto" (the default): the hybrid for masked LMs given a corpus, FVT otherwise, as the
            committed quality benchmarks recommend (see :func:`resolve_auto_method`).
        source_tokenizer: the tokenizer the model was trained with; found from the model's
            name when omitted.
        corpus: target-language text (path, list of strings or ``datasets`` dataset) for
            methods that learn from it (FOCUS).
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
            causal, masked and encoder-decoder LMs; needs ``corpus``). None (default): the method's default
            (on for ``hybrid``, where the corpus allows it).
        **method_options: options of the chosen method (its config dataclass fields).

    Returns:
        A :class:`TransplantResult` with ``.model``, ``.tokenizer``, ``.report``,
        ``.plan`` and ``.save_pretrained(dir)`` / ``.push_to_hub(repo_id)``.

    Raises:
        UnknownMethodError: ``method`` is not registered.
        MethodOptionError: an option the method does not have.
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
    started = time.perf_counter()
    corpus = Corpus.coerce(corpus)
    auto_reason = None
    if method == "auto":
        method, auto_reason = resolve_auto_method(model, corpus, task)
        logger.info("method auto -> %s (%s)", method, auto_reason)
    method_cls = get_method(method)
    config = method_cls.config_class.from_options(method, method_options)
    if method_cls.needs_corpus and corpus is None and not _has_prebuilt_resource(config):
        raise CorpusError(
            f"Method {method!r} learns from target-language text: pass corpus=... (a text file, "
            "a list of strings or a datasets dataset)."
        )

    if calibrate and corpus is None:
        raise CorpusError("calibrate=True needs target-language text: pass corpus=... (or calibrate=False).")
    if low_memory or low_memory is None and isinstance(model, (str, os.PathLike)):
        from .streaming import transplant_streaming, wants_streaming

        if low_memory or wants_streaming(model):
            if calibrate:
                raise MethodOptionError(
                    "calibrate=True runs the model on the corpus, which needs it in memory: pass low_memory=False "
                    "(or calibrate=False to stream)."
                )
            if calibrate is None and method_cls.calibrates_by_default:
                logger.warning("%s: output calibration is skipped when streaming (low_memory); it needs the model in memory", method)
            return transplant_streaming(model, target_tokenizer, method, source_tokenizer=source_tokenizer, corpus=corpus, seed=seed,
                                        task=task, pad_to_multiple_of=pad_to_multiple_of, device=device, **method_options)

    given_object = not isinstance(model, (str, bytes)) and hasattr(model, "get_input_embeddings")
    model, source_tokenizer, provenance = resolve_source(model, source_tokenizer, task=task)
    if given_object and not inplace:
        model = copy.deepcopy(model)
    method_impl = method_cls(config)
    # Methods may derive the target from the source (trim); the default keeps it as given.
    target_tokenizer = method_impl.prepare_target_tokenizer(load_tokenizer(target_tokenizer), source_tokenizer, corpus)
    if target_tokenizer is None:
        raise TokenizerError(f"No target tokenizer was given, and method {method!r} does not make one. Pass target_tokenizer=...")
    check_pair(model, source_tokenizer, "source")
    find_embeddings(model)  # fails early on models without input embeddings

    alignment = align_vocabularies(source_tokenizer, target_tokenizer)
    check_required_roles(model, alignment.source, alignment.target)
    logger.info("overlap: %d of %d target tokens (%s mode)", alignment.overlap_size, len(target_tokenizer), alignment.mode)
    if alignment.overlap_size == 0 and method not in ("random", "mean"):
        raise NoOverlapError(
            "The source and target tokenizers share no token (not even special tokens by role), so "
            f"{method!r} has nothing to copy from. Check that the target tokenizer is the one you meant, "
            "or use method='random'."
        )

    handles = find_embeddings(model)
    ctx = MethodContext(
        alignment=alignment,
        source_tokenizer=source_tokenizer,
        target_tokenizer=target_tokenizer,
        input_embeddings=handles.input_weight,
        output_embeddings=handles.output_weight,
        model=model,
        corpus=corpus,
        seed=seed,
        device=device,
        is_causal=model_kind(model) == "causal",
    )
    plan = method_impl.plan(ctx)
    if auto_reason:
        plan.stats["auto"] = auto_reason
    if plan.num_target != len(target_tokenizer):
        raise RuntimeError(f"method {method!r} planned {plan.num_target} rows for {len(target_tokenizer)} target tokens")

    surgery = apply_plan(
        model,
        plan,
        seed=seed,
        source_to_target_special=alignment.source_to_target_special(),
        target_roles=alignment.target.roles,
        pad_to_multiple_of=pad_to_multiple_of,
    )
    tokenizer = finish_tokenizer(target_tokenizer, source_tokenizer)
    calibration = _calibrate(model, tokenizer, corpus, plan, alignment, method_cls, calibrate, seed, device)
    if calibration is not None:
        plan.stats["calibration"] = calibration
    model.name_or_path = ""
    report = TransplantReport.build(
        method=method,
        options=config.to_dict(),
        seed=seed,
        alignment=alignment,
        plan=plan,
        surgery=surgery,
        provenance={
            **provenance,
            "target_tokenizer": getattr(target_tokenizer, "name_or_path", None) or "<object>",
            "target_tokenizer_sha256": tokenizer_fingerprint(target_tokenizer),
            "corpus": corpus.description if corpus is not None else None,
            "corpus_sha256": corpus.content_hash() if corpus is not None else None,
        },
        model_kind=model_kind(model),
        seconds=time.perf_counter() - started,
    )
    logger.info("%s", report.headline())
    return TransplantResult(model=model, tokenizer=tokenizer, report=report, plan=plan, alignment=alignment, source_tokenizer=source_tokenizer)


def uncopied_ids(plan, special_ids) -> list[int]:
    """Target ids that ``plan`` did not copy from the source, except ``special_ids``."""
    from .methods.base import COPIED

    special = {int(i) for i in special_ids}
    return [int(i) for i in np.flatnonzero(plan.kinds != COPIED) if int(i) not in special]


def new_token_ids(plan, alignment) -> list[int]:
    """Target ids that were not copied from the source (and are not special tokens)."""
    return uncopied_ids(plan, alignment.target.special_ids)


def _calibrate(model, tokenizer, corpus, plan, alignment, method_cls, calibrate, seed, device) -> dict | None:
    """Run output calibration when asked (or by the method's default); its stats, or None."""
    if calibrate is False or (calibrate is None and not method_cls.calibrates_by_default):
        return None
    if calibrate is None:
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        reason = "no corpus" if corpus is None else (None if getattr(head, "weight", None) is not None else "the model has no LM head")
        if reason is not None:
            logger.info("calibration skipped: %s", reason)
            return {"skipped": reason}
    from .calibration import calibrate_new_tokens

    ids = new_token_ids(plan, alignment)
    record: dict = {}
    stats = calibrate_new_tokens(model, tokenizer, corpus, ids, seed=seed, device=None if device == "cpu" else device, record=record)
    plan.calibration = record or None
    return stats


def _has_prebuilt_resource(config) -> bool:
    return any(getattr(config, name, None) is not None for name in ("fasttext_model", "aux_model"))


def finish_tokenizer(target, source):
    """The tokenizer a transplant returns: a copy of ``target`` with sane limits from ``source``.

    A target without a real ``model_max_length`` (the transformers placeholder of about 1e30)
    takes the source's, and the target takes the source's ``padding_side``.

    Args:
        target: the target tokenizer (not modified).
        source: the source model's tokenizer.

    Returns:
        A deep copy of ``target`` with those two settings.
    """
    tok = copy.deepcopy(target)
    if getattr(tok, "model_max_length", 0) > 1e20 and getattr(source, "model_max_length", 0) < 1e20:
        tok.model_max_length = source.model_max_length
    if getattr(tok, "padding_side", None) != getattr(source, "padding_side", None) and hasattr(source, "padding_side"):
        tok.padding_side = source.padding_side
    return tok
