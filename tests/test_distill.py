"""Cross-tokenizer distillation (ALM): alignment against a brute-force character walk on real
tokenizer pairs, the chunk likelihoods against the models' own losses, the loss at its fixed
point, a distilled run, and the bad inputs."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForMaskedLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from hf_vocabswap import assets
from hf_vocabswap.cli import main
from hf_vocabswap.record import CARD_FILE, read_record
from hf_vocabswap.transplant import transplant_tokenizer
from hf_vocabswap.corpus import first_chars
from hf_vocabswap.distill import (
    TEACHER_KEYS, DistillCollator, DistillConfig, align_chunks, alm_loss, chunk_scores, resolve_teacher,
)
from hf_vocabswap.errors import ModelError, PathNotFoundError, TokenizerError
from hf_vocabswap.evaluate import bits_per_character
from hf_vocabswap.train import HISTORY_FILE, continue_pretraining, pack_texts, pack_texts_with_text

SEQ = 64
HARD = "Привіт,   світе!\n\n  Ще раз: 😀 naïve café — «лапки» \t кінець  "


@pytest.fixture(scope="module")
def texts(ukrainian_train):
    """40k characters of the shared training text (small: every test here trains tokenizers and models on it)."""
    return first_chars(ukrainian_train, 40_000)


@pytest.fixture(scope="module")
def heldout(ukrainian_heldout):
    return first_chars(ukrainian_heldout, 3_000)


def _bytelevel(texts, n):
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=n, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=t, bos_token="<|endoftext|>", eos_token="<|endoftext|>")


def _sentencepiece(texts, n):
    t = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    t.pre_tokenizer = pre_tokenizers.Metaspace()
    t.decoder = decoders.Metaspace()
    t.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=n, special_tokens=["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]))
    return PreTrainedTokenizerFast(tokenizer_object=t, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


@pytest.fixture(scope="module")
def bpe(texts):
    """Byte-level BPE (GPT-2 style) trained on the Ukrainian text."""
    return _bytelevel(texts, 1500)


@pytest.fixture(scope="module")
def spm(texts):
    """SentencePiece-style BPE (metaspace, byte fallback) trained on the same text."""
    return _sentencepiece(texts, 1200)


@pytest.fixture(scope="module")
def gemma_tok():
    from hf_vocabswap.gguf import gguf_tokenizer

    return gguf_tokenizer(assets.gemma_gguf_path())


def tiny(tok, seed=0):
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).eval()


# ------------------------------------------------------------------------------ alignment


def brute_force(text, student, teacher):
    """Walk the characters: a position is a boundary of a tokenization when no token strictly spans it,
    a token ends there and another starts at or after it (characters no token covers, such as the
    whitespace WordPiece drops, go with the token after them, trailing ones with the last chunk), or
    it is the text's end; chunks close where both have one; a token belongs to the chunk holding its
    last character."""
    def boundary(offsets, p):
        real = [(s, e) for s, e in offsets if e > s]
        return p == len(text) or (not any(s < p < e for s, e in real) and any(e == p for _, e in real)
                                  and any(s >= p for s, _ in real))

    spans, start = [], 0
    for p in range(1, len(text) + 1):
        if boundary(student, p) and boundary(teacher, p):
            spans.append((start, p))
            start = p

    def owner(offsets):
        return [-1 if e <= s else next(k for k, (a, b) in enumerate(spans) if a <= e - 1 < b or (k == len(spans) - 1)) for s, e in offsets]

    return spans, owner(student), owner(teacher)


def offsets_of(tok, text, specials=False):
    return [tuple(o) for o in tok(text, add_special_tokens=specials, return_offsets_mapping=True)["offset_mapping"]]


@pytest.mark.parametrize("pair", ["gemma-bpe", "bytelevel-sentencepiece", "wordpiece-bpe"])
def test_alignment_matches_a_character_walk(pair, request, texts):
    a_name, b_name = {"gemma-bpe": ("gemma_tok", "bpe"), "bytelevel-sentencepiece": ("bpe", "spm"), "wordpiece-bpe": ("wordpiece", "bpe")}[pair]
    if a_name == "wordpiece":
        first = AutoTokenizer.from_pretrained(assets.splade_tiny_path())
    else:
        first = request.getfixturevalue(a_name)
    second = request.getfixturevalue(b_name)
    long = [t for t in texts if len(t) > 300][:2]
    for text in [HARD, long[0][:400], long[1][:300]]:
        s_off, t_off = offsets_of(first, text, specials=True), offsets_of(second, text)
        got = align_chunks(text, s_off, t_off)
        spans, s_own, t_own = brute_force(text, s_off, t_off)
        assert got.spans == spans
        assert got.student == s_own and got.teacher == t_own
        assert len(spans) > 5 and spans[-1][1] == len(text)
        for k, (lo, hi) in enumerate(got.spans):  # every chunk's tokens lie inside it on both sides
            for offsets, owners in ((s_off, got.student), (t_off, got.teacher)):
                inside = [(s, e) for (s, e), o in zip(offsets, owners) if o == k]
                assert all(lo <= s and e <= hi for s, e in inside)


def test_special_tokens_and_byte_pieces_belong_to_no_or_one_chunk(gemma_tok, spm):
    text = "a 😀 b"
    s_off = offsets_of(gemma_tok, text, specials=True)
    assert s_off[0] == (0, 0), "the <bos> is zero-width"
    t_off = offsets_of(spm, text)
    al = align_chunks(text, s_off, t_off)
    assert al.student[0] == -1
    emoji = [k for (s, e), k in zip(t_off, al.teacher) if s <= 2 < e]
    assert len(set(emoji)) == 1, "byte-fallback pieces of one character stay in one chunk"


def test_blocks_carry_their_text(bpe, texts):
    """Byte-level BPE is lossless: each block's ids between its separators decode to its text pieces."""
    blocks, block_texts = pack_texts_with_text(bpe, texts, SEQ)
    assert torch.equal(blocks, pack_texts(bpe, texts, SEQ, kind="causal")), "the same blocks as without distillation"
    eos, same, total = bpe.eos_token_id, 0, 0
    for ids, bt in zip(blocks.tolist(), block_texts):
        groups, current = [], []
        for i in ids[1:]:
            if i == eos:
                groups.append(current)
                current = []
            else:
                current.append(i)
        groups.append(current)
        decoded = [bpe.decode(g) for g in groups if g]
        same += decoded == bt.segments
        total += 1
        assert len(bt.offsets) == SEQ
    assert same >= 0.95 * total, f"{same} of {total} blocks"


