"""Romanization benchmark: does ``romanize=True`` help when the target's script is one the source
barely knows?

The quality benchmark's ``cpu`` case (the English splade-tiny BERT MLM to an 8,000-token Ukrainian
WordPiece tokenizer trained with the source's pipeline on UA-GEC; see benchmarks/quality), and a
second non-Latin script: Chinese (Han) from the Debian package ``fortunes-zh``
(``/usr/share/games/fortunes/chinese.u8``, ``apt-get install fortunes-zh``; skipped with the reason
when it is not installed). For each case, the default method (``auto``: the calibrated hybrid) and
FVT, each with and without romanization, each with two seeds (the transplant's and LAPT's), give
held-out bits per character zero-shot and during the quality benchmark's LAPT::

    python benchmarks/romanize.py --config cpu [--steps 100] [--cases uk,zh]

Writes ``benchmarks/results/romanize_cpu.json`` (everything) and ``romanize_cpu.md`` (tables and
the verdict) after every run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.quality.config import make_config  # noqa: E402
from benchmarks.quality.inputs import load_source, load_texts  # noqa: E402
from benchmarks.quality.report import jsonable, machine_description  # noqa: E402
from benchmarks.quality.runs import run_one, set_threads  # noqa: E402
from hf_vocabswap import train_tokenizer, transplant_tokenizer  # noqa: E402

logger = logging.getLogger("romanize")
RESULTS = Path(__file__).resolve().parent / "results"
CHINESE = Path("/usr/share/games/fortunes/chinese.u8")
VARIANTS = (("auto", False), ("auto", True), ("fvt", False), ("fvt", True))
SEEDS = (42, 43)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def chinese_texts(train_chars: int, heldout_chars: int) -> tuple[list[str], list[str]]:
    """(training, held-out) entries of fortunes-zh's Chinese file: every 10th entry is held out
    (until ``heldout_chars``), the others train (until ``train_chars``); colour codes removed."""
    entries = [_ANSI.sub("", e).strip() for e in CHINESE.read_text(encoding="utf-8").split("\n%\n")]
    entries = [" ".join(e.split()) for e in entries if e]
    train, heldout = [], []
    for i, entry in enumerate(entries):
        side = heldout if i % 10 == 9 and sum(map(len, heldout)) < heldout_chars else train
        if side is train and sum(map(len, train)) >= train_chars:
            continue
        side.append(entry)
    return train, heldout


def case_texts(case: str, cfg) -> tuple[list[str], list[str], str]:
    """(training texts, held-out texts, description) of a case."""
    if case == "uk":
        train, heldout = load_texts(cfg)
        return train, heldout, "Ukrainian (Cyrillic): UA-GEC essays, train / test split"
    if not CHINESE.is_file():
        raise FileNotFoundError(f"{CHINESE} is missing: apt-get install fortunes-zh")
    train, heldout = chinese_texts(cfg.train_chars or 1_000_000, cfg.heldout_chars)
    return train, heldout, "Chinese (Han): fortunes-zh chinese.u8, every 10th entry held out"


def summarize(runs: list[dict]) -> dict:
    """Mean and spread (max - min over seeds) of zero-shot and last-step bpc."""
    out = {}
    for key in ("zero_shot_bpc", "last_bpc"):
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = {"mean": round(statistics.fmean(values), 4) if values else None,
                    "spread": round(max(values) - min(values), 4) if values else None, "seeds": values}
    return out


def verdict(case: dict) -> dict:
    """Per method: does romanization lower zero-shot bpc beyond run-to-run noise, and is it not worse after LAPT?

    Noise is the largest seed spread of the two variants compared (at least 0.005 bpc)."""
    out = {}
    for method in ("auto", "fvt"):
        off, on = case["variants"].get(f"{method}"), case["variants"].get(f"{method}+romanize")
        if not off or not on or off["summary"]["zero_shot_bpc"]["mean"] is None or on["summary"]["zero_shot_bpc"]["mean"] is None:
            continue
        so, sn = off["summary"], on["summary"]
        noise0 = max(0.005, so["zero_shot_bpc"]["spread"], sn["zero_shot_bpc"]["spread"])
        gain0 = so["zero_shot_bpc"]["mean"] - sn["zero_shot_bpc"]["mean"]
        row = {"zero_shot_gain": round(gain0, 4), "zero_shot_noise": round(noise0, 4)}
        if so["last_bpc"]["mean"] is not None and sn["last_bpc"]["mean"] is not None:
            noise1 = max(0.005, so["last_bpc"]["spread"], sn["last_bpc"]["spread"])
            row.update(last_gain=round(so["last_bpc"]["mean"] - sn["last_bpc"]["mean"], 4), last_noise=round(noise1, 4))
        row["helps"] = gain0 > 2 * noise0 and row.get("last_gain", 0.0) > -row.get("last_noise", 0.0)
        out[method] = row
    return out


def run_case(case: str, cfg, model, source_tok, workdir: Path, record: dict, write) -> None:
    """Every variant and seed of one case, into ``record["cases"][case]``."""
    train, heldout, description = case_texts(case, cfg)
    target = train_tokenizer(source_tok, train, cfg.vocab_size, progress=False)
    entry = record["cases"].setdefault(case, {
        "texts": description, "train_chars": sum(map(len, train)), "heldout_chars": sum(map(len, heldout)),
        "target_vocab": len(target), "variants": {},
    })
    cache = workdir / f"fasttext-{case}"
    for method, roman in VARIANTS:
        name = method + ("+romanize" if roman else "")
        runs = []
        for seed in SEEDS:
            started = time.perf_counter()
            cfg.seed = seed
            result = transplant_tokenizer(
                model, target, method, source_tokenizer=source_tok, corpus=train if method != "fvt" else None,
                seed=seed, romanize=roman, **({"cache_dir": str(cache), "threads": 1} if method != "fvt" else {}),
            )
            run = run_one(result.model, result.tokenizer, train, heldout, cfg, workdir)
            runs.append({
                "seed": seed, "method": result.report.method, "zero_shot_bpc": run["zero_shot_bpc"],
                "last_bpc": run["last"]["bpc"] if run["last"] else None, "history": run["history"],
                "counts": result.report.counts, "romanization": result.report.alignment.get("romanization"),
                "seconds": round(time.perf_counter() - started, 1),
            })
            logger.info("%s %s seed %d: zero-shot %.3f, last %s", case, name, seed, run["zero_shot_bpc"], runs[-1]["last_bpc"])
            entry["variants"][name] = {"runs": runs, "summary": summarize(runs)}
            entry["verdict"] = verdict(entry)
            write()


def markdown(record: dict) -> str:
    """The report: settings, one table per case, the verdict."""
    lines = [
        "# Romanization benchmark: `cpu` configuration", "",
        "Source: the English splade-tiny BERT MLM (WordPiece, uncased); targets: 8,000-token WordPiece tokenizers trained "
        "with the source's pipeline. Default method (`auto`, the calibrated hybrid) and FVT, with and without "
        "`romanize=True` (uroman), seeds " + ", ".join(map(str, SEEDS)) + " (transplant and LAPT). Bits per character "
        "(masked LM pseudo-log-likelihood) on held-out text: lower is better. Noise: the larger seed spread (max - min) "
        "of the two variants compared; romanization *helps* when it lowers zero-shot bpc by more than twice the noise "
        "and the last LAPT bpc is not worse by more than the noise.", "",
        f"- date: {record['date']}; machine: {record['machine']['cpu']}, {record['machine']['cpu_cores']} cores, "
        f"shared with other jobs (load average {record['load_average']}); torch {record['machine']['torch']}",
        f"- LAPT: {record['settings']}", "",
    ]
    for case, entry in record["cases"].items():
        if "skipped" in entry:
            lines += [f"## {case}: skipped ({entry['skipped']})", ""]
            continue
        lines += [f"## {case}: {entry['texts']}", "",
                  f"{entry['train_chars']:,} training and {entry['heldout_chars']:,} held-out characters; target vocabulary {entry['target_vocab']:,}.", ""]
        roman = next((r["romanization"] for v in entry["variants"].values() for r in v["runs"] if r.get("romanization")), None)
        if roman:
            cov = ", ".join(f"{s} {100 * c['covered']:.1f}% ({c['tokens']} tokens)" for s, c in roman["coverage"].items())
            lines += [f"Measured coverage by the source: {cov}; romanized: {roman['romanized']} tokens, "
                      f"{roman['matched']} of them match a source token whole, {roman['empty'] + roman['unsegmented']} left to the method.", ""]
        lines += ["| variant | zero-shot bpc (seeds) | mean | last bpc (seeds) | mean |", "|---|---|---|---|---|"]
        for name, v in entry["variants"].items():
            z, last = v["summary"]["zero_shot_bpc"], v["summary"]["last_bpc"]
            seeds = lambda s: " / ".join(f"{x:.3f}" for x in s["seeds"])  # noqa: E731
            mean = lambda s: "-" if s["mean"] is None else f"{s['mean']:.3f}"  # noqa: E731
            lines.append(f"| {name} | {seeds(z)} | {mean(z)} | {seeds(last)} | {mean(last)} |")
        lines.append("")
        for method, row in entry.get("verdict", {}).items():
            lines.append(f"- {method}: zero-shot gain {row['zero_shot_gain']:+.3f} (noise {row['zero_shot_noise']:.3f})"
                         + (f", last-step gain {row['last_gain']:+.3f} (noise {row['last_noise']:.3f})" if "last_gain" in row else "")
                         + f": {'helps' if row['helps'] else 'does not clearly help'}")
        lines.append("")
    lines += ["## Verdict", "", record.get("conclusion", "(run not finished)"), ""]
    return "\n".join(lines)


def conclusion(record: dict) -> str:
    """The default the numbers support."""
    rows = [(case, m, r) for case, e in record["cases"].items() for m, r in e.get("verdict", {}).items()]
    uk_auto = record["cases"].get("uk", {}).get("verdict", {}).get("auto")
    if uk_auto is None:
        return "Not enough runs for a verdict."
    helped = [f"{m} on {c}" for c, m, r in rows if r["helps"]]
    default = "on" if uk_auto["helps"] else "off"
    return (f"Romanization clearly helps for: {', '.join(helped) or 'none'}. The default method on the Cyrillic case "
            f"{'gains' if uk_auto['helps'] else 'does not gain'} beyond noise, so `romanize` stays **{default}** by default "
            "(`romanize=True` / `--romanize` asks for it).")


def main(argv=None) -> int:
    """Run the benchmark (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", choices=["cpu"], default="cpu")
    p.add_argument("--steps", type=int, help="LAPT steps (default: the quality cpu configuration's)")
    p.add_argument("--cases", default="uk,zh", help="comma-separated: uk (Ukrainian), zh (Chinese)")
    p.add_argument("--out-dir", default=str(RESULTS))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = make_config(args.config, steps=args.steps)
    set_threads(cfg)
    model, source_tok, _ = load_source(cfg)
    model.eval()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine_description(),
        "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg()), "settings": cfg.settings_line(),
        "seeds": list(SEEDS), "cases": {},
    }
    started = time.time()

    def write():
        record["seconds"] = round(time.time() - started, 1)
        record["load_average"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
        record["conclusion"] = conclusion(record)
        (out / f"romanize_{args.config}.json").write_text(json.dumps(jsonable(record), indent=1, ensure_ascii=False))
        (out / f"romanize_{args.config}.md").write_text(markdown(record), encoding="utf-8")

    with tempfile.TemporaryDirectory(prefix="romanize-bench-") as tmp:
        for case in args.cases.split(","):
            try:
                run_case(case, cfg, model, source_tok, Path(tmp), record, write)
            except FileNotFoundError as e:
                record["cases"][case] = {"skipped": str(e)}
                write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
