"""WECHSEL on real resources: the real splade-tiny BERT (English) transplanted to a German
tokenizer, with fastText models trained here on English and German fortune texts and the
FreeDict English-German dictionary, all from Debian packages (scripts/setup.sh installs them).

The faithful mode is compared with the ``wechsel`` 0.0.4 package run side by side.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from hf_vocabswap import assets
from hf_vocabswap.auxiliary.fasttext import FastTextParams, train_fasttext
from hf_vocabswap.cli import main
from hf_vocabswap.errors import MethodOptionError, MismatchError, ResourceError
from hf_vocabswap.methods import COMBINED, COPIED, RANDOM, get_method
from hf_vocabswap.methods.mixing import topk_softmax_mixing
from hf_vocabswap.methods.wechsel import orthogonal_procrustes
from hf_vocabswap.resources import read_bilingual_dictionary, read_fortunes, write_pairs
from hf_vocabswap.transplant import transplant_tokenizer
from hf_vocabswap.vocab import MATCH_ADDED, MATCH_EXACT, MATCH_IDENTITY, MATCH_ROLE

FREEDICT = "/usr/share/dictd/freedict-eng-deu.index"
EN_FORTUNES = "/usr/share/games/fortunes"
DE_FORTUNES = "/usr/share/games/fortunes/de"
_WORD = re.compile(r"\w+(?:[-']\w+)*|[^\w\s]")
# Small, quick models: what matters here is that both implementations see the same ones.
_PARAMS = FastTextParams(model="cbow", dim=32, epoch=3, min_count=3, neg=5, bucket=200_000)


def train_fasttext_retrying(path, params, attempts: int = 8):
    """train_fasttext with one thread, retried on fastText's spurious "Encountered NaN".

    fastText's monitoring thread reads the loss as lossSum / examples and aborts when that is
    NaN, which it is (0 / 0) when it looks before the worker has processed an example. The race
    is lost at random; training itself is deterministic with one thread, so a retry gives the
    same model.
    """
    for attempt in range(attempts):
        try:
            return train_fasttext(path, params, threads=1)
        except RuntimeError as e:
            if "NaN" not in str(e) or attempt == attempts - 1:
                raise


def _fasttext(texts, folder, name):
    text = folder / f"{name}.txt"
    text.write_text("\n".join(" ".join(_WORD.findall(t)) for t in texts), encoding="utf-8")
    model = train_fasttext_retrying(text, _PARAMS)
    path = folder / f"{name}.bin"
    model.save_model(str(path))
    return model, path


@pytest.fixture(scope="module")
def res(tmp_path_factory, splade_path):
    try:
        english = read_fortunes(EN_FORTUNES, max_chars=1_200_000)
        german = read_fortunes(DE_FORTUNES, max_chars=1_500_000)
        pairs = read_bilingual_dictionary(FREEDICT)
    except ResourceError as e:
        pytest.skip(f"{e} (scripts/setup.sh installs fortunes, fortunes-de and dict-freedict-eng-deu)")
    folder = tmp_path_factory.mktemp("wechsel")
    en, en_path = _fasttext(english, folder, "en")
    de, de_path = _fasttext(german[: len(german) * 9 // 10], folder, "de")
    # Keep the pairs that can matter (a case variant known to both models): same alignment, less work.
    en_words, de_words = set(en.words), set(de.words)
    pairs = [
        (s, t) for s, t in pairs
        if {s, s.lower(), s.title()} & en_words and {t, t.lower(), t.title()} & de_words
    ]
    tsv = write_pairs(pairs, folder / "en-de.tsv")
    source_tok = AutoTokenizer.from_pretrained(splade_path)
    target_tok = source_tok.train_new_from_iterator(german[: len(german) * 9 // 10], 3000)
    target_dir = folder / "de-tokenizer"
    target_tok.save_pretrained(target_dir)
    model = AutoModelForMaskedLM.from_pretrained(splade_path)
    return dict(
        en=en, de=de, en_path=en_path, de_path=de_path, pairs=pairs, tsv=tsv, source_tok=source_tok,
        target_tok=target_tok, target_dir=target_dir, model=model, heldout=german[len(german) * 9 // 10 :],
    )


def _options(res, **kw):
    return dict(source_fasttext=res["en"], target_fasttext=res["de"], dictionary=res["pairs"], progress=False, **kw)


def _reference(res, use_subword_info=True):
    wechsel = pytest.importorskip("wechsel", reason="pip install --no-deps wechsel==0.0.4 (plus scikit-learn nltk gensim)")
    source = res["model"].get_input_embeddings().weight.detach().numpy().copy()
    ref = wechsel.WECHSEL(res["en"], res["de"], bilingual_dictionary=str(res["tsv"]))
    matrix, info = ref.apply(res["source_tok"], res["target_tok"], source, use_subword_info=use_subword_info)
    return matrix, info


@pytest.mark.parametrize("use_subword_info", [True, False], ids=["fasttext-subwords", "word-means"])
def test_faithful_matches_reference(res, use_subword_info):
    matrix, info = _reference(res, use_subword_info)
    result = transplant_tokenizer(
        res["model"], res["target_tok"], "wechsel", source_tokenizer=res["source_tok"],
        **_options(res, faithful=True, subword_vectors="fasttext" if use_subword_info else "words"),
    )
    ours = result.model.get_input_embeddings().weight.detach().numpy()
    assert ours.shape == matrix.shape
    # The reference draws tokens without a vector from np.random.RandomState(1234); ours come
    # from hf_vocabswap's seeded generator: the same tokens, other numbers. Everything else
    # must agree.
    # (Special tokens first drawn, then copied by the reference, are copies.)
    specials = set(res["target_tok"].convert_tokens_to_ids(list(res["source_tok"].special_tokens_map.values())))
    not_found = sorted(set(res["target_tok"].convert_tokens_to_ids(info.not_found)) - specials)
    assert result.plan.ids_of(RANDOM) == not_found
    rows = np.setdiff1d(np.arange(len(ours)), not_found)
    diff = np.abs(ours[rows] - matrix[rows]).max()
    print(f"faithful WECHSEL ({'fastText subwords' if use_subword_info else 'word means'}): max abs diff {diff:.3g} "
          f"over {len(rows)} rows; {len(not_found)} random rows excluded: {res['target_tok'].convert_ids_to_tokens(not_found)}")
    assert diff <= 1e-5
    # Neighbours and weights, not just the sums: the reference records them per token.
    plan = result.plan
    vocab = res["source_tok"].get_vocab()
    for token, (tokens, weights, _) in list(info.sources.items())[::97]:
        tid = res["target_tok"].convert_tokens_to_ids(token)
        if plan.kinds[tid] != COMBINED:
            continue  # a special token copied after mixing
        got = dict(plan.row(tid))
        assert set(got) == {vocab[t] for t in tokens}
        for t, w in zip(tokens, weights):
            assert got[vocab[t]] == pytest.approx(w, abs=1e-9)
    # Special tokens whose string both vocabularies have are copied bit for bit.
    source = res["model"].get_input_embeddings().weight.detach()
    for token in ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"):
        tid, sid = res["target_tok"].convert_tokens_to_ids(token), vocab[token]
        assert plan.kinds[tid] == COPIED
        assert torch.equal(result.model.get_input_embeddings().weight[tid], source[sid])


def test_procrustes_is_orthogonal_and_optimal():
    gen = np.random.default_rng(0)
    a = gen.normal(size=(200, 8))
    rotation, _ = np.linalg.qr(gen.normal(size=(8, 8)))
    b = a @ rotation + gen.normal(scale=1e-3, size=(200, 8))
    r = orthogonal_procrustes(a, b)
    assert np.allclose(r @ r.T, np.eye(8), atol=1e-10)
    assert np.allclose(r, rotation, atol=1e-3)


def test_topk_softmax_mixing_definition():
    gen = torch.Generator().manual_seed(0)
    queries, keys = torch.randn(37, 6, generator=gen), torch.randn(500, 6, generator=gen)
    indptr, cols, weights, sims = topk_softmax_mixing(queries, keys, k=10, temperature=0.1, chunk_size=8)
    cos = torch.nn.functional.normalize(queries, dim=1) @ torch.nn.functional.normalize(keys, dim=1).T
    for i in range(37):
        a, b = indptr[i], indptr[i + 1]
        assert b - a == 10
        expected = torch.topk(cos[i], 10)
        assert set(cols[a:b].tolist()) == set(expected.indices.tolist())
        np.testing.assert_allclose(sims[a:b], expected.values.numpy(), atol=1e-6)
        np.testing.assert_allclose(weights[a:b], torch.softmax(expected.values.double() / 0.1, 0).numpy(), atol=1e-6)
        assert weights[a:b].sum() == pytest.approx(1.0)


def test_topk_ties_go_to_lower_ids():
    keys = torch.tensor([[1.0, 0], [0, 1], [1, 0], [1, 0], [0.9, 0.1], [1, 0]], dtype=torch.float64)
    _, cols, weights, _ = topk_softmax_mixing(torch.tensor([[1.0, 0]], dtype=torch.float64), keys, k=3)
    assert cols.tolist() == [0, 2, 3] and np.allclose(weights, 1 / 3)
    _, cols, _, _ = topk_softmax_mixing(torch.tensor([[1.0, 0]], dtype=torch.float64), keys, k=5)
    assert cols.tolist() == [0, 2, 3, 5, 4]


def test_default_mode(res):
    result = transplant_tokenizer(res["model"], res["target_tok"], "wechsel", source_tokenizer=res["source_tok"], **_options(res))
    plan, alignment = result.plan, result.alignment
    source = res["model"].get_input_embeddings().weight.detach()
    target = result.model.get_input_embeddings().weight.detach()
    matched = np.flatnonzero(alignment.target_to_source >= 0)
    assert len(matched) > 500
    # Overlapping tokens (and special tokens, by role) keep their rows bit for bit.
    assert torch.equal(target[matched], source[alignment.target_to_source[matched]])
    assert set(plan.ids_of(COPIED)) == set(matched.tolist())
    combined = plan.ids_of(COMBINED)
    assert len(combined) > 1000 and result.report.counts["random"] <= 5
    mixed = 0
    for tid in combined:
        row = plan.row(tid)
        assert sum(w for _, w in row) == pytest.approx(1.0)
        assert all(w > 0 for _, w in row)
        mixed += len(row) == 10
        assert all(s not in alignment.source.special_ids for s, _ in row)
    assert mixed == plan.stats["wechsel_mixed"]
    assert plan.stats["procrustes_pairs"] > 1000
    # No overlap copy: every regular token is mixed (WECHSEL's own choice).
    no_copy = transplant_tokenizer(
        res["model"], res["target_tok"], "wechsel", source_tokenizer=res["source_tok"], **_options(res, copy_overlap=False)
    )
    kept = np.isin(alignment.match, [MATCH_ROLE, MATCH_ADDED, MATCH_IDENTITY])
    assert no_copy.report.counts["copied"] == int(kept.sum()) and not (alignment.match[no_copy.plan.ids_of(COPIED)] == MATCH_EXACT).any()
    # Bit-identical on a second run.
    again = transplant_tokenizer(res["model"], res["target_tok"], "wechsel", source_tokenizer=res["source_tok"], **_options(res))
    assert torch.equal(again.model.get_input_embeddings().weight, result.model.get_input_embeddings().weight)
    # The model still works on held-out German.
    enc = result.tokenizer(res["heldout"][:4], return_tensors="pt", padding=True, truncation=True, max_length=64)
    with torch.no_grad():
        assert torch.isfinite(result.model(**enc).logits).all()


@pytest.mark.parametrize("faithful", [False, True])
def test_extend_mode_keeps_every_row(res, faithful):
    extended = AutoTokenizer.from_pretrained(res["source_tok"].name_or_path)
    new_words = ["weihnachtsmann", "bahnhof", "kartoffelsalat", "fußball"]
    extended.add_tokens(new_words)
    result = transplant_tokenizer(
        res["model"], extended, "wechsel", source_tokenizer=res["source_tok"], **_options(res, faithful=faithful)
    )
    assert result.alignment.mode == "extend"
    source = res["model"].get_input_embeddings().weight.detach()
    target = result.model.get_input_embeddings().weight.detach()
    n = source.shape[0]
    assert torch.equal(target[:n], source)
    new_ids = extended.convert_tokens_to_ids(new_words)
    assert all(result.plan.kinds[i] == COMBINED for i in new_ids)
    assert all(len(result.plan.row(i)) == 10 for i in new_ids)


def test_missing_resources_name_the_option(res, tmp_path):
    kwargs = dict(source_tokenizer=res["source_tok"], progress=False)
    with pytest.raises(ResourceError, match="source_fasttext"):
        transplant_tokenizer(res["model"], res["target_tok"], "wechsel", target_fasttext=res["de"], dictionary=res["pairs"], **kwargs)
    with pytest.raises(ResourceError, match="dictionary="):
        transplant_tokenizer(res["model"], res["target_tok"], "wechsel", source_fasttext=res["en"], target_fasttext=res["de"], **kwargs)
    with pytest.raises(ResourceError, match="download=True"):
        transplant_tokenizer(res["model"], res["target_tok"], "wechsel", source_fasttext="en", target_fasttext=res["de"], dictionary=res["pairs"], **kwargs)
    with pytest.raises(ResourceError, match="download=True"):
        transplant_tokenizer(res["model"], res["target_tok"], "wechsel", source_fasttext=res["en"], target_fasttext=res["de"], dictionary="german", **kwargs)
    with pytest.raises(ResourceError, match="target_fasttext"):
        transplant_tokenizer(res["model"], res["target_tok"], "wechsel", source_fasttext=res["en"], target_fasttext=str(tmp_path / "nope.bin"), dictionary=res["pairs"], **kwargs)
    with pytest.raises(ResourceError, match="reverse_dictionary"):
        # A German-first dictionary read the wrong way round aligns nothing.
        transplant_tokenizer(res["model"], res["target_tok"], "wechsel", source_fasttext=res["en"], target_fasttext=res["de"],
                             dictionary=[(t + "xq", s + "xq") for s, t in res["pairs"][:50]], **kwargs)
    with pytest.raises(MethodOptionError, match="subword_vectors"):
        get_method("wechsel").config_class(subword_vectors="bytes")


def test_dimension_mismatch(res, tmp_path):
    texts = assets.ukrainian_texts("train", max_chars=50_000)
    path = tmp_path / "uk.txt"
    path.write_text("\n".join(texts), encoding="utf-8")
    other = train_fasttext_retrying(path, FastTextParams(dim=8, epoch=1, min_count=1, bucket=200_000))
    with pytest.raises(MismatchError, match="reduce_model"):
        transplant_tokenizer(res["model"], res["target_tok"], "wechsel", source_tokenizer=res["source_tok"],
                             **dict(_options(res), target_fasttext=other))


def test_dictionary_formats(res, tmp_path):
    freedict = read_bilingual_dictionary(FREEDICT)
    assert ("house", "Haus") in freedict and ("cat", "Katze") in freedict
    assert all(" " not in s and " " not in t for s, t in freedict[:1000])
    assert read_bilingual_dictionary(res["tsv"]) == res["pairs"]
    swapped = read_bilingual_dictionary(res["tsv"], reverse=True)
    assert swapped[0] == res["pairs"][0][::-1]
    trans = tmp_path / "de-en"
    trans.write_text("# comment\nHaus {n} | Häuser {pl} :: house | houses\nKatze {f} [zool.]; Mieze {f} :: cat\n", encoding="utf-8")
    assert read_bilingual_dictionary(trans, reverse=True) == [("house", "Haus"), ("houses", "Häuser"), ("cat", "Katze"), ("cat", "Mieze")]


def test_cli(res, tmp_path, capsys):
    out = tmp_path / "out"
    code = main([
        "-q", "transplant", str(assets.splade_tiny_path()), str(res["target_dir"]), "--method", "wechsel",
        "--source-fasttext", str(res["en_path"]), "--target-fasttext", str(res["de_path"]), "--dictionary", str(res["tsv"]),
        "--neighbors", "5", "--progress", "false", "--out", str(out),
    ])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "vocabswap.json").read_text())
    assert record["method"] == "wechsel" and record["options"]["neighbors"] == 5
    assert record["options"]["dictionary"] == str(res["tsv"])
    assert record["method_stats"]["procrustes_pairs"] > 1000
    model = AutoModelForMaskedLM.from_pretrained(out)
    assert model.get_input_embeddings().weight.shape[0] == len(res["target_tok"])
    # A missing resource is a clean error naming the option, not a traceback.
    code = main(["-q", "transplant", str(assets.splade_tiny_path()), str(res["target_dir"]), "--method", "wechsel",
                 "--target-fasttext", str(res["de_path"]), "--dictionary", str(res["tsv"]), "--out", str(tmp_path / "o2")])
    assert code == 2 and "source_fasttext" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ukrainian_vectors(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wechsel-uk")
    text = folder / "uk.txt"
    texts = assets.ukrainian_texts("train", max_chars=150_000)
    text.write_text("\n".join(" ".join(_WORD.findall(t)) for t in texts), encoding="utf-8")
    return train_fasttext_retrying(text, FastTextParams(model="cbow", dim=16, epoch=3, min_count=2, bucket=200_000))


@pytest.mark.parametrize("family_name", ["bert", "roberta", "llama", "t5"])
@pytest.mark.parametrize("faithful", [False, True])
def test_tiny_families(ukrainian_vectors, family_name, faithful, tmp_path):
    import transformers

    from .families import FAMILY_BY_NAME, tokenizer_pair

    family = FAMILY_BY_NAME[family_name]
    src, tgt = tokenizer_pair(family.tokenizer)
    torch.manual_seed(0)
    model = family.build(len(src), src)
    # One language on both sides: the two spaces are the same, no dictionary needed.
    result = transplant_tokenizer(
        model, tgt, "wechsel", source_tokenizer=src, source_fasttext=ukrainian_vectors, target_fasttext=ukrainian_vectors,
        align="none", faithful=faithful, progress=False,
    )
    counts = result.report.counts
    assert sum(counts.values()) == len(tgt) and counts["combined"] > len(tgt) // 4
    assert counts["copied"] + counts["combined"] > 0.8 * len(tgt)
    for tid in result.plan.ids_of(COMBINED)[:200]:
        assert sum(w for _, w in result.plan.row(tid)) == pytest.approx(1.0)
    folder = result.save_pretrained(tmp_path / "out")
    reloaded = getattr(transformers, family.auto_class).from_pretrained(folder)
    assert torch.equal(reloaded.get_input_embeddings().weight, result.model.get_input_embeddings().weight)
    if result.model.get_output_embeddings() is not None and model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
        # Untied head: the same mixing on the output matrix, copies exact.
        out = result.model.get_output_embeddings().weight.detach()
        src_out = model.get_output_embeddings().weight.detach()
        for tid in result.plan.ids_of(COPIED):
            (sid, _), = result.plan.row(tid)
            assert torch.equal(out[tid], src_out[sid])
