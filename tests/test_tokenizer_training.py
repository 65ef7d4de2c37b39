"""train_tokenizer / check_trained_tokenizer on real Ukrainian text, for four source pipelines.

Sources (no Hub access; built here or shipped in packages):
  * BERT WordPiece uncased: the real splade-tiny tokenizer.
  * XLM-R-style SentencePiece Unigram (NFKC, Metaspace, <s> <pad> </s> <unk> at 0..3 and
    <mask> last, "<s> $A </s>" template), trained here on English text.
  * GPT-2-style byte-level BPE (<|endoftext|> last, ByteLevel post-processor: adds nothing).
  * Gemma-style SentencePiece BPE with byte fallback: normalizer Replace(" ", "▁"), NO
    pre-tokenizer, <pad> <eos> <bos> <unk> <mask> at 0..4, many <unusedN> control tokens,
    "<bos> $A" template. Built locally (always), and the real Gemma-3-270m tokenizer from
    `hf_vocabswap.gguf.gguf_tokenizer` when that module provides it.

The English source text is Python's own reference documentation (`pydoc_data.topics`,
about 465k characters), which ships with every CPython.

Held-out text: for the sources without byte fallback or byte-level BPE (BERT, XLM-R), a
character never seen in training can only become the unknown token; we assert 0 unknowns on
held-out paragraphs whose characters all occur in the training text, and an overall unknown
rate below 0.2 % (measured: 6 of 9,032 tokens for BERT and 4 of 10,849 for XLM-R, all from
emoji and rare symbols).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pydoc_data.topics
import pytest
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import Regex
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from hf_vocabswap.assets import write_texts
from hf_vocabswap.errors import CorpusError, TokenizerError
from hf_vocabswap.tokenizer_training import check_trained_tokenizer, train_tokenizer
from hf_vocabswap.tokenizer_words import word_splitter

VOCAB = 8000
ROLES = ("bos", "eos", "pad", "unk", "mask", "cls", "sep")


# ----------------------------------------------------------------------------- sources
def english_texts() -> list[str]:
    out = []
    for key in sorted(pydoc_data.topics.topics):
        out.extend(p.strip() for p in pydoc_data.topics.topics[key].split("\n\n") if p.strip())
    return out


def build_xlmr(texts, vocab=3000, processor="template") -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])  # last id, as in XLM-R
    if processor == "template":
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
        )
    else:
        tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", model_max_length=512,
    )


def build_gpt2(texts, vocab=2000) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])  # last id, as in GPT-2
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>",
        model_max_length=1024,
    )


GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[multimodal]"] + [f"<unused{i}>" for i in range(99)]
GEMMA_SPECIALS += ["<start_of_turn>", "<end_of_turn>"] + [f"<unused{i}>" for i in range(99, 300)]


def build_gemma_like(texts, vocab=3000) -> PreTrainedTokenizerFast:
    """A Gemma-3 pipeline: byte-fallback BPE, Replace(" ", "▁"), no pre-tokenizer, <bos> template."""
    # The source vocabulary itself is trained with a splitting pre-tokenizer (as SentencePiece did).
    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.normalizer = normalizers.Replace(" ", "▁")
    trainer_tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split("▁", behavior="merged_with_next"), pre_tokenizers.Digits(individual_digits=True)]
    )
    trainer_tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, show_progress=False))
    learned = json.loads(trainer_tok.to_str())["model"]
    head = GEMMA_SPECIALS + [f"<0x{b:02X}>" for b in range(256)]
    vocab_map = {t: i for i, t in enumerate(head)}
    for t, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]):
        vocab_map.setdefault(t, len(vocab_map))
    model = models.BPE(
        vocab_map, [tuple(m) for m in learned["merges"]], unk_token="<unk>", fuse_unk=True, byte_fallback=True
    )
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in GEMMA_SPECIALS])
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        mask_token="<mask>", model_max_length=32768, padding_side="left",
    )


def real_gemma():
    """The real Gemma-3-270m tokenizer rebuilt from its GGUF, or a skip with the reason."""
    try:
        from hf_vocabswap import assets
        from hf_vocabswap.gguf import gguf_tokenizer
    except ImportError as e:
        pytest.skip(f"hf_vocabswap.gguf.gguf_tokenizer is not available: {e}")
    try:
        path = assets.gemma_gguf_path()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"Gemma-3 GGUF asset not available: {e}")
    return gguf_tokenizer(path)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def english():
    return english_texts()


@pytest.fixture(scope="module")
def sources(english, splade_path):
    return {
        "bert": AutoTokenizer.from_pretrained(splade_path),
        "xlmr": build_xlmr(english),
        "gpt2": build_gpt2(english),
        "gemma_like": build_gemma_like(english),
    }


@pytest.fixture(scope="module")
def trained(sources, ukrainian_train, ukrainian_heldout):
    """Each source trained once on ~300k characters of Ukrainian (vocab 8000)."""
    out = {}
    for name, src in sources.items():
        start = time.perf_counter()
        tgt = train_tokenizer(src, ukrainian_train, VOCAB, progress=False)
        seconds = time.perf_counter() - start
        report = check_trained_tokenizer(tgt, ukrainian_heldout)
        print(f"\n{name}: {seconds:.1f}s {({k: v for k, v in report.items() if k != 'roundtrip_example'})}")
        out[name] = (tgt, report)
    return out


SOURCES = ["bert", "xlmr", "gpt2", "gemma_like"]


def _normalized_chars(tokenizer, texts) -> set[str]:
    normalizer = tokenizer.backend_tokenizer.normalizer
    chars: set[str] = set()
    for t in texts:
        chars.update(normalizer.normalize_str(t) if normalizer is not None else t)
    return chars


# ----------------------------------------------------------------------------- the traps
@pytest.mark.parametrize("name", SOURCES)
def test_no_piece_crosses_a_word_boundary(trained, name):
    tgt, report = trained[name]
    assert report["pieces_crossing_word_boundary"] == 0, report["crossing_examples"]
    # and the trainer did learn multi-character words, with the word-start marker in front
    vocab = tgt.get_vocab()
    if name in ("xlmr", "gemma_like"):
        assert "▁що" in vocab and any(t.startswith("▁україн") for t in vocab)
    if name == "gpt2":
        assert tgt.convert_tokens_to_string(["ĠÑīÐ¾"]) == " що" and "ĠÑīÐ¾" in vocab
    if name == "bert":
        assert "що" in vocab


def test_trap_is_real_with_train_new_from_iterator(sources, ukrainian_train):
    """Contrast: the naive path on the Gemma-like pipeline learns boundary-crossing pieces and
    keeps every <unusedN>; train_tokenizer learns none and keeps only the roles."""
    naive = sources["gemma_like"].train_new_from_iterator(ukrainian_train[:300], 2000)
    report = check_trained_tokenizer(naive, [])
    assert report["pieces_crossing_word_boundary"] > 100
    assert "<unused250>" in naive.get_vocab()


@pytest.mark.parametrize("name", SOURCES)
def test_heldout_roundtrip_and_unknowns(trained, ukrainian_train, ukrainian_heldout, name):
    tgt, report = trained[name]
    if name in ("gpt2", "gemma_like"):  # byte-level / byte fallback: nothing is unknown
        assert report["unk_count"] == 0
        assert report["roundtrip_exact"], report["roundtrip_example"]
    else:
        assert report["unk_rate"] < 0.002
        seen = _normalized_chars(tgt, ukrainian_train)
        covered = [t for t in ukrainian_heldout if _normalized_chars(tgt, [t]) <= seen]
        assert len(covered) > 0.9 * len(ukrainian_heldout)
        strict = check_trained_tokenizer(tgt, covered)
        assert strict["unk_count"] == 0
        assert strict["roundtrip_exact"], strict["roundtrip_example"]
    # a Ukrainian-specific vocabulary compresses held-out text well
    assert report["chars_per_token"] > 2.5


def test_gemma_byte_fallback_for_unseen_characters(trained):
    tgt, _ = trained["gemma_like"]
    assert "<0x00>" in tgt.get_vocab() and "<0xFF>" in tgt.get_vocab()
    text = "Привіт 🦜 ∮ ꙮ"
    ids = tgt(text, add_special_tokens=False)["input_ids"]
    assert tgt.unk_token_id not in ids
    assert tgt.decode(ids) == text
    assert "<0xF0>" in tgt.convert_ids_to_tokens(ids)


def test_byte_level_keeps_initial_alphabet(trained):
    tgt, _ = trained["gpt2"]
    vocab = tgt.get_vocab()
    assert all(c in vocab for c in pre_tokenizers.ByteLevel.alphabet())
    text = "日本語 🦜 text"
    assert tgt.decode(tgt(text)["input_ids"]) == text


@pytest.mark.parametrize("name", SOURCES)
def test_special_token_ids_kept(sources, trained, name):
    src = sources[name]
    tgt, _ = trained[name]
    for role in ROLES:
        assert getattr(tgt, f"{role}_token") == getattr(src, f"{role}_token"), role
        src_id = getattr(src, f"{role}_token_id")
        if src_id is not None and src_id < VOCAB:
            assert getattr(tgt, f"{role}_token_id") == src_id, role
    assert tgt.model_max_length == src.model_max_length
    # only the roles are special: no control token eats the vocabulary
    specials = {t.content for t in tgt.added_tokens_decoder.values()}
    assert specials == {str(getattr(src, f"{r}_token")) for r in ROLES if getattr(src, f"{r}_token") is not None}


def test_special_ids_per_family(trained):
    xlmr, _ = trained["xlmr"]
    assert [xlmr.convert_ids_to_tokens(i) for i in range(4)] == ["<s>", "<pad>", "</s>", "<unk>"]
    bert, _ = trained["bert"]
    assert bert.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) == [0, 100, 101, 102, 103]
    assert not bert.convert_ids_to_tokens(1).startswith("[unused")  # lower ids hold learned tokens
    gemma, _ = trained["gemma_like"]
    assert gemma.convert_tokens_to_ids(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]) == [0, 1, 2, 3, 4]
    assert gemma.padding_side == "left"
    gpt2, _ = trained["gpt2"]
    assert gpt2.convert_tokens_to_ids("<|endoftext|>") == 2000  # the source's id, which fits


@pytest.mark.parametrize("name", SOURCES)
def test_post_processor_adds_what_the_source_adds(sources, trained, name):
    src = sources[name]
    tgt, _ = trained[name]
    text, pair = "Добрий день, як справи?", "Дякую, добре."
    for args in ((text,), (text, pair)):
        s_ids, t_ids = src(*args)["input_ids"], tgt(*args)["input_ids"]
        # (an English source turns Cyrillic into <unk>: that one comes from the model, not the template)
        s_special = [i for i in s_ids if i in src.all_special_ids and i != src.unk_token_id]
        t_special = [i for i in t_ids if i in tgt.all_special_ids and i != tgt.unk_token_id]
        assert t_special == s_special
        assert (s_ids[0] in src.all_special_ids) == (t_ids[0] in tgt.all_special_ids)
    first = {"bert": "cls", "xlmr": "cls", "gemma_like": "bos"}.get(name)
    if first:
        assert tgt(text)["input_ids"][0] == getattr(tgt, f"{first}_token_id")


@pytest.mark.parametrize("name", SOURCES)
def test_vocab_size_reached(trained, name):
    tgt, report = trained[name]
    assert VOCAB - 50 <= len(tgt) <= VOCAB
    assert report["vocab_size"] == len(tgt)
    assert sorted(tgt.get_vocab().values()) == list(range(len(tgt)))  # no holes


@pytest.mark.parametrize("name", SOURCES)
def test_pipeline_kept(sources, trained, name):
    src = json.loads(sources[name].backend_tokenizer.to_str())
    tgt = json.loads(trained[name][0].backend_tokenizer.to_str())
    for key in ("normalizer", "pre_tokenizer", "decoder"):
        assert tgt[key] == src[key], key
    assert tgt["model"]["type"] == src["model"]["type"]
    options = {k: v for k, v in src["model"].items() if k not in ("vocab", "merges", "unk_id")}
    assert {k: tgt["model"][k] for k in options} == options


@pytest.mark.parametrize("name", SOURCES)
def test_save_and_reload(trained, ukrainian_heldout, tmp_path, name):
    tgt, _ = trained[name]
    tgt.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert len(again) == len(tgt)
    assert again.model_max_length == tgt.model_max_length
    for role in ROLES:
        assert getattr(again, f"{role}_token_id") == getattr(tgt, f"{role}_token_id")
    for text in ukrainian_heldout[:50]:
        assert again.tokenize(text) == tgt.tokenize(text)
        assert again(text)["input_ids"] == tgt(text)["input_ids"]


# ----------------------------------------------------------------------------- options and errors
def test_keep_special_all_and_list(sources, ukrainian_train):
    src = sources["gemma_like"]
    small = ukrainian_train[:400]
    kept_all = train_tokenizer(src, small, 2000, keep_special="all", progress=False)
    for i, tok in enumerate(GEMMA_SPECIALS):
        assert kept_all.convert_tokens_to_ids(tok) == i
    listed = train_tokenizer(src, small, 2000, keep_special=["<start_of_turn>", "<end_of_turn>", "<new>"], progress=False)
    assert listed.convert_tokens_to_ids("<new>") == 1999  # not in the source: a new special, last
    assert listed.convert_tokens_to_ids(["<start_of_turn>", "<end_of_turn>"]) == [
        src.convert_tokens_to_ids("<start_of_turn>"), src.convert_tokens_to_ids("<end_of_turn>")]
    assert "<unused0>" not in listed.get_vocab()
    pieces = listed.tokenize("<start_of_turn>так")
    assert pieces[0] == "<start_of_turn>" and "".join(pieces[1:]) == "так"
    with pytest.raises(TokenizerError, match="keep_special"):
        train_tokenizer(src, small, 2000, keep_special="some", progress=False)


def test_special_that_does_not_fit_goes_last_and_roberta_processor(english, ukrainian_train):
    src = build_xlmr(english[:800], vocab=1200, processor="roberta")
    assert src.mask_token_id == 1200
    tgt = train_tokenizer(src, ukrainian_train[:400], 1000, progress=False)
    assert len(tgt) == 1000
    assert tgt.mask_token_id == 999
    assert [tgt.pad_token_id, tgt.cls_token_id, tgt.sep_token_id, tgt.unk_token_id] == [1, 0, 2, 3]
    ids = tgt("тест", "ще")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and ids.count(2) == 3


def test_vocab_too_small(sources, ukrainian_train):
    with pytest.raises(TokenizerError, match="vocab_size=200 is too small"):
        train_tokenizer(sources["gpt2"], ukrainian_train[:50], 200, progress=False)
    with pytest.raises(TokenizerError, match="byte-fallback"):
        train_tokenizer(sources["gemma_like"], ukrainian_train[:50], 300, progress=False)
    with pytest.raises(TokenizerError, match="keep fewer special tokens"):
        train_tokenizer(sources["gemma_like"], ukrainian_train[:50], 600, keep_special="all", progress=False)


def test_empty_corpus(sources):
    with pytest.raises(CorpusError):
        train_tokenizer(sources["gpt2"], ["", "  "], 1000, progress=False)


def test_corpus_from_file(sources, ukrainian_train, tmp_path):
    path = write_texts(ukrainian_train[:300], tmp_path / "uk.txt")
    from_file = train_tokenizer(sources["gpt2"], path, 1500, progress=False)
    from_list = train_tokenizer(sources["gpt2"], ukrainian_train[:300], 1500, progress=False)
    assert from_file.get_vocab() == from_list.get_vocab()


def test_source_given_as_path(splade_path, ukrainian_train):
    tgt = train_tokenizer(str(splade_path), ukrainian_train[:200], 1500, progress=False)
    assert tgt.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) == [0, 100, 101, 102, 103]
    assert tgt("так")["input_ids"][0] == 101 and tgt.model_max_length == 512


def test_slow_or_unsupported_source(ukrainian_train):
    with pytest.raises(TokenizerError, match="not a fast"):
        train_tokenizer(object(), ukrainian_train[:10], 1000)
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    src = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    with pytest.raises(TokenizerError, match="WordLevel"):
        train_tokenizer(src, ukrainian_train[:10], 1000)


def test_word_splitter():
    split = word_splitter("▁", individual_digits=True)
    text = "▁Привіт,▁світе!▁▁▁2024▁року▁м'ясо▁iPhone15▁Київ-Kyiv▁▁"
    words = split(text)
    assert "".join(words) == text
    assert words == ["▁Привіт", ",", "▁світе", "!", "▁▁", "▁2", "0", "2", "4", "▁року", "▁м'ясо", "▁iPhone",
                     "1", "5", "▁Київ", "-", "Kyiv", "▁", "▁"]
    split = word_splitter(" ", individual_digits=False)
    assert split(" Київ\n 2024 рік") == [" Київ", "\n", " 2024", " рік"]
    mixed = word_splitter(None, individual_digits=False)("abcабв")
    assert mixed == ["abc", "абв"]


# ----------------------------------------------------------------------------- real Gemma-3
@pytest.mark.slow
def test_real_gemma3(ukrainian_train, ukrainian_heldout, tmp_path):
    src = real_gemma()
    assert len(src) == 262_144
    start = time.perf_counter()
    tgt = train_tokenizer(src, ukrainian_train, VOCAB, progress=False)
    seconds = time.perf_counter() - start
    report = check_trained_tokenizer(tgt, ukrainian_heldout)
    print(f"\ngemma3: {seconds:.1f}s {({k: v for k, v in report.items() if k != 'roundtrip_example'})}")
    assert report["pieces_crossing_word_boundary"] == 0, report["crossing_examples"]
    assert report["unk_count"] == 0 and report["roundtrip_exact"], report["roundtrip_example"]
    assert VOCAB - 50 <= len(tgt) <= VOCAB
    assert [getattr(tgt, f"{r}_token_id") for r in ("pad", "eos", "bos", "unk")] == [0, 1, 2, 3]
    assert [getattr(src, f"{r}_token_id") for r in ("pad", "eos", "bos", "unk")] == [0, 1, 2, 3]
    assert not any(t.startswith("<unused") for t in tgt.get_vocab())
    assert "<0x00>" in tgt.get_vocab()
    assert tgt("Привіт")["input_ids"][0] == tgt.bos_token_id == src.bos_token_id
    assert tgt.model_max_length == src.model_max_length
    tgt.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert [again.tokenize(t) for t in ukrainian_heldout[:20]] == [tgt.tokenize(t) for t in ukrainian_heldout[:20]]


# ----------------------------------------------------------------------------- determinism
_TRAIN_IN_CHILD = """
import sys
from transformers import AutoTokenizer
from hf_vocabswap.tokenizer_training import train_tokenizer
sources, corpus, out = sys.argv[1], sys.argv[2], sys.argv[3]
for name in ("bert", "gpt2", "xlmr"):
    src = AutoTokenizer.from_pretrained(f"{sources}/{name}")
    train_tokenizer(src, corpus, 4000, progress=False).save_pretrained(f"{out}/{name}")
