"""WECHSEL, registered as method "wechsel" (see :mod:`.method`)."""

from .config import WECHSELConfig
from .maths import orthogonal_procrustes
from .method import CITATION, WECHSEL, procrustes_map, resolve_dictionary, resolve_word_vectors

__all__ = [
    "CITATION", "WECHSEL", "WECHSELConfig", "orthogonal_procrustes", "procrustes_map", "resolve_dictionary",
    "resolve_word_vectors",
]
