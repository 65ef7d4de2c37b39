"""Running the benchmark: each method's transplant (whole, or its mixing plan only), then
held-out bpc zero-shot and during LAPT, method after method under an optional time budget.
Shared by the in-process ``cpu`` configuration (:func:`run_in_process`) and the GPU run phase
(:func:`bundle.run_bundle`)."""

from __future__ import annotations

import copy
import gc
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import TrainerCallback

from hf_vocabswap import train_tokenizer, transplant_tokenizer
from hf_vocabswap.errors import CorpusError, MethodOptionError, ResourceError
from hf_vocabswap.evaluate import bits_per_character
from hf_vocabswap.surgery import apply_plan
from hf_vocabswap.train import continue_pretraining
from hf_vocabswap.transplant import adapted_tokenizer, plan_transplant

from .config import REFERENCE, SEED, BenchConfig, select_methods, split_variant
from .inputs import load_source, load_texts
from .report import jsonable, new_results, write_results
from .resources import MethodSetup, Resources, Unavailable, method_setup

logger = logging.getLogger("quality")

MIN_START_SECONDS = 30.0  # with a time budget, no method starts with less than this left
# Errors that mean "this method cannot run with what it was given here": a skip, not a failure.
SKIP_ERRORS = (MethodOptionError, ResourceError, CorpusError)


@dataclass
class PlannedMethod:
    """One method's transplant: the plan and what applying it needs, or why it was skipped.

    Attributes:
        name: the benchmark entry.
        status: ``"planned"``, ``"skipped"`` (resources unavailable) or ``"failed"`` (the method raised).
        reason: why it was skipped or failed.
        note: the resources it used (see :class:`resources.MethodSetup`).
        plan: its :class:`hf_vocabswap.MixingPlan`.
        tokenizer: the tokenizer of the transplanted model.
        special_map: source special id -> target id.
        target_roles: special-token role -> target id.
        counts, overlap, method_stats, options: from the plan and the method's config.
        plan_seconds: how long planning took.
        model: the transplanted model (in-process runs only).
    """

    name: str
    status: str
    reason: str = ""
    note: str = ""
    plan: Any = None
    tokenizer: Any = None
    special_map: dict = field(default_factory=dict)
    target_roles: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    overlap: int | None = None
    method_stats: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    plan_seconds: float = 0.0
    model: Any = None

    def summary(self) -> dict:
        """The JSON-ready fields of this entry in the results and the bundle manifest."""
        c = self.counts or {}
        return {
            "status": self.status,
            "reason": self.reason,
            "resources": self.note,
            "target_vocab": None if self.plan is None else int(self.plan.num_target),
            "overlap": self.overlap,
            "copied": c.get("copied"),
            "combined": c.get("combined"),
            "fallback": None if not c else c.get("random", 0) + c.get("mean", 0),
            "counts": c,
            "method_stats": jsonable(self.method_stats),
            "options": jsonable(self.options),
            "plan_seconds": round(self.plan_seconds, 2),
        }


def _setup_or_skip(name: str, res: Resources) -> tuple[MethodSetup | None, PlannedMethod | None]:
    """``(setup, None)``, or ``(None, skipped entry)`` when the resources cannot be built."""
    try:
        return method_setup(name, res), None
    except Unavailable as e:
        return None, PlannedMethod(name, "skipped", reason=str(e))
    except Exception as e:  # noqa: BLE001 - a resource that cannot be built is a skip, with its reason
        return None, PlannedMethod(name, "skipped", reason=f"resources could not be built: {type(e).__name__}: {e}")


def _not_planned(name: str, error: Exception, setup: MethodSetup) -> PlannedMethod:
    """The entry of a method that raised: skipped for option, resource and corpus errors, else failed."""
    status = "skipped" if isinstance(error, SKIP_ERRORS) else "failed"
    logger.warning("%s %s: %s: %s", name, status, type(error).__name__, error)
    return PlannedMethod(name, status, reason=f"{type(error).__name__}: {error}", note=setup.note)


def _special_ids(alignment) -> dict:
    """What applying a plan needs of the alignment: the special-id map and the target's roles."""
    return {
        "special_map": {int(k): int(v) for k, v in alignment.source_to_target_special().items()},
        "target_roles": {str(k): int(v) for k, v in alignment.target.roles.items()},
    }


