"""Orthogonal matching pursuit (Goddard & Fernandes, 2025; mergekit's ``tokensurgeon``).

Needs a *donor* model that already uses the target tokenizer. For every new target token, its
donor embedding ``x`` is written as a sparse combination of the donor embeddings of shared
tokens (the atoms) by OMP: ``k`` times, pick the atom most correlated (largest ``|<r, a>|``)
with the residual ``r``, then refit all picked coefficients by unconstrained least squares and
update the residual. The same coefficients applied to the *source* model's rows of those
shared tokens give the new token's row. Shared tokens are copied.

Input and output matrices are solved separately: when the donor's output embeddings are a
separate tensor (and the source's too), the output rows (and the output bias) of new tokens come
from OMP on the donor's output matrix (``MixingPlan.output``); with a tied donor the source's
output rows use the input solution, and a tied source has only the input matrix.

Atoms are the overlapping target tokens of the vocabulary alignment, minus special tokens and
tokens whose donor row is zero. As in mergekit, atoms are not normalized before the correlation
(``normalize_atoms=True`` uses the textbook normalized correlation) and every token gets exactly
``k`` atoms unless ``tolerance`` stops it earlier or a picked atom is linearly dependent on the
ones already picked (it then gets coefficient 0).

The maths is batched over tokens (:func:`batch_omp`): one correlation matrix product and one
argmax per step for a whole batch, the least-squares fit kept up to date as a QR factorization
(classical Gram-Schmidt applied twice), and one batched triangular solve at the end, on the
transplant's device.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import MethodOptionError, NoOverlapError
from ..plan import MixingPlan
from .base import MethodConfig, MethodContext, register_method
from .options import check_at_least_one, progress_option
from ..progress import progress_bar
from .target_model import CSRRows, TargetModelMethod, resolve_device, target_model_option

logger = logging.getLogger(__name__)

CITATION = """@article{goddard-fernandes-2025-omp,
  title = {Training-Free Tokenizer Transplantation via Orthogonal Matching Pursuit},
  author = {Goddard, Charles and Fernandes Neto, Fernando},
  journal = {arXiv preprint arXiv:2506.06607},
  year = {2025},
  url = {https://arxiv.org/abs/2506.06607}
}"""


@dataclass
class OMPConfig(MethodConfig):
    """Options of orthogonal matching pursuit (each field's ``help`` is its documentation and CLI help)."""
    donor_model: Any = target_model_option("new tokens are expressed over its embeddings of shared tokens")
    k: int = field(default=64, metadata={"help": "atoms (shared tokens) per new token"})
    tolerance: float = field(
        default=0.0,
        metadata={
            "help": "stop adding atoms to a token once its residual norm is at most this fraction of its donor "
            "row's norm (0: always k atoms, as mergekit)"
        },
    )
    normalize_atoms: bool = field(
        default=False,
        metadata={"help": "pick atoms by normalized correlation |<r, a>| / |a| (textbook OMP); default: raw |<r, a>| as mergekit"},
    )
    batch_size: int | None = field(
        default=None, metadata={"help": "new tokens solved at once (default: from a memory budget of ~256 MB on CPU, ~2 GB on GPU)"}
    )
    progress: bool = progress_option("show a progress bar")

    def __post_init__(self):
        if self.k < 1:
            raise MethodOptionError(f"OMP option k must be >= 1, not {self.k}.")
        if self.tolerance < 0:
            raise MethodOptionError(f"OMP option tolerance must be >= 0, not {self.tolerance}.")
        check_at_least_one("OMP", self, "batch_size")


def batch_omp(
    targets: torch.Tensor,
    atoms: torch.Tensor,
    k: int,
    *,
    tolerance: float = 0.0,
    normalize_atoms: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthogonal matching pursuit for a batch of vectors over one dictionary.

    Args:
        targets: (B, D) vectors to approximate.
        atoms: (N, D) dictionary rows (same dtype and device as ``targets``).
        k: atoms per target (at most N).
        tolerance: a target stops taking atoms once ``|residual| <= tolerance * |target|``.
        normalize_atoms: pick by ``|<r, a>| / |a|`` instead of ``|<r, a>|``.

    Returns:
        ``(indices, coefficients)``, both (B, k): the picked atom rows and their least-squares
        coefficients, so that ``targets[b] ~= sum_j coefficients[b, j] * atoms[indices[b, j]]``.
        Atoms picked after a target stopped, or linearly dependent on earlier picks, have
        coefficient exactly 0.
    """
    b, d = targets.shape
    n = atoms.shape[0]
    if k > n:
        raise ValueError(f"cannot pick {k} atoms from {n}")
    dtype, device = targets.dtype, targets.device
    scale = atoms.norm(dim=1).clamp_min(torch.finfo(dtype).tiny) if normalize_atoms else None
    q = torch.zeros(b, k, d, dtype=dtype, device=device)  # orthonormal basis of the picked atoms
    # Upper-triangular R with picked atoms = R^T Q; unit diagonal for slots that stay unused.
    r_factor = torch.eye(k, dtype=dtype, device=device).repeat(b, 1, 1)
    picked = torch.zeros(b, k, dtype=torch.long, device=device)
    taken = torch.zeros(b, n, dtype=torch.bool, device=device)
    rows = torch.arange(b, device=device)
    residual = targets.clone()
    target_norm = targets.norm(dim=1)
    active = target_norm > 0
    dependent = torch.finfo(dtype).eps ** 0.5  # relative norm below which a new direction is noise
    for t in range(k):
        corr = (residual @ atoms.T).abs_()
        if scale is not None:
            corr /= scale
        corr.masked_fill_(taken, -1.0)
        idx = corr.argmax(dim=1)
        picked[:, t] = idx
        taken[rows, idx] = True
        atom = atoms[idx]  # (B, D)
        basis = q[:, :t]
        proj = torch.einsum("btd,bd->bt", basis, atom)
        v = atom - torch.einsum("bt,btd->bd", proj, basis)
        again = torch.einsum("btd,bd->bt", basis, v)  # second pass: orthogonality to working precision
        v -= torch.einsum("bt,btd->bd", again, basis)
        proj += again
        v_norm = v.norm(dim=1)
        ok = active & (v_norm > dependent * atom.norm(dim=1))
        q[:, t] = torch.where(ok[:, None], v / v_norm.clamp_min(torch.finfo(dtype).tiny)[:, None], 0.0)
        r_factor[:, :t, t] = torch.where(ok[:, None], proj, 0.0)
        r_factor[:, t, t] = torch.where(ok, v_norm, 1.0)
        residual -= (q[:, t] * residual).sum(dim=1, keepdim=True) * q[:, t]
        if tolerance > 0:
            active &= residual.norm(dim=1) > tolerance * target_norm
            if not bool(active.any()):
                # Every target is done: the remaining slots repeat the last pick with weight 0.
                picked[:, t + 1 :] = idx[:, None]
                break
    rhs = torch.einsum("bkd,bd->bk", q, targets)
    coefficients = torch.linalg.solve_triangular(r_factor, rhs[..., None], upper=True)[..., 0]
    return picked, coefficients


def _auto_batch_size(n_atoms: int, k: int, dim: int, itemsize: int, budget_bytes: int) -> int:
    per_token = (n_atoms * 2 + k * (dim + k) + 4 * dim) * itemsize + n_atoms  # corr, taken, Q, R, vectors
    return max(1, min(8192, budget_bytes // per_token))


def omp_rows(
    donor: torch.Tensor,
    new_ids: np.ndarray,
    atom_ids: np.ndarray,
    cfg: OMPConfig,
    *,
    device: str,
    desc: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """OMP over the donor rows ``atom_ids`` for the donor rows ``new_ids`` (target ids).

    Returns:
        ``(rows, indptr, columns, weights, stats)``: ``rows`` are positions in ``new_ids`` that got
        a non-zero combination; the CSR block holds ``columns`` (positions in ``atom_ids``) and
        float64 ``weights``.
    """
    dtype = torch.float32
    x_all = donor.to(device=device, dtype=dtype)
    atoms = x_all[torch.as_tensor(atom_ids, device=device)]
    k = min(cfg.k, len(atom_ids))
    budget = (2 << 30) if str(device).startswith("cuda") else (256 << 20)
    batch = cfg.batch_size or _auto_batch_size(len(atom_ids), k, atoms.shape[1], 4, budget)
    csr = CSRRows()
    rel_errors = []
    starts = range(0, len(new_ids), batch)
    for start in progress_bar(starts, group="method", total=len(starts), desc=desc, enabled=cfg.progress):
        x = x_all[torch.as_tensor(new_ids[start : start + batch], device=device)]
        idx, coef = batch_omp(x, atoms, k, tolerance=cfg.tolerance, normalize_atoms=cfg.normalize_atoms)
        approx = torch.einsum("bk,bkd->bd", coef, atoms[idx])
        rel_errors.append(((x - approx).norm(dim=1) / x.norm(dim=1).clamp_min(1e-30)).cpu())
        csr.add(start, (coef != 0) & torch.isfinite(coef), idx, coef)
    rows, indptr, columns, weights = csr.result()
    err = torch.cat(rel_errors)
    stats = {
        "atoms_per_token": k,
        "mean_relative_residual": round(float(err.mean()), 6) if len(err) else 0.0,
    }
    return rows, indptr, columns, weights, stats


@register_method
class OMP(TargetModelMethod):
    """Orthogonal matching pursuit (Goddard & Fernandes, 2025) as the registered method ``omp``."""
    name = "omp"
    model_option = "donor_model"
    config_class = OMPConfig
    summary = (
        "Orthogonal matching pursuit (mergekit tokensurgeon): a new token's donor embedding written as a sparse "
        "least-squares combination of k shared tokens; the same coefficients applied to the source rows."
    )
    citation = CITATION

    config: OMPConfig

    def plan(self, ctx: MethodContext) -> MixingPlan:
        cfg = self.config
        device = resolve_device(ctx.device)
        donor = self.load_target_model(ctx)
        t2s = ctx.alignment.target_to_source.copy()
        t2s[t2s >= ctx.num_source] = -1
        new = np.flatnonzero(t2s < 0)
        special = np.zeros(ctx.num_target, dtype=bool)
        special[[i for i in ctx.alignment.target.special_ids if i < ctx.num_target]] = True
        base = ctx.base_builder().build()
        if len(new) == 0:
            base.stats.update({"donor_model": donor.description, "atoms": 0})
            return base

        def solve(matrix: torch.Tensor, side: str) -> MixingPlan:
            nonzero = (matrix.norm(dim=1) > 0).cpu().numpy()
            atoms = np.flatnonzero((t2s >= 0) & ~special & nonzero)
            if len(atoms) == 0:
                raise NoOverlapError(
                    "OMP expresses new tokens over shared tokens, and the source and target vocabularies share no "
                    "regular token (special tokens are not used as atoms)."
                )
            rows, indptr, cols, weights, stats = omp_rows(matrix, new, atoms, cfg, device=device, desc=f"OMP ({side})")
            plan = base.with_rows(new[rows], indptr, t2s[atoms][cols], weights)
            plan.stats = {f"{side}_{key}": value for key, value in stats.items()}
            plan.stats[f"{side}_atoms"] = int(len(atoms))
            plan.stats[f"{side}_combined"] = int(len(rows))
            return plan

        plan = solve(donor.input, "input")
        stats = {"donor_model": donor.description, **plan.stats}
        # A tied source has one matrix for both sides: the input solution is the only one used.
        separate = donor.output is not None and ctx.output_embeddings is not None
        if separate:
            output = solve(donor.output, "output")
            plan.output = output
            stats.update(output.stats)
        stats["output_solved_separately"] = separate
        plan.stats = stats
        logger.info(
            "OMP: %d copied, %d combined (k=%d), %d fallback; output %s",
            int((t2s >= 0).sum()), stats["input_combined"], min(cfg.k, stats["input_atoms"]),
            len(new) - stats["input_combined"], "solved separately" if separate else "as input",
        )
        return plan
