"""The ``hf-vocabswap`` command.

Method options are generated from each registered method's config dataclass, so a new
method's options appear here without editing this file.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import logging
import os
import runpy
import shutil
import sys
import textwrap
import typing
from pathlib import Path

import transformers

from .version import __version__
from .card import update_card_with_evaluation, validate_language
from .corpus import Corpus, HubDatasetSpec, first_chars
from .errors import (
    CardError,
    CorpusError,
    MethodOptionError,
    MismatchError,
    ModelError,
    NoOverlapError,
    NotAnOutputFolderError,
    NotLoggedInError,
    OptionValueError,
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
from .record import CARD_FILE, read_record
from .space import push_space, space_app_dir
from .summary import report_summary
from .tokenizer_training import check_trained_tokenizer, train_tokenizer
from .frontier import FrontierConfig, choice_lines, frontier, markdown_table
from .distill import DistillConfig
from .train import TrainConfig, continue_pretraining
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


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default (unless its help already says it), e.g. ``(default: 42)``."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or action.default is argparse.SUPPRESS or not action.option_strings or action.required:
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):  # noqa: SLF001 - argparse's own classes
            return f"{text} (default: {'on' if action.default else 'off'})"
        return f"{text} (default: {'none' if action.default is None else '%(default)s'})"


def library_default(function, name: str):
    """The default of parameter ``name`` of a library function: the CLI shows and uses the same one."""
    return inspect.signature(function).parameters[name].default


def _add_common_transplant_args(p: argparse.ArgumentParser) -> None:
    d = lambda name: library_default(transplant_tokenizer, name)  # noqa: E731
    p.add_argument("--method", default=d("method"), help=f"initialization method (default: {d('method')}; see `hf-vocabswap methods`)")
    p.add_argument("--corpus", nargs="+", help="target-language text: file(s) or a folder of .txt files, or a Hub dataset "
                   "dataset:NAME[:CONFIG][@SPLIT] (streamed), for methods that learn from text and for calibration")
    p.add_argument("--text-column", default="text", help="the text column of a dataset: corpus")
    p.add_argument("--corpus-max-chars", type=int, help="use the corpus only up to this many characters (whole samples; default: all of it)")
    p.add_argument("--language", help="ISO 639-1 or 639-3 code of the target language (e.g. uk), for the model card's language: field")
    p.add_argument("--seed", type=int, default=d("seed"), help="seeds every random choice (same inputs and seed: same weights)")
    p.add_argument("--source-tokenizer", help="tokenizer the model was trained with (default: the model's own)")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="accept a --source-tokenizer whose special ids or vocabulary differ from the model's own (default: refused)")
    p.add_argument("--task", choices=["masked", "causal", "seq2seq", "base"], default=d("task"), help="force the model head to load")
    p.add_argument("--pad-to-multiple-of", type=int, default=d("pad_to_multiple_of"), help="round embedding rows up to a multiple of N")
    p.add_argument("--device", default=d("device"), help="where methods run their maths (cpu, cuda)")


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
            metavar=field_name.upper(),
            type=entry["type"],
            default=None,
            help=f"[{', '.join(sorted(entry['methods']))}] {entry['help']}"
            + ("" if "default" in entry["help"].lower() else f" (default: {entry['default']})"),
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


def corpus_from_args(values: list[str] | None, text_column: str = "text", max_chars: int | None = None) -> Corpus | None:
    """The corpus ``--corpus`` names: paths (each must exist) or one ``dataset:NAME[:CONFIG][@SPLIT]``.

    Raises:
        CorpusError: a path does not exist, a dataset id is mixed with other corpora, or the
            dataset cannot be opened (or has no ``text_column``: the message lists its columns).
    """
    if not values:
        return None
    datasets = [v for v in values if HubDatasetSpec.parse(v) is not None and not Path(v).exists()]
    if datasets and len(values) > 1:
        raise CorpusError(f"--corpus takes one Hub dataset ({datasets[0]}) or text files, not both or several datasets.")
    missing = [v for v in values if v not in datasets and not Path(v).exists()]
    if missing:
        raise CorpusError(f"Corpus file {missing[0]!r} does not exist. Pass existing text files or folders, or dataset:NAME for a Hub dataset.")
    source = values[0] if len(values) == 1 else [Path(v) for v in values]
    return Corpus(source, text_column=text_column, max_chars=max_chars)


def cmd_transplant(args, table) -> int:
    """``hf-vocabswap transplant``: transplant, save the output folder, print a summary of the report."""
    language = validate_language(args.language)
    corpus = corpus_from_args(args.corpus, args.text_column, args.corpus_max_chars)
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
            language=language,
            romanize=args.romanize,
            **options,
        )
        out = result.save_pretrained(args.out, claim=claim)
    finally:
        claim.release()
    print(report_summary(result.report))
    print(f"saved to {out}")
    return 0


def cmd_train_tokenizer(args) -> int:
    """``hf-vocabswap train-tokenizer``: train a target tokenizer with the source's pipeline and save it."""
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise OutputExistsError(out)
    heldout = _heldout_lines(args.heldout) if args.heldout else None  # read first: a bad --heldout must not leave a saved tokenizer
    source = load_tokenizer(args.source_tokenizer)
    corpus = args.corpus[0] if len(args.corpus) == 1 else args.corpus
    tokenizer = train_tokenizer(source, corpus, args.vocab_size, add_tokens=args.add_tokens, trim=args.trim)
    tokenizer.save_pretrained(out)
    if args.add_tokens is None and not args.trim:
        print(f"trained a {len(tokenizer)}-token tokenizer with the pipeline of {args.source_tokenizer}; saved to {out}")
    else:
        what = "trimmed and expanded" if args.trim and args.add_tokens else "trimmed" if args.trim else "expanded"
        print(f"{what} {args.source_tokenizer} ({len(source)} tokens) to {len(tokenizer)} tokens; saved to {out}")
    if heldout is not None:
        print(json.dumps(check_trained_tokenizer(tokenizer, heldout), indent=1))
    return 0


