"""OFA on real inputs: the real splade-tiny BERT transplanted to a Ukrainian tokenizer with
fastText word vectors trained here on real Ukrainian text (UA-GEC), plus tiny models of other
families. Checks the defining properties (subword vectors from the words that contain a
token, top-k softmax over source tokens, overlap copied exactly then by lowercase) and that
the factorized form multiplies out to the saved stock model.
"""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from hf_vocabswap import assets
from hf_vocabswap.auxiliary.fasttext import FastTextParams, train_fasttext
from hf_vocabswap.cli import main
from hf_vocabswap.errors import MethodOptionError, ResourceError
from hf_vocabswap.methods import COMBINED, COPIED
from hf_vocabswap.methods.ofa import Factorization, svd_factors
from hf_vocabswap.transplant import transplant_tokenizer

from .families import FAMILY_BY_NAME, tokenizer_pair

_WORD = re.compile(r"\w+(?:[-']\w+)*|[^\w\s]")


def _train(path, params, attempts=8):
    # fastText's monitor thread may read 0/0 as a NaN loss before the first example and abort;
    # one-thread training is deterministic, so a retry gives the same model.
    for attempt in range(attempts):
        try:
            return train_fasttext(path, params, threads=1)
        except RuntimeError as e:
            if "NaN" not in str(e) or attempt == attempts - 1:
                raise


@pytest.fixture(scope="module")
def res(tmp_path_factory, splade_path):
    folder = tmp_path_factory.mktemp("ofa")
    texts = assets.ukrainian_texts("train", max_chars=300_000)
    text = folder / "uk.txt"
    text.write_text("\n".join(" ".join(_WORD.findall(t)) for t in texts), encoding="utf-8")
    vectors = _train(text, FastTextParams(model="cbow", dim=16, epoch=5, min_count=2, bucket=200_000))
    vectors_path = folder / "uk.bin"
    vectors.save_model(str(vectors_path))
    source_tok = AutoTokenizer.from_pretrained(splade_path)
    target_tok = source_tok.train_new_from_iterator(texts, 3000)
    target_dir = folder / "uk-tokenizer"
    target_tok.save_pretrained(target_dir)
    model = AutoModelForMaskedLM.from_pretrained(splade_path)
    return dict(vectors=vectors, vectors_path=vectors_path, source_tok=source_tok, target_tok=target_tok,
                target_dir=target_dir, model=model, folder=folder)


def _run(res, tokenizer=None, **options):
    return transplant_tokenizer(
        res["model"], tokenizer or res["target_tok"], "ofa", source_tokenizer=res["source_tok"],
        word_vectors=res["vectors"], progress=False, **options,
    )


@pytest.fixture(scope="module")
def default(res):
    return _run(res)


def _brute_force_vectors(tokenizer, words, vectors, wanted=None):
    """token id -> mean vector of the words whose three OFA tokenizations contain it (HF API, no shortcuts)."""
    found: dict[int, list[int]] = {}
    for variant in (words, [" " + w for w in words], [" " + w[:1].upper() + w[1:] for w in words]):
        for j, ids in enumerate(tokenizer(variant, add_special_tokens=False)["input_ids"]):
            for t in set(ids):
                if wanted is None or t in wanted:
                    found.setdefault(t, []).append(j)
    return {t: vectors[js].mean(0) for t, js in found.items()}


