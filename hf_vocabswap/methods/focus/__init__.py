"""FOCUS, registered as method "focus" (see :mod:`.method`)."""

from .config import FOCUSConfig
from .maths import sparsemax, sparsemax_mixing, sparsemax_rows
from .method import CITATION, FOCUS

__all__ = ["CITATION", "FOCUS", "FOCUSConfig", "sparsemax", "sparsemax_mixing", "sparsemax_rows"]