# ------------------------------------------------------------------------------ the loss


def _batch(student_tok, teacher_tok, texts, n=4):
    blocks, block_texts = pack_texts_with_text(student_tok, texts, SEQ)
    batch = DistillCollator(student_tok, teacher_tok, block_texts)([{"input_ids": blocks[i], "block": i} for i in range(n)])
    extra = {k: batch.pop(k) for k in TEACHER_KEYS}
    return batch, extra


def test_identical_teacher_and_student_give_zero_loss_and_zero_gradient(bpe, texts):
    student = tiny(bpe)
    teacher = resolve_teacher(copy.deepcopy(student), bpe, None, student, student, bpe, texts)
    batch, extra = _batch(bpe, bpe, texts)
    loss = teacher.loss(student(**batch), batch["input_ids"], extra)
    loss.backward()
    assert abs(loss.item()) < 1e-6
    assert max(p.grad.abs().max().item() for p in student.parameters()) < 1e-6
    # a different teacher gives a positive loss and a gradient
    other = resolve_teacher(tiny(bpe, seed=3), bpe, None, student, student, bpe, texts)
    student.zero_grad()
    loss = other.loss(student(**batch), batch["input_ids"], extra)
    loss.backward()
    assert loss.item() > 1e-5 and max(p.grad.abs().max().item() for p in student.parameters()) > 1e-5


