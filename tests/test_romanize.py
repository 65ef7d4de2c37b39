"""Matching through romanization (hf_vocabswap.romanize): scripts, the measured coverage, uroman,
the romanized match kind, and its use by FVT, FOCUS and the hybrid in a whole transplant."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from hf_vocabswap import errors, romanize
from hf_vocabswap.methods import COMBINED, COPIED
from hf_vocabswap.romanize import Romanizer, char_script, get_romanizer, romanize_alignment, script_coverage, token_script
from hf_vocabswap.transplant import transplant_tokenizer
from hf_vocabswap.vocab import MATCH_EXACT, MATCH_NONE, MATCH_ROMANIZED, align_vocabularies

# What uroman 1.3 writes for one token of each script (and which script the token is in).
EXPECTED = {
    "кіт": ("Cyrillic", "kit"),
    "Привіт": ("Cyrillic", "Privit"),
    "γάτα": ("Greek", "gata"),
    "قطة": ("Arabic", "qta"),
    "बिल्ली": ("Devanagari", "billii"),
    "猫": ("Han", "mao"),
    "北京": ("Han", "beijing"),
}
# English words, so that the target also has Latin-script tokens (a script the source covers well).
ENGLISH = "the house of the people is open to every student and teacher in the city " * 40


@pytest.fixture(scope="module")
def uroman():
    return get_romanizer(True)


@pytest.fixture(scope="module")
def pair(splade_path, ukrainian_train):
    src = AutoTokenizer.from_pretrained(splade_path)
    texts = ukrainian_train[:1200] + [ENGLISH] * 20
    return src, src.train_new_from_iterator(texts, 2500), texts


@pytest.fixture(scope="module")
def model(splade_path):
    return AutoModelForMaskedLM.from_pretrained(splade_path)


def _romanized(pair, romanizer):
    src, tgt, _ = pair
    alignment = align_vocabularies(src, tgt)
    before = (alignment.target_to_source.copy(), alignment.match.copy())
    return alignment, before, romanize_alignment(alignment, romanizer)


# ------------------------------------------------------------------------------ the romanizer
def test_uroman_forms_of_five_scripts_are_stable_and_deterministic(uroman):
    for text, (script, roman) in EXPECTED.items():
        assert token_script(text) == script
        assert uroman(text) == roman
        assert uroman.function(text) == roman  # a second computation, past the cache
    assert get_romanizer("uroman") is uroman  # loaded once per process


def test_scripts_of_characters():
    assert [char_script(c) for c in "k1 ,й"] == ["Latin", None, None, None, "Cyrillic"]
    assert char_script("\u0301") is None  # a combining accent belongs to no script
    assert token_script("12,5") is None
    assert token_script("kиїв") == "Cyrillic"  # the majority of its letters


def test_custom_romanizer_is_cached_and_bad_values_are_refused():
    calls = []

    def upper(text):
        calls.append(text)
        return text.upper()

    r = get_romanizer(upper)
    assert (r("ab"), r("ab"), r.name) == ("AB", "AB", "upper")
    assert calls == ["ab"]
    with pytest.raises(errors.MethodOptionError, match="must return a string"):
        Romanizer(lambda text: None, "broken")("ab")
    with pytest.raises(errors.MethodOptionError, match="romanize must be"):
        get_romanizer("latin")
    assert get_romanizer(False) is None and get_romanizer(None) is None


def test_missing_uroman_names_the_extra(monkeypatch, splade_path):
    monkeypatch.setattr(romanize, "_UROMAN", None)
    monkeypatch.setitem(sys.modules, "uroman", None)  # `import uroman` now raises ImportError
    with pytest.raises(errors.ResourceError, match=r"hf-vocabswap\[romanize\]"):
        get_romanizer(True)
    # The transplant checks it before loading anything: the missing model path is not reached.
    with pytest.raises(errors.ResourceError, match="uroman"):
        transplant_tokenizer("/nonexistent/model", splade_path, "fvt", romanize=True)


# ------------------------------------------------------------------------------ the alignment
def test_coverage_is_measured_per_script(pair):
    src, tgt, _ = pair
    alignment = align_vocabularies(src, tgt)
    cov = script_coverage(alignment.source, alignment.target)
    assert cov["Latin"]["covered"] > 0.5 > cov["Cyrillic"]["covered"]
    assert cov["Cyrillic"]["tokens"] > cov["Latin"]["tokens"] > 10
    # The source itself covers its own Latin tokens fully: every multi-letter word is one piece.
    own = script_coverage(alignment.source, alignment.source)
    assert own["Latin"]["covered"] > 0.9


def test_only_new_tokens_of_poorly_covered_scripts_are_romanized(pair, uroman):
    src, tgt, _ = pair
    alignment, (t2s, match), done = _romanized(pair, uroman)
    assert "Cyrillic" in done["poor_scripts"] and "Latin" not in done["poor_scripts"]
    assert done["romanized"] > 1000 and done["matched"] > 50
    for tid, form in alignment.romanized.items():
        text = alignment.target.forms[tid].text.decode()
        assert token_script(text) in done["poor_scripts"]
        assert form.word_start == alignment.target.forms[tid].word_start
        assert form.text.decode() == uroman(text)
    latin = [t for t, f in enumerate(alignment.target.forms) if f is not None and token_script(f.text.decode("utf-8", "ignore")) == "Latin"]
    assert latin and not set(latin) & set(alignment.romanized)
    # Romanized matches never override exact ones: every earlier match is as it was.
    assert np.array_equal(alignment.target_to_source, t2s)
    kept = match != MATCH_NONE
    assert np.array_equal(alignment.match[kept], match[kept])
    exact_cyrillic = [t for t in np.flatnonzero(match == MATCH_EXACT) if token_script(alignment.target.forms[t].text.decode("utf-8", "ignore")) == "Cyrillic"]
    assert exact_cyrillic and not set(exact_cyrillic) & set(alignment.romanized)
    # A romanized match is a whole source token; the others split into several.
    whole = np.flatnonzero(alignment.match == MATCH_ROMANIZED)
    assert len(whole) == done["matched"]
    for tid in whole[:50]:
        assert alignment.source.segment(alignment.romanized[tid]) == [alignment.romanized_source[tid]]
    assert alignment.summary()["matched_by"]["romanized"] == done["matched"]
    assert alignment.summary()["overlap"] == alignment.overlap_size == int((t2s >= 0).sum())


def test_empty_romanizations_fall_back_and_are_counted(pair, uroman):
    alignment, _, done = _romanized(pair, Romanizer(lambda text: "", "empty"))
    assert done["romanized"] == done["matched"] == 0
    assert done["empty"] > 1000
    assert not alignment.romanized and not (alignment.match == MATCH_ROMANIZED).any()
    # Empty for one script only: the tokens of that script fall back, the others are romanized.
    greekless = Romanizer(lambda text: "" if token_script(text) == "Cyrillic" and "к" in text else uroman(text), "partial")
    alignment, _, partial = _romanized(pair, greekless)
    assert partial["empty"] > 0 and partial["romanized"] > 0
    assert all("к" not in alignment.target.forms[t].text.decode() for t in alignment.romanized)
    with pytest.raises(errors.MethodOptionError, match="threshold"):
        romanize_alignment(alignment, uroman, threshold=1.5)


# ------------------------------------------------------------------------------ the transplant
def _transplant(model, pair, method, romanize, **kw):
    src, tgt, texts = pair
    corpus = texts if method != "fvt" else None
    return transplant_tokenizer(model, tgt, method, source_tokenizer=src, corpus=corpus, romanize=romanize, **kw)


def test_fvt_splits_the_romanized_form(model, pair, uroman):
    plain = _transplant(model, pair, "fvt", False)
    roman = _transplant(model, pair, "fvt", True)
    alignment = roman.alignment
    assert roman.report.alignment["romanization"]["romanized"] == len(alignment.romanized) > 1000
    assert "romanization" not in plain.report.alignment
    assert plain.report.overlap == roman.report.overlap  # romanized matches are no overlap
    changed = 0
    for tid, form in list(alignment.romanized.items())[:300]:
        pieces = alignment.source.segment(form)
        row = roman.plan.row(tid)
        assert sorted(s for s, _ in row) == sorted(set(pieces))
        changed += sorted(s for s, _ in plain.plan.row(tid)) != sorted(s for s, _ in row)
    assert changed > 200
    tid = int(np.flatnonzero(alignment.match == MATCH_ROMANIZED)[0])
    name = roman.tokenizer.convert_ids_to_tokens(tid)
    roman_text = alignment.romanized[tid].text.decode()
    assert roman.explain(name).endswith(f"; from `{roman_text}` by romanization")
    assert "romanization" not in plain.explain(name)
    assert "romanized by uroman" in str(roman.report)


def test_focus_and_hybrid_use_romanized_matches_as_anchors(model, pair, tmp_path):
    kw = dict(cache_dir=str(tmp_path), threads=1, epochs=1)
    focus = _transplant(model, pair, "focus", True, **kw)
    stats = focus.plan.stats
    assert stats["romanized_anchors"] > 0
    whole = np.flatnonzero(focus.alignment.match == MATCH_ROMANIZED)
    copied = whole[focus.plan.kinds[whole] == COPIED]
    assert len(copied) >= stats["romanized_anchors"]
    assert all(focus.plan.row(t) == [(int(focus.alignment.romanized_source[t]), 1.0)] for t in copied[:20])
    # The default method (auto: the hybrid for a masked LM with a corpus), twice: bit-identical.
    first = _transplant(model, pair, "auto", True, **kw)
    second = _transplant(model, pair, "auto", True, **kw)
    assert first.report.method == "hybrid"
    assert torch.equal(first.model.get_input_embeddings().weight, second.model.get_input_embeddings().weight)
    assert first.report.method_stats["focus"]["romanized_anchors"] > 0
    # A romanized match's local (FVT) row is its source token; new tokens stay new (calibrated).
    assert (first.plan.kinds[whole] == COMBINED).all()
    plain = _transplant(model, pair, "auto", False, **kw)
    assert not torch.equal(first.model.get_input_embeddings().weight, plain.model.get_input_embeddings().weight)


def test_card_mentions_romanized_matches(model, pair, tmp_path):
    result = _transplant(model, pair, "fvt", True)
    out = result.save_pretrained(tmp_path / "out")
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "Romanization: " in card and "match a source token by romanization" in card
    assert "romanized " not in card.split("matched by", 1)[-1].split(".", 1)[0]  # not counted as overlap


# ------------------------------------------------------------------------------ the benchmark's verdict
def test_benchmark_verdict_needs_a_gain_beyond_noise():
    from benchmarks.romanize import summarize, verdict  # lazy: the benchmark package is only needed here

    def variant(zero, last):
        return {"summary": summarize([{"zero_shot_bpc": z, "last_bpc": x} for z, x in zip(zero, last)])}

    case = {"variants": {"auto": variant([3.25, 3.20], [3.00, 3.01]), "auto+romanize": variant([3.05, 3.06], [3.00, 3.00]),
                         "fvt": variant([3.60, 3.61], [3.07, 3.07]), "fvt+romanize": variant([3.59, 3.60], [3.07, 3.08])}}
    rows = verdict(case)
    assert rows["auto"]["zero_shot_noise"] == pytest.approx(0.05)
    assert rows["auto"]["helps"]  # 0.17 lower, more than twice the 0.05 spread, and no worse after LAPT
    assert not rows["fvt"]["helps"]  # 0.01 lower: within twice the noise
    case["variants"]["auto+romanize"] = variant([3.05, 3.06], [3.10, 3.11])
    assert not verdict(case)["auto"]["helps"]  # worse after LAPT
