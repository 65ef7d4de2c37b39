"""Orthogonal matching pursuit: the batched solver, exact recovery of sparse combinations,
input and output solved separately for untied donors, extend mode, the CLI and the GPU path.

Donor models (models that already use the target tokenizer) are built here from a config with
the target vocabulary, and their new-token rows are overwritten with known sparse combinations
of their shared-token rows, so the expected coefficients are known exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers

from hf_vocabswap.cli import main as cli_main
from hf_vocabswap.errors import MethodOptionError, MismatchError
from hf_vocabswap.methods import COMBINED, COPIED
from hf_vocabswap.methods.omp import batch_omp
from hf_vocabswap.transplant import transplant_tokenizer

from .families import FAMILY_BY_NAME, tokenizer_pair

FAMILY = FAMILY_BY_NAME["llama"]  # untied head
SPARSITY = 3
DONOR_DIM = 384  # wide enough that random atoms are incoherent and OMP recovers 3-sparse rows


def _source_model(src_tok):
    torch.manual_seed(0)
    return FAMILY.build(len(src_tok), src_tok)


def _donor(tgt_tok, *, tied: bool, seed: int = 1):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=len(tgt_tok), hidden_size=DONOR_DIM, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=64, max_position_embeddings=128, tie_word_embeddings=tied,
        pad_token_id=tgt_tok.pad_token_id, bos_token_id=tgt_tok.bos_token_id, eos_token_id=tgt_tok.eos_token_id,
    )
    return transformers.LlamaForCausalLM(cfg).eval()


def _usable_atoms(alignment) -> np.ndarray:
    """Shared, non-special target tokens whose source row no other target token shares."""
    t2s = alignment.target_to_source
    special = alignment.target.special_ids
    shared = [t for t in np.flatnonzero(t2s >= 0).tolist() if t not in special]
    sources, counts = np.unique(t2s[shared], return_counts=True)
    unique = set(sources[counts == 1].tolist())
    return np.array([t for t in shared if int(t2s[t]) in unique])


def _plant(matrix: torch.Tensor, new, atoms, rng) -> dict[int, dict[int, float]]:
    """Overwrite rows ``new`` of ``matrix`` with random SPARSITY-sparse combinations of rows ``atoms``."""
    truth = {}
    with torch.no_grad():
        matrix.normal_(0, 1, generator=torch.Generator().manual_seed(int(rng.integers(1 << 30))))
        for t in new.tolist():
            pick = rng.choice(atoms, size=SPARSITY, replace=False)
            coef = rng.uniform(0.5, 2.0, size=SPARSITY) * rng.choice([-1, 1], size=SPARSITY)
            matrix[t] = torch.as_tensor(coef, dtype=matrix.dtype) @ matrix[torch.as_tensor(pick)]
            truth[t] = dict(zip(pick.tolist(), coef.tolist()))
    return truth


@pytest.fixture(scope="module")
def pair():
    return tokenizer_pair(FAMILY.tokenizer)


@pytest.fixture(scope="module")
def planted(pair):
    """Untied source, untied donor whose input and output new rows are different sparse combinations."""
    src_tok, tgt_tok = pair
    model = _source_model(src_tok)
    donor = _donor(tgt_tok, tied=False)
    probe = transplant_tokenizer(model, tgt_tok, "overlap", source_tokenizer=src_tok)
    alignment = probe.alignment
    atoms = _usable_atoms(alignment)
    new = np.flatnonzero(alignment.target_to_source < 0)
    rng = np.random.default_rng(0)
    truth_in = _plant(donor.get_input_embeddings().weight, new, atoms, rng)
    truth_out = _plant(donor.get_output_embeddings().weight, new, atoms, rng)
    return src_tok, tgt_tok, model, donor, alignment, new, truth_in, truth_out


def test_batch_omp_recovers_sparse_coefficients():
    gen = torch.Generator().manual_seed(0)
    atoms = torch.randn(300, 128, generator=gen, dtype=torch.float64)
    truth_idx = torch.stack([torch.randperm(300, generator=gen)[:4] for _ in range(50)])
    truth_coef = torch.rand(50, 4, generator=gen, dtype=torch.float64) + 0.5
    x = torch.einsum("bk,bkd->bd", truth_coef, atoms[truth_idx])
    idx, coef = batch_omp(x, atoms, 4)
    for b in range(50):
        got = dict(zip(idx[b].tolist(), coef[b].tolist()))
        want = dict(zip(truth_idx[b].tolist(), truth_coef[b].tolist()))
        assert got.keys() == want.keys()
        for i, c in want.items():
            assert abs(got[i] - c) < 1e-9
    # More atoms than needed: a tolerance stops each target once it is reconstructed, and the
    # unused slots carry exact zeros.
    idx, coef = batch_omp(x, atoms, 20, tolerance=1e-9)
    assert ((coef != 0).sum(dim=1) == 4).all()
    # Without a tolerance every slot is used, and the fit is still exact.
    idx, coef = batch_omp(x, atoms, 20)
    torch.testing.assert_close(torch.einsum("bk,bkd->bd", coef, atoms[idx]), x, rtol=0, atol=1e-9)


def test_batch_omp_dependent_atoms_get_zero():
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(10, 16, generator=gen)
    atoms = torch.cat([base, 2 * base])  # every atom has a parallel twin
    x = base[:3].sum(0, keepdim=True).repeat(4, 1)
    idx, coef = batch_omp(x, atoms, 12)
    assert torch.isfinite(coef).all()
    torch.testing.assert_close(torch.einsum("bk,bkd->bd", coef, atoms[idx]), x, rtol=0, atol=1e-4)
    # A zero target gets no atoms at all.
    idx, coef = batch_omp(torch.zeros(2, 16), atoms, 5)
    assert (coef == 0).all()


@pytest.mark.parametrize("k,tolerance", [(SPARSITY, 0.0), (64, 1e-5)])
def test_recovers_planted_combinations(planted, k, tolerance):
    src_tok, tgt_tok, model, donor, alignment, new, truth_in, truth_out = planted
    res = transplant_tokenizer(model, tgt_tok, "omp", source_tokenizer=src_tok, donor_model=donor, k=k, tolerance=tolerance, progress=False)
    t2s = res.alignment.target_to_source
    plan = res.plan
    assert (plan.kinds[new] == COMBINED).all()
    assert (plan.kinds[t2s >= 0] == COPIED).all()
    for side_plan, truth in ((plan, truth_in), (plan.output, truth_out)):
        for t in new.tolist():
            got = dict(side_plan.row(t))
            want = {int(t2s[a]): c for a, c in truth[t].items()}
            assert got.keys() == want.keys(), t
            for s, c in want.items():
                assert abs(got[s] - c) < 1e-3 * max(1.0, abs(c))
    # The same coefficients applied to the source rows, input and output separately.
    for side, truth, matrix in (
        ("input", truth_in, model.get_input_embeddings().weight),
        ("output", truth_out, model.get_output_embeddings().weight),
    ):
        got = (res.model.get_input_embeddings() if side == "input" else res.model.get_output_embeddings()).weight
        for t in new[:50].tolist():
            want = sum(c * matrix[int(t2s[a])] for a, c in truth[t].items())
            torch.testing.assert_close(got[t], want, rtol=0, atol=1e-4)
    stats = res.report.method_stats
    assert stats["output_solved_separately"] is True
    assert stats["input_mean_relative_residual"] < 1e-4


def test_tied_donor_uses_input_solution(planted):
    src_tok, tgt_tok, model, _, alignment, new, _, _ = planted
    donor = _donor(tgt_tok, tied=True, seed=3)
    res = transplant_tokenizer(model, tgt_tok, "omp", source_tokenizer=src_tok, donor_model=donor, k=8, progress=False)
    assert res.plan.output is None
    assert res.report.method_stats["output_solved_separately"] is False
    # The untied source's output rows get the input coefficients.
    t2s = res.alignment.target_to_source
    out = model.get_output_embeddings().weight
    for t in new[:20].tolist():
        want = sum(w * out[s] for s, w in res.plan.row(t))
        torch.testing.assert_close(res.model.get_output_embeddings().weight[t], want, rtol=0, atol=1e-5)
    assert torch.equal(res.model.get_output_embeddings().weight[torch.as_tensor(np.flatnonzero(t2s >= 0))], out[torch.as_tensor(t2s[t2s >= 0])])


def test_extend_mode(pair):
    src_tok, _ = pair
    model = _source_model(src_tok)
    extended = transformers.PreTrainedTokenizerFast(
        tokenizer_object=src_tok.backend_tokenizer.__class__.from_str(src_tok.backend_tokenizer.to_str()), **src_tok.special_tokens_map
    )
    extended.add_tokens(["▁кіберспорт", "▁нейромережа", "▁блокчейн"])
    donor = _donor(extended, tied=False, seed=4)
    res = transplant_tokenizer(model, extended, "omp", source_tokenizer=src_tok, donor_model=donor, k=16, progress=False)
    assert res.alignment.mode == "extend"
    n = len(src_tok)
    assert torch.equal(res.model.get_input_embeddings().weight[:n], model.get_input_embeddings().weight)
    assert torch.equal(res.model.get_output_embeddings().weight[:n], model.get_output_embeddings().weight)
    assert (res.plan.kinds[n:] == COMBINED).all() and (res.plan.output.kinds[n:] == COMBINED).all()
    assert all(len(res.plan.row(t)) == 16 for t in range(n, len(extended)))


def test_errors(pair):
    src_tok, tgt_tok = pair
    model = _source_model(src_tok)
    with pytest.raises(MethodOptionError, match="donor_model"):
        transplant_tokenizer(model, tgt_tok, "omp", source_tokenizer=src_tok)
    with pytest.raises(MismatchError):
        transplant_tokenizer(model, tgt_tok, "omp", source_tokenizer=src_tok, donor_model=model)
    with pytest.raises(MethodOptionError, match="k must"):
        transplant_tokenizer(model, tgt_tok, "omp", source_tokenizer=src_tok, donor_model=model, k=0)


def test_cli_with_donor_path(planted, tmp_path):
    src_tok, tgt_tok, model, donor, alignment, new, truth_in, _ = planted
    source_dir, target_dir, donor_dir, out = tmp_path / "src", tmp_path / "tgt", tmp_path / "donor", tmp_path / "out"
    model.save_pretrained(source_dir)
    src_tok.save_pretrained(source_dir)
    tgt_tok.save_pretrained(target_dir)
    donor.save_pretrained(donor_dir)
    tgt_tok.save_pretrained(donor_dir)
    rc = cli_main(["-q", "transplant", str(source_dir), str(target_dir), "--method", "omp", "--donor-model", str(donor_dir), "--k", "3", "--out", str(out)])
    assert rc == 0
    record = json.loads((out / "vocabswap.json").read_text())
    assert record["method"] == "omp" and record["options"]["k"] == 3 and record["method_stats"]["output_solved_separately"]
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out)
    t2s = alignment.target_to_source
    t = int(new[0])
    want = sum(c * model.get_input_embeddings().weight[int(t2s[a])] for a, c in truth_in[t].items())
    torch.testing.assert_close(reloaded.get_input_embeddings().weight[t], want, rtol=0, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(planted):
    src_tok, tgt_tok, model, donor, alignment, new, truth_in, _ = planted
    cpu = transplant_tokenizer(model, tgt_tok, "omp", source_tokenizer=src_tok, donor_model=donor, k=64, progress=False)
    gpu = transplant_tokenizer(model, tgt_tok, "omp", source_tokenizer=src_tok, donor_model=donor, k=64, device="cuda", progress=False)
    torch.testing.assert_close(gpu.model.get_input_embeddings().weight, cpu.model.get_input_embeddings().weight, rtol=0, atol=1e-3)
    torch.testing.assert_close(gpu.model.get_output_embeddings().weight, cpu.model.get_output_embeddings().weight, rtol=0, atol=1e-3)
