"""Continued pretraining (LAPT) on the real splade-tiny after a transplant to a Ukrainian
tokenizer, with real Ukrainian text: the held-out loss falls, resuming continues from the
saved step, and the embeddings-only phase leaves the body alone."""

from __future__ import annotations

import copy
import json
import math
import time

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM, AutoTokenizer, TrainerCallback
from transformers.utils import logging as hf_logging

from hf_vocabswap import assets
from hf_vocabswap.errors import OptionValueError, OutputExistsError
from hf_vocabswap.evaluate import bits_per_character
from hf_vocabswap.train import HISTORY_FILE, TrainConfig, continue_pretraining, embedding_parameters, pack_texts
from hf_vocabswap.transplant import transplant_tokenizer

hf_logging.disable_progress_bar()

SEQ = 64


@pytest.fixture(scope="module")
def uk_model(splade_path, ukrainian_train):
    """splade-tiny transplanted (FVT) to a 6,000-token WordPiece tokenizer trained on Ukrainian."""
    source_tok = AutoTokenizer.from_pretrained(splade_path)
    uk_tok = source_tok.train_new_from_iterator(ukrainian_train, vocab_size=6000)
    model = AutoModelForMaskedLM.from_pretrained(splade_path)
    result = transplant_tokenizer(model, uk_tok, "fvt", source_tokenizer=source_tok)
    return result.model, result.tokenizer


@pytest.fixture(scope="module")
def train_texts():
    return assets.ukrainian_texts("train", max_chars=60_000)


@pytest.fixture(scope="module")
def eval_texts():
    return assets.ukrainian_texts("heldout", max_chars=3_000)


def test_pack_texts_blocks_are_wrapped_in_specials(uk_model, train_texts):
    _, tok = uk_model
    blocks = pack_texts(tok, train_texts[:50], SEQ, kind="masked")
    assert blocks.shape[1] == SEQ and blocks.shape[0] > 5
    assert (blocks[:, 0] == tok.cls_token_id).all() and (blocks[:, -1] == tok.sep_token_id).all()


def test_lapt_lowers_heldout_bpc(uk_model, train_texts, eval_texts, tmp_path):
    model, tok = uk_model
    out = tmp_path / "lapt"
    started = time.perf_counter()
    summary = continue_pretraining(
        copy.deepcopy(model), train_texts, tokenizer=tok, output_dir=out, eval_texts=eval_texts,
        max_steps=20, batch_size=8, seq_length=SEQ, learning_rate=1e-3, warmup_steps=2,
        eval_steps=20, logging_steps=5, seed=0, progress=False,
    )
    seconds = time.perf_counter() - started
    before, after = summary["initial"], summary["last"]
    print(f"\nLAPT 20 steps in {seconds:.1f}s: held-out bpc {before['eval_bpc']:.4f} -> {after['eval_bpc']:.4f}, "
          f"eval loss {before['eval_loss']:.3f} -> {after['eval_loss']:.3f}")
    assert summary["global_step"] == 20 and summary["model_kind"] == "masked"
    assert before["step"] == 0 and after["step"] == 20
    assert after["eval_bpc"] < before["eval_bpc"] - 0.2
    assert after["eval_loss"] < before["eval_loss"]
    assert summary["best"]["step"] == 20 and summary["final_model"] == "last"

    # the final folder loads with stock Auto classes and measures what the run reported
    assert (out / "model.safetensors").is_file() and (out / "checkpoint-20" / "model.safetensors").is_file()
    reloaded = AutoModelForMaskedLM.from_pretrained(out)
    reloaded_tok = AutoTokenizer.from_pretrained(out)
    again = bits_per_character(reloaded, reloaded_tok, eval_texts, max_length=SEQ, progress=False)
    assert again["bits_per_character"] == pytest.approx(after["eval_bpc"], rel=1e-4)
    history = json.loads((out / HISTORY_FILE).read_text(encoding="utf-8"))
    assert [e["step"] for e in history["history"]] == [0, 20]
    assert history["best"]["step"] == 20 and history["train_log"]