def test_identical_tokenizers_reduce_to_matching_token_likelihoods(spm, texts):
    """Same tokenizer on both sides (SentencePiece style: no token splits a character): every text
    token is its own chunk, and ALM is the tempered binary KL of each token's probability."""
    student, teacher_model = tiny(spm), tiny(spm, seed=1)
    batch, extra = _batch(spm, spm, texts)
    assert torch.equal(extra["student_chunks"], extra["teacher_chunks"])
    assert torch.equal(extra["teacher_input_ids"], batch["input_ids"]), "the teacher sees the same ids"
    real = extra["student_chunks"] >= 0
    for row, mask in zip(extra["student_chunks"], real):
        assert torch.equal(row[mask], torch.arange(int(mask.sum()))), "one token per chunk"
    cfg = DistillConfig(debias=False)
    with torch.no_grad():
        ls, lt = student(**batch).logits, teacher_model(input_ids=extra["teacher_input_ids"]).logits
        n = extra["chunk_valid"].shape[1]
        got = alm_loss(chunk_scores(ls, batch["input_ids"], extra["student_chunks"], n, None),
                       chunk_scores(lt, extra["teacher_input_ids"], extra["teacher_chunks"], n, None), extra["chunk_valid"], cfg)
        ids = batch["input_ids"]
        ps = torch.log_softmax(ls.double(), -1)[:, :-1].gather(-1, ids[:, 1:, None])[..., 0] / cfg.temperature
        pt = torch.log_softmax(lt.double(), -1)[:, :-1].gather(-1, ids[:, 1:, None])[..., 0] / cfg.temperature
        ys, yt = ps.exp(), pt.exp()
        bce = -(yt * ys.log() + (1 - yt) * (1 - ys).log())
        entropy = -(yt * yt.log() + (1 - yt) * (1 - yt).log())
        expected = (bce - entropy)[real[:, 1:]].mean()
    assert got.item() == pytest.approx(expected.item(), rel=1e-3)
    assert got.item() > 0


def test_chunk_likelihoods_sum_to_the_text_likelihood(bpe, spm, texts):
    text = texts[1][:500]
    for tok, model in ((bpe, tiny(bpe)), (spm, tiny(spm, seed=2))):
        enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
        ids = torch.tensor([[tok.bos_token_id] + enc["input_ids"]])
        offsets = [(0, 0)] + [tuple(o) for o in enc["offset_mapping"]]
        other = offsets_of(spm if tok is bpe else bpe, text)
        al = align_chunks(text, offsets, other)
        with torch.no_grad():
            out = model(input_ids=ids, labels=ids)
        scores = chunk_scores(out.logits, ids, torch.tensor([al.student]), len(al.spans), None)
        full = -out.loss.item() * (ids.shape[1] - 1)
        assert scores["ll"].sum().item() == pytest.approx(full, rel=1e-4)
        assert len(al.spans) < ids.shape[1] - 1, "chunks of several tokens exist"


# ------------------------------------------------------------------------------ training


def test_distilled_run_lowers_heldout_bpc(bpe, spm, texts, heldout, tmp_path):
    """The teacher (a tiny causal LM with the SentencePiece tokenizer) is trained first; the student
    (byte-level BPE, random) learns from the teacher alone (lm_weight=0) and gets better held-out bits
    per character."""
    common = dict(eval_texts=heldout, batch_size=8, seq_length=SEQ, warmup_steps=2, eval_steps=30, logging_steps=5, progress=False, learning_rate=3e-3)
    teacher = tiny(spm, seed=1)
    continue_pretraining(teacher, texts, tokenizer=spm, output_dir=tmp_path / "teacher", max_steps=60, **common)
    student = tiny(bpe)
    before = bits_per_character(student, bpe, heldout, max_length=SEQ, progress=False)["bits_per_character"]
    summary = continue_pretraining(student, texts, tokenizer=bpe, output_dir=tmp_path / "student", max_steps=30, teacher=teacher.eval(),
                                   teacher_tokenizer=spm, distill=DistillConfig(lm_weight=0.0, weight=50.0), **common)
    after = summary["last"]["eval_bpc"]
    assert after < before - 0.1, (before, after)
    history = json.loads((tmp_path / "student" / HISTORY_FILE).read_text())
    assert history["teacher"]["options"]["lm_weight"] == 0.0 and history["teacher"]["tokenizer_vocab_size"] == len(spm)
    logged = [e for e in history["train_log"] if "loss" in e]
    assert logged and all("distill_loss" in e and e["distill_loss"] > 0 for e in logged)


