"""Target-language text given as files, a list of strings, a `datasets` dataset or a Hub dataset id.

A Hub dataset is named ``dataset:NAME[:CONFIG][@SPLIT]`` (``dataset:me/uk-web``,
``dataset:wikimedia/wikipedia:20231101.uk@train``); it is streamed with ``datasets`` (no full
download), and every pass over the corpus streams it again from the start, so the same
``max_chars`` gives the same text and the same content hash.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import CorpusError

DATASET_PREFIX = "dataset:"
# Above this share of unknown tokens under the target tokenizer a corpus is warned about.
UNKNOWN_SHARE_WARNING = 0.2
_DATASET_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9][\w.-]*(?:/[A-Za-z0-9][\w.-]*)?)(?::(?P<config>[^@:]+))?(?:@(?P<split>[^@:]+))?$")


@dataclass(frozen=True)
class HubDatasetSpec:
    """A Hub dataset named as a corpus: ``dataset:NAME[:CONFIG][@SPLIT]`` (split ``train`` by default).

    Attributes:
        name: the dataset's repo id, e.g. ``"me/uk-web"``.
        config: the configuration (subset), or None for the default one.
        split: the split to stream.
    """

    name: str
    config: str | None = None
    split: str = "train"

    @classmethod
    def parse(cls, text) -> "HubDatasetSpec | None":
        """The spec of ``text`` when it starts with ``dataset:``, else None.

        Raises:
            CorpusError: it starts with ``dataset:`` but the rest is not ``NAME[:CONFIG][@SPLIT]``.
        """
        if not isinstance(text, str) or not text.startswith(DATASET_PREFIX):
            return None
        match = _DATASET_SPEC.match(text[len(DATASET_PREFIX):].strip())
        if match is None:
            raise CorpusError(
                f"{text!r} is not a Hub dataset corpus: write dataset:NAME[:CONFIG][@SPLIT], "
                "e.g. dataset:me/uk-web or dataset:wikimedia/wikipedia:20231101.uk@train."
            )
        return cls(match["name"], match["config"], match["split"] or "train")

    def __str__(self) -> str:
        return f"{DATASET_PREFIX}{self.name}{':' + self.config if self.config else ''}@{self.split}"

    def open(self):
        """The split as a streaming ``datasets.IterableDataset``.

        Raises:
            CorpusError: ``datasets`` is not installed, or the dataset, config or split cannot be opened.
        """
        try:
            import datasets  # optional dependency: the `datasets` extra
        except ImportError:
            raise CorpusError(
                f"Corpus {str(self)!r} is a Hub dataset, which needs the `datasets` package: "
                "pip install 'hf-vocabswap[datasets]'."
            ) from None
        try:
            return datasets.load_dataset(self.name, self.config, split=self.split, streaming=True)
        except Exception as e:  # noqa: BLE001 - any failure to open it is the user's input to fix
            offline = " (HF_HUB_OFFLINE is set: unset it to reach the Hub)" if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") else ""
            raise CorpusError(
                f"Cannot open the Hub dataset {str(self)!r}{offline}: {type(e).__name__}: {' '.join(str(e).split())[:400]}. "
                "Check the dataset id, the config after ':' and the split after '@'."
            ) from None


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
            files, a list of such paths, a list of strings, a ``datasets`` Dataset /
            IterableDataset (streaming works; the text column is ``text_column``), or a Hub
            dataset id written ``dataset:NAME[:CONFIG][@SPLIT]`` (streamed with ``datasets``).
        text_column: column holding the text in a dataset.
        max_samples: stop after this many samples (useful with streaming datasets).
        max_chars: stop after the sample that reaches this many characters (whole samples).

    Raises:
        CorpusError: the path does not exist, a file is not UTF-8, there is no text, a Hub
            dataset cannot be opened, or a dataset has no ``text_column`` (the message lists
            its columns).

    Example:
        >>> Corpus("dataset:me/uk-web@train", text_column="content", max_chars=2_000_000)
    """

    def __init__(self, source, text_column: str = "text", max_samples: int | None = None, max_chars: int | None = None):
        if isinstance(source, Corpus):
            source = source.source
        if max_chars is not None and max_chars < 1:
            raise CorpusError(f"max_chars must be at least 1, not {max_chars}.")
        spec = None if isinstance(source, str) and Path(source).exists() else HubDatasetSpec.parse(source)
        self.hub_dataset = spec
        self.source = spec.open() if spec is not None else source
        self.text_column = text_column
        self.max_samples = max_samples
        self.max_chars = max_chars
        self.description = str(spec) if spec is not None else self._describe(source)
        self._files = None if spec is not None else self._resolve_files(source)
        self._hash: str | None = None
        self._check_columns()
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

    def _check_columns(self) -> None:
        """A dataset without the text column: the error lists the columns it has."""
        columns = getattr(self.source, "column_names", None)
        if self._files is not None or isinstance(self.source, (list, tuple)) or not columns:
            return
        if self.text_column not in columns:
            raise self._no_column_error(columns)

    def _no_column_error(self, columns) -> CorpusError:
        return CorpusError(
            f"Dataset {self.description!r} has no {self.text_column!r} column; its columns are: "
            f"{', '.join(map(str, columns))}. Pass text_column=... (CLI: --text-column) naming the text column."
        )

    def _check_not_empty(self) -> None:
        for _ in self:
            return
        raise CorpusError(
            f"Corpus {self.description!r} contains no text (only empty lines or no samples). "
            "Methods that learn from the target language need real text in it."
        )

    def __iter__(self) -> Iterator[str]:
        count = chars = 0
        for text in self._raw():
            if text is None:
                continue
            text = text.strip()
            if not text:
                continue
            yield text
            count += 1
            chars += len(text)
            if self.max_samples is not None and count >= self.max_samples:
                return
            if self.max_chars is not None and chars >= self.max_chars:
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
                        raise self._no_column_error(list(row))
                    value = row[self.text_column]
                    if value is not None and not isinstance(value, str):
                        raise CorpusError(
                            f"Column {self.text_column!r} of {self.description!r} holds {type(value).__name__} values, "
                            "not text. Pass text_column=... naming a column of strings."
                        )
                    yield value
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
