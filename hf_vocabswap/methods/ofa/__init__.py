"""OFA, registered as method "ofa" (see :mod:`.method`)."""

from .config import OFAConfig
from .method import CITATION, OFA, Factorization, FactorizedPlan, ofa_token_vectors, svd_factors

__all__ = ["CITATION", "OFA", "OFAConfig", "Factorization", "FactorizedPlan", "ofa_token_vectors", "svd_factors"]