def _heldout_lines(path) -> list[str]:
    """The non-empty lines of a held-out text file, refused before any work when it cannot be used."""
    texts = [t for t in first_chars(Corpus.coerce(path), None) if t.strip()]
    if not texts:
        raise CorpusError(f"the held-out text {str(path)!r} is empty: give a file with target-language text.")
    return texts


def cmd_methods(args, table) -> int:
    """``hf-vocabswap methods``: every registered method, what it needs and its options, in lines that fit a terminal."""
    width = min(shutil.get_terminal_size((100, 24)).columns, 120)
    for name in available_methods():
        cls = get_method(name)
        needs = " (needs --corpus)" if cls.needs_corpus else ""
        picks = ""
        if cls.candidates() != (name,):
            picks = (f" It picks one of {', '.join(cls.candidates())} (the choice and its reason are recorded in "
                     "vocabswap.json); the options of the one it picks apply.")
        print(textwrap.fill(f"{name}{needs}: {cls.summary}{picks}", width=width, subsequent_indent="    "))
        for field_name, _, default, help_text in cls.config_class.option_fields():
            line = f"--{field_name.replace('_', '-')} (default {default!r}): {help_text}"
            print(textwrap.fill(line, width=width, initial_indent="    ", subsequent_indent="        "))
    return 0


def _check_card_folder(folder) -> None:
    """``--update-card`` needs an output folder with a record and a card; checked before evaluating."""
    read_record(folder)
    if not (Path(folder) / CARD_FILE).is_file():
        raise NotAnOutputFolderError(folder, [CARD_FILE], f"it has no model card {CARD_FILE} for --update-card to update")


def _source_results(args, record, texts) -> dict | None:
    """The "before" numbers of --update-card: the recorded (or given) source on the same text, or None."""
    source = args.source or record.provenance.get("source")
    if not source or str(source).startswith("<"):
        logger.warning("the source model is not recorded by name; the card gets the adapted model's numbers only")
        return None
    try:
        return evaluate_model(source, texts, max_length=args.max_length, batch_size=args.batch_size)
    except (VocabSwapError, OSError, ValueError) as e:
        logger.warning("cannot evaluate the source model %s (%s); pass --source to name it. The card gets the adapted model's numbers only.", source, e)
        return None


def cmd_evaluate(args) -> int:
    """``hf-vocabswap evaluate``: tokenizer statistics and held-out bits per character of a model;
    with ``--update-card`` also of its source, written into the folder's model card."""
    if args.update_card:
        _check_card_folder(args.model)
    texts = corpus_from_args([args.text], args.text_column, args.max_chars)
    results = evaluate_model(args.model, texts, max_length=args.max_length, batch_size=args.batch_size)
    shown = [results]
    if args.update_card:
        before = _source_results(args, read_record(args.model), texts)
        path = update_card_with_evaluation(args.model, results, before, dataset_sha256=texts.content_hash())
        shown = ([before] if before else []) + [results]
        logger.info("updated %s", path)
    print(format_results(shown) if not args.json else json.dumps(shown if len(shown) > 1 else results, indent=1, default=str))
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
        **_teacher_args(args),
    )
    print(json.dumps(summary, indent=1, default=str))
    return 0


