"""Bad input gets an error that names the problem and the fix, and writes nothing."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from transformers import AutoTokenizer

from hf_vocabswap import errors
from hf_vocabswap.corpus import Corpus
from hf_vocabswap.transplant import transplant_tokenizer

from .families import FAMILY_BY_NAME, build_tokenizer, tokenizer_pair


@pytest.fixture(scope="module")
def bert_case():
    family = FAMILY_BY_NAME["bert"]
    src, tgt = tokenizer_pair(family.tokenizer)
    torch.manual_seed(0)
    return family.build(len(src), src), src, tgt


def test_unknown_method(bert_case):
    model, src, tgt = bert_case
    with pytest.raises(errors.UnknownMethodError) as info:
        transplant_tokenizer(model, tgt, "fcous", source_tokenizer=src)
    assert "fcous" in str(info.value) and "fvt" in str(info.value)
    assert isinstance(info.value, KeyError)


def test_unknown_option(bert_case):
    model, src, tgt = bert_case
    with pytest.raises(errors.MethodOptionError, match="output_rule"):
        transplant_tokenizer(model, tgt, "fvt", source_tokenizer=src, top_k=3)


def test_corpus_missing_or_empty(bert_case, tmp_path):
    model, src, tgt = bert_case
    with pytest.raises(errors.CorpusError, match="corpus="):
        transplant_tokenizer(model, tgt, "focus", source_tokenizer=src)
    with pytest.raises(errors.CorpusError, match="no text"):
        transplant_tokenizer(model, tgt, "focus", source_tokenizer=src, corpus=["", "  "])
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(errors.CorpusError, match="no text"):
        Corpus(empty)
    with pytest.raises(errors.CorpusError, match="does not exist"):
        Corpus(tmp_path / "missing.txt")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Größe und Übermaß".encode("latin-1"))
    with pytest.raises(errors.CorpusError, match="UTF-8"):
        Corpus(latin1)


def test_missing_mask_token_for_mlm(bert_case):
    model, src, _ = bert_case
    texts = ["Привіт світ, як справи?"] * 50
    no_mask = build_tokenizer("gpt2_bpe", texts, 400)
    with pytest.raises(errors.MissingSpecialTokenError, match="mask") as info:
        transplant_tokenizer(model, no_mask, "fvt", source_tokenizer=src)
    assert "add_special_tokens" in str(info.value)


def test_model_without_input_embeddings():
    vit = transformers.ViTModel(transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, image_size=32, patch_size=16))
    src, tgt = tokenizer_pair("wordpiece")
    with pytest.raises(errors.ModelError, match="input embedding"):
        transplant_tokenizer(vit, tgt, "fvt", source_tokenizer=src)


def test_mismatched_tokenizer_and_model(bert_case, splade_path):
    model, src, tgt = bert_case
    small = FAMILY_BY_NAME["gpt2"].build(500, tgt)
    with pytest.raises(errors.MismatchError, match="do not belong together"):
        transplant_tokenizer(small, tgt, "fvt", source_tokenizer=AutoTokenizer.from_pretrained(splade_path))


def test_output_folder_exists_is_not_overwritten(bert_case, tmp_path):
    model, src, tgt = bert_case
    result = transplant_tokenizer(model, tgt, "overlap", source_tokenizer=src)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(errors.OutputExistsError, match="overwrite"):
        result.save_pretrained(out)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    # --overwrite never deletes a folder of the user's own files (issue: it removed thesis.tex)...
    with pytest.raises(errors.OutputExistsError, match="not an hf_vocabswap output"):
        result.save_pretrained(out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    # ...but replaces an hf_vocabswap output.
    (out / "keep.txt").unlink()
    result.save_pretrained(out, overwrite=True)  # an empty folder may be replaced too
    again = transplant_tokenizer(model, tgt, "random", source_tokenizer=src)
    again.save_pretrained(out, overwrite=True)
    assert json.loads((out / "vocabswap.json").read_text())["method"] == "random"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "no temporary or previous folders are left behind"


def test_failed_save_leaves_nothing(bert_case, tmp_path, monkeypatch):
    model, src, tgt = bert_case
    result = transplant_tokenizer(model, tgt, "overlap", source_tokenizer=src)

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(result.tokenizer, "save_pretrained", broken)
    with pytest.raises(OSError, match="disk full"):
        result.save_pretrained(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_errors_share_a_base():
    for name in ("UnknownMethodError", "CorpusError", "MissingSpecialTokenError", "ModelError", "MismatchError", "OutputExistsError", "NoOverlapError"):
        assert issubclass(getattr(errors, name), errors.VocabSwapError)