# ------------------------------------------------------------------------------ bad input


def test_bad_teachers_are_refused(bpe, texts, tmp_path):
    student = tiny(bpe)
    run = dict(tokenizer=bpe, output_dir=tmp_path / "x", max_steps=1, seq_length=SEQ, progress=False)
    splade = assets.splade_tiny_path()
    with pytest.raises(ModelError, match="causal LMs only; the teacher"):
        continue_pretraining(student, texts, teacher=AutoModelForMaskedLM.from_pretrained(splade), teacher_tokenizer=AutoTokenizer.from_pretrained(splade), **run)
    with pytest.raises(ModelError, match="causal LMs only; the student"):
        continue_pretraining(str(splade), texts, output_dir=tmp_path / "y", max_steps=1, seq_length=SEQ, progress=False, teacher=tiny(bpe), teacher_tokenizer=bpe)
    with pytest.raises(PathNotFoundError, match="does not exist"):
        continue_pretraining(student, texts, teacher=str(tmp_path / "no-such-teacher"), **run)
    with pytest.raises(ModelError, match="same device"):
        continue_pretraining(student, texts, teacher=tiny(bpe).to("meta"), teacher_tokenizer=bpe, **run)
    with pytest.raises(ModelError, match="none is recorded"):
        continue_pretraining(student, texts, teacher=True, **run)
    english = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    english.pre_tokenizer = pre_tokenizers.Whitespace()
    english.train_from_iterator(["the cat sat on the mat"] * 20, trainers.WordPieceTrainer(vocab_size=60, special_tokens=["[UNK]", "[SEP]"]))
    english = PreTrainedTokenizerFast(tokenizer_object=english, unk_token="[UNK]", eos_token="[SEP]", bos_token="[SEP]")
    with pytest.raises(TokenizerError, match=r"turns \d+\.\d% of the corpus"):
        continue_pretraining(student, texts, teacher=tiny(english), teacher_tokenizer=english, **run)
    assert not (tmp_path / "x").exists(), "nothing written"


def test_cli_distills_a_transplant_from_its_recorded_source(bpe, texts, heldout, tmp_path):
    """hf-vocabswap train OUT --teacher source: the parent recorded in vocabswap.json teaches; the
    history, the record's training section and the card say so."""
    parent = tmp_path / "parent"
    tiny(bpe).save_pretrained(parent)
    bpe.save_pretrained(parent)
    folder = transplant_tokenizer(str(parent), _bytelevel(texts, 800), "fvt").save_pretrained(tmp_path / "uk")
    train_file, held_file = assets.write_texts(texts, tmp_path / "train.txt"), assets.write_texts(heldout, tmp_path / "held.txt")
    out = tmp_path / "distilled"
    assert main(["-q", "train", str(folder), "--text", str(train_file), "--eval-text", str(held_file), "--out", str(out),
                 "--steps", "10", "--batch-size", "4", "--seq-length", str(SEQ), "--eval-steps", "5", "--warmup-steps", "1",
                 "--teacher", "source", "--distill-temperature", "50"]) == 0
    history = json.loads((out / HISTORY_FILE).read_text())
    assert history["teacher"]["name"] == str(parent) and history["teacher"]["options"]["temperature"] == 50
    assert history["train_log"] and all(e["distill_loss"] > 0 for e in history["train_log"])
    assert read_record(out).training["teacher"]["name"] == str(parent)
    card = (out / CARD_FILE).read_text()
    assert "Distilled from `parent` across tokenizers" in card, card