def _teacher_args(args) -> dict:
    """``continue_pretraining``'s teacher keywords from ``--teacher``, ``--teacher-tokenizer`` and the distillation options."""
    if not args.teacher:
        return {}
    values = {f.name: getattr(args, f"cfg_{f.name}") for f in dataclasses.fields(DistillConfig)}
    return {"teacher": True if args.teacher == "source" else args.teacher, "teacher_tokenizer": args.teacher_tokenizer,
            "distill": DistillConfig(**values)}


def cmd_frontier(args) -> int:
    """``hf-vocabswap frontier``: measure every candidate vocabulary, print the table and which point to choose."""
    corpus = corpus_from_args(args.corpus, args.text_column)
    heldout = corpus_from_args([args.heldout], args.text_column)
    values = {f.name: getattr(args, f"cfg_{f.name}") for f in dataclasses.fields(FrontierConfig) if hasattr(args, f"cfg_{f.name}")}
    config = FrontierConfig(**values, progress=not args.quiet)
    rows = frontier(args.source, corpus, heldout, output_dir=args.out, config=config, overwrite=args.overwrite,
                    source_tokenizer=args.source_tokenizer)
    print(markdown_table(rows))
    print("Which point to choose:\n" + "\n".join(choice_lines(rows)))
    print(f"saved to {args.out} (frontier.json, frontier.md, frontier.png, tokenizers/<candidate>)")
    return 0


def add_config_options(p: argparse.ArgumentParser, cls, *, skip=(), title: str = "options", prefix: str = "") -> None:
    """One ``--<prefix><field>`` flag per field of a config dataclass, with its type, default and help (dest ``cfg_<field>``)."""
    group = p.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag, annotation = "--" + prefix + f.name.replace("_", "-"), hints[f.name]
        kwargs = {"dest": f"cfg_{f.name}", "default": f.default_factory() if f.default is dataclasses.MISSING else f.default,
                  "help": f.metadata.get("help", "")}
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(annotation) is tuple:
            kwargs.update(nargs="*", type=cli_type(typing.get_args(annotation)[0]), metavar="N")
        else:
            kwargs.update(type=cli_type(annotation), metavar=f.name.upper())
        group.add_argument(flag, **kwargs)


def _frontier_parser(sub) -> None:
    p = sub.add_parser("frontier", help="measure every vocabulary between trim and replacement (tokens per word, parameters, "
                       "zero-shot bits per character) and say which to choose", formatter_class=_HelpFormatter)
    p.add_argument("source", help="model: Hub id, folder or .gguf file")
    p.add_argument("--corpus", nargs="+", required=True, help="target-language training text: file(s), a folder of .txt files, "
                   "or dataset:NAME[:CONFIG][@SPLIT]")
    p.add_argument("--heldout", required=True, help="held-out target-language text (a file or dataset:NAME...), never the training text")
    p.add_argument("--out", required=True, help="output folder: frontier.json, frontier.md, frontier.png and each candidate's tokenizer")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier frontier folder")
    p.add_argument("--text-column", default="text", help="the text column of a dataset: corpus")
    p.add_argument("--source-tokenizer", help="tokenizer the model was trained with (default: the model's own)")
    add_config_options(p, FrontierConfig, skip=("progress",), title="frontier options")


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
    """``hf-vocabswap demo``: run the Gradio demo here (``--port``, ``--host``, ``--adapted``, ``--source``
    go to the app), or with ``--push OWNER/NAME`` create or update a Space of it on the Hub."""
    if args.push:
        info = push_space(args.push, adapted=args.adapted, source=args.source, private=args.private, from_pypi=args.from_pypi)
        print(f"pushed the demo Space {args.push}: {getattr(info, 'commit_url', info)}")
        return 0
    app = space_app_dir() / "app.py"
    argv = [f"--{name}={value}" for name in ("source", "adapted", "host", "port") if (value := getattr(args, name)) is not None]
    namespace = runpy.run_path(str(app), run_name="hf_vocabswap_demo_app")
    namespace["main"](argv)
    return 0


