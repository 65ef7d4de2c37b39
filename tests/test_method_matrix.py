"""Every registered method on three model kinds: the invariants each transplant must keep.

The matrix is generated from the registry (:func:`hf_vocabswap.available_methods`) times three
tiny models built from configs by tests/families.py, with randomized output biases:

- ``masked``: BERT MLM, input and output embeddings tied, an output bias (WordPiece, the real
  splade-tiny tokenizer as source);
- ``causal``: Llama, untied output layer (SentencePiece BPE with byte fallback);
- ``seq2seq``: BART encoder-decoder, tied, with ``final_logits_bias`` (byte-level BPE).

Each cell checks: as many rows as target tokens (no padding asked), copied rows and biases
bit-exact, the same seed giving the same bytes, a stock ``AutoModel*.from_pretrained`` reload
giving the same logits, and the report's and the saved record's counts equal to the plan's.
What a method needs beyond the model and the two tokenizers (a corpus, fastText vectors, a
helper model with the target tokenizer) comes from the quality benchmark's providers
(benchmarks/quality/resources.py), built from real Ukrainian text, so the methods the benchmark
runs offline are the ones tested here; :data:`CASES` also names the documented error each
method raises without them. A registered method without an entry in :data:`CASES` fails the
suite (:func:`test_every_registered_method_has_a_case`, and each of its cells).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from safetensors import safe_open

from benchmarks.quality.resources import Resources, method_setup
from hf_vocabswap import available_methods, transplant_tokenizer
from hf_vocabswap.corpus import first_chars
from hf_vocabswap.errors import CorpusError, MethodOptionError, ResourceError, VocabSwapError
from hf_vocabswap.methods import COPIED, KIND_NAMES

from .families import FAMILY_BY_NAME, randomize_biases, tokenizer_pair

# Model kind -> family of tests/families.py.
KINDS = {"masked": "bert", "causal": "llama", "seq2seq": "bart"}
CORPUS_CHARS = 10_000  # of the UA-GEC training split: corpus, fastText stand-ins, calibration
# fastText hash buckets of every fastText model here: fastText's 2,000,000 make 800 MB models,
# whose writing and reading cost most of a cell's time.
BUCKET = 5_000
SEED = 7
TEXT = "Сьогодні гарна погода, і ми йдемо гуляти до парку біля річки."
# The output folder's documented file names (hf_vocabswap writes them; values are stable).
RECORD_FILE, PLAN_FILE, WEIGHTS_FILE = "vocabswap.json", "vocabswap_plan.safetensors", "model.safetensors"


@dataclass(frozen=True)
class Case:
    """How one method is tested.

    Attributes:
        refusal: the error class and a phrase of its message that the method raises when run
            without the resources the benchmark's providers give it (no corpus, no options);
            None when it needs nothing beyond the two tokenizers.
        copies: whether the method copies the rows of shared tokens (``random`` and ``mean``
            do not), so that the bit-exactness check is not vacuous where it should bite.
        options: options on top of the benchmark's setup, to keep the matrix fast.
    """

    refusal: tuple[type[VocabSwapError], str] | None = None
    copies: bool = True
    options: dict = field(default_factory=dict)


CASES: dict[str, Case] = {
    "auto": Case(options={"bucket": BUCKET}),  # with the corpus: the hybrid (FVT on seq2seq, the bucket option dropped)
    "clp": Case(refusal=(MethodOptionError, "helper_model=")),
    "focus": Case(refusal=(CorpusError, "corpus="), options={"bucket": BUCKET}),
    "fvt": Case(),
    "hybrid": Case(refusal=(CorpusError, "corpus="), options={"bucket": BUCKET}),
    "mean": Case(copies=False),
    "ofa": Case(refusal=(ResourceError, "word_vectors=")),
    "omp": Case(refusal=(MethodOptionError, "donor_model="), options={"k": 8}),  # k=64 costs 15 s a cell
    "overlap": Case(),
    "random": Case(copies=False),
    "trim": Case(refusal=(CorpusError, "corpus=")),
    "wechsel": Case(refusal=(ResourceError, "source_fasttext=")),
}


def missing_cases(registered: list[str]) -> tuple[list[str], list[str]]:
    """(registered methods without a case, cases of methods that are not registered)."""
    return sorted(set(registered) - set(CASES)), sorted(set(CASES) - set(registered))


def test_every_registered_method_has_a_case():
    without, stale = missing_cases(available_methods())
    assert not without, f"registered method(s) {without} have no entry in CASES of tests/test_method_matrix.py: add one"
    assert not stale, f"CASES names method(s) {stale} that are not registered"


def test_the_case_check_catches_a_new_method():
    assert missing_cases(available_methods() + ["brand_new"]) == (["brand_new"], [])
    assert missing_cases([m for m in available_methods() if m != "fvt"]) == ([], ["fvt"])


# ----------------------------------------------------------------------------- fixtures


@dataclass
class KindSetup:
    """One model kind: the family, its tokenizers, the source model and the methods' resources."""

    kind: str
    family: object
    source_tokenizer: object
    target_tokenizer: object
    model: torch.nn.Module
    resources: Resources