def test_defining_properties(res, default):
    plan, alignment = default.plan, default.alignment
    source = res["model"].get_input_embeddings().weight.detach()
    target = default.model.get_input_embeddings().weight.detach()
    # Overlap (exact canonical forms, special tokens by role) is copied bit for bit.
    matched = np.flatnonzero(alignment.target_to_source >= 0)
    assert len(matched) > 200
    assert torch.equal(target[matched], source[alignment.target_to_source[matched]])
    combined = plan.ids_of(COMBINED)
    assert plan.stats["ofa_mixed"] > 1000
    for tid in combined:
        row = plan.row(tid)
        assert sum(w for _, w in row) == pytest.approx(1.0) and all(w > 0 for _, w in row)
    # OFA rows mix exactly 10 source tokens (FVT fallback rows mix a token's own subwords).
    assert sum(len(plan.row(t)) == 10 for t in combined) >= plan.stats["ofa_mixed"]
    assert plan.stats["ofa_mixed"] + plan.stats["fvt_fallback"] == len(combined)

    # Recompute a sample of tokens from the definition, independently of the method's code.
    words = res["vectors"].words
    word_vectors = np.stack([res["vectors"].get_word_vector(w) for w in words]).astype(np.float64)
    src_vec = _brute_force_vectors(res["source_tok"], words, word_vectors)
    special = set(res["source_tok"].all_special_ids)
    keys = np.array(sorted(t for t, v in src_vec.items() if t not in special and np.any(v)))
    key_matrix = np.stack([src_vec[t] for t in keys])
    key_matrix /= np.linalg.norm(key_matrix, axis=1, keepdims=True)
    mixed = [t for t in combined if len(plan.row(t)) == 10][::50][:12]
    tgt_vec = _brute_force_vectors(res["target_tok"], words, word_vectors, wanted=set(mixed))
    assert len(mixed) >= 10
    for tid in mixed:
        q = tgt_vec[tid] / np.linalg.norm(tgt_vec[tid])
        sims = key_matrix @ q
        top = np.argsort(-sims)[:10]
        expected_w = np.exp((sims[top] - sims[top].max()) / 0.1)
        expected_w /= expected_w.sum()
        got = dict(plan.row(tid))
        assert set(got) <= set(keys.tolist()), "a neighbour that is special or has no vector"
        # Neighbours tied (to rounding) at the 10th place may swap.
        boundary = sims[top[-1]]
        for s in set(got) - set(keys[top].tolist()):
            assert abs(sims[np.searchsorted(keys, s)] - boundary) < 1e-9
        for k, w in zip(keys[top], expected_w):
            if k in got:
                assert got[k] == pytest.approx(w, abs=1e-6)
        built = sum(w * source[s].double() for s, w in got.items())
        assert torch.allclose(target[tid].double(), built, atol=1e-6)


def test_lowercase_overlap_is_copied(res):
    src, tgt = tokenizer_pair("roberta_bpe")  # cased byte-level BPE on Ukrainian
    family = FAMILY_BY_NAME["roberta"]
    torch.manual_seed(0)
    model = family.build(len(src), src)
    uk = res["vectors"]
    result = transplant_tokenizer(model, tgt, "ofa", source_tokenizer=src, word_vectors=uk, progress=False)
    alignment, plan = result.alignment, result.plan
    lower = [t for t in plan.ids_of(COPIED) if alignment.target_to_source[t] < 0]
    assert len(lower) == plan.stats["copied_lowercase"] > 0
    source = model.get_input_embeddings().weight.detach()
    target = result.model.get_input_embeddings().weight.detach()
    for t in lower:
        (s, w), = plan.row(t)
        sf, tf = alignment.source.forms[s], alignment.target.forms[t]
        assert w == 1.0 and sf.word_start == tf.word_start
        assert sf.text.decode().lower() == tf.text.decode().lower() and sf.text != tf.text
        assert torch.equal(target[t], source[s])
    off = transplant_tokenizer(model, tgt, "ofa", source_tokenizer=src, word_vectors=uk, progress=False, lowercase_match=False)
    assert off.plan.stats["copied_lowercase"] == 0
    assert all(off.plan.kinds[t] != COPIED for t in lower)


def test_factorized_equals_multiplied_out(res, default, tmp_path):
    side = tmp_path / "ofa_factorization.safetensors"
    result = _run(res, keep_dim=32, factorized_file=str(side))
    embeddings = result.model.get_input_embeddings().weight.detach()
    fact = Factorization.load(side)
    assert fact.primitives.shape == (32, embeddings.shape[1]) and fact.coordinates.shape == (len(res["target_tok"]), 32)
    assert torch.equal(fact.multiply_out(), embeddings)
    assert torch.equal(result.plan.factorization.coordinates, fact.coordinates)
    assert torch.linalg.matrix_rank(embeddings.double(), rtol=1e-5).item() <= 32  # float32 rounding aside
    assert result.plan.stats["factorized_file"] == str(side) and 0 < result.plan.stats["energy_kept"] < 1
    # Copied tokens carry their source coordinates: their rows are the rank-32 approximation.
    source = res["model"].get_input_embeddings().weight.detach()
    coords, prims, _ = svd_factors(source, 32)
    approx = (coords @ prims).float()
    copied = result.plan.ids_of(COPIED)
    t2s = [result.plan.row(t)[0][0] for t in copied]
    assert torch.allclose(embeddings[copied], approx[t2s], atol=1e-5)
    # Same mixing weights as the unfactorized run; the saved model is a stock model.
    assert np.array_equal(result.plan.indices, default.plan.indices)
    folder = result.save_pretrained(tmp_path / "out")
    reloaded = AutoModelForMaskedLM.from_pretrained(folder)
    assert torch.equal(reloaded.get_input_embeddings().weight, embeddings)
    assert torch.equal(reloaded.get_output_embeddings().weight, embeddings)  # tied head
    # Without keep_dim, factorized=True leaves the model as the plain run and returns exact factors.
    full = _run(res, factorized=True)
    assert torch.equal(full.model.get_input_embeddings().weight, default.model.get_input_embeddings().weight)
    assert torch.allclose(full.plan.factorization.multiply_out(), full.model.get_input_embeddings().weight, atol=1e-5)


