"""VocabSwapAutoModel* classes: transplant while loading, cached on disk by every input."""

from __future__ import annotations

import json
import os

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM, AutoTokenizer

import hf_vocabswap.transplant
from hf_vocabswap import assets
from hf_vocabswap.wrappers import (
    VocabSwapAutoModel,
    VocabSwapAutoModelForCausalLM,
    VocabSwapAutoModelForMaskedLM,
    VocabSwapAutoModelForSeq2SeqLM,
    cached_transplant,
    default_cache_dir,
)
from hf_vocabswap.errors import MethodOptionError
from hf_vocabswap.record import RECORD_FILE

from .families import FAMILY_BY_NAME, tokenizer_pair


@pytest.fixture(scope="module")
def target_tokenizer(splade_path):
    src = AutoTokenizer.from_pretrained(splade_path)
    return src.train_new_from_iterator(assets.ukrainian_texts("train", max_chars=60_000), 1000)


@pytest.fixture
def calls(monkeypatch):
    """Counts the transplants actually computed."""
    count = []
    real = hf_vocabswap.transplant.transplant_tokenizer

    def counting(*args, **kwargs):
        count.append(kwargs.get("task"))
        return real(*args, **kwargs)

    monkeypatch.setattr(hf_vocabswap.transplant, "transplant_tokenizer", counting)
    return count


def _logits(model, tokenizer, texts):
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model.eval()(**batch).logits


def test_second_load_comes_from_the_cache_and_a_changed_input_recomputes(splade_path, target_tokenizer, tmp_path, calls):
    texts = ["Київ — столиця України.", "Добрий день"]
    cache = tmp_path / "cache"

    first, tok = VocabSwapAutoModelForMaskedLM.from_pretrained(str(splade_path), target_tokenizer, "fvt", cache_dir=cache, return_tokenizer=True)
    assert len(calls) == 1 and calls[0] == "masked"
    assert type(first).__name__ == "BertForMaskedLM" and len(tok) == len(target_tokenizer)

    second = VocabSwapAutoModelForMaskedLM.from_pretrained(str(splade_path), target_tokenizer, "fvt", cache_dir=cache)
    assert len(calls) == 1  # nothing recomputed
    assert second.name_or_path == first.name_or_path
    assert torch.equal(_logits(first, tok, texts), _logits(second, tok, texts))

    # Defaults spelled out are the same key.
    VocabSwapAutoModelForMaskedLM.from_pretrained(str(splade_path), target_tokenizer, "fvt", cache_dir=cache, output_rule="mean")
    assert len(calls) == 1

    # A changed option, seed, method or corpus recomputes, each once.
    for kwargs in ({"output_rule": "first"}, {"seed": 7}, {"corpus": ["перший текст"]}, {"corpus": ["другий текст"]}):
        VocabSwapAutoModelForMaskedLM.from_pretrained(str(splade_path), target_tokenizer, "fvt", cache_dir=cache, **kwargs)
    VocabSwapAutoModelForMaskedLM.from_pretrained(str(splade_path), target_tokenizer, "overlap", cache_dir=cache)
    assert len(calls) == 6
    VocabSwapAutoModelForMaskedLM.from_pretrained(str(splade_path), target_tokenizer, "fvt", cache_dir=cache, corpus=["другий текст"])
    assert len(calls) == 6

    folders = sorted(p for p in cache.iterdir() if p.is_dir())
    assert len(folders) == 6
    key = json.loads((cache / f"{first.name_or_path.split(os.sep)[-1]}.key.json").read_text())
    assert key["method"] == "fvt" and key["options"] == {"output_rule": "mean"} and key["seed"] == 42
    assert key["source"]["kind"] == "folder" and key["task"] == "masked"


def test_cached_folder_loads_with_stock_auto_classes(splade_path, target_tokenizer, tmp_path, calls):
    folder = cached_transplant(str(splade_path), target_tokenizer, "fvt", task="masked", cache_dir=tmp_path)
    assert (folder / RECORD_FILE).is_file() and (folder / "README.md").is_file()
    stock = AutoModelForMaskedLM.from_pretrained(folder)
    stock_tok = AutoTokenizer.from_pretrained(folder)
    wrapped, tok = VocabSwapAutoModelForMaskedLM.from_pretrained(str(splade_path), target_tokenizer, cache_dir=tmp_path, return_tokenizer=True)
    assert len(calls) == 1
    assert stock_tok.get_vocab() == tok.get_vocab() == target_tokenizer.get_vocab()
    assert torch.equal(_logits(stock, stock_tok, ["Добрий день"]), _logits(wrapped, tok, ["Добрий день"]))


