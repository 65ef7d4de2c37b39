"""Target-language text given as files, a list of strings, or a `datasets` dataset."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import CorpusError


def _is_file(item) -> bool:
    """Whether a list item names an existing file (text samples are not paths)."""
    if isinstance(item, os.PathLike):
        return Path(item).is_file()
    if not isinstance(item, str) or "\n" in item or len(item) > 1024:
        return False
    try:
        return Path(item).is_file()
    except (OSError, ValueError):  # e.g. a sentence longer than a file name may be
        return False


class Corpus:
    """A re-iterable source of non-empty text samples with a content hash.

    Args:
        source: a path to a UTF-8 text file (one sample per line) or a folder of ``.txt``
            files, a list of such paths, a list of strings, or a ``datasets`` Dataset /
            IterableDataset (streaming works; the text column is ``text_column``).
        text_column: column holding the text in a dataset.
        max_samples: stop after this many samples (useful with streaming datasets).

    Raises:
        CorpusError: the path does not exist, a file is not UTF-8, or there is no text.
    """

    def __init__(self, source, text_column: str = "text", max_samples: int | None = None):
        if isinstance(source, Corpus):
            source = source.source
        self.source = source
        self.text_column = text_column
        self.max_samples = max_samples
        self.description = self._describe(source)
        self._files = self._resolve_files(source)
        self._hash: str | None = None
        self._check_not_empty()

    @classmethod
    def coerce(cls, value) -> "Corpus | None":
        """A :class:`Corpus` of anything accepted as a corpus (None stays None)."""
        if value is None or isinstance(value, Corpus):
            return value
        return cls(value)

    @staticmethod
    def _describe(source) -> str:
        if isinstance(source, (str, os.PathLike)):
            return str(source)
        info = getattr(source, "info", None)
        if info is not None and getattr(info, "dataset_name", None):
            return f"dataset:{info.dataset_name}"
        if isinstance(source, (list, tuple)) and source and all(_is_file(s) for s in source):
            return ", ".join(map(str, source))
        return f"<{type(source).__name__}>"

    @staticmethod
    def _resolve_files(source) -> list[Path] | None:
        paths: list = []
        if isinstance(source, (str, os.PathLike)):
            paths = [source]
        elif isinstance(source, (list, tuple)) and source and all(isinstance(s, os.PathLike) for s in source):
            paths = list(source)
        elif isinstance(source, (list, tuple)) and source and all(_is_file(s) for s in source):
            paths = list(source)
        elif isinstance(source, (list, tuple)) and any(_is_file(s) for s in source):
            # Files beside strings that name no file: misspelt paths, not text samples.
            missing = [str(s) for s in source if not _is_file(s)]
            raise CorpusError(
                f"The corpus names files, but {', '.join(map(repr, missing[:3]))}{' and more' if len(missing) > 3 else ''} "
                "does not exist. Fix the path (a list is taken as text samples only when none of it is a file)."
            )
        else:
            return None
        files: list[Path] = []
        for p in map(Path, paths):
            if p.is_dir():
                found = sorted(p.rglob("*.txt"))
                if not found:
                    raise CorpusError(f"Corpus folder {str(p)!r} holds no .txt files. Put UTF-8 text files in it.")
                files.extend(found)
            elif p.is_file():
                files.append(p)
            else:
                raise CorpusError(f"Corpus file {str(p)!r} does not exist. Pass an existing text file, folder, list of strings or dataset.")
        return files

    def _check_not_empty(self) -> None:
        for _ in self:
            return
        raise CorpusError(
            f"Corpus {self.description!r} contains no text (only empty lines or no samples). "
            "Methods that learn from the target language need real text in it."
        )

    def __iter__(self) -> Iterator[str]:
        count = 0
        for text in self._raw():
            if text is None:
                continue
            text = text.strip()
            if not text:
                continue
            yield text
            count += 1
            if self.max_samples is not None and count >= self.max_samples:
                return

    def _raw(self) -> Iterable[str]:
        if self._files is not None:
            for path in self._files:
                try:
                    with open(path, encoding="utf-8") as f:
                        yield from f
                except UnicodeDecodeError as e:
                    raise CorpusError(
                        f"Corpus file {str(path)!r} is not valid UTF-8 ({e.reason} at byte {e.start}). "
                        "Convert it, e.g. `iconv -f <encoding> -t utf-8`."
                    ) from None
            return
        if isinstance(self.source, (list, tuple)):
            for item in self.source:
                if not isinstance(item, str):
                    raise CorpusError(f"Corpus lists must hold strings, found {type(item).__name__}.")
                yield item
            return
        if hasattr(self.source, "__iter__"):
            for row in self.source:
                if isinstance(row, dict):
                    if self.text_column not in row:
                        raise CorpusError(
                            f"Dataset rows have no {self.text_column!r} column (columns: {sorted(row)}). "
                            "Pass text_column=... to name the text column."
                        )
                    yield row[self.text_column]
                else:
                    yield str(row)
            return
        raise CorpusError(f"Cannot read a corpus from {type(self.source).__name__}; pass a path, a list of strings or a dataset.")

    def content_hash(self) -> str:
        """SHA-256 of the samples (not of file names), so equal text gives equal keys."""
        if self._hash is None:
            h = hashlib.sha256()
            for text in self:
                h.update(text.encode("utf-8"))
                h.update(b"\x00")
            self._hash = h.hexdigest()
        return self._hash

    def num_characters(self) -> int:
        """Characters of the whole corpus (one pass over it)."""
        return sum(len(t) for t in self)

    def __repr__(self) -> str:
        return f"Corpus({self.description!r})"


def first_chars(texts: Iterable[str], max_chars: int | None) -> list[str]:
    """Whole texts from the start until at least ``max_chars`` characters are collected (all of
    them when ``max_chars`` is None)."""
    out: list[str] = []
    total = 0
    for text in texts:
        out.append(text)
        total += len(text)
        if max_chars is not None and total >= max_chars:
            break
    return out


def batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    """Consecutive lists of ``size`` texts (the last may be shorter)."""
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
