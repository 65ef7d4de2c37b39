"""Vocabulary trimming: consistent smaller tokenizers (same tokenization of kept text), merges,
special and byte tokens kept, scripts dropped, exact row copies and parameters saved, extend
mode, the CLI, and the real Gemma-3-270m trimmed to a Ukrainian corpus."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers

from hf_vocabswap import assets
from hf_vocabswap.cli import main as cli_main
from hf_vocabswap.errors import CorpusError, MethodOptionError
from hf_vocabswap.methods import COMBINED, COPIED
from hf_vocabswap.transplant import transplant_tokenizer
from hf_vocabswap.tokenizer_trimming import kept_source_ids, trim_tokenizer
from hf_vocabswap.tokenizer_json import BYTE_TO_CHAR

from .families import FAMILY_BY_NAME, build_tokenizer, tokenizer_pair

KINDS = ["gpt2_bpe", "roberta_bpe", "llama_spbpe", "xlmr_unigram", "wordpiece"]


@pytest.fixture(scope="module")
def texts():
    train = assets.ukrainian_texts("train", max_chars=40_000)
    heldout = assets.ukrainian_texts("heldout", max_chars=40_000)
    return train, heldout


def _tokens(tok, text):
    return tok.convert_ids_to_tokens(tok(text)["input_ids"])


def check_same_tokenization(source, trimmed, heldout) -> int:
    """Held-out texts whose tokens were all kept are tokenized identically; returns how many."""
    kept = set(trimmed.get_vocab())
    checked = 0
    for text in heldout:
        before = _tokens(source, text)
        if all(t in kept for t in before):
            assert _tokens(trimmed, text) == before, text
            checked += 1
    return checked


@pytest.mark.parametrize("kind", KINDS)
def test_kept_text_tokenizes_identically(kind, texts):
    train, heldout = texts
    source = tokenizer_pair(kind)[0]
    trimmed = trim_tokenizer(source, train)
    assert len(trimmed) < len(source)
    assert check_same_tokenization(source, trimmed, heldout) >= 10
    # Special tokens keep their roles, and the post-processor still inserts them.
    for role in ("bos", "eos", "pad", "unk", "mask", "cls", "sep"):
        assert getattr(trimmed, f"{role}_token") == getattr(source, f"{role}_token")
    assert set(source.all_special_tokens) <= set(trimmed.get_vocab())
    specials = set(source.all_special_tokens)
    for text in ("Привіт, світе!", heldout[0]):
        assert [t for t in _tokens(trimmed, text) if t in specials] == [t for t in _tokens(source, text) if t in specials]
    assert trimmed.model_max_length == source.model_max_length


def test_bpe_merges_and_alphabets(texts):
    train, heldout = texts
    for kind in ("gpt2_bpe", "llama_spbpe"):
        source = tokenizer_pair(kind)[0]
        trimmed = trim_tokenizer(source, train[:50])
        spec = json.loads(trimmed.backend_tokenizer.to_str())
        vocab = spec["model"]["vocab"]
        merges = spec["model"]["merges"]
        assert len(merges) < len(json.loads(source.backend_tokenizer.to_str())["model"]["merges"])
        assert all(a in vocab and b in vocab and a + b in vocab for a, b in merges)
        if kind == "gpt2_bpe":  # the byte-level alphabet stays: any text remains encodable
            assert all(ch in vocab for ch in BYTE_TO_CHAR.values())
        else:  # byte-fallback pieces stay
            assert all(f"<0x{b:02X}>" in vocab for b in range(256))
        # Text with removed tokens is still encoded without <unk>, and decodes back.
        for text in heldout[:30]:
            ids = trimmed(text, add_special_tokens=False)["input_ids"]
            assert trimmed.unk_token_id is None or trimmed.unk_token_id not in ids
            assert trimmed.decode(ids).strip() == text.strip()


def test_keep_special_used(texts):
    train, heldout = texts
    source = tokenizer_pair("qwen_bpe")[0]  # <|im_start|> is special without a role
    all_kept = trim_tokenizer(source, train[:200])
    used = trim_tokenizer(source, train[:200], keep_special="used")
    assert "<|im_start|>" in all_kept.get_vocab() and "<|im_start|>" not in used.get_vocab()
    assert "<|im_end|>" in used.get_vocab() and "<|endoftext|>" in used.get_vocab()  # eos and pad roles
    assert check_same_tokenization(source, used, heldout) >= 5


def has(tok, pattern) -> bool:
    """Whether any token of ``tok`` decodes to text matching ``pattern``."""
    import regex

    return any(regex.search(pattern, tok.decode([i])) for i in range(len(tok)))


def test_drop_scripts(texts):
    train, heldout = texts
    foreign = ["我们今天去公园散步。天气很好。", "中文文本和汉字测试。", "مرحبا بالعالم، هذا نص عربي.", "Hello world, plain English text."] * 20
    source = build_tokenizer("gpt2_bpe", train[:300] + foreign, 3000)
    assert has(source, r"\p{Han}") and has(source, r"\p{Arabic}")
    # With a corpus: used tokens, minus the dropped scripts (even though the corpus uses them).
    trimmed = trim_tokenizer(source, train[:300] + foreign, drop_scripts=["Han", "Arabic"])
    assert not has(trimmed, r"\p{Han}") and not has(trimmed, r"\p{Arabic}") and has(trimmed, r"\p{Latin}")
    assert check_same_tokenization(source, trimmed, heldout[:60]) >= 5
    # Without a corpus: everything but the dropped scripts; comma-separated names work too.
    no_corpus = trim_tokenizer(source, None, drop_scripts="Han, Arabic")
    assert not has(no_corpus, r"\p{Han}") and len(no_corpus) > len(trimmed)
    assert _tokens(no_corpus, "Привіт, як справи?") == _tokens(source, "Привіт, як справи?")
    with pytest.raises(ValueError, match="Unicode script"):
        trim_tokenizer(source, None, drop_scripts=["Klingon"])


# -- the trim method on a small model ------------------------------------------------------

FAMILY = FAMILY_BY_NAME["llama"]  # untied head and byte fallback


@pytest.fixture(scope="module")
def small_model():
    source = tokenizer_pair(FAMILY.tokenizer)[0]
    torch.manual_seed(0)
    return source, FAMILY.build(len(source), source)


def _check_exact_copy(result, model, source_tok):
    src_ids = kept_source_ids(result.tokenizer, source_tok)
    copied = np.flatnonzero(src_ids >= 0)
    idx, sidx = torch.as_tensor(copied), torch.as_tensor(src_ids[copied])
    assert torch.equal(result.model.get_input_embeddings().weight[idx], model.get_input_embeddings().weight[sidx])
    assert torch.equal(result.model.get_output_embeddings().weight[idx], model.get_output_embeddings().weight[sidx])
    return src_ids


def test_method_trims_and_copies_rows_exactly(small_model, texts):
    train, heldout = texts
    source_tok, model = small_model
    result = transplant_tokenizer(model, None, "trim", source_tokenizer=source_tok, corpus=train)
    n_t = len(result.tokenizer)
    assert n_t < len(source_tok) and (result.plan.kinds == COPIED).all()
    src_ids = _check_exact_copy(result, model, source_tok)
    # Parameters saved: both matrices (untied), d per removed row each.
    stats = result.report.method_stats
    d = model.config.hidden_size
    assert stats["parameters_saved"] == (len(source_tok) - n_t) * 2 * d
    assert stats["parameters_after"] == sum(p.numel() for p in result.model.parameters())
    # Identical hidden states and logits (over kept tokens) on kept held-out text.
    kept = set(result.tokenizer.get_vocab())
    text = next(t for t in heldout if all(x in kept for x in _tokens(source_tok, t)) and len(t) > 80)
    a, b = source_tok(text, return_tensors="pt")["input_ids"], result.tokenizer(text, return_tensors="pt")["input_ids"]
    assert torch.equal(torch.as_tensor(src_ids)[b], a)
    with torch.no_grad():
        s = model(a, output_hidden_states=True)
        t = result.model.eval()(b, output_hidden_states=True)
    assert torch.equal(s.hidden_states[-1], t.hidden_states[-1])
    torch.testing.assert_close(t.logits, s.logits[..., torch.as_tensor(src_ids)], rtol=0, atol=1e-5)


def test_pretrimmed_target_needs_no_corpus(small_model, texts):
    train, _ = texts
    source_tok, model = small_model
    small = trim_tokenizer(source_tok, train[:100], drop_scripts=["Latin"])
    result = transplant_tokenizer(model, small, "trim", source_tokenizer=source_tok)
    assert len(result.tokenizer) == len(small) and (result.plan.kinds == COPIED).all()
    _check_exact_copy(result, model, source_tok)


def test_extend_mode_trims_and_initializes_added_tokens(small_model, texts):
    train, _ = texts
    source_tok, model = small_model
    extended = transformers.PreTrainedTokenizerFast(
        tokenizer_object=source_tok.backend_tokenizer.__class__.from_str(source_tok.backend_tokenizer.to_str()), **source_tok.special_tokens_map
    )
    extended.add_tokens(["кіберспорт", "блокчейн", "невикористане"])
    corpus = train[:200] + ["Кіберспорт і блокчейн: кіберспорт росте."]
    result = transplant_tokenizer(model, extended, "trim", source_tokenizer=source_tok, corpus=corpus)
    vocab = result.tokenizer.get_vocab()
    assert "кіберспорт" in vocab and "блокчейн" in vocab and "невикористане" not in vocab
    assert result.plan.kinds[vocab["кіберспорт"]] == COMBINED
    assert result.report.method_stats["tokens_not_in_source"] == 2
    _check_exact_copy(result, model, source_tok)


def test_errors(small_model):
    source_tok, model = small_model
    with pytest.raises(CorpusError, match="trim"):
        transplant_tokenizer(model, None, "trim", source_tokenizer=source_tok)
    with pytest.raises(MethodOptionError, match="Unicode script"):
        transplant_tokenizer(model, None, "trim", source_tokenizer=source_tok, drop_scripts=["Hann"])
    with pytest.raises(MethodOptionError, match="keep_special"):
        transplant_tokenizer(model, None, "trim", source_tokenizer=source_tok, corpus=["текст"], keep_special="some")


def test_cli(small_model, texts, tmp_path):
    train, _ = texts
    source_tok, model = small_model
    folder, out = tmp_path / "model", tmp_path / "out"
    model.save_pretrained(folder)
    source_tok.save_pretrained(folder)
    corpus = assets.write_texts(train[:200], tmp_path / "corpus.txt")
    # The source's own tokenizer as target: the method trims it with the corpus.
    rc = cli_main(["-q", "transplant", str(folder), str(folder), "--method", "trim", "--corpus", str(corpus),
                   "--drop-scripts", "Latin", "--out", str(out)])
    assert rc == 0
    record = json.loads((out / "vocabswap.json").read_text())
    assert record["options"]["drop_scripts"] == ["Latin"]
    assert record["method_stats"]["parameters_saved"] > 0
    tok = transformers.AutoTokenizer.from_pretrained(out)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert len(tok) == reloaded.get_input_embeddings().weight.shape[0] == record["method_stats"]["rows_after"]


# -- the real Gemma-3-270m -------------------------------------------------------------------

@pytest.mark.slow
def test_gemma_trimmed_to_ukrainian():
    from hf_vocabswap.gguf import load_gguf

    model, tok = load_gguf(assets.gemma_gguf_path())
    model.eval()
    train = assets.ukrainian_texts("train", max_chars=300_000)
    heldout = assets.ukrainian_texts("heldout", max_chars=30_000)
    result = transplant_tokenizer(model, None, "trim", source_tokenizer=tok, corpus=train)
    small = result.tokenizer
    stats = result.report.method_stats
    assert len(small) < len(tok) // 10
    assert stats["parameters_saved"] == (len(tok) - len(small)) * model.config.hidden_size  # tied head
    assert stats["saved_fraction"] > 0.5
    assert check_same_tokenization(tok, small, heldout) >= 50
    src_ids = torch.as_tensor(kept_source_ids(small, tok))
    kept = set(small.get_vocab())
    samples = [t for t in heldout if all(x in kept for x in _tokens(tok, t))][:3]
    trimmed_model = result.model.eval()
    with torch.no_grad():
        for text in samples:
            a = tok(text, return_tensors="pt")["input_ids"][:, :96]
            b = small(text, return_tensors="pt")["input_ids"][:, :96]
            assert a[0, 0] == tok.bos_token_id and torch.equal(src_ids[b], a)
            s = model(a, output_hidden_states=True)
            t = trimmed_model(b, output_hidden_states=True)
            assert torch.equal(s.hidden_states[-1], t.hidden_states[-1])
            # Same hidden states times the same rows; only the matmul's blocking may differ.
            torch.testing.assert_close(t.logits, s.logits[..., src_ids], rtol=0, atol=1e-4)
            assert torch.equal(t.logits.argmax(-1), s.logits[..., src_ids].argmax(-1))