def test_cache_dir_comes_from_the_environment(splade_path, target_tokenizer, tmp_path, monkeypatch, calls):
    monkeypatch.setenv("HF_VOCABSWAP_CACHE", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache" / "transplants"
    model = VocabSwapAutoModelForMaskedLM.from_pretrained(str(splade_path), target_tokenizer)
    assert str(model.name_or_path).startswith(str(tmp_path / "env-cache" / "transplants"))
    monkeypatch.delenv("HF_VOCABSWAP_CACHE")
    assert default_cache_dir() == __import__("pathlib").Path.home() / ".cache" / "hf_vocabswap" / "transplants"


def test_changed_source_files_recompute(splade_path, target_tokenizer, tmp_path, calls):
    import shutil

    source = tmp_path / "source"
    shutil.copytree(splade_path, source)
    VocabSwapAutoModelForMaskedLM.from_pretrained(str(source), target_tokenizer, cache_dir=tmp_path / "c")
    config = json.loads((source / "config.json").read_text())
    config["layer_norm_eps"] = 1e-6
    (source / "config.json").write_text(json.dumps(config))
    VocabSwapAutoModelForMaskedLM.from_pretrained(str(source), target_tokenizer, cache_dir=tmp_path / "c")
    assert len(calls) == 2


def test_force_recomputes_and_bad_options_fail_before_any_work(splade_path, target_tokenizer, tmp_path, calls):
    VocabSwapAutoModelForMaskedLM.from_pretrained(str(splade_path), target_tokenizer, cache_dir=tmp_path)
    VocabSwapAutoModelForMaskedLM.from_pretrained(str(splade_path), target_tokenizer, cache_dir=tmp_path, force=True)
    assert len(calls) == 2
    with pytest.raises(MethodOptionError, match="no_such_option"):
        VocabSwapAutoModelForMaskedLM.from_pretrained(str(splade_path), target_tokenizer, cache_dir=tmp_path, no_such_option=1)
    assert len(calls) == 2


def test_model_objects_are_not_keyable(splade_path, target_tokenizer, tmp_path):
    model = AutoModelForMaskedLM.from_pretrained(splade_path)
    with pytest.raises(TypeError, match="Hub id, a model folder or a .gguf file"):
        VocabSwapAutoModelForMaskedLM.from_pretrained(model, target_tokenizer, cache_dir=tmp_path)
    with pytest.raises(OSError, match="from_pretrained"):
        VocabSwapAutoModelForMaskedLM()


def test_base_model_wrapper(splade_path, target_tokenizer, tmp_path, calls):
    model = VocabSwapAutoModel.from_pretrained(str(splade_path), target_tokenizer, cache_dir=tmp_path)
    assert calls == ["base"] and type(model).__name__ == "BertModel"
    assert model.get_input_embeddings().weight.shape[0] == len(target_tokenizer)
    again = AutoModel.from_pretrained(model.name_or_path)
    assert torch.equal(again.get_input_embeddings().weight, model.get_input_embeddings().weight)


@pytest.mark.parametrize(
    "wrapper, stock, family",
    [(VocabSwapAutoModelForCausalLM, AutoModelForCausalLM, "gpt2"), (VocabSwapAutoModelForSeq2SeqLM, AutoModelForSeq2SeqLM, "bart")],
)
def test_generative_wrappers(wrapper, stock, family, tmp_path, calls):
    fam = FAMILY_BY_NAME[family]
    src_tok, tgt_tok = tokenizer_pair(fam.tokenizer)
    torch.manual_seed(0)
    source = tmp_path / "source"
    fam.build(len(src_tok), src_tok).save_pretrained(source)
    src_tok.save_pretrained(source)

    model, tok = wrapper.from_pretrained(str(source), tgt_tok, cache_dir=tmp_path / "c", return_tokenizer=True)
    again = wrapper.from_pretrained(str(source), tgt_tok, cache_dir=tmp_path / "c")
    assert calls == [wrapper.task]
    assert model.config.vocab_size >= len(tgt_tok) == len(tok)
    plain = stock.from_pretrained(model.name_or_path)
    ids = tok(["Добрий день"], return_tensors="pt")["input_ids"]
    kwargs = {"decoder_input_ids": ids} if family == "bart" else {}
    with torch.no_grad():
        assert torch.equal(plain.eval()(ids, **kwargs).logits, again.eval()(ids, **kwargs).logits)
