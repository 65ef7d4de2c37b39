"""FOCUS: faithful to deepfocus 1.0.1 (run side by side), sparsemax, fastText cache, rare tokens, bad input.

Real inputs only: Ukrainian essays (UA-GEC) and the real splade-tiny BERT as source, a
WordPiece tokenizer trained on the Ukrainian text as target.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import torch

from hf_vocabswap import assets
from hf_vocabswap.auxiliary import fasttext as aux_fasttext
from hf_vocabswap.auxiliary import FastTextAuxiliary, FastTextParams, token_fasttext, write_token_corpus
from hf_vocabswap.corpus import Corpus
from hf_vocabswap.errors import CorpusError, MethodOptionError, MismatchError, NoOverlapError, ResourceError
from hf_vocabswap.methods import COMBINED, COPIED, RANDOM, MethodContext, get_method
from hf_vocabswap.methods.focus import sparsemax, sparsemax_mixing, sparsemax_rows
from hf_vocabswap.vocab import align_vocabularies

pytest.importorskip("fasttext")

SMALL_BUCKET = 100_000  # fastText's default 2M buckets make an 800 MB file; the maths is the same


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def source(splade_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(splade_path)
    model = AutoModelForMaskedLM.from_pretrained(splade_path).eval()
    return tokenizer, model


def _wordpiece_target(texts, vocab_size):
    from tokenizers import BertWordPieceTokenizer
    from transformers import PreTrainedTokenizerFast

    trainer = BertWordPieceTokenizer(lowercase=True, strip_accents=False)
    trainer.train_from_iterator(texts, vocab_size=vocab_size, show_progress=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=trainer._tokenizer,
        unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]",
    )


@pytest.fixture(scope="module")
def target(ukrainian_train):
    """An 8,000-token uncased WordPiece tokenizer trained on 300k characters of Ukrainian."""
    return _wordpiece_target(ukrainian_train, 8000)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fasttext-cache")


@pytest.fixture(scope="module")
def fasttext_path(ukrainian_train, target, cache_dir):
    """A token-level fastText model with the reference's parameters (smaller hash table)."""
    _, path = token_fasttext(Corpus(ukrainian_train), target, FastTextParams(bucket=SMALL_BUCKET), cache_dir=cache_dir, progress=False)
    return str(path)


def make_ctx(source, target, corpus=None):
    src_tok, model = source
    return MethodContext(
        alignment=align_vocabularies(src_tok, target),
        source_tokenizer=src_tok,
        target_tokenizer=target,
        input_embeddings=model.get_input_embeddings().weight.detach(),
        output_embeddings=None,
        model=model,
        corpus=corpus,
        seed=42,
    )


def focus(**options):
    method = get_method("focus")
    return method(method.config_class(progress=False, **options))


@pytest.fixture(scope="module")
def deepfocus(tmp_path_factory):
    """The reference implementation, caching (if ever) under a temporary XDG_CACHE_HOME."""
    pytest.importorskip("deepfocus")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg"))
    import deepfocus
    import deepfocus.fasttext_embs as embs

    embs.CACHE_DIR = tmp_path_factory.mktemp("deepfocus-cache")  # read at import time
    return deepfocus


def reference_categories(deepfocus, target, source_tokenizer, fasttext_model):
    """Target ids the reference copies, combines with FOCUS, and draws randomly.

    Derived from the reference's own overlap function and rarity test, not from ours.
    """
    from deepfocus.focus import get_overlapping_tokens, is_very_rare_token

    overlap, new = get_overlapping_tokens(target, source_tokenizer, match_symbols=False, exact_match_all=True, fuzzy_match_all=False)
    copied = {info.target.id for info in overlap.values()}
    combined = {info.target.id for token, info in new.items() if not is_very_rare_token(token, fasttext_model)}
    random = set(range(len(target))) - copied - combined
    return copied, combined, random