def plan_method(name: str, model, source_tokenizer, target_tokenizer, train_texts, res: Resources, cfg: BenchConfig,
                *, keep_model: bool) -> PlannedMethod:
    """Transplant ``model`` with entry ``name`` through :func:`hf_vocabswap.transplant_tokenizer`
    (a copy; ``model`` is not modified).

    Args:
        name: a benchmark entry (a method or a variant of one).
        model, source_tokenizer: the source model and its tokenizer.
        target_tokenizer: the trained target tokenizer.
        train_texts: the training split (corpus of methods that need one, and of calibration).
        res: the methods' resources.
        cfg: the benchmark setting (its seed).
        keep_model: keep the transplanted model in ``.model``.

    Returns:
        The planned entry, or a skipped/failed one with the reason (never raises for a method).
    """
    started = time.perf_counter()
    setup, skipped = _setup_or_skip(name, res)
    if skipped is not None:
        return skipped
    target = source_tokenizer if setup.target == "source" else target_tokenizer
    try:
        method, calibrate = split_variant(name)
        result = transplant_tokenizer(
            model, target, method, source_tokenizer=source_tokenizer,
            corpus=train_texts if setup.corpus or calibrate else None, seed=cfg.seed, calibrate=calibrate, **setup.options,
        )
    except Exception as e:  # noqa: BLE001 - recorded and reported, the benchmark goes on
        return _not_planned(name, e, setup)
    planned = PlannedMethod(
        name, "planned", note=setup.note, plan=result.plan, tokenizer=result.tokenizer, **_special_ids(result.alignment),
        counts=dict(result.report.counts), overlap=int(result.report.overlap),
        method_stats=dict(result.report.method_stats), options=dict(result.report.options),
        plan_seconds=time.perf_counter() - started,
    )
    planned.model = result.model if keep_model else None
    logger.info("%s: %s (%.1fs)", name, result.report.headline(), planned.plan_seconds)
    return planned


def plan_only(name: str, model, source_tokenizer, target_tokenizer, train_texts, res: Resources, cfg: BenchConfig) -> PlannedMethod:
    """The mixing plan of entry ``name`` without the surgery (:func:`hf_vocabswap.transplant.plan_transplant`):
    for large sources, where a copy of the model per method and the surgery cost minutes.
    Arguments as :func:`plan_method`; calibration is left to the run phase."""
    started = time.perf_counter()
    setup, skipped = _setup_or_skip(name, res)
    if skipped is not None:
        return skipped
    try:
        target = source_tokenizer if setup.target == "source" else target_tokenizer
        # inplace: planning reads the model and never changes it, so no copy of a large source.
        step = plan_transplant(
            model, target, split_variant(name)[0], source_tokenizer=source_tokenizer,
            corpus=train_texts if setup.corpus else None, seed=cfg.seed, inplace=True, low_memory=False, **setup.options,
        )
    except Exception as e:  # noqa: BLE001 - recorded and reported
        return _not_planned(name, e, setup)
    planned = PlannedMethod(
        name, "planned", note=setup.note, plan=step.plan, tokenizer=adapted_tokenizer(step.target_tokenizer, source_tokenizer),
        **_special_ids(step.alignment), counts=step.plan.counts(), overlap=int(step.alignment.overlap_size),
        method_stats=dict(step.plan.stats), options=step.method.config.to_dict(), plan_seconds=time.perf_counter() - started,
    )
    c = planned.counts
    logger.info("%s: %d copied, %d combined, %d fallback (%.1fs)", name, c["copied"], c["combined"],
                c["random"] + c["mean"], planned.plan_seconds)
    return planned


def apply_planned(source_model, planned: PlannedMethod, seed: int = SEED):
    """A copy of ``source_model`` rewritten for ``planned``'s tokenizer with its mixing plan."""
    model = copy.deepcopy(source_model)
    apply_plan(model, planned.plan, seed=seed, source_to_target_special=planned.special_map, target_roles=planned.target_roles)
    return model


class Deadline(TrainerCallback):
    """Stops training (after a last evaluation) once the time budget is spent.

    Args:
        deadline: the ``time.time()`` at which to stop; None: never.
    """

    def __init__(self, deadline: float | None):
        self.deadline = deadline
        self.stopped_at: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.deadline is not None and time.time() >= self.deadline and not control.should_training_stop:
            control.should_training_stop = True
            control.should_evaluate = True
            self.stopped_at = state.global_step
        return control


