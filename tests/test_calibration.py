"""Output calibration of new tokens (hf_vocabswap.calibration) and its place in transplant_tokenizer.

The checks recompute what calibration claims independently: the corpus frequencies by counting
tokens, and the model's mean predicted distribution by running the model over the same text.
"""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

from hf_vocabswap import assets, errors
from hf_vocabswap.calibration import calibrate_new_tokens
from hf_vocabswap.cli import main
from hf_vocabswap.evaluate import causal_prefix, max_sequence_length, special_template
from hf_vocabswap.methods import COPIED
from hf_vocabswap.plan import load_plan
from hf_vocabswap.transplant import new_token_ids, transplant_tokenizer

from .families import FAMILIES, FAMILY_BY_NAME, tokenizer_pair
from .test_families import _source_model

MAX_LENGTH = 128  # the tiny models' position tables
QUIET = dict(progress=False, max_length=MAX_LENGTH)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy machine the thread
    hand-offs cost several times the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    """Held-out Ukrainian: the calibration sample and frequencies are the same text (max_chars
    below exceeds it), so the independent recomputation can run over exactly that text."""
    return assets.ukrainian_texts("heldout", max_chars=6_000)


def _frequencies(tokenizer, texts, vocab_size):
    """(smoothed frequencies, raw counts) of the tokenizer's ids on texts, specials excluded."""
    counts = np.zeros(vocab_size)
    for text in texts:
        np.add.at(counts, tokenizer(text, add_special_tokens=False)["input_ids"], 1)
    special = list(tokenizer.all_special_ids)
    counts[special] = 0
    freq = counts + 0.5
    freq[special] = 0
    return freq / freq.sum(), counts


def _mean_prediction(model, tokenizer, texts) -> np.ndarray:
    """The causal model's predicted distribution averaged over every next-token position of
    texts (windows of MAX_LENGTH, each opened by the tokenizer's causal prefix)."""
    prefix = causal_prefix(tokenizer)
    room = MAX_LENGTH - len(prefix)
    windows = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        windows += [prefix + ids[start : start + room] for start in range(0, len(ids), room)]
    total, positions = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(windows), 32):
            batch = windows[i : i + 32]
            width = max(map(len, batch))
            ids = torch.tensor([w + [0] * (width - len(w)) for w in batch])
            mask = torch.tensor([[1] * len(w) + [0] * (width - len(w)) for w in batch])
            probs = torch.softmax(model(input_ids=ids, attention_mask=mask).logits.double(), dim=-1)
            predicting = mask.clone()
            predicting[torch.arange(len(batch)), mask.sum(1) - 1] = 0  # the last token predicts nothing
            total = total + (probs * predicting[..., None]).sum((0, 1))
            positions += int(predicting.sum())
    return (total / positions).numpy()


def _masked_mean_prediction(model, tokenizer, texts, every: int = 7) -> np.ndarray:
    """The masked LM's predicted distribution averaged over masked positions: every token of
    texts is masked once, in copies of its window with every 7th token masked."""
    before, after = special_template(tokenizer)
    room = MAX_LENGTH - len(before) - len(after)
    rows = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids), room):
            body = ids[start : start + room]
            for offset in range(min(every, len(body))):
                window = before + body + after
                positions = [len(before) + i for i in range(offset, len(body), every)]
                for position in positions:
                    window[position] = tokenizer.mask_token_id
                rows.append((window, positions))
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), 32):
            batch = rows[i : i + 32]
            width = max(len(w) for w, _ in batch)
            ids = torch.tensor([w + [tokenizer.pad_token_id] * (width - len(w)) for w, _ in batch])
            mask = torch.tensor([[1] * len(w) + [0] * (width - len(w)) for w, _ in batch])
            logits = model(input_ids=ids, attention_mask=mask).logits
            picked = torch.cat([logits[j, positions] for j, (_, positions) in enumerate(batch)])
            total = total + torch.softmax(picked.double(), dim=-1).sum(0)
            count += picked.shape[0]
    return (total / count).numpy()