# -- faithful mode against the reference ------------------------------------------------------
@pytest.mark.slow
def test_faithful_token_level_matches_deepfocus(deepfocus, source, target, fasttext_path):
    import fasttext

    src_tok, model = source
    E = model.get_input_embeddings().weight.detach()
    ref = deepfocus.FOCUS(
        target_tokenizer=target, source_tokenizer=src_tok, source_embeddings=E,
        fasttext_model_path=fasttext_path, verbosity="silent",
    )
    plan = focus(faithful=True, fasttext_model=fasttext_path).plan(make_ctx(source, target))
    ours = plan.apply(E, seed=42)

    copied, combined, random = reference_categories(deepfocus, target, src_tok, fasttext.load_model(fasttext_path))
    assert set(plan.ids_of(COPIED)) == copied
    assert set(plan.ids_of(COMBINED)) == combined
    assert set(plan.ids_of(RANDOM)) == random
    assert len(copied) > 300 and len(combined) > 300 and plan.stats["anchors"] > 50  # a real test, not a vacuous one
    for ids in (sorted(copied), sorted(combined)):
        diff = (ours[ids] - ref[ids]).abs().max().item()
        assert diff <= 1e-5, diff
    assert torch.equal(ours[sorted(copied)], ref[sorted(copied)])
    assert plan.stats["copied"] == len(copied) and plan.stats["random"] == len(random)


@pytest.mark.slow
def test_faithful_word_level_matches_deepfocus(deepfocus, source, ukrainian_train, fasttext_path):
    """Word level: every token's text, ``decode(id).strip()``, embedded by a fastText model.

    The token-level model stands in for a pretrained word model (none ships offline): what
    is compared is the word-level pipeline, which looks up every token's decoded text.
    """
    target = _wordpiece_target(ukrainian_train, 2000)  # the reference's per-token loop is slow
    model = FastTextAuxiliary(fasttext_path).model
    vectors = np.stack([model.get_word_vector(target.decode(i).strip()) for i in range(len(target))])
    subnormal = (np.abs(vectors).sum(1) != 0) & (np.abs(vectors).max(1) < np.finfo(np.float32).tiny)
    if subnormal.any():
        # The reference's fastmath cosine flushes these to zero, divides by a zero norm and
        # crashes in entmax; ours treats them as missing vectors.
        pytest.skip("this fastText model has subnormal vectors, on which the reference crashes")

    src_tok, source_model = source
    E = source_model.get_input_embeddings().weight.detach()
    # The reference loads a local file given as its "language identifier".
    ref = deepfocus.FOCUS(
        target_tokenizer=target, source_tokenizer=src_tok, source_embeddings=E,
        auxiliary_embedding_mode="fasttext-wordlevel", language_identifier=fasttext_path, verbosity="silent",
    )
    plan = focus(faithful=True, auxiliary="word", fasttext_model=fasttext_path).plan(make_ctx(source, target))
    ours = plan.apply(E, seed=42)
    for kind in (COPIED, COMBINED):
        ids = plan.ids_of(kind)
        assert (ours[ids] - ref[ids]).abs().max().item() <= 1e-5
    # n-gram vectors reach tokens the model never saw: far more tokens combined than at token level.
    assert plan.stats["combined"] > 0.5 * len(target) and plan.stats["anchors"] > 50


# -- sparsemax --------------------------------------------------------------------------------
def brute_force_sparsemax(z: np.ndarray) -> np.ndarray:
    """Projection onto the simplex by trying every support: the one whose KKT conditions hold."""
    n = len(z)
    best = None
    for size in range(1, n + 1):
        for support in itertools.combinations(range(n), size):
            s = list(support)
            tau = (z[s].sum() - 1) / size
            p = np.zeros(n)
            p[s] = z[s] - tau
            outside = [i for i in range(n) if i not in support]
            if (p[s] > 0).all() and all(z[i] <= tau + 1e-12 for i in outside):
                dist = ((p - z) ** 2).sum()
                if best is None or dist < best[0]:
                    best = (dist, p)
    return best[1]


def test_sparsemax_matches_definition_and_brute_force():
    gen = torch.Generator().manual_seed(0)
    for scale in (0.05, 0.3, 1.0, 5.0):
        z = torch.randn(20, 7, generator=gen, dtype=torch.float64) * scale
        p = sparsemax(z)
        assert torch.allclose(p.sum(1), torch.ones(20, dtype=torch.float64))
        assert (p >= 0).all()
        for row in range(20):
            np.testing.assert_allclose(p[row].numpy(), brute_force_sparsemax(z[row].numpy()), atol=1e-12)
    z = torch.randn(50, 40, generator=gen, dtype=torch.float64)
    assert ((sparsemax(z) == 0).sum(1) > 0).all()  # sparse: unit-variance scores never use all 40


