"""Vocabulary expansion: the source tokenizer plus new tokens learned on Ukrainian text.

Sources (no Hub access): byte-level BPE (GPT-2 style, <|endoftext|> outside the model
vocabulary), SentencePiece BPE with byte fallback in two pipelines (Llama: Metaspace
pre-tokenizer; Gemma: Replace(" ", "▁") and no pre-tokenizer, with a chat template), the real
splade-tiny WordPiece (BERT), XLM-R-style Unigram (<mask> outside the model vocabulary), all
trained here on Ukrainian, and the real Gemma-3-270m tokenizer and model (slow tests).
Then the transplant of an expanded tokenizer: extend alignment, every registered method,
bit-exact kept rows, calibration of added rows only, and equal logits over kept tokens on
text without added tokens (tiny families, real splade-tiny, real Gemma-3-270m).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers
from tokenizers import Tokenizer, models
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from hf_vocabswap import assets
from hf_vocabswap.auxiliary.fasttext import FastTextParams, train_fasttext
from hf_vocabswap.cli import main as cli_main
from hf_vocabswap.errors import CorpusError, TokenizerError
from hf_vocabswap.methods import COPIED, available_methods
from hf_vocabswap.tokenizer_expansion import expand_tokenizer, learn_expansion
from hf_vocabswap.tokenizer_training import check_trained_tokenizer, train_tokenizer
from hf_vocabswap.tokenizer_trimming import kept_source_ids, trim_tokenizer
from hf_vocabswap.tokenizer_words import word_splitter
from hf_vocabswap.transplant import transplant_tokenizer

from .families import FAMILIES, FAMILY_BY_NAME, randomize_biases, tokenizer_pair
from .test_tokenizer_training import build_gemma_like, build_gpt2, build_xlmr

K = 400
KINDS = ["gpt2", "llama", "gemma", "bert", "xlmr"]
CHAT_TEMPLATE = "{% for m in messages %}<start_of_turn>{{ m['content'] }}<end_of_turn>{% endfor %}"


@pytest.fixture(scope="module")
def texts():
    train = assets.ukrainian_texts("train", max_chars=120_000)
    heldout = assets.ukrainian_texts("heldout", max_chars=30_000)
    return train, heldout


@pytest.fixture(scope="module")
def sources(texts, splade_path):
    uk = assets.ukrainian_texts("train", max_chars=200_000)[-600:]  # not the expansion corpus
    gemma = build_gemma_like(uk, vocab=3000)
    gemma.chat_template = CHAT_TEMPLATE
    return {
        "gpt2": build_gpt2(uk, vocab=2000),
        "llama": tokenizer_pair("llama_spbpe")[0],
        "gemma": gemma,
        "bert": AutoTokenizer.from_pretrained(splade_path),
        "xlmr": build_xlmr(uk, vocab=2000),
    }


@pytest.fixture(scope="module")
def expanded(sources, texts):
    return {name: expand_tokenizer(src, texts[0], K, progress=False) for name, src in sources.items()}


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def tokens_per_word(tok, texts) -> float:
    return sum(len(_ids(tok, t)) for t in texts) / sum(len(t.split()) for t in texts)


def _snippets(texts, words=4):
    """Short held-out snippets (groups of a few words), many of which need no added token."""
    out = []
    for text in texts:
        parts = text.split()
        out.extend(" ".join(parts[i:i + words]) for i in range(0, len(parts), words))
    return out


# ----------------------------------------------------------------------------- the guarantees
@pytest.mark.parametrize("name", KINDS)
def test_every_source_token_keeps_its_id_and_string(sources, expanded, name):
    src, tgt = sources[name], expanded[name]
    n = len(src)
    assert len(tgt) == n + K
    assert tgt.convert_ids_to_tokens(list(range(n))) == src.convert_ids_to_tokens(list(range(n)))
    new = tgt.convert_ids_to_tokens(list(range(n, n + K)))
    assert len(set(new)) == K and not set(new) & set(src.get_vocab())  # no collision with existing strings
    for role in ("bos", "eos", "pad", "unk", "mask", "cls", "sep"):
        assert getattr(tgt, f"{role}_token_id") == getattr(src, f"{role}_token_id"), role
    assert {i: t.content for i, t in tgt.added_tokens_decoder.items()} == {i: t.content for i, t in src.added_tokens_decoder.items()}
    assert tgt.chat_template == src.chat_template and tgt.model_max_length == src.model_max_length
    for text in ("Добрий день", "Добрий день, як справи?"):  # the post-processor adds what it added
        s, t = src(text)["input_ids"], tgt(text)["input_ids"]
        assert [i for i in t if i in src.all_special_ids] == [i for i in s if i in src.all_special_ids]


@pytest.mark.parametrize("name", KINDS)
def test_text_needing_no_added_token_tokenizes_identically(sources, expanded, texts, name):
    src, tgt = sources[name], expanded[name]
    n, checked = len(src), 0
    for snippet in _snippets(texts[1], words=1):
        ids = tgt(snippet)["input_ids"]
        if all(i < n for i in ids):
            assert ids == src(snippet)["input_ids"], snippet
            checked += 1
    assert checked >= 100


@pytest.mark.parametrize("name", KINDS)
def test_added_tokens_lower_tokens_per_word(sources, texts, expanded, name):
    src, heldout = sources[name], texts[1]
    small = learn_expansion(src, texts[0], 100, progress=False).tokenizer()
    before, after_100, after = tokens_per_word(src, heldout), tokens_per_word(small, heldout), tokens_per_word(expanded[name], heldout)
    assert after < after_100 < before
    assert after < 0.97 * before, (before, after_100, after)


@pytest.mark.parametrize("name", KINDS)
def test_added_tokens_never_cross_a_word_boundary(sources, expanded, texts, name):
    src, tgt = sources[name], expanded[name]
    n = len(src)
    report = check_trained_tokenizer(tgt, [])
    assert report["pieces_crossing_word_boundary"] == check_trained_tokenizer(src, [])["pieces_crossing_word_boundary"]
    split = word_splitter(None, individual_digits=False)
    used = 0
    for text in texts[1]:
        enc = tgt(text, add_special_tokens=False, return_offsets_mapping=True)
        for tid, (start, end) in zip(enc["input_ids"], enc["offset_mapping"]):
            if tid < n:
                continue
            span = text[start:end].lstrip(" ")
            assert span and len(split(span)) == 1, (tgt.convert_ids_to_tokens(tid), text[start:end])
            used += 1
    assert used > 100


@pytest.mark.parametrize("name", KINDS)
def test_save_and_reload_with_stock_autotokenizer(expanded, texts, tmp_path, name):
    tgt = expanded[name]
    tgt.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert len(again) == len(tgt) and again.chat_template == tgt.chat_template
    for text in texts[1][:40]:
        assert again(text)["input_ids"] == tgt(text)["input_ids"]


def test_first_k_tokens_are_the_expansion_by_k(sources, texts):
    src = sources["llama"]
    long = learn_expansion(src, texts[0], 300, progress=False)
    short = learn_expansion(src, texts[0], 120, progress=False)
    assert long.tokens[:120] == short.tokens and long.pairs[:120] == short.pairs
    assert long.tokenizer(120).backend_tokenizer.to_str() == short.tokenizer().backend_tokenizer.to_str()
    again = learn_expansion(src, texts[0], 300, progress=False)  # deterministic
    assert again.tokenizer().backend_tokenizer.to_str() == long.tokenizer().backend_tokenizer.to_str()


def test_bpe_merges_follow_the_source_merges(sources, expanded):
    src, tgt = sources["gpt2"], expanded["gpt2"]
    s_merges = json.loads(src.backend_tokenizer.to_str())["model"]["merges"]
    t_model = json.loads(tgt.backend_tokenizer.to_str())["model"]
    assert t_model["merges"][: len(s_merges)] == s_merges and len(t_model["merges"]) == len(s_merges) + K
    vocab = t_model["vocab"]
    assert all(vocab[a + b] >= len(src) for a, b in t_model["merges"][len(s_merges):])
    assert vocab["<|endoftext|>"] == src.convert_tokens_to_ids("<|endoftext|>")  # its id is not given away


def test_unigram_scores_on_the_source_scale(sources, expanded):
    src, tgt = sources["xlmr"], expanded["xlmr"]
    s_vocab = json.loads(src.backend_tokenizer.to_str())["model"]["vocab"]
    t_vocab = json.loads(tgt.backend_tokenizer.to_str())["model"]["vocab"]
    assert t_vocab[: len(s_vocab)] == s_vocab
    new = [s for _, s in t_vocab[len(src):]]
    source_scores = [s for _, s in s_vocab if s != 0.0]
    assert min(source_scores) < min(new) and max(new) < 0  # log-probabilities, inside the source's range


# ----------------------------------------------------------------------------- with trimming
def test_trim_then_expand_keeps_the_trim_guarantee(sources, texts):
    src, (train, heldout) = sources["llama"], texts
    trimmed = trim_tokenizer(src, train)
    only_trim = train_tokenizer(src, train, add_tokens=0, trim=True, progress=False)
    assert only_trim.backend_tokenizer.to_str() == trimmed.backend_tokenizer.to_str()
    both = train_tokenizer(src, train, add_tokens=K, trim=True, progress=False)
    m = len(trimmed)
    assert len(both) == m + K
    assert both.convert_ids_to_tokens(list(range(m))) == trimmed.convert_ids_to_tokens(list(range(m)))
    kept, checked = set(trimmed.get_vocab()), 0
    for snippet in _snippets(heldout):
        ids = both(snippet)["input_ids"]
        source_tokens = src.convert_ids_to_tokens(src(snippet)["input_ids"])
        if all(i < m for i in ids) and all(t in kept for t in source_tokens):
            assert both.convert_ids_to_tokens(ids) == source_tokens, snippet  # exact source tokens
            checked += 1
    assert checked >= 50
    assert tokens_per_word(both, heldout) < tokens_per_word(trimmed, heldout)


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs(sources, texts, caplog):
    src, train = sources["llama"], texts[0][:50]
    for bad in (0, -3, 2.5, "100", True):
        with pytest.raises(TokenizerError, match="add_tokens"):
            train_tokenizer(src, train, add_tokens=bad, progress=False)
    with pytest.raises(TokenizerError, match="either vocab_size=8000 .* or add_tokens=100"):
        train_tokenizer(src, train, 8000, add_tokens=100)
    with pytest.raises(TokenizerError, match="keep_special"):
        train_tokenizer(src, train, add_tokens=10, keep_special="all")
    with pytest.raises(CorpusError):
        train_tokenizer(src, ["", " "], add_tokens=10, progress=False)
    word_level = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]")), unk_token="[UNK]")
    with pytest.raises(TokenizerError, match="WordLevel"):
        train_tokenizer(word_level, train, add_tokens=10)
    with caplog.at_level(logging.WARNING, logger="hf_vocabswap.tokenizer_expansion"):
        tok = train_tokenizer(src, ["кіт кіт кіт пес пес"], add_tokens=1000, progress=False)
    learned = len(tok) - len(src)
    assert 0 < learned < 1000
    assert f"supports only {learned} new tokens" in caplog.text


def test_cli(sources, texts, tmp_path, capsys):
    src = sources["gemma"]
    src.save_pretrained(tmp_path / "src")
    corpus = assets.write_texts(texts[0][:300], tmp_path / "uk.txt")
    out = tmp_path / "out"
    assert cli_main(["-q", "train-tokenizer", str(tmp_path / "src"), "--corpus", str(corpus), "--add-tokens", "200",
                     "--out", str(out)]) == 0
    tok = AutoTokenizer.from_pretrained(out)
    assert len(tok) == len(src) + 200 and tok.convert_ids_to_tokens(list(range(len(src)))) == src.convert_ids_to_tokens(list(range(len(src))))
    assert cli_main(["-q", "train-tokenizer", str(tmp_path / "src"), "--corpus", str(corpus), "--add-tokens", "50", "--trim",
                     "--out", str(tmp_path / "both")]) == 0
    assert len(AutoTokenizer.from_pretrained(tmp_path / "both")) == len(trim_tokenizer(src, str(corpus))) + 50
    capsys.readouterr()
    assert cli_main(["train-tokenizer", str(tmp_path / "src"), "--corpus", str(corpus), "--add-tokens", "50",
                     "--vocab-size", "1000", "--out", str(tmp_path / "x")]) == 2
    assert "either vocab_size=1000" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert cli_main(["train-tokenizer", str(tmp_path / "src"), "--corpus", str(corpus), "--add-tokens", "0",
                     "--out", str(tmp_path / "y")]) == 2
    assert "--trim" in capsys.readouterr().err
    usage = subprocess.run([sys.executable, "-m", "hf_vocabswap.cli", "train-tokenizer", "s", "--corpus", "c",
                            "--add-tokens", "many", "--out", "o"], capture_output=True, text=True)
    assert usage.returncode == 2 and "--add-tokens" in usage.stderr


# ----------------------------------------------------------------------------- transplant
def _forward(model, ids, kind):
    ids = torch.as_tensor([ids])
    if kind == "seq2seq":
        out = model(input_ids=ids, decoder_input_ids=ids, output_hidden_states=True)
        return out.decoder_hidden_states[-1], out.logits
    out = model(input_ids=ids, output_hidden_states=True)
    return out.hidden_states[-1], out.logits


def _text_without_added_tokens(source, expanded, texts, words=24):
    """Held-out words that need no added token, in their order, joined into one text."""
    n = len(source)
    kept = [w for w in _snippets(texts, words=1)[:2000] if all(i < n for i in _ids(expanded, " " + w))]
    assert len(kept) >= words, "too few held-out words without added tokens"
    text = " ".join(kept[:words])
    assert all(i < n for i in expanded(text)["input_ids"])
    return text


def _check_kept_rows(result, model, n):
    src_in, tgt_in = model.get_input_embeddings().weight, result.model.get_input_embeddings().weight
    assert result.alignment.mode == "extend"
    assert torch.equal(tgt_in[:n], src_in[:n])
    if model.get_output_embeddings() is not None:
        src_out, tgt_out = model.get_output_embeddings(), result.model.get_output_embeddings()
        assert torch.equal(tgt_out.weight[:n], src_out.weight[:n])
        if getattr(src_out, "bias", None) is not None:
            assert torch.equal(tgt_out.bias[:n], src_out.bias[:n])
    assert torch.isfinite(tgt_in).all()


def _check_exactness(result, model, source, expanded, texts, kind, atol=1e-5):
    """On text without added tokens: same ids, same hidden states, same logits over kept tokens."""
    n = len(source)
    text = _text_without_added_tokens(source, expanded, texts)
    ids = expanded(text)["input_ids"][:64]
    assert ids == source(text)["input_ids"][:64]
    with torch.no_grad():
        s_hidden, s_logits = _forward(model.eval(), ids, kind)
        t_hidden, t_logits = _forward(result.model.eval(), ids, kind)
    assert torch.equal(s_hidden, t_hidden)
    torch.testing.assert_close(t_logits[..., :n], s_logits[..., :n], rtol=0, atol=atol)
    assert torch.equal(t_logits[..., :n].argmax(-1), s_logits[..., :n].argmax(-1))


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_transplant_of_an_expanded_tokenizer_is_exact_on_kept_text(family, texts):
    source = tokenizer_pair(family.tokenizer)[0]
    expanded = expand_tokenizer(source, texts[0], 150, progress=False)
    torch.manual_seed(0)
    model = family.build(len(source), source)
    randomize_biases(model)
    result = transplant_tokenizer(model, expanded, "fvt", source_tokenizer=source)
    _check_kept_rows(result, model, len(source))
    _check_exactness(result, model, source, expanded, texts[1], family.kind)


def test_real_splade_tiny_expanded(splade_path, texts):
    source = AutoTokenizer.from_pretrained(splade_path)
    model = transformers.AutoModelForMaskedLM.from_pretrained(splade_path).eval()
    expanded = expand_tokenizer(source, texts[0], 300, progress=False)
    result = transplant_tokenizer(model, expanded, "fvt", source_tokenizer=source)
    _check_kept_rows(result, model, len(source))
    _check_exactness(result, model, source, expanded, texts[1], "masked")


def _method_options(name, model, source, expanded, train, tmp_path):
    """The resources each method needs, built small from the training text."""
    if name in ("clp", "omp"):
        helper = transplant_tokenizer(model, expanded, "fvt", source_tokenizer=source).model  # stand-in helper/donor
        return {"helper_model" if name == "clp" else "donor_model": helper, "progress": False}
    if name in ("focus", "hybrid"):
        return {"corpus": train, "min_count": 1, "epochs": 1, "threads": 1, "cache_dir": str(tmp_path / "ft"), "progress": False}
    if name in ("wechsel", "ofa"):
        path = tmp_path / "words.txt"
        path.write_text("\n".join(train), encoding="utf-8")
        vectors = train_fasttext(path, FastTextParams(dim=16, epoch=2, min_count=2, bucket=100_000), threads=1)
        if name == "ofa":
            return {"word_vectors": vectors, "progress": False}
        return {"source_fasttext": vectors, "target_fasttext": vectors, "align": "none", "progress": False}
    if name == "trim":
        return {"corpus": train}
    return {}


def test_every_registered_method_on_an_expanded_tokenizer(texts, tmp_path):
    family = FAMILY_BY_NAME["llama"]  # untied head, byte fallback
    source = tokenizer_pair(family.tokenizer)[0]
    train = texts[0][:400]
    expanded = expand_tokenizer(source, train, 100, progress=False)
    n = len(source)
    torch.manual_seed(0)
    model = family.build(n, source)
    for name in available_methods():
        options = _method_options(name, model, source, expanded, train, tmp_path)
        result = transplant_tokenizer(model, expanded, name, source_tokenizer=source, **options)
        if name == "trim":  # trims the expanded tokenizer to the corpus: kept rows copied
            src_ids = kept_source_ids(result.tokenizer, source)
            kept = np.flatnonzero(src_ids >= 0)
            assert torch.equal(result.model.get_input_embeddings().weight[kept], model.get_input_embeddings().weight[src_ids[kept]])
            continue
        assert len(result.tokenizer) == n + 100, name
        if name in ("mean", "random"):  # control baselines: every row replaced, by design
            assert not (result.plan.kinds == COPIED).any(), name
        else:
            assert (result.plan.kinds[:n] == COPIED).all(), name
            _check_kept_rows(result, model, n)
        new_rows = result.model.get_input_embeddings().weight[n:]
        assert torch.isfinite(new_rows).all() and new_rows.abs().sum() > 0, name


def test_calibration_touches_only_added_tokens(texts):
    family = FAMILY_BY_NAME["gpt2"]  # tied head with a bias-free output; calibration shifts rows
    source = tokenizer_pair(family.tokenizer)[0]
    expanded = expand_tokenizer(source, texts[0], 150, progress=False)
    n = len(source)
    torch.manual_seed(0)
    model = family.build(n, source)
    plain = transplant_tokenizer(model, expanded, "fvt", source_tokenizer=source)
    calibrated = transplant_tokenizer(model, expanded, "fvt", source_tokenizer=source, corpus=texts[0][:300], calibrate=True)
    before, after = plain.model.state_dict(), calibrated.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, "calibration changed nothing"
    for key in changed:
        assert before[key].shape[0] == n + 150, key  # only vocabulary matrices
        assert torch.equal(before[key][:n], after[key][:n]), key
    _check_kept_rows(calibrated, model, n)
    _check_exactness(calibrated, model, source, expanded, texts[1], family.kind)


# ----------------------------------------------------------------------------- real Gemma-3-270m
@pytest.fixture(scope="module")
def gemma():
    from hf_vocabswap.gguf import load_gguf

    model, tok = load_gguf(assets.gemma_gguf_path())
    return model.eval(), tok


@pytest.mark.slow
def test_real_gemma3_expanded(gemma):
    model, tok = gemma
    train = assets.ukrainian_texts("train", max_chars=300_000)
    heldout = assets.ukrainian_texts("heldout", max_chars=30_000)
    expansion = learn_expansion(tok, train, 2000, progress=False)
    expanded = expansion.tokenizer()
    n = len(tok)
    assert n == 262_144 and len(expanded) == n + 2000
    assert expanded.convert_ids_to_tokens(list(range(0, n, 97))) == tok.convert_ids_to_tokens(list(range(0, n, 97)))
    assert expanded.chat_template == tok.chat_template and expanded("Так")["input_ids"][0] == tok.bos_token_id
    assert tokens_per_word(expanded, heldout) < 0.93 * tokens_per_word(tok, heldout)
    checked = 0
    for snippet in _snippets(heldout)[:600]:
        ids = expanded(snippet)["input_ids"]
        if all(i < n for i in ids):
            assert ids == tok(snippet)["input_ids"], snippet
            checked += 1
    assert checked >= 100
    result = transplant_tokenizer(model, expanded, "fvt", source_tokenizer=tok)
    _check_kept_rows(result, model, n)
    # Same hidden states times the same rows; only the matmul's blocking may differ.
    _check_exactness(result, model, tok, expanded, heldout, "causal", atol=1e-4)