def _transplant_parser(sub, table) -> None:
    p = sub.add_parser("transplant", help="swap the vocabulary of a model and initialize the new embeddings", formatter_class=_HelpFormatter)
    p.add_argument("source", help="model: Hub id, local folder or .gguf file")
    p.add_argument("target_tokenizer", help="target tokenizer: Hub id or folder")
    p.add_argument("--out", required=True, help="output folder (safetensors, tokenizer, record, model card)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--low-memory", action=argparse.BooleanOptionalAction, default=library_default(transplant_tokenizer, "low_memory"),
                   help="load only the vocabulary tensors and stream the other weights (default: for sharded safetensors)")
    p.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=library_default(transplant_tokenizer, "calibrate"),
                   help="shift the new tokens' output scores so the model predicts each as often as the corpus uses it "
                   "(causal, masked and seq2seq LMs; needs --corpus; default: on for hybrid, off for the other methods)")
    p.add_argument("--romanize", action=argparse.BooleanOptionalAction, default=library_default(transplant_tokenizer, "romanize"),
                   help="split new tokens in scripts the source covers poorly in their romanized form (uroman; "
                   "pip install 'hf-vocabswap[romanize]') and use romanized matches as extra anchors (default: %(default)s)")
    _add_common_transplant_args(p)
    _add_method_options(p, table)


def _train_parsers(sub) -> None:
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

    d = lambda name: library_default(TrainConfig, name)  # noqa: E731
    p = sub.add_parser("train", help="continued pretraining (LAPT) on target-language text", formatter_class=_HelpFormatter)
    p.add_argument("model", help="model folder (an hf-vocabswap output or any Hugging Face model folder) or Hub id")
    p.add_argument("--text", required=True, help="training text file")
    p.add_argument("--eval-text", help="held-out text file, evaluated during training (default: none)")
    p.add_argument("--out", required=True, help="output folder: the trained model, its record, card and lapt_history.json")
    p.add_argument("--steps", type=int, default=d("max_steps"), help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=d("batch_size"), help="blocks per step")
    p.add_argument("--lr", type=float, default=d("learning_rate"), help="peak learning rate")
    p.add_argument("--warmup-steps", type=int, default=d("warmup_steps"), help="linear warm-up steps")
    p.add_argument("--seq-length", type=int, default=d("seq_length"), help="tokens per training block")
    p.add_argument("--eval-steps", type=int, default=d("eval_steps"), help="evaluate the held-out text every N steps")
    p.add_argument("--embeddings-only-steps", type=int, default=d("embeddings_only_steps"),
                   help="train only embeddings and head first (Downey et al.)")
    p.add_argument("--seed", type=int, default=d("seed"), help="random seed")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out (default: off)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (default: off)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder (default: off)")
    p.add_argument("--load-best", action="store_true",
                   help="keep the checkpoint with the best held-out bits per character (default: off)")
    p.add_argument("--early-stopping-patience", type=int, help="stop after N evaluations without improvement (default: off)")
    p.add_argument("--teacher", help="distill from this causal LM across tokenizers (ALM): a Hub id, folder or .gguf file, "
                   "or 'source' for the source model recorded in MODEL's vocabswap.json (default: no distillation)")
    p.add_argument("--teacher-tokenizer", help="the teacher's tokenizer (default: the teacher's own)")
    add_config_options(p, DistillConfig, prefix="distill-", title="distillation options (with --teacher)")


def _evaluate_parser(sub) -> None:
    d = lambda name: library_default(evaluate_model, name)  # noqa: E731
    p = sub.add_parser("evaluate", help="tokenizer statistics and held-out bits per character", formatter_class=_HelpFormatter)
    p.add_argument("model", help="model folder or Hub id (its own tokenizer is used)")
    p.add_argument("--text", required=True, help="held-out text: a file, a folder of .txt files or dataset:NAME[:CONFIG][@SPLIT]")
    p.add_argument("--text-column", default="text", help="the text column of a dataset: text")
    p.add_argument("--max-chars", type=int, default=d("max_chars"), help="use whole samples until this many characters (default: all)")
    p.add_argument("--max-length", type=int, default=d("max_length"), help="tokens per scored window")
    p.add_argument("--batch-size", type=int, default=d("batch_size"), help="windows per forward pass")
    p.add_argument("--update-card", action="store_true",
                   help="also evaluate the source model and write both into the folder's model card (model-index and an Evaluation section)")
    p.add_argument("--source", help="with --update-card: the source model to compare with (default: the one in vocabswap.json)")
    p.add_argument("--json", action="store_true", help="print the full results as JSON instead of a table")


