"""The hf-vocabswap command, run in-process on the real splade-tiny model."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from hf_vocabswap import assets
from hf_vocabswap.cli import main


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