class StepRecorder(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_resume_continues_from_saved_step(uk_model, train_texts, tmp_path):
    model, tok = uk_model
    out = tmp_path / "lapt"
    common = dict(tokenizer=tok, output_dir=out, batch_size=4, seq_length=SEQ, learning_rate=1e-3, warmup_steps=2,
                  save_steps=5, logging_steps=1, seed=0, progress=False)
    first = continue_pretraining(copy.deepcopy(model), train_texts, max_steps=10, **common)
    assert first["global_step"] == 10
    assert (out / "checkpoint-5").is_dir() and (out / "checkpoint-10").is_dir()
    with pytest.raises(OutputExistsError):
        continue_pretraining(copy.deepcopy(model), train_texts, max_steps=15, **common)

    recorder = StepRecorder()
    second = continue_pretraining(copy.deepcopy(model), train_texts, max_steps=15, resume=True, callbacks=[recorder], **common)
    assert second["resumed_from"].endswith("checkpoint-10") and second["start_step"] == 10
    assert second["global_step"] == 15
    assert recorder.steps == [11, 12, 13, 14, 15]  # only the five missing steps ran
    assert (out / "checkpoint-15" / "model.safetensors").is_file()
    history = json.loads((out / HISTORY_FILE).read_text(encoding="utf-8"))
    assert [e["step"] for e in history["train_log"]] == list(range(1, 16))  # restored log + new steps

    # the resumed weights are the checkpoint's weights trained further, not the fresh model's
    ckpt10 = load_file(out / "checkpoint-10" / "model.safetensors")
    ckpt15 = load_file(out / "checkpoint-15" / "model.safetensors")
    fresh = model.state_dict()
    name = "bert.encoder.layer.0.attention.self.query.weight"
    moved_from_10 = (ckpt15[name] - ckpt10[name]).abs().max().item()
    moved_from_fresh = (ckpt15[name] - fresh[name]).abs().max().item()
    assert 0 < moved_from_10 < moved_from_fresh


def test_embeddings_only_phase_leaves_body_unchanged(uk_model, train_texts, tmp_path):
    model, tok = uk_model
    start = copy.deepcopy(model)
    initial = {k: v.clone() for k, v in start.state_dict().items()}
    trainable = {n for n, p in start.named_parameters() if any(p is q for q in embedding_parameters(start))}
    assert trainable == {"bert.embeddings.word_embeddings.weight", "cls.predictions.bias"}  # head tied to the input

    out = tmp_path / "lapt"
    summary = continue_pretraining(
        start, train_texts, tokenizer=tok, output_dir=out, max_steps=4, embeddings_only_steps=2, save_steps=2,
        batch_size=4, seq_length=SEQ, learning_rate=1e-3, warmup_steps=0, weight_decay=0.01, seed=0, progress=False,
    )
    assert summary["global_step"] == 4
    # load through transformers: the file may use legacy key names (BERT's LayerNorm gamma/beta)
    phase1 = AutoModelForMaskedLM.from_pretrained(out / "checkpoint-2").state_dict()
    body = [n for n, p in start.named_parameters() if n not in trainable]
    assert body
    for name in body:
        assert torch.equal(phase1[name], initial[name]), f"{name} changed during the embeddings-only phase"
    for name in trainable:
        assert not torch.equal(phase1[name], initial[name]), f"{name} was not trained in the embeddings-only phase"
    final = AutoModelForMaskedLM.from_pretrained(out / "checkpoint-4").state_dict()
    changed = [n for n in body if not torch.equal(final[n], initial[n])]
    assert len(changed) == len(body), "the body was not released after the embeddings-only phase"
    assert math.isfinite(summary["train_loss"])


# --------------------------------------------------------------------------- causal LMs

LETTERS = list("abcdefghij")


def letters_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<bos>", "<pad>", "<unk>", "</s>"] + LETTERS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", pad_token="<pad>", unk_token="<unk>", eos_token="</s>")


def tiny_causal(seed=0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=14, n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=3, pad_token_id=1))


def counting_texts(n, seed=0):
    """Runs of consecutive letters: a pattern a tiny causal LM learns in a few dozen steps."""
    import random

    rng = random.Random(seed)
    return [" ".join(LETTERS[(i + j) % 10] for j in range(rng.randint(5, 30))) for i in range(n)]


def test_causal_lapt_with_early_stopping_saves_the_best_model(tmp_path):
    from transformers import AutoModelForCausalLM

    tok = letters_tokenizer()
    heldout = counting_texts(10, seed=1)
    out = tmp_path / "lapt"
    summary = continue_pretraining(
        tiny_causal(), counting_texts(300), tokenizer=tok, output_dir=out, eval_texts=heldout, max_steps=60,
        batch_size=8, seq_length=32, learning_rate=3e-2, warmup_steps=2, eval_steps=5, early_stopping_patience=1,
        bf16=True, seed=0, progress=False,
    )
    assert summary["model_kind"] == "causal"
    assert summary["initial"]["eval_bpc"] > 2 * summary["best"]["eval_bpc"]
    # Patience 1: training stops at the first evaluation that is not better than the best so far.
    # Whether (and when) held-out loss turns up depends on the run, so derive the expected stop
    # from the recorded curve instead of assuming one.
    curve = [(e["step"], e["eval_bpc"]) for e in summary["history"] if e["step"] > 0]
    best_so_far, expected_stop = curve[0][1], 60  # the Trainer tracks evaluations from its first one
    for step, bpc in curve[1:]:
        if bpc >= best_so_far:
            expected_stop = step
            break
        best_so_far = bpc
    assert summary["global_step"] == expected_stop
    if expected_stop < 60:
        assert summary["last"]["eval_bpc"] > summary["best"]["eval_bpc"]
    assert summary["final_model"] == "best"
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the in-training evaluations ran under bf16 autocast too
        again = bits_per_character(reloaded, AutoTokenizer.from_pretrained(out), heldout, max_length=32, progress=False)
    assert again["bits_per_character"] == pytest.approx(summary["best"]["eval_bpc"], rel=1e-4)