def _push_parser(sub) -> None:
    private = library_default(push_folder, "private")
    p = sub.add_parser("push", help="upload an adapted folder to the Hub in one commit (private by default)", formatter_class=_HelpFormatter)
    p.add_argument("folder", help="an output folder of hf-vocabswap (vocabswap.json, weights, tokenizer, card)")
    p.add_argument("repo_id", help="owner/name of the model repo, or name for one of yours")
    p.add_argument("--public", action="store_true", help=f"create the repo public (default: {'private' if private else 'public'})")
    p.add_argument("--revision", help="the branch to commit to (default: main)")


def _quickstart_parser(sub) -> None:
    d = lambda name: library_default(run_quickstart, name)  # noqa: E731
    p = sub.add_parser("quickstart", help="the embedded default: real model and Ukrainian text, no Hub access", formatter_class=_HelpFormatter)
    p.add_argument("--out", default="vocabswap-quickstart", help="output folder of the adapted model")
    p.add_argument("--method", default=d("method"), help=f"initialization method (default: {d('method')}, the calibrated hybrid here)")
    p.add_argument("--vocab-size", type=int, default=d("vocab_size"), help="tokens of the Ukrainian tokenizer to train")
    p.add_argument("--lapt-steps", type=int, default=d("lapt_steps"), help="also run a short continued pretraining of this many steps")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def _demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the Gradio demo locally, or push it to a Hub Space (--push)", formatter_class=_HelpFormatter)
    p.add_argument("--adapted", help="adapted model the demo shows at start: folder or Hub id (default: VOCABSWAP_ADAPTED, "
                   "a Hub model online, the embedded default offline)")
    p.add_argument("--source", help="source model shown beside it (default: the adapted model's recorded source)")
    p.add_argument("--host", help="address to serve on (default: 127.0.0.1, or GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, help="port to serve on (default: 7860, or GRADIO_SERVER_PORT)")
    p.add_argument("--push", metavar="OWNER/NAME", help="create or update this Space on the Hub in one commit (app, README, "
                   "requirements.txt, a wheel of this hf_vocabswap) instead of running the demo (default: run it here)")
    p.add_argument("--private", action="store_true", help="with --push: create the Space private (its build then needs --from-pypi)")
    p.add_argument("--from-pypi", action="store_true",
                   help=f"with --push: install hf-vocabswap=={__version__} from PyPI instead of uploading a wheel")


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The argument parser of every subcommand, and the method-option table its flags came from."""
    table = _method_option_table()
    parser = argparse.ArgumentParser(prog="hf-vocabswap", description="Swap a model's tokenizer and initialize the new embeddings.",
                                     formatter_class=_HelpFormatter)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    parser.add_argument("--version", action="version", version=f"hf-vocabswap {__version__}", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    _transplant_parser(sub, table)
    _train_parsers(sub)
    sub.add_parser("methods", help="list registered methods and their options", formatter_class=_HelpFormatter)
    _evaluate_parser(sub)
    _push_parser(sub)
    _quickstart_parser(sub)
    _demo_parser(sub)
    _frontier_parser(sub)
    return parser, table


# Errors that mean the input was wrong (exit 2, like argparse's usage errors); others are failures (exit 1).
USAGE_ERRORS = (
    MethodOptionError, UnknownMethodError, PathNotFoundError, OutputExistsError, OutputPathError, CorpusError, TokenizerError,
    ModelError, MismatchError, NoOverlapError, ResourceError, CardError, NotAnOutputFolderError,
    NotLoggedInError, OptionValueError,
)


def _forget_the_interrupt() -> None:
    """Keep the exit status 130 after a handled interrupt.

    CPython remembers a KeyboardInterrupt raised while ``exec`` runs a string (dataclasses and
    torch build code that way, so a Ctrl-C or SIGTERM during an import can land there) and, at
    the exit of ``python -m``, kills the process with SIGINT although the interrupt was handled.
    Evaluating any string clears that flag.
    """
    exec("None")  # noqa: S102 - a constant: only the side effect on the interpreter's flag matters


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
        "frontier": cmd_frontier,
        "push": cmd_push,
        "quickstart": cmd_quickstart,
        "demo": cmd_demo,
    }
    try:
        with terminate_as_interrupt():
            return handlers[args.command](args)
    except KeyboardInterrupt:
        print("interrupted: nothing was left half-written", file=sys.stderr)
        _forget_the_interrupt()
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
