"""The quality/efficiency frontier of a model on a language: every vocabulary between trim and replacement.

For one source model, a training corpus and held-out text, :func:`frontier` builds candidate
tokenizers and transplants each with the default method:

- ``parent``: the source model with its own tokenizer (the reference line);
- ``trim``: the source minus the tokens the corpus never uses (exactly the parent on kept text);
- ``expand``: trim (or the whole source) plus K tokens learned on the corpus, for each K
  (vocabulary expansion: every source token keeps its row, each added token buys compression);
- ``replace``: a new vocabulary of V tokens trained with the source's pipeline, for each V.

Each is measured on the held-out text: tokens per word, characters per token, parameters (total
and embedding) and zero-shot bits per character; with a ``train`` config, also after the same
continued pretraining (best and last held-out bits per character), optionally distilled from
the parent. The table, a JSON file and a plot (bits per character against tokens per word, the
parent marked) are written to the output folder, with every candidate's tokenizer, so the point
a user picks is one ``hf-vocabswap transplant`` away.

Example:
    >>> from hf_vocabswap.frontier import FrontierConfig, frontier
    >>> rows = frontier("google/gemma-3-270m", "uk_train.txt", "uk_heldout.txt", output_dir="uk-frontier",
    ...                 config=FrontierConfig(add_tokens=(1000, 4000), vocab_sizes=(16000,)))
    >>> [(r["name"], r["tokens_per_word"], r["zero_shot_bpc"]) for r in rows]
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .corpus import Corpus, first_chars
from .errors import CorpusError, MethodOptionError
from .evaluate import bits_per_character, load_model_and_tokenizer, tokenizer_stats
from .fields import check_option_types
from .output import claim_output, write_output
from .progress import progress_bar
from .record import FRONTIER_FILE
from .surgery import find_embeddings, model_kind
from .tokenizer_expansion import learn_expansion
from .tokenizer_training import train_tokenizer
from .tokenizer_trimming import trim_tokenizer
from .train import continue_pretraining
from .transplant import DEFAULT_METHOD, transplant_tokenizer

logger = logging.getLogger(__name__)

__all__ = ["FRONTIER_FILE", "Candidate", "FrontierConfig", "candidates", "choice_lines", "choose", "frontier", "markdown_table", "plot_frontier"]

KINDS = ("parent", "trim", "expand", "replace")


@dataclass
class FrontierConfig:
    """Which candidates :func:`frontier` builds and how each is measured (fields are also the CLI's options)."""

    add_tokens: tuple[int, ...] = field(default=(1000, 4000, 16000), metadata={"help": "expansion candidates: tokens added on top of the (trimmed) source"})
    vocab_sizes: tuple[int, ...] = field(default=(8000, 16000, 32000), metadata={"help": "replacement candidates: sizes of a new vocabulary"})
    trim: bool = field(default=True, metadata={"help": "expansion candidates trim the source to the corpus first"})
    include_trim: bool = field(default=True, metadata={"help": "measure the trimmed source alone"})
    method: str = field(default=DEFAULT_METHOD, metadata={"help": "initialization method of every transplant"})
    max_chars: int | None = field(default=None, metadata={"help": "characters of the corpus used (tokenizers, methods, calibration; default: all)"})
    heldout_chars: int = field(default=20_000, metadata={"help": "characters of held-out text measured"})
    max_length: int = field(default=512, metadata={"help": "tokens per window of the bits-per-character evaluation"})
    batch_size: int = field(default=8, metadata={"help": "windows per batch of the evaluation"})
    seed: int = field(default=42, metadata={"help": "seed of every transplant"})
    device: str = field(default="cpu", metadata={"help": "where methods and evaluation run"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})

    def __post_init__(self):
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        check_option_types(type(self), values, owner="frontier option", error=MethodOptionError)
        for name in ("add_tokens", "vocab_sizes"):
            values = tuple(getattr(self, name))
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
                raise MethodOptionError(f"frontier option {name} must be positive integers, not {values!r}.")
            setattr(self, name, values)
        if self.heldout_chars < 1 or (self.max_chars is not None and self.max_chars < 1):
            raise MethodOptionError("frontier options heldout_chars and max_chars must be >= 1.")


@dataclass(frozen=True)
class Candidate:
    """One point of the frontier: how its tokenizer is made.

    Attributes:
        name: its label (``parent``, ``trim``, ``trim+4000``, ``replace-32000`` ...).
        kind: one of ``parent``, ``trim``, ``expand``, ``replace``.
        added_tokens: tokens added on top of the source (expand), else 0.
        vocab_size: the size of a replacement vocabulary (replace), else None (measured after).
        trim: whether an expansion trims the source first.
    """

    name: str
    kind: str
    added_tokens: int = 0
    vocab_size: int | None = None
    trim: bool = True


def candidates(config: FrontierConfig) -> list[Candidate]:
    """The candidates of ``config``, in the order they are measured (the parent first)."""
    out = [Candidate("parent", "parent")]
    if config.include_trim:
        out.append(Candidate("trim", "trim"))
    prefix = "trim" if config.trim else "source"
    out += [Candidate(f"{prefix}+{k}", "expand", added_tokens=k, trim=config.trim) for k in config.add_tokens]
    out += [Candidate(f"replace-{v}", "replace", vocab_size=v) for v in config.vocab_sizes]
    return out


def frontier(source, corpus, heldout, *, output_dir=None, config: FrontierConfig | None = None, overwrite: bool = False,
             source_tokenizer=None, train_config=None, teacher: bool = False) -> list[dict]:
    """Measure every candidate of ``config`` for ``source`` on ``heldout``; write the results to ``output_dir``.

    Args:
        source: the model: an object, a Hub id, a folder or a ``.gguf`` file.
        corpus: target-language training text (anything :class:`~hf_vocabswap.Corpus` accepts).
        heldout: held-out target-language text (never the training text).
        output_dir: where ``frontier.json``, ``frontier.md``, ``frontier.png`` and the candidates'
            tokenizers go (nothing is written when None).
        config: the :class:`FrontierConfig` (default: its defaults).
        overwrite: replace an earlier frontier folder.
        source_tokenizer: the model's tokenizer, when it cannot be found from ``source``.
        train_config: a :class:`hf_vocabswap.train.TrainConfig`: every candidate (the parent too)
            is also trained with it, and the best and last held-out bits per character reported.
        teacher: with ``train_config``, the transplanted candidates learn from the parent
            (cross-tokenizer distillation, :mod:`hf_vocabswap.distill`).

    Returns:
        One dict per candidate: ``name``, ``kind``, ``added_tokens``, ``vocab_size``,
        ``tokens_per_word``, ``characters_per_token``, ``parameters``, ``embedding_parameters``,
        ``zero_shot_bpc``, ``method``, ``seconds``; with training also ``best_bpc``, ``best_step``,
        ``last_bpc``, ``distilled`` and ``teacher``.

    Raises:
        CorpusError: the corpus or the held-out text is empty.
        OutputExistsError: ``output_dir`` exists and ``overwrite`` is False (checked first).
        Everything :func:`~hf_vocabswap.transplant_tokenizer` and :func:`~hf_vocabswap.train_tokenizer` raise.
    """
    config = config if config is not None else FrontierConfig()
    claim = _claim(output_dir, overwrite)
    try:
        corpus = Corpus.coerce(corpus)
        if corpus is None:
            raise CorpusError("The frontier needs target-language training text: pass corpus=... (a file, a list of strings or a dataset).")
        train_texts = first_chars(corpus, config.max_chars) if config.max_chars else list(corpus)
        held = first_chars(Corpus.coerce(heldout), config.heldout_chars)
        model, tok = load_model_and_tokenizer(source, source_tokenizer)
        rows, tokenizers = [], {}
        make = _Tokenizers(tok, train_texts, config)
        todo = candidates(config)
        for cand in progress_bar(todo, group="evaluate", desc="Frontier candidates", enabled=config.progress, unit=" candidates"):
            row, tokenizer = _measure(cand, make(cand), model, tok, train_texts, held, config, train_config, teacher)
            rows.append(row)
            tokenizers[cand.name] = tokenizer
            logger.info("frontier %s: %.3f tokens per word, %.4f bits per character", cand.name, row["tokens_per_word"], row["zero_shot_bpc"])
        if claim is not None:
            settings = _settings(source, config, train_config, teacher, len(train_texts), held)
            write_output(output_dir, lambda folder: _write(folder, rows, settings, tokenizers), claim=claim)
        return rows
    finally:
        if claim is not None:
            claim.release()


def _claim(output_dir, overwrite: bool):
    return None if output_dir is None else claim_output(output_dir, overwrite=overwrite)


class _Tokenizers:
    """The candidates' tokenizers. Expansions are learned once, for the largest K: the first k tokens
    of a longer expansion are exactly an expansion by k (:func:`~hf_vocabswap.tokenizer_expansion.learn_expansion`)."""

    def __init__(self, tok, train_texts: list[str], config: FrontierConfig):
        self.tok, self.texts, self.config = tok, train_texts, config
        self._expansion = None

    def __call__(self, cand: Candidate):
        """The candidate's target tokenizer (None for the parent and trim, which the method derives)."""
        if cand.kind == "replace":
            return train_tokenizer(self.tok, self.texts, cand.vocab_size, progress=self.config.progress)
        if cand.kind != "expand":
            return None
        if self._expansion is None:
            base = trim_tokenizer(self.tok, self.texts, keep_special="all") if self.config.trim else self.tok
            self._expansion = learn_expansion(base, self.texts, max(self.config.add_tokens), progress=self.config.progress)
        return self._expansion.tokenizer(cand.added_tokens)


def _measure(cand: Candidate, target, model, tok, train_texts, held, config: FrontierConfig, train_config, teacher: bool) -> tuple[dict, Any]:
    started = time.perf_counter()
    if cand.kind == "parent":
        adapted, adapted_tok, method = model, tok, None
    else:
        method = "trim" if cand.kind == "trim" else config.method
        result = transplant_tokenizer(model, target, method, source_tokenizer=tok, corpus=train_texts, seed=config.seed,
                                      device=config.device, low_memory=False)
        adapted, adapted_tok, method = result.model, result.tokenizer, result.report.method
    stats = tokenizer_stats(adapted_tok, held)
    bpc = bits_per_character(adapted, adapted_tok, held, max_length=config.max_length, batch_size=config.batch_size,
                             device=None if config.device == "cpu" else config.device, progress=False)
    row = {
        "name": cand.name,
        "kind": cand.kind,
        "added_tokens": cand.added_tokens,
        "vocab_size": len(adapted_tok),
        "tokens_per_word": round(stats["tokens_per_word"], 4),
        "characters_per_token": round(stats["characters_per_token"], 4),
        "parameters": sum(p.numel() for p in adapted.parameters()),
        "embedding_parameters": embedding_parameter_count(adapted),
        "zero_shot_bpc": round(bpc["bits_per_character"], 4),
        "method": method,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if train_config is not None:
        row.update(_trained(cand, adapted, adapted_tok, model, tok, train_texts, held, train_config, teacher))
    return row, adapted_tok


def _trained(cand, adapted, adapted_tok, parent, parent_tok, train_texts, held, train_config, teacher: bool) -> dict:
    """The candidate after continued pretraining: best and last held-out bits per character.

    The parent is trained as a copy (the other candidates are transplanted from it untrained), and
    teaches the others untrained.
    """
    if cand.kind == "parent":
        adapted = copy.deepcopy(adapted)
    distilled = teacher and cand.kind != "parent"
    extra = {"teacher": parent, "teacher_tokenizer": parent_tok} if distilled else {}
    with tempfile.TemporaryDirectory() as scratch:
        summary = continue_pretraining(adapted, train_texts, output_dir=Path(scratch) / cand.name, tokenizer=adapted_tok,
                                       eval_texts=held, config=train_config, **extra)
    best, last = summary.get("best") or {}, summary.get("last") or {}
    return {
        "best_bpc": best.get("eval_bpc"), "best_step": best.get("step"), "last_bpc": last.get("eval_bpc"),
        "distilled": distilled, "teacher": "parent" if distilled else None,
    }


def embedding_parameter_count(model) -> int:
    """Parameters of the vocabulary tensors: the input matrix, an untied output matrix and output biases."""
    handles = find_embeddings(model)
    total = handles.input_weight.numel()
    if handles.output_weight is not None:
        total += handles.output_weight.numel()
    return total + sum(b.numel() for b in handles.biases.values())


def _settings(source, config: FrontierConfig, train_config, teacher: bool, train_texts: int, held: list[str]) -> dict:
    return {
        "source": str(source) if isinstance(source, (str, Path)) else type(source).__name__,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()},
        "train": dataclasses.asdict(train_config) if train_config is not None else None,
        "distilled_from_parent": bool(teacher and train_config is not None),
        "train_texts": train_texts,
        "heldout_characters": sum(len(t) for t in held),
    }


def markdown_table(rows: list[dict]) -> str:
    """The frontier as a markdown table (training columns when the rows have them)."""
    trained = any("best_bpc" in r for r in rows)
    head = ["candidate", "kind", "vocabulary", "tokens/word", "chars/token", "parameters", "embedding params", "zero-shot bpc"]
    if trained:
        head += ["best bpc (step)", "last bpc"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"], r["kind"], f"{r['vocab_size']:,}", f"{r['tokens_per_word']:.3f}", f"{r['characters_per_token']:.3f}",
                 f"{r['parameters'] / 1e6:.1f}M", f"{r['embedding_parameters'] / 1e6:.1f}M", f"{r['zero_shot_bpc']:.3f}"]
        if trained:
            best = f"{r['best_bpc']:.3f} ({r['best_step']})" if r.get("best_bpc") is not None else "-"
            cells += [best, f"{r['last_bpc']:.3f}" if r.get("last_bpc") is not None else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def choose(rows: list[dict], *, tolerance: float = 0.10) -> list[tuple[str, dict]]:
    """Which point to pick for which need, read off the measured rows.

    A point is "as good as the parent" when its bits per character (after training when the rows
    were trained, else zero-shot) are at most ``tolerance`` above the parent's.

    Returns:
        ``(need, row)`` pairs: the fewest tokens per word among points as good as the parent; the
        fewest parameters among them; and the fewest tokens per word overall (whatever it costs).
        A need no row meets is left out.
    """
    parent = next((r for r in rows if r["kind"] == "parent"), None)
    if parent is None:
        return []
    key = "best_bpc" if all(r.get("best_bpc") is not None for r in rows) else "zero_shot_bpc"
    good = [r for r in rows if r[key] <= parent[key] + tolerance]
    picks = []
    if any(r is not parent for r in good):
        picks.append((f"fewest tokens per word within {tolerance:.2f} bpc of the parent", min(good, key=lambda r: (r["tokens_per_word"], r[key]))))
        picks.append((f"fewest parameters within {tolerance:.2f} bpc of the parent", min(good, key=lambda r: (r["parameters"], r[key]))))
    picks.append(("fewest tokens per word at any cost", min(rows, key=lambda r: (r["tokens_per_word"], r[key]))))
    return picks


def choice_lines(rows: list[dict], *, tolerance: float = 0.10) -> list[str]:
    """:func:`choose` as markdown bullets, each with its difference from the parent."""
    parent = next((r for r in rows if r["kind"] == "parent"), None)
    key = "best_bpc" if all(r.get("best_bpc") is not None for r in rows) else "zero_shot_bpc"
    lines = []
    for need, r in choose(rows, tolerance=tolerance):
        lines.append(f"- {need}: **{r['name']}** ({100 * (r['tokens_per_word'] / parent['tokens_per_word'] - 1):+.1f}% tokens per word, "
                     f"{100 * (r['parameters'] / parent['parameters'] - 1):+.1f}% parameters, {r[key] - parent[key]:+.3f} bpc"
                     f"{' after training' if key == 'best_bpc' else ' zero-shot'})")
    return lines


def plot_frontier(rows: list[dict], path, *, title: str = "") -> Path | None:
    """Bits per character against tokens per word, one marker per candidate, the parent marked.

    Returns:
        The PNG's path, or None when matplotlib is not installed (the table and JSON are enough).
    """
    try:
        import matplotlib  # noqa: PLC0415 - optional: only for the plot

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415 - optional: only for the plot
    except ImportError:
        logger.info("matplotlib is not installed: no frontier plot")
        return None
    styles = {"parent": ("*", "black"), "trim": ("s", "tab:green"), "expand": ("o", "tab:blue"), "replace": ("^", "tab:red")}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, label in (("zero_shot_bpc", "zero-shot"), ("best_bpc", "after training")):
        pts = [r for r in rows if r.get(key) is not None]
        for r in pts:
            marker, color = styles[r["kind"]]
            ax.scatter(r["tokens_per_word"], r[key], marker=marker, color=color, s=120 if r["kind"] == "parent" else 50,
                       alpha=1.0 if key == "zero_shot_bpc" else 0.5)
            ax.annotate(r["name"], (r["tokens_per_word"], r[key]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    parent = next((r for r in rows if r["kind"] == "parent"), None)
    if parent is not None:
        ax.axhline(parent["zero_shot_bpc"], color="black", lw=0.6, ls="--")
        ax.axvline(parent["tokens_per_word"], color="black", lw=0.6, ls=":")
    ax.set_xlabel("tokens per word (held-out)")
    ax.set_ylabel("bits per character (held-out)")
    ax.set_title(title or "quality / efficiency frontier (filled: zero-shot; faint: after training)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def _write(folder: Path, rows: list[dict], settings: dict, tokenizers: dict) -> None:
    (folder / FRONTIER_FILE).write_text(json.dumps({"rows": rows, **settings}, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    choice = choice_lines(rows)
    (folder / "frontier.md").write_text(markdown_table(rows) + ("\nWhich point to choose:\n\n" + "\n".join(choice) + "\n" if choice else ""),
                                        encoding="utf-8")
    plot_frontier(rows, folder / "frontier.png")
    for name, tok in tokenizers.items():
        tok.save_pretrained(folder / "tokenizers" / name)