@pytest.mark.parametrize("scale", [0.001, 0.05, 1.0, 20.0])
def test_sparsemax_rows_windows_equal_full_sort(scale):
    """Top-k windows, the widening for long supports and the full sort all give the same answer."""
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(64, 3000, generator=gen, dtype=torch.float64) * scale
    z[0] = 0.5  # ties everywhere: every score is in the support
    full = sparsemax(z)
    rows, cols, weights = sparsemax_rows(z, windows=(4, 64))
    dense = torch.zeros_like(z)
    dense[rows, cols] = weights
    assert torch.allclose(dense, full, atol=1e-12, rtol=0)
    assert torch.equal(dense > 0, full > 0)
    assert (weights > 0).all()
    entmax = pytest.importorskip("entmax")
    assert torch.allclose(full, entmax.sparsemax(z, dim=-1), atol=1e-12, rtol=0)


def test_sparsemax_mixing_is_cosine_sparsemax_in_chunks():
    gen = torch.Generator().manual_seed(2)
    q = torch.randn(37, 16, generator=gen)
    k = torch.randn(23, 16, generator=gen)
    indptr, cols, weights = sparsemax_mixing(q.numpy(), k.numpy(), chunk_size=5, dtype=torch.float64)
    sims = torch.nn.functional.normalize(q.double(), dim=1) @ torch.nn.functional.normalize(k.double(), dim=1).T
    expected = sparsemax(sims)
    got = torch.zeros_like(expected)
    for i in range(37):
        got[i, cols[indptr[i] : indptr[i + 1]]] = torch.from_numpy(weights[indptr[i] : indptr[i + 1]])
    assert torch.allclose(got, expected, atol=1e-12)
    np.testing.assert_allclose(np.add.reduceat(weights, indptr[:-1]), 1.0, atol=1e-12)


# -- fastText auxiliary embeddings ------------------------------------------------------------
def test_token_file_is_the_reference_format(target, ukrainian_train, tmp_path):
    texts = ukrainian_train[:50]
    path = tmp_path / "tokens.txt"
    counts = write_token_corpus(Corpus(texts), target, path, progress=False)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == [" ".join(target.tokenize(t)) for t in texts]
    assert counts == {"samples": 50, "tokens": sum(len(line.split(" ")) for line in lines)}


def test_second_run_loads_the_cached_model_without_training(monkeypatch, source, target, ukrainian_train, tmp_path):
    calls = []
    real_train = aux_fasttext.train_fasttext_file

    def counting_train(*args, **kwargs):
        calls.append(args)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(aux_fasttext, "train_fasttext_file", counting_train)
    corpus = Corpus(ukrainian_train[:400])
    options = dict(bucket=SMALL_BUCKET, min_count=3, cache_dir=str(tmp_path), threads=1)
    first = focus(**options).plan(make_ctx(source, target, corpus))
    assert len(calls) == 1
    cached = list(tmp_path.glob("tokens-*.bin"))
    assert len(cached) == 1 and first.stats["fasttext_model"] == str(cached[0])
    second = focus(**options).plan(make_ctx(source, target, Corpus(list(ukrainian_train[:400]))))
    assert len(calls) == 1, "the second run retrained instead of loading the cache"
    assert np.array_equal(first.indices, second.indices) and np.array_equal(first.weights, second.weights)
    # Another parameter or another corpus is another model.
    focus(**{**options, "epochs": 1}).plan(make_ctx(source, target, corpus))
    assert len(calls) == 2
    focus(**options).plan(make_ctx(source, target, Corpus(ukrainian_train[:399])))
    assert len(calls) == 3


def test_cache_dir_defaults_to_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_VOCABSWAP_CACHE", str(tmp_path))
    assert aux_fasttext.default_cache_dir() == tmp_path / "fasttext"
    monkeypatch.delenv("HF_VOCABSWAP_CACHE")
    assert aux_fasttext.default_cache_dir() == aux_fasttext.Path("~/.cache/hf_vocabswap/fasttext").expanduser()


