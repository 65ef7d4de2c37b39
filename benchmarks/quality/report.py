"""The results of a run: one JSON file (stable field names), a markdown report and a plot of
held-out bpc against LAPT steps, rewritten after every method."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import math
import os
import platform
from pathlib import Path

import torch
import transformers

from .config import REFERENCE, BenchConfig

logger = logging.getLogger("quality")


def machine_description() -> dict:
    """The CPU, core count, torch threads, GPU and library versions of this machine."""
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


def jsonable(value):
    """``value`` with every key a string and every leaf a JSON value (0-d arrays as numbers,
    other objects as ``"<TypeName>"``)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
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
    """The markdown tables of ``results``: one row per method, the bpc at each evaluation step,
    the resources each method used, what was not run and why, and the notes."""
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
    """Held-out bpc against LAPT steps, one line per method, as a PNG at ``path``.

    Returns:
        False when nothing was plotted (matplotlib missing, no curves), else True.
    """
    try:  # matplotlib is optional: without it there is no plot
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
    """Write ``<stem>.json`` (atomically), ``<stem>.md`` and ``<stem>.png`` into ``out_dir``.

    Returns:
        The paths written by kind (``json``, ``md``, and ``png`` when a plot was made).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md", "png": out_dir / f"{stem}.png"}
    tmp = paths["json"].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(jsonable(results), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, paths["json"])
    paths["md"].write_text(markdown_report(results), encoding="utf-8")
    if not plot(results, paths["png"]):
        paths.pop("png")
    return paths


def new_results(cfg: BenchConfig, source_desc: str, target_desc: str, train, heldout) -> dict:
    """The results record of a run before any method ran (its ``runs`` fill in as they finish)."""
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
