"""The command line of the quality benchmark (``python -m benchmarks.quality --help``)."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

from .bundle import prepare_bundle, run_bundle
from .config import BUNDLE_DIR, CONFIGS, OVERRIDABLE, RESULTS_DIR, make_config
from .report import markdown_report, write_results
from .runs import run_in_process

DESCRIPTION = "Quality benchmark: every registered initialization method on the same real task."


def parse_args(argv=None) -> argparse.Namespace:
    """The command line's options (``argv``: None reads ``sys.argv``)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
    """Run the benchmark as the command line says; 0 on success.

    Raises:
        SystemExit: ``--config gpu`` without ``--phase``, or an unknown method.
    """
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