# -- default mode: rare tokens, extend mode, determinism --------------------------------------
@pytest.mark.slow
def test_default_mode_gives_almost_every_token_a_real_initialization(source, ukrainian_train, cache_dir):
    """Reference: every token seen < 10 times is random. Default: < 1% of regular tokens random.

    A 4,000-token tokenizer on 300k characters is the 32k-on-2.4M-characters case scaled
    down (benchmarks/focus_speed.py measures that one).
    """
    target = _wordpiece_target(ukrainian_train, 4000)
    corpus = Corpus(ukrainian_train)
    ctx = make_ctx(source, target, corpus)
    reference_params = dict(bucket=SMALL_BUCKET, cache_dir=str(cache_dir))
    faithful = focus(faithful=True, **reference_params).plan(ctx)
    default = focus(**reference_params).plan(ctx)
    regular = len(target) - len(ctx.alignment.target.special_ids)
    assert faithful.stats["random"] / regular > 0.3  # the minCount-10 quirk
    assert default.stats["random_regular"] / regular < 0.01, default.stats
    assert default.stats["random_regular_share"] < 0.01
    # Every COMBINED row is a convex combination.
    combined = default.ids_of(COMBINED)
    sums = np.add.reduceat(default.weights, default.indptr[:-1])[combined]
    np.testing.assert_allclose(sums, 1.0, atol=1e-9)
    assert (default.weights > 0).all()
    # Same inputs, same plan.
    again = focus(**reference_params).plan(make_ctx(source, target, corpus))
    assert np.array_equal(default.indptr, again.indptr) and np.array_equal(default.weights, again.weights)


def test_default_mode_with_reference_model_covers_rare_tokens_by_subwords(source, target, fasttext_path):
    plan = focus(fasttext_model=fasttext_path).plan(make_ctx(source, target))
    stats = plan.stats
    assert stats["focus_subword_vector"] > stats["focus_own_vector"] > 0
    assert stats["random_regular_share"] < 0.01
    # rare_tokens="random" is the reference's treatment on the default overlap.
    reference_like = focus(fasttext_model=fasttext_path, rare_tokens="random").plan(make_ctx(source, target))
    assert reference_like.stats["random_regular_share"] > 0.3
    fvt_only = focus(fasttext_model=fasttext_path, rare_tokens="fvt").plan(make_ctx(source, target))
    assert fvt_only.stats["focus_subword_vector"] == 0 and fvt_only.stats["fvt_fallback"] > 1000


@pytest.mark.parametrize("faithful", [False, True])
def test_extend_mode_keeps_every_existing_row(source, ukrainian_train, faithful, cache_dir):
    from collections import Counter

    src_tok, model = source
    E = model.get_input_embeddings().weight.detach()
    extended = type(src_tok).from_pretrained(assets.splade_tiny_path())
    words = Counter(w.strip(".,:;!?«»()\"'").lower() for t in ukrainian_train for w in t.split())
    new_words = [w for w, _ in words.most_common(400) if len(w) > 3 and w.isalpha() and w not in extended.get_vocab()][:150]
    extended.add_tokens(new_words)
    ctx = make_ctx(source, extended, Corpus(ukrainian_train))
    assert ctx.alignment.mode == "extend"
    plan = focus(faithful=faithful, bucket=SMALL_BUCKET, min_count=3, cache_dir=str(cache_dir)).plan(ctx)
    out = plan.apply(E, seed=42)
    n_s = E.shape[0]
    assert torch.equal(out[:n_s], E)
    assert (plan.kinds[:n_s] == COPIED).all()
    new = plan.kinds[n_s:]
    # Faithful looks tokens up by their get_vocab() key, as the reference does; BERT's
    # accent stripping makes the key of e.g. "його" differ from the text tokenize() yields.
    assert (new == COMBINED).mean() > (0.8 if faithful else 0.95), plan.counts()


def test_stats_and_registry(source, target, fasttext_path):
    method = get_method("focus")
    assert method.needs_corpus
    assert "Dobler" in method.citation and "Empirical Methods in Natural Language Processing" in method.citation
    assert method.summary
    for name, _, _, help_text in method.config_class.option_fields():
        assert help_text, f"option {name} has no help"
    plan = focus(fasttext_model=fasttext_path).plan(make_ctx(source, target))
    for key in ("anchors", "copied", "combined", "random", "focus_own_vector", "focus_subword_vector", "fvt_fallback", "random_regular"):
        assert key in plan.stats
    assert plan.stats["copied"] + plan.stats["combined"] + plan.stats["random"] == len(target)


def test_cuda_device(source, target, fasttext_path):
    if not torch.cuda.is_available():
        with pytest.raises(MethodOptionError, match="no CUDA"):
            focus(fasttext_model=fasttext_path, device="cuda").plan(make_ctx(source, target))
        return
    cpu = focus(fasttext_model=fasttext_path).plan(make_ctx(source, target))
    gpu = focus(fasttext_model=fasttext_path, device="cuda").plan(make_ctx(source, target))
    assert np.array_equal(cpu.kinds, gpu.kinds)
    E = make_ctx(source, target).input_embeddings
    assert (cpu.apply(E, seed=1) - gpu.apply(E, seed=1)).abs().max() < 1e-4