@pytest.fixture(scope="module")
def corpus(ukrainian_train) -> list[str]:
    return first_chars(ukrainian_train, CORPUS_CHARS)


@pytest.fixture(scope="module")
def kind_setups(corpus, tmp_path_factory):
    """Built on first use, one per kind, kept for the module (the cells are ordered by kind)."""
    built: dict[str, KindSetup] = {}

    def get(kind: str) -> KindSetup:
        if kind not in built:
            family = FAMILY_BY_NAME[KINDS[kind]]
            src, tgt = tokenizer_pair(family.tokenizer)
            torch.manual_seed(0)
            model = family.build(len(src), src)
            randomize_biases(model)
            res = Resources(corpus, tgt, tmp_path_factory.mktemp(f"res-{kind}"), bucket=BUCKET)
            built[kind] = KindSetup(kind, family, src, tgt, model, res)
        return built[kind]

    return get


@dataclass
class Cell:
    """One method on one kind: two transplants with the same seed, both saved."""

    method: str
    setup: KindSetup
    result: object
    folders: tuple[Path, Path]


def _transplant(method: str, ks: KindSetup, corpus: list[str]):
    setup = method_setup(method, ks.resources)
    target = ks.source_tokenizer if setup.target == "source" else ks.target_tokenizer
    return transplant_tokenizer(
        ks.model, target, method, source_tokenizer=ks.source_tokenizer, corpus=corpus if setup.corpus else None,
        seed=SEED, **{**setup.options, **CASES[method].options},
    )


CELLS = [(m, k) for k in KINDS for m in available_methods()]


@pytest.fixture(scope="module", params=CELLS, ids=[f"{m}-{k}" for m, k in CELLS])
def cell(request, kind_setups, corpus, tmp_path_factory) -> Cell:
    method, kind = request.param
    if method not in CASES:
        pytest.fail(f"method {method!r} is registered but has no entry in CASES of tests/test_method_matrix.py")
    ks = kind_setups(kind)
    base = tmp_path_factory.mktemp(f"{method}-{kind}")
    first = _transplant(method, ks, corpus)
    folders = (first.save_pretrained(base / "a"), _transplant(method, ks, corpus).save_pretrained(base / "b"))
    return Cell(method, ks, first, folders)


# ----------------------------------------------------------------------------- the invariants


def _biases(model) -> dict[str, torch.Tensor]:
    """The model's vocabulary-sized output biases by name (flattened)."""
    out = {}
    head = model.get_output_embeddings()
    if head is not None and getattr(head, "bias", None) is not None:
        out["output"] = head.bias.detach().view(-1)
    if hasattr(model, "final_logits_bias"):
        out["final_logits_bias"] = model.final_logits_bias.detach().view(-1)
    return out


def test_rows_match_the_target_vocabulary(cell):
    model, n = cell.result.model, len(cell.result.tokenizer)
    assert cell.result.plan.num_target == n
    assert model.get_input_embeddings().weight.shape[0] == n and model.config.vocab_size == n
    assert model.get_output_embeddings().weight.shape[0] == n
    biases = _biases(model)
    assert set(biases) == set(_biases(cell.setup.model))
    assert all(len(b) == n for b in biases.values())


