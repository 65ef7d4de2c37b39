"""Every model family goes through transplant, save, stock reload and the exactness invariant."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import transformers

from hf_vocabswap.methods import COPIED, available_methods
from hf_vocabswap.transplant import transplant_tokenizer
from hf_vocabswap.vocab import MATCH_EXACT

from .families import FAMILIES, randomize_biases, tokenizer_pair


def _source_model(family, src_tok):
    torch.manual_seed(0)
    model = family.build(len(src_tok), src_tok)
    randomize_biases(model)
    return model


@pytest.fixture(scope="module", params=FAMILIES, ids=lambda f: f.name)
def case(request):
    family = request.param
    src_tok, tgt_tok = tokenizer_pair(family.tokenizer)
    model = _source_model(family, src_tok)
    result = transplant_tokenizer(model, tgt_tok, "fvt", source_tokenizer=src_tok)
    return family, src_tok, tgt_tok, model, result


def _forward(model, ids, family, **kw):
    ids = torch.as_tensor([ids])
    if family.kind == "seq2seq":
        return model(input_ids=ids, decoder_input_ids=ids, output_hidden_states=True, **kw)
    return model(input_ids=ids, output_hidden_states=True, **kw)


def _last_hidden(out, family):
    return out.decoder_hidden_states[-1] if family.kind == "seq2seq" else out.hidden_states[-1]


def test_every_registered_baseline_is_covered():
    # The family matrix runs FVT; the method matrix below runs every registered method.
    assert {"random", "mean", "overlap", "fvt"} <= set(available_methods())


def test_save_reload_forward(case, tmp_path):
    family, src_tok, tgt_tok, source, result = case
    folder = result.save_pretrained(tmp_path / "out")
    auto = getattr(transformers, family.auto_class)
    reloaded = auto.from_pretrained(folder).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    assert len(tok) == len(tgt_tok)
    assert reloaded.config.vocab_size == reloaded.get_input_embeddings().weight.shape[0] == len(tgt_tok)
    was_tied = source.get_output_embeddings().weight.data_ptr() == source.get_input_embeddings().weight.data_ptr()
    is_tied = reloaded.get_output_embeddings().weight.data_ptr() == reloaded.get_input_embeddings().weight.data_ptr()
    assert was_tied == is_tied
    text = "Сьогодні гарна погода, і ми йдемо гуляти."
    ids = tok(text)["input_ids"]
    assert all(0 <= i < len(tok) for i in ids)
    with torch.no_grad():
        a = _forward(result.model.eval(), ids, family).logits
        b = _forward(reloaded, ids, family).logits
    assert torch.equal(a, b), "reloaded logits differ from the in-memory model"
    # The loss path uses cached vocab sizes in some classes (Gemma-3): it must work too.
    with torch.no_grad():
        loss = _forward(reloaded, ids, family, labels=torch.as_tensor([ids])).loss
    assert torch.isfinite(loss)
    # Special ids in config point at the target tokenizer's special tokens.
    if reloaded.config.pad_token_id is not None and tok.pad_token_id is not None:
        assert reloaded.config.pad_token_id == tok.pad_token_id


def test_exactness_invariant(case):
    """Tokens in the overlap: hidden states and their logits equal the source model's."""
    family, src_tok, tgt_tok, source, result = case
    al = result.alignment
    copied = np.flatnonzero((result.plan.kinds == COPIED) & (al.match == MATCH_EXACT))
    assert len(copied) > 100, "the test tokenizers should share many tokens"
    rng = np.random.default_rng(0)
    body = rng.choice(copied, size=12, replace=False).tolist()
    specials = [t for t in tgt_tok("x")["input_ids"] if t in tgt_tok.all_special_ids]
    lead = [specials[0]] if specials and family.kind != "seq2seq" and tgt_tok("x")["input_ids"][0] == specials[0] else []
    tgt_ids = lead + body
    src_ids = al.target_to_source[tgt_ids].tolist()
    with torch.no_grad():
        s = _forward(source, src_ids, family)
        t = _forward(result.model.eval(), tgt_ids, family)
    assert torch.equal(_last_hidden(s, family), _last_hidden(t, family))
    overlap_t = np.flatnonzero(al.target_to_source >= 0)
    overlap_t = overlap_t[overlap_t < t.logits.shape[-1]]
    torch.testing.assert_close(t.logits[..., overlap_t], s.logits[..., al.target_to_source[overlap_t]], rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", ["random", "mean", "overlap", "fvt"])
def test_methods_deterministic_bit_identical(method, tmp_path):
    from .families import FAMILY_BY_NAME

    family = FAMILY_BY_NAME["llama"]  # untied head: both matrices are written
    src_tok, tgt_tok = tokenizer_pair(family.tokenizer)
    digests = []
    for run in range(2):
        model = _source_model(family, src_tok)
        result = transplant_tokenizer(model, tgt_tok, method, source_tokenizer=src_tok, seed=7)
        folder = result.save_pretrained(tmp_path / f"run{run}")
        digests.append(hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    other = transplant_tokenizer(_source_model(family, src_tok), tgt_tok, method, source_tokenizer=src_tok, seed=8)
    if method in ("random", "overlap"):
        assert not torch.equal(other.model.get_input_embeddings().weight, result.model.get_input_embeddings().weight)


def test_pad_to_multiple_of():
    from .families import FAMILY_BY_NAME

    family = FAMILY_BY_NAME["bert"]
    src_tok, tgt_tok = tokenizer_pair(family.tokenizer)
    result = transplant_tokenizer(_source_model(family, src_tok), tgt_tok, "fvt", source_tokenizer=src_tok, pad_to_multiple_of=64)
    rows = result.model.get_input_embeddings().weight.shape[0]
    assert rows % 64 == 0 and rows >= len(tgt_tok) and result.model.config.vocab_size == rows
    assert result.report.surgery["padding_rows"] == rows - len(tgt_tok)