def test_extend_mode_keeps_every_row(res):
    extended = AutoTokenizer.from_pretrained(res["source_tok"].name_or_path)
    new_words = ["україна", "вареники", "громада", "бандура"]
    extended.add_tokens(new_words)
    result = _run(res, tokenizer=extended)
    assert result.alignment.mode == "extend"
    source = res["model"].get_input_embeddings().weight.detach()
    target = result.model.get_input_embeddings().weight.detach()
    assert torch.equal(target[: source.shape[0]], source)
    assert all(result.plan.kinds[i] == COMBINED for i in extended.convert_tokens_to_ids(new_words))
    with pytest.raises(MethodOptionError, match="extend mode"):
        _run(res, tokenizer=extended, keep_dim=16)


def test_untied_family_factorized(res):
    family = FAMILY_BY_NAME["llama"]  # untied input and output embeddings
    src, tgt = tokenizer_pair(family.tokenizer)
    torch.manual_seed(0)
    model = family.build(len(src), src)
    uk = res["vectors"]
    result = transplant_tokenizer(model, tgt, "ofa", source_tokenizer=src, word_vectors=uk, progress=False, keep_dim=8, factorized=True)
    inp = result.model.get_input_embeddings().weight.detach()
    out = result.model.get_output_embeddings().weight.detach()
    assert torch.equal(result.plan.factorization.multiply_out(), inp)
    assert torch.linalg.matrix_rank(inp.double(), rtol=1e-5).item() <= 8
    # The output matrix is mixed with the same weights in full dimension: copies stay exact.
    source_out = model.get_output_embeddings().weight.detach()
    copied = result.plan.ids_of(COPIED)
    t2s = [result.plan.row(t)[0][0] for t in copied]
    assert torch.equal(out[copied], source_out[t2s])
    with torch.no_grad():
        ids = torch.tensor([result.tokenizer("Добрий день, друзі!")["input_ids"]])
        assert torch.isfinite(result.model(input_ids=ids).logits).all()


def test_vec_text_vectors(res, default, tmp_path):
    words = res["vectors"].words
    path = tmp_path / "uk.vec"
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{len(words)} 16\n")
        for w in words:
            f.write(w + " " + " ".join(f"{x:.9g}" for x in res["vectors"].get_word_vector(w)) + "\n")
    result = transplant_tokenizer(
        res["model"], res["target_tok"], "ofa", source_tokenizer=res["source_tok"], word_vectors=str(path), progress=False
    )
    assert result.plan.stats["target_coverage"] == default.plan.stats["target_coverage"]
    assert result.report.counts == default.report.counts


def test_tokenizer_state_does_not_matter(res, default):
    # A transformers call can leave padding switched on in the backend; words must still be
    # tokenized one by one, without pad ids.
    padded = copy.deepcopy(res["target_tok"])
    padded.backend_tokenizer.enable_padding(pad_id=padded.pad_token_id, pad_token=padded.pad_token)
    padded.backend_tokenizer.enable_truncation(3)
    result = _run(res, tokenizer=padded)
    assert torch.equal(result.model.get_input_embeddings().weight, default.model.get_input_embeddings().weight)


def test_missing_word_vectors(res, tmp_path):
    with pytest.raises(ResourceError, match="word_vectors"):
        transplant_tokenizer(res["model"], res["target_tok"], "ofa", source_tokenizer=res["source_tok"], progress=False)
    with pytest.raises(ResourceError, match="word_vectors"):
        transplant_tokenizer(res["model"], res["target_tok"], "ofa", source_tokenizer=res["source_tok"],
                             word_vectors=str(tmp_path / "missing.bin"), progress=False)


def test_cli(res, tmp_path, capsys):
    out, side = tmp_path / "out", tmp_path / "factors.safetensors"
    code = main([
        "-q", "transplant", str(assets.splade_tiny_path()), str(res["target_dir"]), "--method", "ofa",
        "--word-vectors", str(res["vectors_path"]), "--keep-dim", "16", "--factorized-file", str(side),
        "--progress", "false", "--out", str(out),
    ])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "vocabswap.json").read_text())
    assert record["method"] == "ofa" and record["options"]["keep_dim"] == 16
    model = AutoModelForMaskedLM.from_pretrained(out)
    assert torch.equal(Factorization.load(side).multiply_out(), model.get_input_embeddings().weight.detach())