def _copied(plan) -> tuple[np.ndarray, np.ndarray]:
    """(target ids, source ids) of the COPIED rows of ``plan``, each a single source row at weight 1."""
    ids = np.flatnonzero(plan.kinds == COPIED)
    starts = plan.indptr[ids]
    assert (plan.indptr[ids + 1] - starts == 1).all() and (plan.weights[starts] == 1.0).all()
    return ids, plan.indices[starts]


def test_copied_rows_and_biases_are_bit_exact(cell):
    source, model, plan = cell.setup.model, cell.result.model, cell.result.plan
    tgt, src = _copied(plan)
    assert (len(tgt) > 0) == CASES[cell.method].copies
    t, s = torch.from_numpy(tgt), torch.from_numpy(src)
    assert torch.equal(model.get_input_embeddings().weight[t], source.get_input_embeddings().weight[s])
    out_tgt, out_src = _copied(plan.output or plan)
    t, s = torch.from_numpy(out_tgt), torch.from_numpy(out_src)
    assert torch.equal(model.get_output_embeddings().weight[t], source.get_output_embeddings().weight[s])
    for name, bias in _biases(model).items():
        assert torch.equal(bias[t], _biases(source)[name][s]), name
    if plan.calibration:  # calibration moves new tokens only
        assert not set(plan.calibration["ids"].tolist()) & set(out_tgt.tolist())


def test_same_seed_gives_the_same_bytes(cell):
    a, b = cell.folders
    for name in (WEIGHTS_FILE, "config.json", "tokenizer.json", PLAN_FILE):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _logits(model, ids: list[int], kind: str) -> torch.Tensor:
    x = torch.as_tensor([ids])
    with torch.no_grad():
        if kind == "seq2seq":
            return model(input_ids=x, decoder_input_ids=x).logits
        return model(input_ids=x).logits


def test_stock_reload_gives_the_same_logits(cell):
    folder, kind = cell.folders[0], cell.setup.kind
    reloaded = getattr(transformers, cell.setup.family.auto_class).from_pretrained(folder).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    ids = tokenizer(TEXT)["input_ids"]
    assert ids == cell.result.tokenizer(TEXT)["input_ids"]
    assert torch.equal(_logits(reloaded, ids, kind), _logits(cell.result.model.eval(), ids, kind))


def test_report_counts_equal_plan_counts(cell):
    plan, report = cell.result.plan, cell.result.report
    counts = plan.counts()
    assert report.counts == counts and sum(counts.values()) == len(cell.result.tokenizer)
    assert report.ids == {name: plan.ids_of(k) for k, name in KIND_NAMES.items()}
    folder = cell.folders[0]
    assert json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))["counts"] == counts
    with safe_open(str(folder / PLAN_FILE), framework="numpy") as f:
        saved_kinds = f.get_tensor("kinds")
    assert {name: int((saved_kinds == k).sum()) for k, name in KIND_NAMES.items()} == counts


@pytest.mark.parametrize("method", available_methods())
def test_refuses_without_its_resources(method, kind_setups):
    """Run bare (no corpus, no options), a method that needs resources raises its documented error
    before any work; one that needs none runs."""
    if method not in CASES:
        pytest.fail(f"method {method!r} is registered but has no entry in CASES of tests/test_method_matrix.py")
    ks = kind_setups("causal")
    # trim makes its target from the source tokenizer (the benchmark's provider says so too).
    target = ks.source_tokenizer if method == "trim" else ks.target_tokenizer
    refusal = CASES[method].refusal
    if refusal is None:
        result = transplant_tokenizer(ks.model, target, method, source_tokenizer=ks.source_tokenizer, seed=SEED)
        assert result.plan.num_target == len(target)
        return
    error, phrase = refusal
    with pytest.raises(error, match=re.escape(phrase)):
        transplant_tokenizer(ks.model, target, method, source_tokenizer=ks.source_tokenizer, seed=SEED)
