"""Canonical forms and overlap across tokenizer families."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoTokenizer

from hf_vocabswap import assets
from hf_vocabswap.vocab import (
    MATCH_EXACT,
    MATCH_IDENTITY,
    MATCH_ROLE,
    CanonicalForm,
    TokenizerProfile,
    align_vocabularies,
)

from .families import build_tokenizer


@pytest.fixture(scope="module")
def same_text_tokenizers():
    texts = assets.ukrainian_texts("train", max_chars=80_000)
    return {kind: build_tokenizer(kind, texts, 2500) for kind in ("roberta_bpe", "xlmr_unigram", "llama_spbpe")}


def _independent_bytes(tok, token: str) -> tuple[bool, bytes]:
    """Re-derive what a token stands for from its decoder, independently of vocab.py."""
    tid = tok.convert_tokens_to_ids(token)
    text = tok.decode([tid], clean_up_tokenization_spaces=False)
    starts = token.startswith(("Ġ", "▁"))
    return starts, text.lstrip(" ").encode() if starts else text.encode()


def test_family_detection(same_text_tokenizers, splade_path):
    kinds = {k: TokenizerProfile.from_tokenizer(t).family for k, t in same_text_tokenizers.items()}
    assert kinds == {"roberta_bpe": "byte_level", "xlmr_unigram": "metaspace", "llama_spbpe": "metaspace"}
    bert = TokenizerProfile.from_tokenizer(AutoTokenizer.from_pretrained(splade_path))
    assert bert.family == "wordpiece"
    assert bert.forms[bert.tokenizer.convert_tokens_to_ids("##ing")] == CanonicalForm(False, b"ing")
    assert bert.forms[bert.tokenizer.convert_tokens_to_ids("the")] == CanonicalForm(True, b"the")


def test_byte_fallback_pieces_are_bytes(same_text_tokenizers):
    prof = TokenizerProfile.from_tokenizer(same_text_tokenizers["llama_spbpe"])
    tid = prof.tokenizer.convert_tokens_to_ids("<0xD0>")
    assert prof.forms[tid] == CanonicalForm(False, b"\xd0") and tid in prof.byte_fallback_ids


@pytest.mark.parametrize("pair", [("roberta_bpe", "xlmr_unigram"), ("xlmr_unigram", "roberta_bpe"), ("roberta_bpe", "llama_spbpe")])
def test_cross_family_overlap_is_true_overlap(same_text_tokenizers, pair):
    src, tgt = (same_text_tokenizers[k] for k in pair)
    al = align_vocabularies(src, tgt)
    raw_overlap = len(set(src.get_vocab()) & set(tgt.get_vocab()))
    exact = np.flatnonzero(al.match == MATCH_EXACT)
    # Byte-level "Ġ" and SentencePiece "▁" spell word starts differently: raw strings miss most
    # of the overlap that canonical forms find.
    assert len(exact) > 3 * raw_overlap
    assert len(exact) > 0.3 * len(tgt)
    # Every matched pair stands for the same text with the same word-start flag.
    for t in exact[:: max(1, len(exact) // 300)]:
        s = int(al.target_to_source[t])
        t_tok = tgt.convert_ids_to_tokens(int(t))
        s_tok = src.convert_ids_to_tokens(s)
        assert _independent_bytes(tgt, t_tok) == _independent_bytes(src, s_tok), (t_tok, s_tok)


def test_special_tokens_match_by_role(same_text_tokenizers):
    src = same_text_tokenizers["roberta_bpe"]  # <s> <pad> </s> <unk> <mask>
    texts = assets.ukrainian_texts("train", max_chars=40_000)
    tgt = build_tokenizer("deberta_unigram", texts, 1500)  # [PAD] [CLS] [SEP] [UNK] [MASK]
    al = align_vocabularies(src, tgt)
    for role, s_tok, t_tok in [("pad", "<pad>", "[PAD]"), ("mask", "<mask>", "[MASK]"), ("cls", "<s>", "[CLS]"), ("unk", "<unk>", "[UNK]")]:
        t = tgt.convert_tokens_to_ids(t_tok)
        assert al.match[t] == MATCH_ROLE
        assert al.target_to_source[t] == src.convert_tokens_to_ids(s_tok), role


def test_whitespace_tokens_match_exact_bytes(same_text_tokenizers):
    src = same_text_tokenizers["roberta_bpe"]
    prof = TokenizerProfile.from_tokenizer(src)
    newline = prof.forms[src.convert_tokens_to_ids("Ċ")]
    space = prof.forms[src.convert_tokens_to_ids("Ġ")]
    assert newline == CanonicalForm(False, b"\n")
    assert space == CanonicalForm(True, b"")
    assert newline != space


def test_extend_mode_is_identity(splade_path):
    src = AutoTokenizer.from_pretrained(splade_path)
    tgt = AutoTokenizer.from_pretrained(splade_path)
    tgt.add_tokens(["привіт", "україна"])
    al = align_vocabularies(src, tgt)
    assert al.mode == "extend"
    assert (al.target_to_source[: len(src)] == np.arange(len(src))).all()
    assert (al.match[: len(src)] == MATCH_IDENTITY).all()
    assert (al.target_to_source[len(src):] == -1).all()


def test_segment_keeps_word_start(same_text_tokenizers, splade_path):
    bert = TokenizerProfile.from_tokenizer(AutoTokenizer.from_pretrained(splade_path))
    start = bert.tokenizer.convert_ids_to_tokens(bert.segment(CanonicalForm(True, b"playing")))
    cont = bert.tokenizer.convert_ids_to_tokens(bert.segment(CanonicalForm(False, b"playing")))
    assert not start[0].startswith("##") and cont[0].startswith("##")
    sp = TokenizerProfile.from_tokenizer(same_text_tokenizers["llama_spbpe"])
    ws = sp.tokenizer.convert_ids_to_tokens(sp.segment(CanonicalForm(True, "кіт".encode())))
    nows = sp.tokenizer.convert_ids_to_tokens(sp.segment(CanonicalForm(False, "кіт".encode())))
    assert ws[0].startswith("▁") and not nows[0].startswith("▁")


def test_gemma_style_replace_normalizer_is_metaspace():
    """Gemma spells spaces with a Replace(" ", "▁") normalizer and no pre-tokenizer."""
    from tokenizers import Tokenizer, models, normalizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "▁": 2, "a": 3, "b": 4, "▁a": 5, "ab": 6, "▁ab": 7}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("▁", "a"), ("a", "b"), ("▁a", "b")], unk_token="<unk>"))
    tok.normalizer = normalizers.Replace(" ", "▁")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")
    prof = TokenizerProfile.from_tokenizer(fast)
    assert prof.family == "metaspace"
    assert prof.forms[7] == CanonicalForm(True, b"ab") and prof.forms[6] == CanonicalForm(False, b"ab")
