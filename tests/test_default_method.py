"""method="auto" (the default) follows the committed benchmarks: the calibrated hybrid for causal
and masked LMs given a corpus, FVT otherwise."""

from __future__ import annotations

import torch

from hf_vocabswap import available_methods, get_method
from hf_vocabswap.surgery import model_kind
from hf_vocabswap.transplant import DEFAULT_METHOD, transplant_tokenizer

from .families import FAMILY_BY_NAME, tokenizer_pair


def test_default_is_auto_and_auto_is_a_registered_method():
    assert DEFAULT_METHOD == "auto"
    assert "auto" in available_methods()
    assert get_method("auto").candidates() == ("hybrid", "fvt")


def resolve_auto_method(model, corpus):
    kind = model if isinstance(model, str) else model_kind(model)
    method, reason = get_method("auto").resolve(model_kind=kind, has_corpus=corpus is not None)
    return method.name, reason


def test_auto_resolution_by_model_kind():
    torch.manual_seed(0)
    bert_src, bert_tgt = tokenizer_pair("wordpiece")
    bert = FAMILY_BY_NAME["bert"].build(len(bert_src), bert_src)
    gpt_src, gpt_tgt = tokenizer_pair("gpt2_bpe")
    gpt = FAMILY_BY_NAME["gpt2"].build(len(gpt_src), gpt_src)
    texts = ["Привіт, світе! Як справи сьогодні?"] * 20
    assert resolve_auto_method(bert, texts)[0] == "hybrid"
    assert resolve_auto_method(bert, None)[0] == "fvt"
    assert resolve_auto_method(gpt, texts)[0] == "hybrid"
    assert resolve_auto_method(gpt, None)[0] == "fvt"
    assert resolve_auto_method("causal", texts)[0] == "hybrid"  # a GGUF source loads as a causal LM
    t5_src, _ = tokenizer_pair("t5_unigram")
    t5 = FAMILY_BY_NAME["t5"].build(len(t5_src), t5_src)
    assert resolve_auto_method(t5, texts)[0] == "fvt"
    result = transplant_tokenizer(gpt, gpt_tgt, source_tokenizer=gpt_src, corpus=texts, threads=1, progress=False)
    assert result.report.method == "hybrid" and "causal" in result.report.method_stats["auto"]
    assert result.report.method_stats["calibration"]["calibrated"] > 0
    result = transplant_tokenizer(bert, bert_tgt, source_tokenizer=bert_src)
    assert result.report.method == "fvt" and "no corpus" in result.report.method_stats["auto"]
