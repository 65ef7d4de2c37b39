"""The hf-vocabswap command, run in-process on the real splade-tiny model."""

from __future__ import annotations

import argparse
import functools
import json

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from hf_vocabswap import assets
from hf_vocabswap.cli import main
from hf_vocabswap.evaluate import evaluate_model
from hf_vocabswap.transplant import transplant_tokenizer


@pytest.fixture(scope="module")
def target_dir(tmp_path_factory, splade_path):
    src = AutoTokenizer.from_pretrained(splade_path)
    texts = assets.ukrainian_texts("train", max_chars=60_000)
    folder = tmp_path_factory.mktemp("tok") / "uk"
    src.train_new_from_iterator(texts, 3000).save_pretrained(folder)
    return folder


def test_transplant_command(splade_path, target_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["-q", "transplant", str(splade_path), str(target_dir), "--method", "fvt", "--output-rule", "mean", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "copied:" in printed and "combined:" in printed and str(out) in printed
    record = json.loads((out / "vocabswap.json").read_text())
    assert record["method"] == "fvt" and record["seed"] == 42
    assert sum(record["counts"].values()) == len(AutoTokenizer.from_pretrained(target_dir))
    assert record["provenance"]["source_sha256"]
    model = AutoModelForMaskedLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        assert torch.isfinite(model(**tok("Привіт, світе!", return_tensors="pt")).logits).all()
    # The folder exists now: a second run refuses and leaves it as it was.
    before = sorted(p.name for p in out.iterdir())
    assert main(["-q", "transplant", str(splade_path), str(target_dir), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before


def test_bad_method_and_foreign_option(splade_path, target_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["-q", "transplant", str(splade_path), str(target_dir), "--method", "nope", "--out", str(out)]) == 2
    assert "Unknown method 'nope'" in capsys.readouterr().err
    assert main(["-q", "transplant", str(splade_path), str(target_dir), "--method", "overlap", "--output-rule", "first", "--out", str(out)]) == 2
    assert "--output-rule is an option of fvt" in capsys.readouterr().err
    assert not out.exists()


def test_methods_command(capsys):
    assert main(["methods"]) == 0
    printed = capsys.readouterr().out
    for name in ("fvt", "overlap", "random", "mean", "focus"):
        assert f"{name}" in printed
    assert "--output-rule" in printed


def test_train_tokenizer_command(splade_path, tmp_path, capsys):
    corpus = assets.write_texts(assets.ukrainian_texts("train", max_chars=80_000), tmp_path / "uk.txt")
    heldout = assets.write_texts(assets.ukrainian_texts("heldout", max_chars=5_000), tmp_path / "heldout.txt")
    out = tmp_path / "tok"
    assert main(["-q", "train-tokenizer", str(splade_path), "--corpus", str(corpus), "--vocab-size", "2000", "--out", str(out), "--heldout", str(heldout)]) == 0
    printed = capsys.readouterr().out
    check = json.loads(printed[printed.index("{"):])
    assert check["pieces_crossing_word_boundary"] == 0
    tok = AutoTokenizer.from_pretrained(out)
    assert len(tok) == 2000 and tok.mask_token == "[MASK]"


# ------------------------------------------------------------------ conventions (issue 15)


def _failing(function, message):
    """A stand-in for ``function`` (same signature, which the parser reads defaults from) that fails the test."""
    @functools.wraps(function)
    def fail(*args, **kwargs):
        pytest.fail(message)
    return fail


def _subparsers():
    from hf_vocabswap.cli import build_parser

    parser, _ = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


@pytest.mark.parametrize("command", ["transplant", "evaluate", "train", "push", "methods", "quickstart", "demo"])
def test_every_option_has_help_and_shows_its_default(command):
    from hf_vocabswap.cli import _HelpFormatter

    _, commands = _subparsers()
    sub = commands[command]
    formatter = _HelpFormatter(prog="hf-vocabswap")
    for action in sub._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help, f"{command} {action.option_strings[0]} has no help text"
        assert action.required or "default" in formatter._get_help_string(action).lower(), (command, action.option_strings)
    text = sub.format_help()
    assert "(default: " in text or command == "methods"


def test_cli_defaults_are_the_library_defaults():
    import dataclasses
    import inspect

    from hf_vocabswap.evaluate import evaluate_model
    from hf_vocabswap.quickstart import run_quickstart
    from hf_vocabswap.distill import DistillConfig
    from hf_vocabswap.train import TrainConfig
    from hf_vocabswap.transplant import transplant_tokenizer

    _, commands = _subparsers()
    pairs = [("transplant", transplant_tokenizer, {"seed": "seed", "device": "device", "method": "method", "task": "task",
                                                   "low_memory": "low_memory", "calibrate": "calibrate"}),
             ("evaluate", evaluate_model, {"max_length": "max_length", "batch_size": "batch_size", "max_chars": "max_chars"}),
             ("quickstart", run_quickstart, {"method": "method", "vocab_size": "vocab_size", "lapt_steps": "lapt_steps"}),
             ("train", DistillConfig, {f"cfg_{f}": f for f in ("weight", "lm_weight", "temperature", "debias", "debias_threshold")}),
             ("train", TrainConfig, {"steps": "max_steps", "batch_size": "batch_size", "lr": "learning_rate",
                                              "warmup_steps": "warmup_steps", "seq_length": "seq_length",
                                              "eval_steps": "eval_steps", "seed": "seed",
                                              "embeddings_only_steps": "embeddings_only_steps"})]
    from hf_vocabswap.train import continue_pretraining

    assert not {f.name for f in dataclasses.fields(TrainConfig)} & set(inspect.signature(continue_pretraining).parameters), \
        "TrainConfig is the one source of training defaults"
    for command, function, names in pairs:
        defaults = {a.dest: a.default for a in commands[command]._actions}
        for dest, parameter in names.items():
            assert defaults[dest] == inspect.signature(function).parameters[parameter].default, (command, dest)


def test_version(capsys):
    from hf_vocabswap import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"hf-vocabswap {__version__}"


def test_methods_lists_auto_with_what_it_picks(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "90")
    assert main(["methods"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("auto: ") and "It picks one of hybrid, fvt" in printed
    assert max(len(line) for line in printed.splitlines()) <= 90


def test_transplant_language_report_fits_and_card(splade_path, target_dir, tmp_path, capsys, monkeypatch):
    from huggingface_hub import ModelCard

    from .conftest import local_paths_in

    monkeypatch.setenv("COLUMNS", "100")
    corpus = assets.write_texts(assets.ukrainian_texts("train", max_chars=40_000), tmp_path / "deep" / "uk.txt")
    out = tmp_path / "out"
    assert main(["-q", "transplant", str(splade_path), str(target_dir), "--method", "fvt", "--calibrate", "--corpus", str(corpus),
                 "--language", "uk", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert max(len(line) for line in printed.splitlines() if not line.startswith("saved to")) <= 100
    assert "options:           calibrate" not in printed and "options:" in printed and "calibration:" in printed
    assert "vocabswap.json" in printed
    text = (out / "README.md").read_text(encoding="utf-8")
    assert ModelCard(text).data.language == "uk" and local_paths_in(text) == []


def test_bad_language_and_missing_corpus_fail_before_any_work(splade_path, target_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("hf_vocabswap.cli.transplant_tokenizer", _failing(transplant_tokenizer, "checked before the transplant"))
    out = tmp_path / "out"
    assert main(["-q", "transplant", str(splade_path), str(target_dir), "--language", "Ukrainian", "--out", str(out)]) == 2
    assert "'Ukrainian' is not an ISO 639 language code" in capsys.readouterr().err
    assert main(["-q", "transplant", str(splade_path), str(target_dir), "--corpus", str(tmp_path / "nope.txt"), "--out", str(out)]) == 2
    assert "nope.txt' does not exist" in capsys.readouterr().err
    assert not out.exists()


def test_evaluate_update_card_writes_source_and_adapted_results(splade_path, target_dir, tmp_path, capsys):
    from huggingface_hub import ModelCard

    out = tmp_path / "out"
    assert main(["-q", "transplant", str(splade_path), str(target_dir), "--method", "fvt", "--out", str(out)]) == 0
    heldout = assets.write_texts(assets.ukrainian_texts("heldout", max_chars=4_000), tmp_path / "uk_heldout.txt")
    capsys.readouterr()
    assert main(["-q", "evaluate", str(out), "--text", str(heldout), "--update-card"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("| masked |") == 2  # the source and the adapted model
    card = ModelCard((out / "README.md").read_text(encoding="utf-8"))
    metrics = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert set(metrics) == {"bpc", "tokens_per_word", "source_bpc", "source_tokens_per_word"}
    assert metrics["tokens_per_word"] < metrics["source_tokens_per_word"]  # the Ukrainian tokenizer splits less
    assert {r.dataset_type for r in card.data.eval_results} == {"uk_heldout.txt"}
    assert "## Evaluation" in card.text


def test_update_card_on_a_folder_without_card_is_an_error(splade_path, target_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert main(["-q", "transplant", str(splade_path), str(target_dir), "--method", "fvt", "--out", str(out)]) == 0
    (out / "README.md").unlink()
    heldout = assets.write_texts(["Київ — столиця України."], tmp_path / "h.txt")
    monkeypatch.setattr("hf_vocabswap.cli.evaluate_model", _failing(evaluate_model, "checked before evaluating"))
    assert main(["-q", "evaluate", str(out), "--text", str(heldout), "--update-card"]) == 2
    assert "has no model card README.md for --update-card to update" in capsys.readouterr().err