# -- bad input ---------------------------------------------------------------------------------
def test_no_corpus_and_no_model(source, target):
    with pytest.raises(CorpusError, match="corpus"):
        focus().plan(make_ctx(source, target, corpus=None))


def test_empty_corpus():
    with pytest.raises(CorpusError, match="no text"):
        Corpus(["", "   ", "\n"])


def test_latin1_corpus_file(source, target, tmp_path):
    from hf_vocabswap.transplant import transplant_tokenizer

    path = tmp_path / "latin1.txt"
    path.write_bytes("Ceci est un café très spécial, déjà vu.\n".encode("latin-1") * 20)
    with pytest.raises(CorpusError, match="not valid UTF-8"):
        Corpus(str(path))
    with pytest.raises(CorpusError, match="UTF-8"):
        transplant_tokenizer(source[1], target, method="focus", source_tokenizer=source[0], corpus=str(path))


def test_corpus_too_small_for_min_count(source, target, tmp_path):
    with pytest.raises(CorpusError, match="min_count"):
        focus(min_count=1000, cache_dir=str(tmp_path), bucket=SMALL_BUCKET).plan(make_ctx(source, target, Corpus(["Київ — столиця України."])))


def test_fasttext_dimension_mismatch(source, target, fasttext_path):
    with pytest.raises(MismatchError, match="dimension 100"):
        focus(fasttext_model=fasttext_path, dim=300).plan(make_ctx(source, target))


def test_fasttext_model_of_another_tokenizer(source, target, ukrainian_train, tmp_path):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(ukrainian_train, vocab_size=3000, show_progress=False)
    other = PreTrainedTokenizerFast(tokenizer_object=trainer._tokenizer)
    _, path = token_fasttext(Corpus(ukrainian_train), other, FastTextParams(bucket=SMALL_BUCKET), cache_dir=tmp_path, progress=False)
    with pytest.raises(MismatchError, match="not trained with the target tokenizer"):
        focus(fasttext_model=str(path)).plan(make_ctx(source, target))
    with pytest.raises(MismatchError):
        FastTextAuxiliary(str(path)).check_token_level(target)


def test_missing_or_broken_fasttext_file(source, target, tmp_path):
    with pytest.raises(ResourceError, match="does not exist"):
        focus(fasttext_model=str(tmp_path / "nope.bin")).plan(make_ctx(source, target))
    broken = tmp_path / "broken.bin"
    broken.write_bytes(b"not a fasttext model at all")
    with pytest.raises(ResourceError, match="not a fastText"):
        focus(fasttext_model=str(broken)).plan(make_ctx(source, target))


def test_no_overlap_between_vocabularies(source, ukrainian_train, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # Cyrillic words only, no special tokens: nothing in common with English BERT's vocabulary
    # (its Cyrillic pieces are single letters).
    cyrillic = lambda w: all("\u0400" <= c <= "\u04ff" for c in w)  # noqa: E731
    words = sorted({w for t in ukrainian_train[:200] for w in t.split() if len(w) > 6 and cyrillic(w)})[:500]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["<невідомо>"] + words)}, unk_token="<невідомо>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    target = PreTrainedTokenizerFast(tokenizer_object=backend)
    ctx = make_ctx(source, target, Corpus(ukrainian_train[:200]))
    assert ctx.alignment.overlap_size == 0
    for faithful in (False, True):
        with pytest.raises(NoOverlapError, match="no token shared"):
            focus(faithful=faithful, cache_dir=str(tmp_path)).plan(ctx)


def test_bad_options():
    method = get_method("focus")
    with pytest.raises(MethodOptionError, match="auxiliary"):
        method.config_class.from_options("focus", {"auxiliary": "sentence"})
    with pytest.raises(MethodOptionError, match="rare_tokens"):
        method.config_class.from_options("focus", {"rare_tokens": "zero"})
    with pytest.raises(MethodOptionError, match="pretrained fastText word model"):
        method.config_class.from_options("focus", {"auxiliary": "word"})
    with pytest.raises(MethodOptionError, match="no option"):
        method.config_class.from_options("focus", {"temperature": 0.1})
