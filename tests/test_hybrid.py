"""The TokenAdapt-style hybrid: a convex blend of the FVT (local) and FOCUS (global) rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from hf_vocabswap import errors
from hf_vocabswap.methods import COMBINED, COPIED
from hf_vocabswap.transplant import transplant_tokenizer


@pytest.fixture(scope="module")
def setup(splade_path, ukrainian_train, tmp_path_factory):
    src = AutoTokenizer.from_pretrained(splade_path)
    model = AutoModelForMaskedLM.from_pretrained(splade_path)
    tgt = src.train_new_from_iterator(ukrainian_train[:1500], 3000)
    cache = str(tmp_path_factory.mktemp("ft"))
    return model, src, tgt, ukrainian_train[:1500], cache


def _run(setup, method, **kw):
    model, src, tgt, corpus, cache = setup
    return transplant_tokenizer(model, tgt, method, source_tokenizer=src, corpus=corpus, cache_dir=cache, threads=1, **kw) if method != "fvt" else transplant_tokenizer(model, tgt, "fvt", source_tokenizer=src)


def test_blend_is_convex_combination_of_fvt_and_focus(setup):
    fvt = _run(setup, "fvt")
    focus = _run(setup, "focus")
    hybrid = _run(setup, "hybrid", global_weight=0.3)
    E = lambda r: r.model.get_input_embeddings().weight.detach()  # noqa: E731
    both = np.flatnonzero((fvt.plan.kinds == COMBINED) & (focus.plan.kinds == COMBINED))
    assert len(both) > 1000
    torch.testing.assert_close(E(hybrid)[both], 0.7 * E(fvt)[both] + 0.3 * E(focus)[both], rtol=1e-5, atol=1e-6)
    # Rows are convex combinations: weights sum to 1.
    plan = hybrid.plan
    row_of_entry = np.repeat(np.arange(plan.num_target), np.diff(plan.indptr))
    sums = np.bincount(row_of_entry, weights=plan.weights, minlength=plan.num_target)[both]
    np.testing.assert_allclose(sums, 1.0, atol=1e-9)
    copied = np.flatnonzero(fvt.plan.kinds == COPIED)
    assert (hybrid.plan.kinds[copied] == COPIED).all()
    assert torch.equal(E(hybrid)[copied], E(fvt)[copied])
    assert hybrid.report.method_stats["blended"] == len(both)
    # Tokens FVT cannot decompose but FOCUS can mix take the FOCUS row.
    only_focus = np.flatnonzero((focus.plan.kinds == COMBINED) & (fvt.plan.kinds != COMBINED) & (fvt.plan.kinds != COPIED))
    torch.testing.assert_close(E(hybrid)[only_focus], E(focus)[only_focus])


def test_extremes_reduce_to_the_parts(setup):
    fvt = _run(setup, "fvt")
    local = _run(setup, "hybrid", global_weight=0.0)
    both = np.flatnonzero(fvt.plan.kinds == COMBINED)
    torch.testing.assert_close(local.model.get_input_embeddings().weight[both], fvt.model.get_input_embeddings().weight[both])


def test_bad_weight(setup):
    with pytest.raises(errors.MethodOptionError, match="global_weight"):
        _run(setup, "hybrid", global_weight=1.5)
