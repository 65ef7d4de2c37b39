"""CLP-Transfer: copies of the overlap, weights = cosine similarities / their sum, the dense
reference computation, faithful raw-string overlap, top-k, extend mode, errors and the CLI.

The helper model (a model that already uses the target tokenizer) is, in these tests, the source
model transplanted to the target tokenizer with FVT: a stand-in for the small target-language
model CLP assumes, with embeddings that carry real subword structure.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers

from hf_vocabswap.cli import main as cli_main
from hf_vocabswap.errors import MethodOptionError, MismatchError
from hf_vocabswap.methods import COMBINED, COPIED
from hf_vocabswap.methods.clp import raw_string_overlap
from hf_vocabswap.transplant import transplant_tokenizer

from .families import FAMILY_BY_NAME, tokenizer_pair

FAMILY = FAMILY_BY_NAME["llama"]  # untied head: the plan is applied to both matrices


def _source_model(src_tok):
    torch.manual_seed(0)
    return FAMILY.build(len(src_tok), src_tok)


@pytest.fixture(scope="module")
def setup():
    src_tok, tgt_tok = tokenizer_pair(FAMILY.tokenizer)
    model = _source_model(src_tok)
    # Helper: the source model moved to the target tokenizer with FVT (see module docstring).
    helper = transplant_tokenizer(model, tgt_tok, "fvt", source_tokenizer=src_tok).model
    result = transplant_tokenizer(model, tgt_tok, "clp", source_tokenizer=src_tok, helper_model=helper, progress=False)
    return src_tok, tgt_tok, model, helper, result


def _dense_clp(helper_rows: np.ndarray, source_rows: np.ndarray, new, anchors, anchor_sources):
    """The reference formula written out densely in float64 numpy."""
    h = helper_rows.astype(np.float64)
    h = h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-300)
    sims = h[new] @ h[anchors].T
    weights = sims / sims.sum(axis=1, keepdims=True)
    return weights, weights @ source_rows.astype(np.float64)[anchor_sources]


def test_overlap_is_copied(setup):
    src_tok, tgt_tok, model, helper, result = setup
    t2s = result.alignment.target_to_source
    overlap = np.flatnonzero(t2s >= 0)
    assert len(overlap) > 1000
    plan = result.plan
    assert (plan.kinds[overlap] == COPIED).all()
    for t in overlap[:200].tolist():
        assert plan.row(t) == [(int(t2s[t]), 1.0)]
    new_in = result.model.get_input_embeddings().weight
    old_in = model.get_input_embeddings().weight
    assert torch.equal(new_in[torch.as_tensor(overlap)], old_in[torch.as_tensor(t2s[overlap])])
    new_out = result.model.get_output_embeddings().weight
    old_out = model.get_output_embeddings().weight
    assert torch.equal(new_out[torch.as_tensor(overlap)], old_out[torch.as_tensor(t2s[overlap])])


def test_weights_sum_to_one_over_overlapping_tokens(setup):
    src_tok, tgt_tok, model, helper, result = setup
    plan = result.plan
    t2s = result.alignment.target_to_source
    anchors = np.flatnonzero(t2s >= 0)
    new = np.flatnonzero(t2s < 0)
    assert len(new) > 300 and (plan.kinds[new] == COMBINED).all()
    negative = 0
    for t in new.tolist():
        a, b = plan.indptr[t], plan.indptr[t + 1]
        ids, w = plan.indices[a:b], plan.weights[a:b]
        assert abs(w.sum() - 1.0) < 1e-9
        # No top-k: one entry per overlapping target token (several may share a source row).
        assert np.array_equal(ids, t2s[anchors])
        negative += int((w < 0).sum())
    assert negative > 0  # negative similarities are kept, as in the reference
    assert result.report.method_stats["anchors"] == len(anchors)


def test_equals_dense_computation(setup):
    src_tok, tgt_tok, model, helper, result = setup
    t2s = result.alignment.target_to_source
    new, anchors = np.flatnonzero(t2s < 0), np.flatnonzero(t2s >= 0)
    h = helper.get_input_embeddings().weight.detach().numpy()
    for matrix, got in (
        (model.get_input_embeddings().weight, result.model.get_input_embeddings().weight),
        (model.get_output_embeddings().weight, result.model.get_output_embeddings().weight),
    ):
        weights, expected = _dense_clp(h, matrix.detach().numpy(), new, anchors, t2s[anchors])
        # float32 application of float64 weights; some rows are large (similarities summing to
        # nearly zero give large weights: the reference formula, kept as is).
        np.testing.assert_allclose(got.detach().numpy()[new], expected, rtol=1e-5, atol=1e-5)
    # The plan holds exactly those weights, one per overlapping token, in id order.
    plan = result.plan
    rows = np.stack([plan.weights[plan.indptr[t] : plan.indptr[t + 1]] for t in new.tolist()])
    np.testing.assert_allclose(rows, weights, rtol=1e-9, atol=1e-12)


def test_chunking_does_not_change_the_plan(setup):
    src_tok, tgt_tok, model, helper, result = setup
    other = transplant_tokenizer(model, tgt_tok, "clp", source_tokenizer=src_tok, helper_model=helper, chunk_size=7, progress=False)
    assert np.array_equal(other.plan.indptr, result.plan.indptr)
    assert np.array_equal(other.plan.indices, result.plan.indices)
    np.testing.assert_allclose(other.plan.weights, result.plan.weights, rtol=1e-9, atol=1e-12)


def test_top_k(setup):
    src_tok, tgt_tok, model, helper, result = setup
    res = transplant_tokenizer(model, tgt_tok, "clp", source_tokenizer=src_tok, helper_model=helper, top_k=5, progress=False)
    t2s = res.alignment.target_to_source
    new, anchors = np.flatnonzero(t2s < 0), np.flatnonzero(t2s >= 0)
    h = torch.nn.functional.normalize(helper.get_input_embeddings().weight.detach().double(), dim=1).numpy()
    for t in new[:50].tolist():
        a, b = res.plan.indptr[t], res.plan.indptr[t + 1]
        assert b - a == 5
        assert abs(res.plan.weights[a:b].sum() - 1) < 1e-9
        sims = h[anchors] @ h[t]
        best = set(t2s[anchors[np.argsort(-sims)[:5]]].tolist())
        assert set(res.plan.indices[a:b].tolist()) == best


def test_faithful_overlap_is_raw_strings(setup):
    src_tok, tgt_tok, model, helper, result = setup
    res = transplant_tokenizer(model, tgt_tok, "clp", source_tokenizer=src_tok, helper_model=helper, faithful=True, progress=False)
    raw = raw_string_overlap(tgt_tok, src_tok, len(src_tok))
    assert set(res.plan.ids_of(COPIED)) == set(np.flatnonzero(raw >= 0).tolist())
    for t in np.flatnonzero(raw >= 0)[:100].tolist():
        assert res.plan.row(t) == [(int(raw[t]), 1.0)]
    assert res.report.method_stats["overlap_by"] == "raw string"


def test_extend_mode(setup):
    src_tok, _, model, _, _ = setup
    extended = transformers.PreTrainedTokenizerFast(tokenizer_object=src_tok.backend_tokenizer.__class__.from_str(src_tok.backend_tokenizer.to_str()), **src_tok.special_tokens_map)
    extended.add_tokens(["▁кіберспорт", "▁нейромережа", "▁блокчейн"])
    helper = transplant_tokenizer(model, extended, "fvt", source_tokenizer=src_tok).model  # helper, as above
    res = transplant_tokenizer(model, extended, "clp", source_tokenizer=src_tok, helper_model=helper, progress=False)
    assert res.alignment.mode == "extend"
    n = len(src_tok)
    assert torch.equal(res.model.get_input_embeddings().weight[:n], model.get_input_embeddings().weight)
    assert (res.plan.kinds[n:] == COMBINED).all()
    for t in range(n, len(extended)):
        assert abs(sum(w for _, w in res.plan.row(t)) - 1) < 1e-9


def test_missing_or_mismatched_helper(setup, tmp_path):
    src_tok, tgt_tok, model, helper, _ = setup
    with pytest.raises(MethodOptionError, match="helper_model"):
        transplant_tokenizer(model, tgt_tok, "clp", source_tokenizer=src_tok)
    # The source model itself does not use the target tokenizer: its row count gives it away.
    with pytest.raises(MismatchError, match="rows"):
        transplant_tokenizer(model, tgt_tok, "clp", source_tokenizer=src_tok, helper_model=model)
    # Same row count, but the folder's own tokenizer is another one.
    folder = tmp_path / "helper"
    helper.save_pretrained(folder)
    wrong = tokenizer_pair("roberta_bpe")[1]
    assert len(wrong) == len(tgt_tok)
    wrong.save_pretrained(folder)
    with pytest.raises(MismatchError, match="vocabulary differs"):
        transplant_tokenizer(model, tgt_tok, "clp", source_tokenizer=src_tok, helper_model=str(folder))
    with pytest.raises(MethodOptionError, match="top_k"):
        transplant_tokenizer(model, tgt_tok, "clp", source_tokenizer=src_tok, helper_model=helper, top_k=0)


def test_cli_with_helper_path(setup, tmp_path):
    src_tok, tgt_tok, model, helper, result = setup
    source_dir, target_dir, helper_dir, out = tmp_path / "src", tmp_path / "tgt", tmp_path / "helper", tmp_path / "out"
    model.save_pretrained(source_dir)
    src_tok.save_pretrained(source_dir)
    tgt_tok.save_pretrained(target_dir)
    helper.save_pretrained(helper_dir)
    tgt_tok.save_pretrained(helper_dir)
    rc = cli_main(["-q", "transplant", str(source_dir), str(target_dir), "--method", "clp", "--helper-model", str(helper_dir), "--top-k", "16", "--out", str(out)])
    assert rc == 0
    record = json.loads((out / "vocabswap.json").read_text())
    assert record["method"] == "clp" and record["options"]["helper_model"] == str(helper_dir) and record["options"]["top_k"] == 16
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert reloaded.get_input_embeddings().weight.shape[0] == len(tgt_tok)
