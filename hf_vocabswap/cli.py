"""The ``hf-vocabswap`` command.

Method options are generated from each registered method's config dataclass, so a new
method's options appear here without editing this file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import runpy
import sys
from pathlib import Path

import transformers

from .errors import (
    CorpusError,
    MethodOptionError,
    MismatchError,
    ModelError,
    NoOverlapError,
    OutputExistsError,
    OutputPathError,
    PathNotFoundError,
    ResourceError,
    TokenizerError,
    UnknownMethodError,
    VocabSwapError,
)
from .evaluate import evaluate_model, format_results
from .fields import cli_type
from .hub import push_folder
from .loading import load_tokenizer
from .methods import available_methods, get_method
from .output import claim_output, terminate_as_interrupt
from .progress import disable_progress_bars
from .quickstart import run_quickstart
from .tokenizer_training import check_trained_tokenizer, train_tokenizer
from .train import continue_pretraining
from .transplant import DEFAULT_METHOD, transplant_tokenizer

logger = logging.getLogger("hf_vocabswap")


def _method_option_table() -> dict[str, dict]:
    """flag name -> {"dest", "type", "methods": set, "help"} over all registered methods."""
    table: dict[str, dict] = {}
    for name in available_methods():
        for field_name, annotation, default, help_text in get_method(name).config_class.option_fields():
            entry = table.setdefault(field_name, {"type": cli_type(annotation), "methods": set(), "help": help_text, "default": default})
            entry["methods"].add(name)
    return table


def _add_common_transplant_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default=DEFAULT_METHOD, help=f"initialization method (default: {DEFAULT_METHOD}; see `hf-vocabswap methods`)")
    p.add_argument("--corpus", nargs="+", help="target-language text file(s) or folder, for methods that learn from text")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--source-tokenizer", help="tokenizer the model was trained with (default: the model's own)")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="accept a --source-tokenizer whose special ids or vocabulary differ from the model's own (default: refused)")
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
        if not set(get_method(args.method).candidates()) & entry["methods"]:
            raise MethodOptionError(
                f"--{field_name.replace('_', '-')} is an option of {', '.join(sorted(entry['methods']))}, "
                f"not of --method {args.method}."
            )
        options[field_name] = value
    return options


def _configure_output(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)
    transformers.utils.logging.set_verbosity_error()
    if quiet:
        # Every bar: hf_vocabswap's groups, the Hub's downloads, transformers' loading and saving.
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        transformers.utils.logging.disable_progress_bar()
        disable_progress_bars(None)


def corpus_argument(values: list[str] | None):
    """What ``--corpus`` gave, as a corpus: one path, or several paths (never taken as text samples,
    so a misspelt file among several is reported missing)."""
    if not values:
        return None
    return values[0] if len(values) == 1 else [Path(v) for v in values]


def cmd_transplant(args, table) -> int:
    """``hf-vocabswap transplant``: transplant, save the output folder, print the report."""
    corpus = corpus_argument(args.corpus)
    options = _method_options(args, table)
    # Claimed before the work: a second run into the same --out fails now, not after minutes.
    claim = claim_output(args.out, overwrite=args.overwrite)
    try:
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
            allow_mismatch=args.allow_mismatch,
            **options,
        )
        out = result.save_pretrained(args.out, claim=claim)
    finally:
        claim.release()
    print(result.report)
    print(f"saved to {out}")
    return 0


def cmd_train_tokenizer(args) -> int:
    """``hf-vocabswap train-tokenizer``: train a target tokenizer with the source's pipeline and save it."""
    out = Path(args.out)
    if out.exists() and not args.overwrite:
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
    """``hf-vocabswap methods``: every registered method, what it needs and its options."""
    for name in available_methods():
        cls = get_method(name)
        needs = " (needs --corpus)" if cls.needs_corpus else ""
        picks = f" Picks one of: {', '.join(cls.candidates())}; their options apply." if cls.candidates() != (name,) else ""
        print(f"{name}{needs}: {cls.summary}{picks}")
        for field_name, _, default, help_text in cls.config_class.option_fields():
            print(f"    --{field_name.replace('_', '-')} (default {default!r}): {help_text}")
    return 0


def cmd_evaluate(args) -> int:
    """``hf-vocabswap evaluate``: tokenizer statistics and held-out bits per character of a model."""
    results = evaluate_model(args.model, args.text, max_chars=args.max_chars, max_length=args.max_length, batch_size=args.batch_size)
    print(format_results(results) if not args.json else json.dumps(results, indent=1, default=str))
    return 0


def cmd_train(args) -> int:
    """``hf-vocabswap train``: continued pretraining; prints the summary."""
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
    """``hf-vocabswap push``: upload an output folder to the Hub in one commit."""
    info = push_folder(args.folder, args.repo_id, private=not args.public, revision=args.revision)
    print(f"pushed {args.folder} to {args.repo_id}: {getattr(info, 'commit_url', info)}")
    return 0


def cmd_quickstart(args) -> int:
    """``hf-vocabswap quickstart``: the embedded default (splade-tiny to Ukrainian), offline."""
    run_quickstart(out=Path(args.out), method=args.method, overwrite=args.overwrite, lapt_steps=args.lapt_steps, vocab_size=args.vocab_size)
    return 0


def cmd_demo(args) -> int:
    """``hf-vocabswap demo``: run the Gradio Space of this repository locally."""
    app = Path(__file__).resolve().parent.parent / "spaces" / "hf-vocabswap-demo" / "app.py"
    if not app.is_file():
        raise VocabSwapError(f"The demo app is not at {app}; run it from a clone of the repository.")
    sys.argv = [str(app)]
    runpy.run_path(str(app), run_name="__main__")
    return 0


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The argument parser of every subcommand, and the method-option table its flags came from."""
    table = _method_option_table()
    parser = argparse.ArgumentParser(prog="hf-vocabswap", description="Swap a model's tokenizer and initialize the new embeddings.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
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


# Errors that mean the input was wrong (exit 2, like argparse's usage errors); others are failures (exit 1).
USAGE_ERRORS = (
    MethodOptionError, UnknownMethodError, PathNotFoundError, OutputExistsError, OutputPathError, CorpusError, TokenizerError,
    ModelError, MismatchError, NoOverlapError, ResourceError,
)


def main(argv: list[str] | None = None) -> int:
    """Run the ``hf-vocabswap`` command; returns its exit status.

    Returns:
        0 on success; 2 for a usage error (a bad option, path, corpus, tokenizer or output
        folder: one ``error:`` line saying what is wrong and what to do); 1 for a failure (the
        Hub, the disk, an unexpected error: one line, the traceback with ``--debug``); 130 after
        Ctrl-C or SIGTERM (what was being written is removed).
    """
    parser, table = build_parser()
    args = parser.parse_args(argv)
    _configure_output(args.quiet)
    handlers = {
        "transplant": lambda a: cmd_transplant(a, table),
        "methods": lambda a: cmd_methods(a, table),
        "train-tokenizer": cmd_train_tokenizer,
        "evaluate": cmd_evaluate,
        "train": cmd_train,
        "push": cmd_push,
        "quickstart": cmd_quickstart,
        "demo": cmd_demo,
    }
    try:
        with terminate_as_interrupt():
            return handlers[args.command](args)
    except KeyboardInterrupt:
        print("interrupted: nothing was left half-written", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line for the user, the traceback with --debug
        if args.debug:
            raise
        if isinstance(e, VocabSwapError):
            print(f"error: {e}", file=sys.stderr)
            return 2 if isinstance(e, USAGE_ERRORS) else 1
        print(f"error: {type(e).__name__}: {e} (run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