def run_one(model, tokenizer, train_texts, heldout_texts, cfg: BenchConfig, workdir: Path, *, deadline: float | None = None) -> dict:
    """Zero-shot held-out bpc, then LAPT with held-out bpc every ``cfg.eval_steps`` steps.

    Args:
        model, tokenizer: the model to evaluate and train (trained in place).
        train_texts, heldout_texts: LAPT text and held-out text.
        cfg: the benchmark setting (the LAPT recipe).
        workdir: scratch folder (LAPT's output folder is made and removed in it).
        deadline: ``time.time()`` at which LAPT stops after a last evaluation.

    Returns:
        The run's record: zero-shot bpc, the bpc history, best and last evaluation, steps done,
        training statistics and wall/CPU seconds.
    """
    started = time.perf_counter()
    cpu_started = time.process_time()
    device = "cuda" if torch.cuda.is_available() else None
    zero = None
    if cfg.bf16:  # the curve's step 0 runs under bf16 autocast: also measure the float32 zero-shot
        zero = bits_per_character(
            model, tokenizer, heldout_texts, max_length=cfg.seq_length, batch_size=cfg.eval_batch_size,
            device=device, progress=False,
        )
    Path(workdir).mkdir(parents=True, exist_ok=True)
    out_dir = Path(tempfile.mkdtemp(prefix="lapt-", dir=workdir))
    callback = Deadline(deadline)
    try:
        summary = continue_pretraining(
            model, train_texts, tokenizer=tokenizer, output_dir=out_dir, overwrite=True, eval_texts=heldout_texts,
            max_steps=cfg.steps, batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
            warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, seq_length=cfg.seq_length,
            eval_steps=cfg.eval_steps, logging_steps=cfg.logging_steps, eval_batch_size=cfg.eval_batch_size,
            seed=cfg.seed, bf16=cfg.bf16, progress=False, callbacks=[callback],
            training_args={"save_strategy": "no"},
        )
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    history = [
        {"step": int(e["step"]), "bpc": float(e["eval_bpc"]), "eval_loss": e.get("eval_loss")}
        for e in summary["history"] if e.get("eval_bpc") is not None
    ]
    # One entry per step (a stop by the deadline may evaluate the last step twice).
    history = list({e["step"]: e for e in history}.values())
    best = min(history, key=lambda e: (e["bpc"], e["step"])) if history else None
    last = history[-1] if history else None
    step0 = next((e["bpc"] for e in history if e["step"] == 0), None)
    return {
        "zero_shot_bpc": float(zero["bits_per_character"]) if zero is not None else step0,
        "zero_shot_float32": None if zero is None else {
            k: zero[k] for k in ("bits_per_character", "bits_per_token", "num_characters", "num_tokens", "model_kind")
        },
        "history": history,
        "best": best,
        "last": last,
        "steps_done": int(summary["global_step"]),
        "stopped_by_budget": callback.stopped_at is not None,
        "epochs": summary.get("epochs"),
        "train_loss": summary.get("train_loss"),
        "num_train_tokens": summary.get("num_train_tokens"),
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu_started, 1),
    }


class NotPlanned(Exception):
    """A lazily planned method that was skipped or failed while planning."""

    def __init__(self, planned: PlannedMethod):
        super().__init__(planned.reason)
        self.planned = planned


Entry = tuple[str, "Callable[[], tuple[Any, Any]] | None", dict]


def _budget_left(deadline: float | None, longest: float, max_seconds: float | None) -> str | None:
    """Why the next method may not start under the time budget, or None when it may."""
    left = None if deadline is None else deadline - time.time()
    if left is not None and left < max(MIN_START_SECONDS, longest):
        return f"time budget: {max(left, 0):.0f} s left of --max-seconds {max_seconds:.0f}, the longest method took {longest:.0f} s"
    return None


