"""Benchmark settings (:class:`BenchConfig`, the ``cpu`` and ``gpu`` configurations) and the
names of benchmark entries: registered methods and their variants (``fvt+cal``,
``hybrid-nocal``, ``hybrid@global_weight=0.2``), in benchmark order."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from hf_vocabswap import available_methods, get_method

REPO = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO / "benchmarks" / "results"
BUNDLE_DIR = REPO / "benchmarks" / "gpu_bundle"
REFERENCE = "source"  # name of the reference line: the source model with its own tokenizer
PRIORITY = ("fvt", "focus", "hybrid", "overlap", "random")
SEED = 42


@dataclass
class BenchConfig:
    """Everything that defines one benchmark setting (recorded in the results).

    Attributes:
        name: the configuration's name (``cpu``, ``gpu``); results are ``quality_<name>.*``.
        source: ``"splade"`` (``assets.splade_tiny_path()``), ``"gemma"`` (a GGUF file) or a
            model folder.
        vocab_size: size of the trained target tokenizer.
        train_chars: characters of the UA-GEC training split to use; None: all of it.
        heldout_chars: characters of held-out text to evaluate on.
        steps, batch_size, seq_length, learning_rate, warmup_steps, weight_decay,
        logging_steps, eval_steps, eval_batch_size, bf16: the LAPT recipe
            (:func:`hf_vocabswap.train.continue_pretraining`).
        seed: the seed of every transplant and of LAPT.
        reference: where the reference line (the source model with its own tokenizer) runs:
            ``"first"``, ``"last"`` or ``"skip"``.
        clp_top_k: CLP's ``top_k``; CLP's dense plan is new x overlap entries, None keeps it dense.
        torch_threads: torch's thread count; None: torch's default (1 on a shared CPU, where 2
            threads ran 5x slower).
    """

    name: str
    source: str
    vocab_size: int
    train_chars: int | None
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
    reference: str = "first"
    clp_top_k: int | None = None
    torch_threads: int | None = None

    def settings_line(self) -> str:
        """The settings in one line of prose, for the markdown report."""
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
    """A copy of configuration ``name`` with ``overrides`` (None values are ignored).

    Raises:
        KeyError: ``name`` is not a configuration.
        ValueError: an override names no :class:`BenchConfig` field.
    """
    cfg = copy.deepcopy(CONFIGS[name])
    for key, value in overrides.items():
        if value is not None:
            if not hasattr(cfg, key):
                raise ValueError(f"unknown setting {key!r}")
            setattr(cfg, key, value)
    return cfg


def variant_options(name: str) -> dict:
    """Method options given in an entry name after ``@``: ``hybrid@global_weight=0.2`` ->
    ``{"global_weight": 0.2}`` (values read as int, else float, else kept as text)."""
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
    method, flag = split_variant(name)
    return bool(get_method(method).calibrates_by_default) if flag is None else flag


def ordered_methods(names, priority=PRIORITY) -> list[str]:
    """``names`` in benchmark order: the priority methods first (in that order), then the rest sorted."""
    names = list(dict.fromkeys(names))
    first = [m for m in priority if m in names]
    return first + sorted(m for m in names if m not in first)


def select_methods(only: str | None) -> list[str]:
    """The entries to run, in benchmark order: every registered method, or the comma-separated
    entries of ``only``.

    Raises:
        SystemExit: an entry of ``only`` names no registered method.
    """
    names = available_methods()
    if only:
        wanted = [m.strip() for m in only.split(",") if m.strip()]
        unknown = [m for m in wanted if split_variant(m)[0] not in names]
        if unknown:
            raise SystemExit(f"unknown method(s) {', '.join(unknown)}; registered: {', '.join(names)}")
        names = wanted
    return ordered_methods(names)
