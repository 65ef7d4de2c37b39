"""fastText auxiliary embeddings: no unbounded training, Ctrl-C stops it, the vector cache.

Real processes where the behaviour needs them (a CLI run on a corpus the target cannot read,
SIGINT to a process that is training); real Ukrainian text and splade-tiny elsewhere.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from hf_vocabswap import assets
from hf_vocabswap.auxiliary import fasttext as aux_fasttext
from hf_vocabswap.auxiliary.fasttext import FastTextParams, check_learnable, token_fasttext_file, write_token_corpus
from hf_vocabswap.corpus import Corpus
from hf_vocabswap.errors import CorpusError

pytest.importorskip("fasttext")

ROOT = Path(__file__).resolve().parent.parent
EMOJI = ["🙂🙃 😀 🚀🚀 " * 20] * 30  # splade-tiny's WordPiece reads every one as [UNK]
TINY = FastTextParams(dim=16, epoch=2, bucket=100_000)


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def _fasttext_children(marker: str) -> list[int]:
    """Pids of live processes whose command line names ``marker`` (the training file)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes().decode("utf-8", "replace"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.fixture(scope="module")
def splade_tokenizer(splade_path):
    return AutoTokenizer.from_pretrained(splade_path)


def test_all_unknown_corpus_is_refused_from_the_cli_without_training(splade_path, tmp_path):
    corpus = tmp_path / "emoji.txt"
    corpus.write_text("\n".join(EMOJI) + "\n", encoding="utf-8")
    cache, out = tmp_path / "cache", tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "hf_vocabswap.cli", "-q", "transplant", str(splade_path), str(splade_path), "--method", "focus",
         "--corpus", str(corpus), "--cache-dir", str(cache), "--out", str(out)],
        env=_env(), capture_output=True, text=True, timeout=300,  # the time limit: before the fix this never ended
    )
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "100% of its 1,800 target tokens are the unknown token '[UNK]'" in last, last
    assert "Give more text in the target tokenizer's language" in last
    assert not out.exists()
    assert not cache.exists() or list(cache.iterdir()) == [], "no model and no temporary folder in the fastText cache"


def test_check_learnable_refuses_single_word_and_warns_on_unknown_share(caplog):
    with pytest.raises(CorpusError, match="single word seen 10 times .'кіт'."):
        check_learnable(Counter({"кіт": 50, "</s>": 1}), "[UNK]", 10, "one line")  # fastText would loop forever
    with caplog.at_level(logging.WARNING, logger="hf_vocabswap.auxiliary.fasttext"):
        info = check_learnable(Counter({"[UNK]": 300, "кіт": 700, "</s>": 100}), "[UNK]", 10, "some")
    assert info == {"tokens": 1000, "unknown": 300, "unknown_share": 0.3, "learnable_words": 1}
    assert [r.getMessage() for r in caplog.records if "30% of the 1,000 target tokens" in r.getMessage()]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hf_vocabswap.auxiliary.fasttext"):
        check_learnable(Counter({"[UNK]": 100, "кіт": 900, "</s>": 100}), "[UNK]", 10, "some")
    assert not caplog.records, "10% unknown tokens is no reason to warn"


def test_word_counts_are_what_fasttext_reads(splade_tokenizer, tmp_path):
    counts: Counter = Counter()
    write_token_corpus(Corpus(["кіт і пес", "🙂"]), splade_tokenizer, tmp_path / "t.txt", progress=False, word_counts=counts)
    words = (tmp_path / "t.txt").read_text(encoding="utf-8").split()
    assert counts == Counter(words) + Counter({"</s>": 2})
    assert "[PAD]" not in counts, "samples of a batch are not padded (splade's tokenizer.json pads)"


def test_sigint_stops_training_at_once_and_leaves_nothing(ukrainian_train, tmp_path):
    cache = tmp_path / "cache"
    corpus = assets.write_texts(ukrainian_train[:300], tmp_path / "uk.txt")
    script = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from transformers import AutoTokenizer
from hf_vocabswap import assets
from hf_vocabswap.auxiliary.fasttext import FastTextParams, token_fasttext_file
from hf_vocabswap.corpus import Corpus
tok = AutoTokenizer.from_pretrained(assets.splade_tiny_path())
token_fasttext_file(Corpus({str(corpus)!r}), tok, FastTextParams(dim=16, epoch=100000, bucket=1000), cache_dir={str(cache)!r}, threads=1, progress=False)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while not (token_files := list(cache.glob("fasttext-*/tokens.txt"))) or not _fasttext_children(str(token_files[0])):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "training never started"
        time.sleep(0.05)
    marker = str(token_files[0])
    time.sleep(0.5)  # well inside the training (100,000 epochs: hours)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)  # the time limit: an uninterruptible training runs for hours
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, err
    assert not _fasttext_children(marker), "the fastText child was killed too"
    assert list(cache.iterdir()) == [], "no temporary folder and no model left in the fastText cache"