class StopAt(TrainerCallback):
    """Simulates an interruption after a given step."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def test_interrupted_and_resumed_run_equals_uninterrupted_run(tmp_path):
    tok = letters_tokenizer()
    texts = counting_texts(200)
    common = dict(tokenizer=tok, max_steps=12, batch_size=4, seq_length=32, learning_rate=1e-2, warmup_steps=3, save_steps=6, seed=0, progress=False)
    continue_pretraining(tiny_causal(), texts, output_dir=tmp_path / "a", callbacks=[StopAt(6)], **common)
    resumed = continue_pretraining(tiny_causal(seed=5), texts, output_dir=tmp_path / "a", resume=True, **common)
    straight = continue_pretraining(tiny_causal(), texts, output_dir=tmp_path / "b", **common)
    assert resumed["start_step"] == 6 and resumed["global_step"] == straight["global_step"] == 12
    a = load_file(tmp_path / "a" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


# -- the trained folder is a complete output (issue 15) ---------------------------------------
def test_a_trained_transplant_folder_is_complete_and_pushes(splade_path, train_texts, eval_texts, tmp_path):
    import subprocess
    import sys

    from huggingface_hub import ModelCard

    from hf_vocabswap.errors import NotAnOutputFolderError
    from hf_vocabswap.record import RECORD_FILE, check_output_folder, read_record

    from .hub_server import HubServer, hub_env

    source_tok = AutoTokenizer.from_pretrained(splade_path)
    target = source_tok.train_new_from_iterator(train_texts, vocab_size=1500)
    folder = transplant_tokenizer(str(splade_path), target, "fvt", language="uk").save_pretrained(tmp_path / "uk")
    assert "has not been trained" in (folder / "README.md").read_text(encoding="utf-8")

    out = tmp_path / "uk-lapt"
    summary = continue_pretraining(str(folder), train_texts, output_dir=out, eval_texts=eval_texts, max_steps=4,
                                   batch_size=4, seq_length=SEQ, learning_rate=1e-3, warmup_steps=1, eval_steps=2,
                                   logging_steps=2, seed=0, progress=False)
    record = read_record(out)
    assert record.counts == read_record(folder).counts and record.language == "uk"  # the transplant, carried over
    training = record.training
    assert training["global_step"] == 4 and [p["step"] for p in training["curve"]] == [0, 2, 4]
    assert training["best"] == summary["best"] and training["last"]["eval_bpc"] == summary["last"]["eval_bpc"]
    assert training["recipe"]["seq_length"] == SEQ and training["recipe"]["learning_rate"] == 1e-3

    card = ModelCard((out / "README.md").read_text(encoding="utf-8"))
    assert "has not been trained" not in card.text
    assert "Continued pretraining (LAPT) for 4 steps of 4 x 64 tokens" in card.text
    assert f"best {summary['best']['eval_bpc']:.4f} at step {summary['best']['step']}" in card.text
    assert "during training, last (step 4)" in card.text  # the evaluation table shows the curve's best and last
    assert card.data.language == "uk"

    assert not (out / "training_args.bin").exists()
    files = {str(f) for f in check_output_folder(out)}
    assert {RECORD_FILE, "README.md", "model.safetensors", HISTORY_FILE} <= files
    assert (out / "checkpoint-4").is_dir() and not any(f.startswith("checkpoint-") or f.endswith((".pt", ".pth", ".bin")) for f in files)

    token = "hf_TESTtoken0123456789abcdefSECRET"
    with HubServer(tokens={token: "user"}) as hub:
        proc = subprocess.run([sys.executable, "-m", "hf_vocabswap.cli", "push", str(out), "user/uk-lapt"],
                              env=hub_env(hub, tmp_path, token=token), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        pushed = set(hub.repos["user/uk-lapt"].commits[-1]["files"])
    assert pushed - {".gitattributes"} == files  # .gitattributes: the new repo's own first commit

    (out / RECORD_FILE).unlink()  # a trained folder whose record was deleted: the error names it
    with pytest.raises(NotAnOutputFolderError, match=RECORD_FILE):
        check_output_folder(out)


def test_train_config_and_keyword_overrides(tmp_path):
    """config= holds the options, keywords of the same name override them, other names are refused;
    all before anything is loaded (the model path does not exist)."""
    missing = str(tmp_path / "no-model")
    with pytest.raises(OptionValueError, match="batch_size must be at least 1"):
        continue_pretraining(missing, ["x"], output_dir=tmp_path / "o", config=TrainConfig(batch_size=0))
    with pytest.raises(OptionValueError, match="max_steps must be at least 1"):
        continue_pretraining(missing, ["x"], output_dir=tmp_path / "o", config=TrainConfig(batch_size=0), batch_size=4, max_steps=0)
    with pytest.raises(TypeError, match="unknown option.*max_step"):
        continue_pretraining(missing, ["x"], output_dir=tmp_path / "o", max_step=3)
    assert not (tmp_path / "o").exists()