def _seq2seq_mean_prediction(model, tokenizer, texts) -> np.ndarray:
    """The encoder-decoder model's decoder distribution averaged over every position that
    predicts a text token: the encoder reads the template of an empty text, the decoder
    windows of MAX_LENGTH tokens shifted right behind config.decoder_start_token_id."""
    encoder = tokenizer("")["input_ids"]
    start = model.config.decoder_start_token_id
    windows = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        windows += [ids[i : i + MAX_LENGTH] for i in range(0, len(ids), MAX_LENGTH)]
    total, positions = 0.0, 0
    with torch.no_grad():
        for w in windows:
            logits = model(input_ids=torch.tensor([encoder]), decoder_input_ids=torch.tensor([[start] + w[:-1]])).logits[0]
            total = total + torch.softmax(logits.double(), dim=-1).sum(0)
            positions += len(w)
    return (total / positions).numpy()


def _gpt2(tied: bool = True):
    """A tiny GPT-2 transplanted with FVT to a Ukrainian BPE tokenizer (no calibration).

    A trained LM's final hidden states share a dominant direction, which the "direction" mode
    relies on (h . v ~ 1). A freshly initialized model has none, so one is given to it through
    the final LayerNorm's bias.
    """
    family = FAMILY_BY_NAME["gpt2"]
    if not tied:
        family = dataclasses.replace(family, config=family.config + (("tie_word_embeddings", False),))
    src, tgt = tokenizer_pair(family.tokenizer)
    torch.manual_seed(0)
    model = family.build(len(src), src)
    direction = torch.randn(model.config.n_embd, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        model.transformer.ln_f.bias.copy_(5.0 * direction / direction.norm())
    return transplant_tokenizer(model, tgt, "fvt", source_tokenizer=src, calibrate=False), src, tgt


@pytest.fixture(scope="module")
def gpt2_fvt():
    return _gpt2()


@pytest.fixture(scope="module")
def gpt2_calibrated(gpt2_fvt, corpus):
    """Before/after of calibrating the GPT-2 FVT transplant: weights, stats and recomputed
    mean predictions."""
    result, _, tgt = gpt2_fvt
    model = copy.deepcopy(result.model)
    ids = new_token_ids(result.plan, result.alignment)
    in_before = model.get_input_embeddings().weight.detach().clone()
    out_before = model.get_output_embeddings().weight.detach().clone()
    p_before = _mean_prediction(model, tgt, corpus)
    record: dict = {}
    stats = calibrate_new_tokens(model, tgt, corpus, ids, max_chars=10**6, record=record, **QUIET)
    p_after = _mean_prediction(model, tgt, corpus)
    return dict(model=model, ids=np.array(ids), stats=stats, record=record, in_before=in_before, out_before=out_before,
                p_before=p_before, p_after=p_after, tokenizer=tgt)


def test_new_token_ids_are_the_uncopied_regular_tokens(gpt2_fvt):
    result, _, tgt = gpt2_fvt
    ids = new_token_ids(result.plan, result.alignment)
    assert ids == sorted(ids) and len(ids) > 100
    assert not set(ids) & set(tgt.all_special_ids)
    uncopied = np.flatnonzero(result.plan.kinds != COPIED).tolist()
    assert ids == [i for i in uncopied if i not in set(tgt.all_special_ids)]


def test_tied_causal_matches_corpus_share(gpt2_calibrated, corpus):
    c = gpt2_calibrated
    stats, ids, model, tgt = c["stats"], c["ids"], c["model"], c["tokenizer"]
    assert stats["mode"] == "direction" and stats["tied"] is True and stats["rounds"] == 2
    assert stats["calibrated"] == len(ids) and len(stats["history"]) == 2
    freq, _ = _frequencies(tgt, corpus, model.get_output_embeddings().weight.shape[0])
    share = freq[ids].sum()
    assert stats["corpus_share"] == pytest.approx(share, abs=2e-4)
    # FVT's new tokens start far above their share (the premise of calibration) ...
    assert stats["mass_before"] > share + 0.1
    # ... the hidden states the calibration collected are the model's: its "before" is ours ...
    assert stats["mass_before"] == pytest.approx(c["p_before"][ids].sum(), abs=0.01)
    # ... and it lands on the share, by its own count and by running the model again.
    assert stats["mass_after"] == pytest.approx(share, abs=0.02)
    assert c["p_after"][ids].sum() == pytest.approx(stats["mass_after"], abs=0.02)
    assert c["p_after"].sum() == pytest.approx(1.0, abs=1e-6)


def test_tied_causal_moves_only_new_rows(gpt2_calibrated):
    c = gpt2_calibrated
    model, ids = c["model"], c["ids"]
    inp = model.get_input_embeddings().weight.detach()
    out = model.get_output_embeddings().weight.detach()
    assert inp.data_ptr() == out.data_ptr()  # still tied
    others = np.setdiff1d(np.arange(inp.shape[0]), ids)  # copied and special tokens
    assert len(others) > 1000
    assert torch.equal(inp[others], c["in_before"][others])
    assert torch.equal(out[others], c["out_before"][others])
    assert (inp[ids] != c["in_before"][ids]).any(dim=1).all()


def test_record_reproduces_the_change(gpt2_calibrated):
    c = gpt2_calibrated
    record, ids = c["record"], c["ids"]
    assert record["mode"] == "direction"
    np.testing.assert_array_equal(record["ids"], ids)
    assert record["shifts"].shape == (2, len(ids)) and record["directions"].shape == (2, c["in_before"].shape[1])
    delta = torch.from_numpy(np.einsum("rk,rd->kd", record["shifts"], record["directions"].astype(np.float64))).float()
    after = c["model"].get_output_embeddings().weight.detach()[ids]
    torch.testing.assert_close(after, c["out_before"][ids] + delta, rtol=0, atol=1e-5)


def test_frequent_tokens_gain_against_unused_ones(gpt2_calibrated, corpus):
    """Per token: log(p/f) is near-constant after calibration, so a token the corpus uses often
    gains probability against one it never uses."""
    c = gpt2_calibrated
    ids, tgt = c["ids"], c["tokenizer"]
    freq, counts = _frequencies(tgt, corpus, len(c["p_before"]))
    before = np.log(c["p_before"][ids] / freq[ids])
    after = np.log(c["p_after"][ids] / freq[ids])
    assert after.std() < 0.1 * before.std(), (before.std(), after.std())
    used, unused = ids[counts[ids] > 0], ids[counts[ids] == 0]
    assert len(unused) > 10 and len(used) > 10
    frequent = used[np.argmax(counts[used])]
    assert counts[frequent] >= 5
    ratio = lambda p: p[frequent] / p[unused].mean()  # noqa: E731
    # The frequent token ends up predicted about as much more often as the corpus uses it.
    assert ratio(c["p_after"]) > 5 * ratio(c["p_before"])
    assert ratio(c["p_after"]) == pytest.approx(freq[frequent] / freq[unused].mean(), rel=0.2)


@pytest.fixture(scope="module")
def splade_fvt(splade_path):
    """The real splade-tiny (masked LM with an output bias) transplanted with FVT (no calibration)."""
    src, tgt = tokenizer_pair("wordpiece")
    model = AutoModelForMaskedLM.from_pretrained(splade_path)
    return transplant_tokenizer(model, tgt, "fvt", source_tokenizer=src, calibrate=False), tgt


def test_masked_with_bias_shifts_only_the_bias(splade_fvt, corpus):
    result, tgt = splade_fvt
    model = copy.deepcopy(result.model)
    head = model.get_output_embeddings()
    ids = np.array(new_token_ids(result.plan, result.alignment))
    inp_before = model.get_input_embeddings().weight.detach().clone()
    bias_before = head.bias.detach().clone()
    p_before = _masked_mean_prediction(model, tgt, corpus)
    record: dict = {}
    stats = calibrate_new_tokens(model, tgt, corpus, ids, record=record, **QUIET)
    p_after = _masked_mean_prediction(model, tgt, corpus)
    assert stats["mode"] == "bias" and stats["rounds"] == 1 and stats["calibrated"] == len(ids)
    freq, _ = _frequencies(tgt, corpus, len(bias_before))
    assert stats["corpus_share"] == pytest.approx(freq[ids].sum(), abs=2e-4)
    assert abs(stats["mass_before"] - stats["corpus_share"]) > 0.03
    assert stats["mass_after"] == pytest.approx(stats["corpus_share"], abs=0.02)
    # Its masses are those of the model's predictions at masked positions (ours mask every
    # token once; it masks a random 15% of them).
    assert p_before[ids].sum() == pytest.approx(stats["mass_before"], abs=0.03)
    assert p_after[ids].sum() == pytest.approx(stats["mass_after"], abs=0.03)
    assert abs(p_after[ids].sum() - stats["corpus_share"]) < abs(p_before[ids].sum() - stats["corpus_share"]) - 0.03
    assert torch.equal(model.get_input_embeddings().weight, inp_before)
    assert torch.equal(head.weight, inp_before)  # tied output rows: untouched too
    changed = np.flatnonzero((head.bias.detach() != bias_before).numpy())
    assert set(changed) <= set(ids.tolist()) and len(changed) > 0.9 * len(ids)
    assert "directions" not in record and record["shifts"].shape == (1, len(ids))
    torch.testing.assert_close(head.bias.detach()[ids] - bias_before[ids], torch.from_numpy(record["shifts"][0]).float(), rtol=0, atol=1e-5)


def test_untied_causal_leaves_input_embeddings(corpus):
    family = FAMILY_BY_NAME["llama"]
    assert dict(family.config)["tie_word_embeddings"] is False
    src, tgt = tokenizer_pair(family.tokenizer)
    torch.manual_seed(0)
    result = transplant_tokenizer(family.build(len(src), src), tgt, "fvt", source_tokenizer=src, calibrate=False)
    model = result.model
    ids = np.array(new_token_ids(result.plan, result.alignment))
    inp_before = model.get_input_embeddings().weight.detach().clone()
    out_before = model.get_output_embeddings().weight.detach().clone()
    stats = calibrate_new_tokens(model, tgt, corpus, ids, **QUIET)
    assert stats["mode"] == "direction" and stats["tied"] is False
    assert stats["rounds"] == 1 and len(stats["history"]) == 1
    assert torch.equal(model.get_input_embeddings().weight, inp_before)
    out = model.get_output_embeddings().weight.detach()
    others = np.setdiff1d(np.arange(out.shape[0]), ids)
    assert torch.equal(out[others], out_before[others])
    assert (out[ids] != out_before[ids]).any(dim=1).all()


def test_untied_causal_matches_corpus_share(corpus):
    result, _, tgt = _gpt2(tied=False)
    model = result.model
    ids = new_token_ids(result.plan, result.alignment)
    stats = calibrate_new_tokens(model, tgt, corpus, ids, max_chars=10**6, **QUIET)
    assert stats["rounds"] == 1 and stats["tied"] is False
    assert stats["mass_before"] > stats["corpus_share"] + 0.1
    assert stats["mass_after"] == pytest.approx(stats["corpus_share"], abs=0.02)
    assert _mean_prediction(model, tgt, corpus)[ids].sum() == pytest.approx(stats["corpus_share"], abs=0.02)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_lm_family(family, corpus):
    """The hook finds each family's output layer; only the output bias (masked; BART's
    final_logits_bias) or the output rows (causal, T5; tied: the same tensor as the input
    rows) change, and of the output rows only the new tokens'."""
    src, tgt = tokenizer_pair(family.tokenizer)
    result = transplant_tokenizer(_source_model(family, src), tgt, "fvt", source_tokenizer=src, calibrate=False)
    model = result.model
    ids = new_token_ids(result.plan, result.alignment)
    length = min(MAX_LENGTH, max_sequence_length(model, tgt))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    before_out = model.get_output_embeddings().weight.detach().clone()
    stats = calibrate_new_tokens(model, tgt, corpus, ids, progress=False, max_length=length)
    after = model.state_dict()
    changed = {after[k].data_ptr() for k in before if not torch.equal(before[k], after[k])}
    head = model.get_output_embeddings()
    tied = head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert stats["calibrated"] == len(ids) > 100 and stats["tied"] is tied
    if family.kind == "masked":
        assert stats["mode"] == "bias" and changed == {head.bias.data_ptr()}
        assert stats["mass_after"] == pytest.approx(stats["corpus_share"], abs=0.02)
    elif hasattr(model, "final_logits_bias"):
        assert stats["mode"] == "bias" and stats["rounds"] == 1 and changed == {model.final_logits_bias.data_ptr()}
        assert stats["mass_after"] == pytest.approx(stats["corpus_share"], abs=0.02)
    else:
        assert stats["mode"] == "direction" and changed == {head.weight.data_ptr()}
        assert stats["rounds"] == (2 if tied else 1)
        others = np.setdiff1d(np.arange(head.weight.shape[0]), ids)
        assert torch.equal(head.weight.detach()[others], before_out[others])
    if family.kind == "seq2seq":  # random T5s share a hidden direction (h . v ~ 1): the fit works too
        assert abs(stats["mass_before"] - stats["corpus_share"]) > 0.05
        assert stats["mass_after"] == pytest.approx(stats["corpus_share"], abs=0.02)


@pytest.mark.parametrize("which", ["gpt2", "splade"])
def test_deterministic(which, gpt2_fvt, splade_fvt, corpus):
    result = gpt2_fvt[0] if which == "gpt2" else splade_fvt[0]
    tgt = gpt2_fvt[2] if which == "gpt2" else splade_fvt[1]
    ids = new_token_ids(result.plan, result.alignment)
    runs = []
    for _ in range(2):
        model = copy.deepcopy(result.model)
        stats = calibrate_new_tokens(model, tgt, corpus, ids, **QUIET)
        runs.append((model.state_dict(), {k: v for k, v in stats.items() if k != "seconds"}))
    (a, sa), (b, sb) = runs
    assert sa == sb
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    changed = [k for k in a if not torch.equal(a[k], result.model.state_dict()[k])]
    assert changed  # it did something


def test_input_errors(gpt2_fvt, corpus):
    result, _, tgt = gpt2_fvt
    model = copy.deepcopy(result.model)
    ids = new_token_ids(result.plan, result.alignment)
    with pytest.raises(errors.CorpusError):
        calibrate_new_tokens(model, tgt, [], ids, **QUIET)
    with pytest.raises(errors.CorpusError):
        calibrate_new_tokens(model, tgt, ["", "   "], ids, **QUIET)
    with pytest.raises(errors.MethodOptionError):
        calibrate_new_tokens(model, tgt, corpus, ids, iterations=0, **QUIET)
    with pytest.raises(errors.ModelError, match="outside"):
        calibrate_new_tokens(model, tgt, corpus, [len(tgt) + 10**6], **QUIET)
    assert calibrate_new_tokens(model, tgt, corpus, [], **QUIET)["calibrated"] == 0
    # None of the refused calls changed the model.
    sd, ref = model.state_dict(), result.model.state_dict()
    assert all(torch.equal(sd[k], ref[k]) for k in ref)


def test_positions_are_capped_by_the_model(gpt2_fvt, corpus):
    """The default max_length (512) exceeds the tiny GPT-2's 128 positions: windows are cut to
    the model's table instead of indexing past it."""
    result, _, tgt = gpt2_fvt
    model = copy.deepcopy(result.model)
    stats = calibrate_new_tokens(model, tgt, corpus, new_token_ids(result.plan, result.alignment), progress=False)
    assert stats["calibrated"] > 0


# transplant_tokenizer(calibrate=...)


@pytest.fixture(scope="module")
def train_corpus() -> list[str]:
    return assets.ukrainian_texts("train", max_chars=30_000)


@pytest.fixture(scope="module")
def gpt2_source():
    family = FAMILY_BY_NAME["gpt2"]
    src, tgt = tokenizer_pair(family.tokenizer)
    torch.manual_seed(0)
    return family.build(len(src), src), src, tgt


@pytest.fixture(scope="module")
def hybrid_runs(gpt2_source, train_corpus, tmp_path_factory):
    model, src, tgt = gpt2_source
    cache = str(tmp_path_factory.mktemp("ft"))
    run = lambda **kw: transplant_tokenizer(model, tgt, "hybrid", source_tokenizer=src, corpus=train_corpus, cache_dir=cache, threads=1, **kw)  # noqa: E731
    return run(), run(calibrate=False)


def test_hybrid_calibrates_by_default(hybrid_runs):
    default, off = hybrid_runs
    cal = default.report.method_stats["calibration"]
    ids = new_token_ids(default.plan, default.alignment)
    assert cal["calibrated"] == len(ids) > 0 and cal["mode"] == "direction"
    assert cal is default.plan.stats["calibration"]
    assert default.report.method_stats["global_weight"] == 0.1  # the causal-LM default
    np.testing.assert_array_equal(default.plan.calibration["ids"], ids)
    assert "calibration" not in off.report.method_stats and off.plan.calibration is None
    # Same plan; only the new tokens' rows (tied: input and output) differ.
    np.testing.assert_array_equal(default.plan.weights, off.plan.weights)
    a, b = default.model.get_input_embeddings().weight, off.model.get_input_embeddings().weight
    others = np.setdiff1d(np.arange(a.shape[0]), ids)
    assert torch.equal(a[others], b[others])
    assert (a[ids] != b[ids]).any(dim=1).all()


def test_calibration_survives_save_and_reload(hybrid_runs, tmp_path):
    default, _ = hybrid_runs
    out = default.save_pretrained(tmp_path / "out")
    record = json.loads((out / "vocabswap.json").read_text())
    assert record["method_stats"]["calibration"]["calibrated"] == default.report.method_stats["calibration"]["calibrated"]
    plan = load_plan(out / "vocabswap_plan.safetensors")
    for key in ("ids", "shifts", "directions"):
        np.testing.assert_array_equal(plan.calibration[key], default.plan.calibration[key])
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    assert torch.equal(reloaded.get_output_embeddings().weight, default.model.get_output_embeddings().weight)


def test_fvt_calibrates_only_when_asked(gpt2_source, corpus):
    model, src, tgt = gpt2_source
    plain = transplant_tokenizer(model, tgt, "fvt", source_tokenizer=src, corpus=corpus)
    assert "calibration" not in plain.report.method_stats
    asked = transplant_tokenizer(model, tgt, "fvt", source_tokenizer=src, corpus=corpus, calibrate=True)
    cal = asked.report.method_stats["calibration"]
    assert cal["calibrated"] == len(new_token_ids(asked.plan, asked.alignment)) > 0
    # The source model is left alone (transplant works on a copy).
    assert model.get_input_embeddings().weight.shape[0] == len(src)


def test_calibrate_option_errors(gpt2_source, corpus):
    model, src, tgt = gpt2_source
    with pytest.raises(errors.CorpusError, match="calibrate=True"):
        transplant_tokenizer(model, tgt, "fvt", source_tokenizer=src, calibrate=True)
    with pytest.raises(errors.MethodOptionError, match="low_memory"):
        transplant_tokenizer(model, tgt, "fvt", source_tokenizer=src, corpus=corpus, calibrate=True, low_memory=True)


def test_seq2seq_bias_shifts_only_final_logits_bias(corpus):
    """BART adds final_logits_bias to its (tied) output layer: calibration shifts the new
    tokens' entries of it and nothing else, and the model's decoder predictions, recomputed
    here, then give the new tokens their corpus share."""
    family = FAMILY_BY_NAME["bart"]
    src, tgt = tokenizer_pair(family.tokenizer)
    result = transplant_tokenizer(_source_model(family, src), tgt, "fvt", source_tokenizer=src, calibrate=False)
    model = result.model
    ids = np.array(new_token_ids(result.plan, result.alignment))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    p_before = _seq2seq_mean_prediction(model, tgt, corpus)
    record: dict = {}
    stats = calibrate_new_tokens(model, tgt, corpus, ids, max_chars=10**6, record=record, **QUIET)
    p_after = _seq2seq_mean_prediction(model, tgt, corpus)
    assert stats["mode"] == "bias" and stats["rounds"] == 1 and stats["calibrated"] == len(ids) > 100
    freq, _ = _frequencies(tgt, corpus, model.final_logits_bias.shape[-1])
    assert stats["corpus_share"] == pytest.approx(freq[ids].sum(), abs=2e-4)
    assert abs(stats["mass_before"] - stats["corpus_share"]) > 0.05
    assert stats["mass_after"] == pytest.approx(stats["corpus_share"], abs=0.02)
    assert p_before[ids].sum() == pytest.approx(stats["mass_before"], abs=0.01)
    assert p_after[ids].sum() == pytest.approx(stats["corpus_share"], abs=0.02)
    after = model.state_dict()
    assert [k for k in before if not torch.equal(before[k], after[k])] == ["final_logits_bias"]
    delta = (after["final_logits_bias"] - before["final_logits_bias"])[0]
    changed = np.flatnonzero(delta.numpy())
    assert set(changed) <= set(ids.tolist()) and len(changed) > 0.9 * len(ids)
    assert "directions" not in record and record["shifts"].shape == (1, len(ids))
    torch.testing.assert_close(delta[ids], torch.from_numpy(record["shifts"][0]).float(), rtol=0, atol=1e-5)


def test_model_without_lm_head_is_refused(gpt2_fvt, corpus):
    result, _, tgt = gpt2_fvt
    ids = new_token_ids(result.plan, result.alignment)
    with pytest.raises(errors.ModelError, match="base"):
        calibrate_new_tokens(transformers.GPT2Model(result.model.config), tgt, corpus, ids, **QUIET)
    family = FAMILY_BY_NAME["t5"]
    config = transformers.T5Config(vocab_size=len(tgt), **dict(family.config))
    with pytest.raises(errors.ModelError, match="no output embedding"):
        calibrate_new_tokens(transformers.T5Model(config), tgt, corpus, ids, **QUIET)


def test_seq2seq_hybrid_calibrates_by_default(train_corpus, tmp_path):
    family = FAMILY_BY_NAME["t5"]
    src, tgt = tokenizer_pair(family.tokenizer)
    torch.manual_seed(0)
    model = family.build(len(src), src)
    result = transplant_tokenizer(model, tgt, "hybrid", source_tokenizer=src, corpus=train_corpus, cache_dir=str(tmp_path), threads=1)
    cal = result.report.method_stats["calibration"]
    ids = new_token_ids(result.plan, result.alignment)
    assert cal["calibrated"] == len(ids) > 0 and cal["mode"] == "direction" and cal["tied"] is True
    assert cal["rounds"] == 2 and "warning" not in cal
    np.testing.assert_array_equal(result.plan.calibration["ids"], ids)
    assert result.plan.calibration["directions"].shape == (2, model.config.d_model)


def test_hybrid_without_corpus_skips(gpt2_source, hybrid_runs):
    """With a prebuilt fastText model the hybrid needs no corpus; calibration then has no text."""
    model, src, tgt = gpt2_source
    fasttext_model = hybrid_runs[0].report.method_stats["focus"]["fasttext_model"]
    result = transplant_tokenizer(model, tgt, "hybrid", source_tokenizer=src, fasttext_model=fasttext_model)
    assert result.report.method_stats["calibration"] == {"skipped": "no corpus"}


# The command line


def test_cli_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["transplant", "--help"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "--calibrate" in printed and "--no-calibrate" in printed


@pytest.fixture(scope="module")
def cli_inputs(gpt2_source, train_corpus, tmp_path_factory):
    model, src, tgt = gpt2_source
    folder = tmp_path_factory.mktemp("cli")
    model.save_pretrained(folder / "model")
    src.save_pretrained(folder / "model")
    tgt.save_pretrained(folder / "target")
    text = assets.write_texts(train_corpus, folder / "uk.txt")
    return folder, text


@pytest.mark.parametrize("method, flag, calibrated", [("hybrid", "--no-calibrate", False), ("fvt", "--calibrate", True)])
def test_cli_calibrate_flag(cli_inputs, tmp_path, method, flag, calibrated):
    folder, text = cli_inputs
    out = tmp_path / "out"
    argv = ["-q", "transplant", str(folder / "model"), str(folder / "target"), "--method", method, "--corpus", str(text), flag, "--out", str(out)]
    if method == "hybrid":
        argv += ["--cache-dir", str(tmp_path / "ft"), "--threads", "1"]
    assert main(argv) == 0
    record = json.loads((out / "vocabswap.json").read_text())
    assert record["method"] == method
    assert ("calibration" in record["method_stats"]) is calibrated
    if calibrated:
        assert record["method_stats"]["calibration"]["calibrated"] > 0