def test_cached_model_path_is_returned_without_training_again(splade_tokenizer, ukrainian_train, tmp_path, monkeypatch):
    corpus = Corpus(ukrainian_train[:200])
    first = token_fasttext_file(corpus, splade_tokenizer, TINY, cache_dir=tmp_path, threads=1, progress=False)
    monkeypatch.setattr(aux_fasttext, "train_fasttext_file", lambda *a, **k: pytest.fail("trained again"))
    assert token_fasttext_file(corpus, splade_tokenizer, TINY, cache_dir=tmp_path, progress=False) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]


# -- the vector cache -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def transplant_inputs(splade_path, ukrainian_train):
    from transformers import AutoModelForMaskedLM

    from .test_focus import _wordpiece_target

    source = AutoTokenizer.from_pretrained(splade_path), AutoModelForMaskedLM.from_pretrained(splade_path).eval()
    return source, _wordpiece_target(ukrainian_train, 3000)


def _plan(inputs, corpus=None, **options):
    from hf_vocabswap.methods import get_method

    from .test_focus import make_ctx

    source, target = inputs
    method = get_method("focus")
    return method(method.config_class(progress=False, **options)).plan(make_ctx(source, target, corpus))


def _same_plan(a, b) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("indptr", "indices", "weights", "kinds")) and a.stats == b.stats


def _no_bin(monkeypatch):
    def refuse(model):
        pytest.fail(f"the fastText .bin was loaded: {model}")

    monkeypatch.setattr(aux_fasttext, "load_fasttext", refuse)


@pytest.mark.parametrize("faithful", [False, True])
def test_cached_vectors_give_bit_identical_plans_without_the_bin(faithful, transplant_inputs, ukrainian_train, tmp_path, monkeypatch):
    source, target = transplant_inputs
    trained = token_fasttext_file(Corpus(ukrainian_train), target, FastTextParams(bucket=100_000), cache_dir=tmp_path / "ft",
                                  threads=1, progress=False)
    model = tmp_path / "given" / "uk.bin"  # a model of the user's, outside the fastText cache
    model.parent.mkdir()
    os.link(trained, model)
    given = dict(faithful=faithful, fasttext_model=str(model), cache_dir=str(tmp_path / "cache"))
    from_object = _plan(transplant_inputs, **{**given, "fasttext_model": aux_fasttext.load_fasttext(model)})
    from_bin = _plan(transplant_inputs, **given)  # reads the .bin, fills the cache
    assert list((tmp_path / "cache" / "vectors").glob("*.npz")), "the vectors were cached"
    with monkeypatch.context() as patch:
        _no_bin(patch)
        from_cache = _plan(transplant_inputs, **given)
    assert _same_plan(from_bin, from_cache)
    assert all(np.array_equal(getattr(from_object, k), getattr(from_bin, k)) for k in ("indptr", "indices", "weights", "kinds"))
    assert sorted(p.name for p in model.parent.iterdir()) == ["uk.bin"], "nothing is written beside the user's model"
    # The model file changes (retrained, replaced): its cached vectors are not used.
    os.utime(model, ns=(time.time_ns(), time.time_ns() + 10**9))
    loads = []
    monkeypatch.setattr(aux_fasttext, "load_fasttext", lambda m, real=aux_fasttext.load_fasttext: loads.append(m) or real(m))
    assert _same_plan(_plan(transplant_inputs, **given), from_bin) and loads


def test_second_transplant_on_a_corpus_never_loads_the_bin(transplant_inputs, ukrainian_train, tmp_path, monkeypatch):
    corpus = Corpus(ukrainian_train[:400])
    options = dict(bucket=100_000, min_count=3, cache_dir=str(tmp_path), threads=1)
    first = _plan(transplant_inputs, corpus, **options)
    [model] = tmp_path.glob("tokens-*.bin")
    assert (tmp_path / model.name.replace(".bin", ".vectors.npz")).is_file(), "the vectors sit next to the model"
    _no_bin(monkeypatch)
    monkeypatch.setattr(aux_fasttext, "train_fasttext_file", lambda *a, **k: pytest.fail("trained again"))
    assert _same_plan(first, _plan(transplant_inputs, corpus, **options))