def _run_entry(name: str, make, record: dict, train, heldout, cfg: BenchConfig, workdir: Path, deadline: float | None) -> None:
    """Build entry ``name``'s model with ``make``, evaluate and train it, and fill in ``record``."""
    try:
        model, tokenizer = make()
        record["run"] = run_one(model, tokenizer, train, heldout, cfg, workdir, deadline=deadline)
        record["status"] = "done"
        r = record["run"]
        logger.info(
            "%s: zero-shot %.4f, best %.4f at step %d, last %.4f at step %d (%.0f s)",
            name, r["zero_shot_bpc"], r["best"]["bpc"], r["best"]["step"], r["last"]["bpc"], r["last"]["step"], r["seconds"],
        )
    except NotPlanned as e:  # skipped or failed while planning (lazily): its own status and reason
        record.update(e.planned.summary())
    except Exception as e:  # noqa: BLE001 - one failing method must not lose the others
        logger.exception("%s failed", name)
        record["status"] = "failed"
        record["reason"] = f"{type(e).__name__}: {e}"
    finally:
        model = tokenizer = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def run_all(entries: list[Entry], results: dict, train, heldout, cfg: BenchConfig, workdir: Path, out_dir: Path, stem: str,
            *, started: float, max_seconds: float | None = None) -> dict:
    """Run each entry ``(name, make_model_and_tokenizer or None, summary)`` in order.

    ``make`` is None for a method that was skipped or failed while planning (its summary says
    why). Results are written after every method. With ``max_seconds`` a method starts only
    when the time left covers the longest method so far, and a running LAPT stops (after a last
    evaluation) when the budget is spent.

    Returns:
        ``results``, complete, with one record per entry in ``results["runs"]``.
    """
    deadline = started + max_seconds if max_seconds else None
    longest = 0.0
    for name, make, summary in entries:
        record = summary  # shared: a lazy plan fills in its counts while running
        results["runs"][name] = record
        if make is None:
            write_results(results, out_dir, stem)
            continue
        refused = _budget_left(deadline, longest, max_seconds)
        if refused is not None:
            record["status"] = "not run"
            record["reason"] = refused
            logger.warning("%s: %s", name, record["reason"])
            write_results(results, out_dir, stem)
            continue
        t0 = time.perf_counter()
        _run_entry(name, make, record, train, heldout, cfg, workdir, deadline)
        longest = max(longest, time.perf_counter() - t0)
        results["seconds"] = time.time() - started
        results["cpu_seconds"] = time.process_time()
        write_results(results, out_dir, stem)
    results["complete"] = True
    results["seconds"] = time.time() - started
    results["cpu_seconds"] = time.process_time()
    write_results(results, out_dir, stem)
    return results


def reference_entry(source_model, source_tokenizer, vocab: int) -> Entry:
    """The reference line's entry: the source model with its own tokenizer."""
    summary = {"status": "planned", "resources": "", "target_vocab": vocab, "copied": None, "combined": None, "fallback": None}
    return (REFERENCE, lambda: (copy.deepcopy(source_model), source_tokenizer), summary)


def with_reference(entries: list[Entry], reference: Entry, position: str) -> list[Entry]:
    """``entries`` with the reference entry first, last or not at all (``position``: first, last, skip)."""
    if position == "skip":
        return entries
    return [reference] + entries if position == "first" else entries + [reference]


def target_description(tok, cfg: BenchConfig) -> str:
    """One line on the trained target tokenizer, for the results."""
    return f"{len(tok):,} tokens ({type(tok.backend_tokenizer.model).__name__}), trained with train_tokenizer(vocab_size={cfg.vocab_size})"


def set_threads(cfg: BenchConfig) -> None:
    """Set torch's thread count when the setting names one."""
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)


def run_in_process(cfg: BenchConfig, *, methods: str | None, out_dir: Path, workdir: Path, source: str | None = None,
                   gguf: str | None = None, max_seconds: float | None = None, stem: str | None = None) -> dict:
    """The whole benchmark in one process (the ``cpu`` configuration).

    Args:
        cfg: the benchmark setting.
        methods: comma-separated entries (default: every registered method).
        out_dir: where ``<stem>.json``, ``.md`` and ``.png`` go.
        workdir: scratch folder.
        source, gguf: another source model folder, or the GGUF file (see :func:`inputs.load_source`).
        max_seconds: time budget of the whole run.
        stem: results file name stem (default ``quality_<config>``).

    Returns:
        The results record (also written to ``out_dir``).
    """
    started = time.time()
    set_threads(cfg)
    train, heldout = load_texts(cfg)
    model, source_tok, source_desc = load_source(cfg, gguf=gguf, source=source)
    model.eval()
    logger.info("training a %d-token target tokenizer on %d characters", cfg.vocab_size, sum(map(len, train)))
    target_tok = train_tokenizer(source_tok, train, cfg.vocab_size, progress=False)
    results = new_results(cfg, source_desc, target_description(target_tok, cfg), train, heldout)
    res = Resources(train, target_tok, workdir, cfg)
    names = select_methods(methods)

    def make_entry(name):
        def make():
            planned = plan_method(name, model, source_tok, target_tok, train, res, cfg, keep_model=True)
            if planned.status != "planned":
                raise NotPlanned(planned)
            summary.update(planned.summary())
            return planned.model, planned.tokenizer

        summary = {"status": "pending"}
        return name, make, summary

    entries = [make_entry(n) for n in names]
    entries = with_reference(entries, reference_entry(model, source_tok, len(source_tok)), cfg.reference)
    return run_all(entries, results, train, heldout, cfg, workdir, out_dir, stem or f"quality_{cfg.name}", started=started,
                   max_seconds=max_seconds)
