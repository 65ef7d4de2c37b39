"""The ``hf-vocabswap`` command.

Method options are generated from each registered method's config dataclass, so a new
method's options appear here without editing this file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import types
import typing
from pathlib import Path

from .errors import MethodOptionError, VocabSwapError

logger = logging.getLogger("hf_vocabswap")


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _converter(annotation):
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:  # Optional[int] and int | None
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else str
    if annotation is bool:
        return _parse_bool
    if annotation in (int, float):
        return annotation
    return str


def _method_option_table() -> dict[str, dict]:
    """flag name -> {"dest", "type", "methods": set, "help"} over all registered methods."""
    from .methods import available_methods, get_method

    table: dict[str, dict] = {}
    for name in available_methods():
        for field_name, annotation, default, help_text in get_method(name).config_class.option_fields():
            entry = table.setdefault(field_name, {"type": _converter(annotation), "methods": set(), "help": help_text, "default": default})
            entry["methods"].add(name)
    return table


def _add_common_transplant_args(p: argparse.ArgumentParser) -> None:
    from .transplant import DEFAULT_METHOD

    p.add_argument("--method", default=DEFAULT_METHOD, help=f"initialization method (default: {DEFAULT_METHOD}; see `hf-vocabswap methods`)")
    p.add_argument("--corpus", nargs="+", help="target-language text file(s) or folder, for methods that learn from text")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--source-tokenizer", help="tokenizer the model was trained with (default: the model's own)")
    p.add_argument("--task", choices=["masked", "causal", "seq2seq", "base"], help="force the model head to load")
    p.add_argument("--pad-to-multiple-of", type=int, help="round embedding rows up to a multiple of N")
    p.add_argument("--device", default="cpu", help="where methods run their maths (cpu, cuda)")


def _add_method_options(p: argparse.ArgumentParser, table: dict[str, dict]) -> None:
    group = p.add_argument_group("method options", "each applies to the methods named in brackets")
    taken = set(p._option_string_actions)
    for field_name, entry in sorted(table.items()):
        flag = "--" + field_name.replace("_", "-")
        if flag in taken:  # e.g. --device: the common option already sets it for every method
            entry["shadowed"] = True
            continue
        group.add_argument(
            flag,
            dest=f"opt_{field_name}",
            type=entry["type"],
            default=None,
            help=f"[{', '.join(sorted(entry['methods']))}] {entry['help']} (default: {entry['default']})",
        )


def _method_options(args, table) -> dict:
    options = {}
    for field_name, entry in table.items():
        if entry.get("shadowed"):
            continue
        value = getattr(args, f"opt_{field_name}", None)
        if value is None:
            continue
        if args.method != "auto" and args.method not in entry["methods"]:
            raise MethodOptionError(
                f"--{field_name.replace('_', '-')} is an option of {', '.join(sorted(entry['methods']))}, "
                f"not of --method {args.method}."
            )
        options[field_name] = value
    return options


def _configure_output(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    if quiet:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        transformers.utils.logging.disable_progress_bar()
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def cmd_transplant(args, table) -> int:
    from .transplant import transplant_tokenizer

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        from .errors import OutputExistsError

        raise OutputExistsError(out)
    corpus = args.corpus[0] if args.corpus and len(args.corpus) == 1 else args.corpus
    result = transplant_tokenizer(
        args.source,
        args.target_tokenizer,
        args.method,
        source_tokenizer=args.source_tokenizer,
        corpus=corpus,
        seed=args.seed,
        task=args.task,
        pad_to_multiple_of=args.pad_to_multiple_of,
        device=args.device,
        low_memory=args.low_memory,
        calibrate=args.calibrate,
        **_method_options(args, table),
    )
    result.save_pretrained(out, overwrite=args.overwrite)
    print(result.report)
    print(f"saved to {out}")
    return 0


def cmd_train_tokenizer(args) -> int:
    from .loading import load_tokenizer
    from .tokenizer_training import check_trained_tokenizer, train_tokenizer

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        from .errors import OutputExistsError

        raise OutputExistsError(out)
    source = load_tokenizer(args.source_tokenizer)
    corpus = args.corpus[0] if len(args.corpus) == 1 else args.corpus
    tokenizer = train_tokenizer(source, corpus, args.vocab_size, add_tokens=args.add_tokens, trim=args.trim)
    tokenizer.save_pretrained(out)
    if args.add_tokens is None and not args.trim:
        print(f"trained a {len(tokenizer)}-token tokenizer with the pipeline of {args.source_tokenizer}; saved to {out}")
    else:
        what = "trimmed and expanded" if args.trim and args.add_tokens else "trimmed" if args.trim else "expanded"
        print(f"{what} {args.source_tokenizer} ({len(source)} tokens) to {len(tokenizer)} tokens; saved to {out}")
    if args.heldout:
        texts = Path(args.heldout).read_text(encoding="utf-8").splitlines()
        print(json.dumps(check_trained_tokenizer(tokenizer, [t for t in texts if t.strip()]), indent=1))
    return 0


def cmd_methods(args, table) -> int:
    from .methods import available_methods, get_method

    for name in available_methods():
        cls = get_method(name)
        needs = " (needs --corpus)" if cls.needs_corpus else ""
        print(f"{name}{needs}: {cls.summary}")
        for field_name, _, default, help_text in cls.config_class.option_fields():
            print(f"    --{field_name.replace('_', '-')} (default {default!r}): {help_text}")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate_model, format_results

    results = evaluate_model(args.model, args.text, max_chars=args.max_chars, max_length=args.max_length, batch_size=args.batch_size)
    print(format_results(results) if not args.json else json.dumps(results, indent=1, default=str))
    return 0


def cmd_train(args) -> int:
    from .train import continue_pretraining

    summary = continue_pretraining(
        args.model,
        args.text,
        output_dir=args.out,
        eval_texts=args.eval_text,
        max_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=args.warmup_steps,
        seq_length=args.seq_length,
        eval_steps=args.eval_steps,
        embeddings_only_steps=args.embeddings_only_steps,
        seed=args.seed,
        resume=args.resume,
        overwrite=args.overwrite,
        bf16=args.bf16,
        load_best_model_at_end=args.load_best,
        early_stopping_patience=args.early_stopping_patience,
    )
    print(json.dumps(summary, indent=1, default=str))
    return 0


def cmd_push(args) -> int:
    from .hub import push_folder

    info = push_folder(args.folder, args.repo_id, private=not args.public, revision=args.revision)
    print(f"pushed {args.folder} to {args.repo_id}: {getattr(info, 'commit_url', info)}")
    return 0


def cmd_quickstart(args) -> int:
    from .quickstart import run_quickstart

    run_quickstart(out=Path(args.out), method=args.method, overwrite=args.overwrite, lapt_steps=args.lapt_steps, vocab_size=args.vocab_size)
    return 0


def cmd_demo(args) -> int:
    import runpy

    app = Path(__file__).resolve().parent.parent / "spaces" / "hf-vocabswap-demo" / "app.py"
    if not app.is_file():
        raise VocabSwapError(f"The demo app is not at {app}; run it from a clone of the repository.")
    sys.argv = [str(app)]
    runpy.run_path(str(app), run_name="__main__")
    return 0


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    table = _method_option_table()
    parser = argparse.ArgumentParser(prog="hf-vocabswap", description="Swap a model's tokenizer and initialize the new embeddings.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("transplant", help="swap the vocabulary of a model and initialize the new embeddings")
    p.add_argument("source", help="model: Hub id, local folder or .gguf file")
    p.add_argument("target_tokenizer", help="target tokenizer: Hub id or folder")
    p.add_argument("--out", required=True, help="output folder (safetensors, tokenizer, record, model card)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--low-memory", action=argparse.BooleanOptionalAction, default=None,
                   help="load only the vocabulary tensors and stream the other weights (default: for sharded safetensors)")
    p.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=None,
                   help="shift the new tokens' output scores so the model predicts each as often as the corpus uses it "
                   "(causal, masked and seq2seq LMs; needs --corpus; default: on for hybrid, off for the other methods)")
    _add_common_transplant_args(p)
    _add_method_options(p, table)

    p = sub.add_parser("train-tokenizer", help="train a target tokenizer with the source tokenizer's pipeline, "
                       "or expand (and trim) the source's vocabulary")
    p.add_argument("source_tokenizer", help="tokenizer whose pipeline to keep: Hub id, folder or .gguf file")
    p.add_argument("--corpus", nargs="+", required=True, help="target-language text file(s) or folder")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="train a new vocabulary of this size (default: 32000; not with --add-tokens or --trim)")
    p.add_argument("--add-tokens", type=int, default=None, metavar="K",
                   help="keep every source token at its id and add K tokens learned on the corpus "
                   "(default: none, train a new vocabulary); 0 only with --trim")
    p.add_argument("--trim", action="store_true",
                   help="first drop the source tokens the corpus never uses, then add --add-tokens "
                   "(default: off; --trim alone only trims)")
    p.add_argument("--out", required=True, help="output folder for the tokenizer files")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder (default: off)")
    p.add_argument("--heldout", help="a held-out text file to check the tokenizer on (default: none)")

    sub.add_parser("methods", help="list registered methods and their options")

    p = sub.add_parser("evaluate", help="tokenizer statistics and held-out bits per character")
    p.add_argument("model", help="model folder or Hub id (its own tokenizer is used)")
    p.add_argument("--text", required=True, help="held-out text file")
    p.add_argument("--max-chars", type=int, default=None)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("train", help="continued pretraining (LAPT) on target-language text")
    p.add_argument("model")
    p.add_argument("--text", required=True, help="training text file")
    p.add_argument("--eval-text", help="held-out text file, evaluated during training")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--seq-length", type=int, default=512)
    p.add_argument("--eval-steps", type=int, default=50)
    p.add_argument("--embeddings-only-steps", type=int, default=0, help="train only embeddings and head first (Downey et al.)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    p.add_argument("--load-best", action="store_true", help="keep the checkpoint with the best held-out bits per character")
    p.add_argument("--early-stopping-patience", type=int, help="stop after N evaluations without improvement")

    p = sub.add_parser("push", help="upload an adapted folder to the Hub in one commit (private by default)")
    p.add_argument("folder")
    p.add_argument("repo_id")
    p.add_argument("--public", action="store_true")
    p.add_argument("--revision")

    p = sub.add_parser("quickstart", help="the embedded default: real model and Ukrainian text, no Hub access")
    p.add_argument("--out", default="vocabswap-quickstart")
    p.add_argument("--method", default="auto", help="initialization method (default: auto, the calibrated hybrid here)")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--lapt-steps", type=int, default=0, help="also run a short continued pretraining")
    p.add_argument("--overwrite", action="store_true")

    sub.add_parser("demo", help="run the Gradio demo locally")
    return parser, table


def main(argv: list[str] | None = None) -> int:
    parser, table = build_parser()
    args = parser.parse_args(argv)
    _configure_output(args.quiet)
    try:
        if args.command == "transplant":
            return cmd_transplant(args, table)
        if args.command == "methods":
            return cmd_methods(args, table)
        handler = {
            "train-tokenizer": cmd_train_tokenizer,
            "evaluate": cmd_evaluate,
            "train": cmd_train,
            "push": cmd_push,
            "quickstart": cmd_quickstart,
            "demo": cmd_demo,
        }[args.command]
        return handler(args)
    except VocabSwapError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
