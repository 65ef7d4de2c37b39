"""The fastText vector cache: the vectors a transplant read from a ``.bin``, kept beside it.

A token-level fastText model with the default 2M buckets is an 800 MB file, of which a
transplant reads the vectors of one vocabulary's token strings (their own vectors, or their
character n-gram vectors when fastText never saw them often enough). This cache keeps, per
model file, every string looked up so far with its vector and whether it is a dictionary
word, plus the model's dimension, dictionary size and (once asked) dictionary words. A later
transplant with the same inputs answers every lookup from it and never opens the ``.bin``.

Keyed like the model: a cached model ``tokens-<key>.bin`` gets ``tokens-<key>.vectors.npz``
beside it; any other model file gets ``<cache>/vectors/<hash of its absolute path>.npz``.
Each entry records the model file's size and modification time and is ignored when the file
changed. Vectors are stored as fastText returned them (float32), so a cached lookup is
bit-identical to the model's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

FORMAT = 1


def vector_cache_path(model_path: Path, cache_dir: Path) -> Path:
    """Where the vectors read from ``model_path`` are kept (see the module docstring)."""
    model_path = Path(model_path)
    if model_path.name.startswith("tokens-") and model_path.suffix == ".bin":
        return model_path.with_suffix(".vectors.npz")
    digest = hashlib.sha256(str(model_path.resolve()).encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return Path(cache_dir) / "vectors" / f"{digest}.npz"


def _identity(model_path: Path) -> dict:
    stat = model_path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _pack(strings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [s.encode("utf-8", "surrogatepass") for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def _unpack(data: np.ndarray, offsets: np.ndarray) -> list[str]:
    raw = data.tobytes()
    bounds = offsets.tolist()
    return [raw[a:b].decode("utf-8", "surrogatepass") for a, b in zip(bounds[:-1], bounds[1:])]


class VectorCache:
    """The cached lookups of one fastText model file (empty when none are cached or the file changed).

    Args:
        model_path: the model's ``.bin``.
        cache_dir: the fastText cache folder (for models that are not in it).
    """

    def __init__(self, model_path, cache_dir):
        self.model_path = Path(model_path)
        self.path = vector_cache_path(self.model_path, cache_dir)
        self.meta: dict = {}
        self.strings: list[str] = []
        self.in_dict = np.zeros(0, dtype=bool)
        self.vectors = np.zeros((0, 0), dtype=np.float32)
        self.words: list[str] | None = None
        self._rows: dict[str, int] = {}
        self._read()

    def _read(self) -> None:
        if not self.path.is_file():
            return
        try:
            with np.load(self.path) as data:
                meta = json.loads(data["meta"].tobytes().decode("utf-8"))
                if meta.get("format") != FORMAT or meta.get("model") != _identity(self.model_path):
                    logger.info("fastText vector cache %s is for another version of %s; ignored", self.path, self.model_path)
                    return
                self.strings = _unpack(data["strings"], data["string_offsets"])
                self.in_dict = data["in_dict"]
                self.vectors = data["vectors"]
                if "words" in data:
                    self.words = _unpack(data["words"], data["word_offsets"])
        except (OSError, ValueError, KeyError) as e:  # a damaged entry is only a cache miss
            logger.warning("ignoring unreadable fastText vector cache %s (%s)", self.path, e)
            self.strings, self.words = [], None
            return
        self.meta = meta
        self._rows = {s: i for i, s in enumerate(self.strings)}

    @property
    def valid(self) -> bool:
        """Whether the cache describes the model file as it is now."""
        return bool(self.meta)

    def rows(self, strings) -> np.ndarray:
        """Row of each string in the cache, -1 when it was never looked up."""
        get = self._rows.get
        return np.fromiter((get(s, -1) for s in strings), dtype=np.int64, count=len(strings))

    def add(self, strings: list[str], in_dict: np.ndarray, vectors: np.ndarray, meta: dict) -> None:
        """Add the lookups of ``strings`` (not cached yet) and write the cache."""
        start = len(self.strings)
        self.strings = self.strings + list(strings)
        self._rows.update((s, start + i) for i, s in enumerate(strings))
        self.in_dict = np.concatenate([self.in_dict, np.asarray(in_dict, dtype=bool)])
        old = self.vectors if self.vectors.size else np.zeros((0, vectors.shape[1]), dtype=np.float32)
        self.vectors = np.concatenate([old, vectors.astype(np.float32, copy=False)])
        self.meta = {**meta, "format": FORMAT, "model": _identity(self.model_path)}
        self.write()

    def set_words(self, words: list[str], meta: dict) -> None:
        """Keep the model's dictionary words and write the cache."""
        self.words = list(words)
        self.meta = {**meta, "format": FORMAT, "model": _identity(self.model_path)}
        self.write()

    def write(self) -> None:
        """Write the cache atomically; a folder that cannot be written only costs the next run time."""
        arrays = {"meta": np.frombuffer(json.dumps(self.meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)}
        arrays["strings"], arrays["string_offsets"] = _pack(self.strings)
        arrays["in_dict"], arrays["vectors"] = self.in_dict, self.vectors
        if self.words is not None:
            arrays["words"], arrays["word_offsets"] = _pack(self.words)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".vectors-", suffix=".npz", dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, **arrays)
                os.replace(tmp, self.path)  # atomic: readers see the old or the new entry
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            logger.warning("could not write the fastText vector cache %s (%s)", self.path, e)
