"""The TokenAdapt-style hybrid: a convex blend of the FVT (local) rows and a global estimate
(top-k softmax over FOCUS's anchors by default, FOCUS's sparsemax mixture on request), then
output calibration (on by default, tested in test_calibration.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from hf_vocabswap import errors
from hf_vocabswap.methods import COMBINED, COPIED
from hf_vocabswap.methods.hybrid import Hybrid, HybridConfig
from hf_vocabswap.transplant import new_token_ids, transplant_tokenizer


@pytest.fixture(scope="module")
def setup(splade_path, ukrainian_train, tmp_path_factory):
    src = AutoTokenizer.from_pretrained(splade_path)
    model = AutoModelForMaskedLM.from_pretrained(splade_path)
    tgt = src.train_new_from_iterator(ukrainian_train[:1500], 3000)
    cache = str(tmp_path_factory.mktemp("ft"))
    return model, src, tgt, ukrainian_train[:1500], cache, {}


def _run(setup, method, **kw):
    """One transplant per (method, options), shared by the tests of this module."""
    model, src, tgt, corpus, cache, runs = setup
    key = (method, tuple(sorted(kw.items())))
    if key not in runs:
        if method == "fvt":
            runs[key] = transplant_tokenizer(model, tgt, "fvt", source_tokenizer=src)
        else:
            runs[key] = transplant_tokenizer(model, tgt, method, source_tokenizer=src, corpus=corpus, cache_dir=cache, threads=1, **kw)
    return runs[key]


def _hybrid(setup, **kw):
    return _run(setup, "hybrid", calibrate=False, **kw)


def E(result):
    return result.model.get_input_embeddings().weight.detach()


def _entries(plan):
    return np.diff(plan.indptr)


def _row_sums(plan):
    row_of_entry = np.repeat(np.arange(plan.num_target), _entries(plan))
    return np.bincount(row_of_entry, weights=plan.weights, minlength=plan.num_target)


def _both(setup):
    """Tokens FVT decomposes and FOCUS mixes: the ones the hybrid blends."""
    fvt, focus = _run(setup, "fvt"), _run(setup, "focus")
    return np.flatnonzero((fvt.plan.kinds == COMBINED) & (focus.plan.kinds == COMBINED))


def test_defaults():
    config = HybridConfig()
    # global_weight None: by model kind (0.1 for causal LMs, 0.5 for the others, as recorded in the run stats).
    assert (config.global_weight, config.global_mixing, config.neighbors, config.temperature) == (None, "topk", 10, 0.1)
    assert Hybrid.calibrates_by_default


def test_sparsemax_blend_is_convex_combination_of_fvt_and_focus(setup):
    fvt = _run(setup, "fvt")
    focus = _run(setup, "focus")
    hybrid = _hybrid(setup, global_mixing="sparsemax", global_weight=0.3)
    both = _both(setup)
    assert len(both) > 1000
    torch.testing.assert_close(E(hybrid)[both], 0.7 * E(fvt)[both] + 0.3 * E(focus)[both], rtol=1e-5, atol=1e-6)
    # Rows are convex combinations: weights sum to 1.
    np.testing.assert_allclose(_row_sums(hybrid.plan)[both], 1.0, atol=1e-9)
    copied = np.flatnonzero(fvt.plan.kinds == COPIED)
    assert (hybrid.plan.kinds[copied] == COPIED).all()
    assert torch.equal(E(hybrid)[copied], E(fvt)[copied])
    stats = hybrid.report.method_stats
    assert stats["blended"] == len(both) and stats["global_mixing"] == "sparsemax" and stats["global_weight"] == 0.3
    assert "calibration" not in stats
    # Tokens FVT cannot decompose but FOCUS can mix take the FOCUS row.
    only_focus = np.flatnonzero((focus.plan.kinds == COMBINED) & (fvt.plan.kinds != COMBINED) & (fvt.plan.kinds != COPIED))
    torch.testing.assert_close(E(hybrid)[only_focus], E(focus)[only_focus])


def test_topk_blend_is_convex_and_sparse(setup):
    fvt = _run(setup, "fvt")
    hybrid = _hybrid(setup, global_weight=0.3)
    glob = _hybrid(setup, global_weight=1.0)  # the top-k global rows alone
    both = _both(setup)
    assert hybrid.report.method_stats["global_mixing"] == "topk" and hybrid.report.method_stats["blended"] == len(both)
    torch.testing.assert_close(E(hybrid)[both], 0.7 * E(fvt)[both] + 0.3 * E(glob)[both], rtol=1e-5, atol=1e-6)
    combined = np.flatnonzero(hybrid.plan.kinds == COMBINED)
    np.testing.assert_allclose(_row_sums(hybrid.plan)[combined], 1.0, atol=1e-9)
    np.testing.assert_allclose(_row_sums(glob.plan)[combined], 1.0, atol=1e-9)
    # At most `neighbors` anchors per row, on top of the FVT pieces.
    pieces = _entries(fvt.plan)[both]
    assert (_entries(hybrid.plan)[both] <= 10 + pieces).all()
    assert (_entries(glob.plan)[both] <= np.maximum(10, pieces)).all()
    assert np.median(_entries(glob.plan)[both]) == 10
    # Unlike FOCUS's sparsemax, which spreads each token over many more anchors.
    assert np.median(_entries(_run(setup, "focus").plan)[both]) > 10


def test_topk_neighbors_and_temperature(setup):
    both = _both(setup)
    pieces = _entries(_run(setup, "fvt").plan)[both]
    runs = {t: _hybrid(setup, global_weight=1.0, neighbors=3, temperature=t) for t in (0.01, 1.0)}
    for result in runs.values():
        entries = _entries(result.plan)[both]
        assert (entries <= np.maximum(3, pieces)).all() and np.median(entries) == 3
        np.testing.assert_allclose(_row_sums(result.plan)[both], 1.0, atol=1e-9)
    sharp, flat = runs[0.01].plan, runs[1.0].plan
    # The temperature changes the weights, not the neighbours: on the same 3 anchors,
    # log(w_i / w_j) = (cos_i - cos_j) / temperature.
    three = both[(_entries(sharp)[both] == 3) & (_entries(flat)[both] == 3)]
    assert len(three) > 0.8 * len(both)
    gather = lambda plan, values: values[plan.indptr[three][:, None] + np.arange(3)]  # noqa: E731
    np.testing.assert_array_equal(gather(sharp, sharp.indices), gather(flat, flat.indices))
    w_sharp, w_flat = gather(sharp, sharp.weights), gather(flat, flat.weights)
    np.testing.assert_allclose(0.01 * np.log(w_sharp / w_sharp.max(1, keepdims=True)), 1.0 * np.log(w_flat / w_flat.max(1, keepdims=True)), atol=1e-6)
    assert (w_sharp.max(1) >= w_flat.max(1) - 1e-12).all() and np.median(w_sharp.max(1)) > np.median(w_flat.max(1))


def test_extremes_reduce_to_the_parts(setup):
    fvt = _run(setup, "fvt")
    local = _hybrid(setup, global_weight=0.0)
    decomposed = np.flatnonzero(fvt.plan.kinds == COMBINED)
    torch.testing.assert_close(E(local)[decomposed], E(fvt)[decomposed])
    both = _both(setup)
    focus = _run(setup, "focus")
    global_ = _hybrid(setup, global_weight=1.0, global_mixing="sparsemax")
    torch.testing.assert_close(E(global_)[both], E(focus)[both])


def test_default_calibrates_the_output_bias_only(setup):
    """splade-tiny has an MLM output bias: the default hybrid calibrates through it, leaving the
    (tied) embedding rows exactly as without calibration."""
    default = _run(setup, "hybrid")
    off = _hybrid(setup)
    cal = default.report.method_stats["calibration"]
    ids = new_token_ids(default.plan, default.alignment)
    assert cal["mode"] == "bias" and cal["calibrated"] == len(ids) > 1000
    assert default.report.method_stats["global_weight"] == 0.5  # the masked-LM default
    assert abs(cal["mass_after"] - cal["corpus_share"]) < abs(cal["mass_before"] - cal["corpus_share"])
    assert torch.equal(E(default), E(off))
    bias = lambda r: r.model.get_output_embeddings().bias.detach()  # noqa: E731
    changed = np.flatnonzero((bias(default) != bias(off)).numpy())
    assert len(changed) > 0 and set(changed) <= set(ids)


@pytest.mark.parametrize(
    "option, value",
    [("global_weight", 1.5), ("global_weight", -0.1), ("global_mixing", "nope"), ("neighbors", 0), ("temperature", 0.0), ("temperature", -1.0)],
)
def test_bad_options(setup, option, value):
    with pytest.raises(errors.MethodOptionError, match=option):
        _run(setup, "hybrid", **{option: value})