"""


def test_same_corpus_gives_the_same_tokenizer_in_two_processes(sources, ukrainian_train, tmp_path):
    """WordPiece, BPE and Unigram: identical tokenizer.json from two processes, whose string
    hashes (PYTHONHASHSEED) and Rust hash-map seeds differ."""
    for name in ("bert", "gpt2", "xlmr"):
        sources[name].save_pretrained(tmp_path / "sources" / name)
    corpus = write_texts(ukrainian_train, tmp_path / "uk.txt")
    outputs = []
    for run, seed in enumerate(("1", "2")):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = tmp_path / f"run{run}"
        subprocess.run([sys.executable, "-c", _TRAIN_IN_CHILD, str(tmp_path / "sources"), str(corpus), str(out)],
                       env=env, check=True, timeout=600)
        outputs.append(out)
    for name in ("bert", "gpt2", "xlmr"):
        first = (outputs[0] / name / "tokenizer.json").read_bytes()
        assert first == (outputs[1] / name / "tokenizer.json").read_bytes(), name
        assert len(json.loads(first)["model"]["vocab"]) >= 3900


def test_show_progress_is_the_deprecated_spelling_of_progress(english, ukrainian_train):
    src = build_xlmr(english[:800], vocab=1200, processor="roberta")
    with pytest.warns(FutureWarning, match="progress"):
        old = train_tokenizer(src, ukrainian_train[:200], 600, show_progress=False)
    new = train_tokenizer(src, ukrainian_train[:200], 600, progress=False)
    assert old.backend_tokenizer.to_str() == new.backend_tokenizer.to_str()
