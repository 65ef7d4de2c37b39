"""Local resources that methods read: bilingual dictionaries, word vectors, fortune-file text.

Everything here reads files the user already has (Debian packages, files they downloaded).
Nothing is downloaded unless a caller asks for it explicitly through :func:`download`, which
fails with a :class:`~hf_vocabswap.errors.ResourceError` instead of hanging or guessing when
the network is unreachable.

Bilingual dictionaries (:func:`read_bilingual_dictionary`) come in three formats:

- dictd databases as FreeDict ships them (Debian ``dict-freedict-eng-deu``:
  ``/usr/share/dictd/freedict-eng-deu.index`` and ``.dict.dz``). Each entry is a headword
  line (``house /hˈaʊs/``) followed by a line of comma-separated translations annotated with
  part-of-speech tags and labels (``Haus <neut> [arch.]``); tags, labels, pronunciations and
  usage notes are removed.
- Ding/``trans`` files (Debian ``trans-de-en``: ``/usr/share/trans/de-en``), lines of
  ``Haus {n} | Häuser {pl} :: house | houses`` whose ``|``-separated parts correspond and whose
  ``;``-separated parts are alternatives.
- two-column text (one pair per line, tab-separated, or two whitespace-separated words), the
  format of the WECHSEL reference's dictionaries.

Word vectors (:func:`load_word_vectors`): a fastText ``.bin`` (path or model object), a
word2vec/fastText ``.vec`` text file, or a gensim ``KeyedVectors``/``Word2Vec`` object.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .auxiliary.fasttext import load_fasttext
from .errors import ResourceError

logger = logging.getLogger(__name__)

_DICTD_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
_OPEN = "<[({"
_CLOSE = {"<": ">", "[": "]", "(": ")", "{": "}"}
_SPACE = re.compile(r"\s+")


# -- bilingual dictionaries -----------------------------------------------------------------
def _dictd_number(text: str) -> int:
    value = 0
    for ch in text:
        value = value * 64 + _DICTD_B64[ch]
    return value


def _split_top_level(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` where no bracket (<>, [], (), {}) is open."""
    parts, depth, start, i = [], [], 0, 0
    while i < len(text):
        ch = text[i]
        if ch in _OPEN:
            depth.append(_CLOSE[ch])
        elif depth and ch == depth[-1]:
            depth.pop()
        elif not depth and text.startswith(sep, i):
            parts.append(text[start:i])
            i += len(sep)
            start = i
            continue
        i += 1
    parts.append(text[start:])
    return parts


def _strip_brackets(text: str) -> str:
    """``text`` without any bracketed group, whitespace collapsed."""
    out, depth = [], []
    for ch in text:
        if ch in _OPEN:
            depth.append(_CLOSE[ch])
        elif depth and ch == depth[-1]:
            depth.pop()
        elif not depth:
            out.append(ch)
    return _SPACE.sub(" ", "".join(out)).strip()


def _clean_term(text: str) -> str:
    """A dictionary term without leading labels and everything from its first annotation on.

    ``" [coll.] das A und O [ugs.]"`` -> ``"das A und O"``; ``"Akut-Zeichen <neut> [print] ´"``
    -> ``"Akut-Zeichen"``; a pronunciation ``/.../`` ends the term too.
    """
    text = text.strip()
    while text and text[0] in _OPEN:  # leading labels such as [coll.]
        close = text.find(_CLOSE[text[0]])
        if close < 0:
            return ""
        text = text[close + 1 :].lstrip()
    cut = len(text)
    for marker in ("<", "[", "(", "{", " /"):
        pos = text.find(marker)
        if 0 <= pos < cut:
            cut = pos
    return _SPACE.sub(" ", text[:cut]).strip(" ,;")


def _read_dictd(index_path: Path, data_path: Path) -> list[tuple[str, str]]:
    """(headword, translation) pairs of a FreeDict dictd database, in file order."""
    opener = gzip.open if data_path.suffix == ".dz" else open
    with opener(data_path, "rb") as f:
        data = f.read()
    spans: dict[tuple[int, int], None] = {}
    with open(index_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3 or parts[0].startswith("00database") or parts[0].startswith("00-database"):
                continue
            try:
                spans[(_dictd_number(parts[1]), _dictd_number(parts[2]))] = None
            except KeyError:
                continue
    pairs: list[tuple[str, str]] = []
    for offset, length in sorted(spans):
        entry = data[offset : offset + length].decode("utf-8", errors="replace")
        lines = [line for line in entry.split("\n") if line.strip()]
        if len(lines) < 2 or lines[0].startswith("00-database"):
            continue
        head = _clean_term(lines[0])
        if not head:
            continue
        for part in _split_top_level(lines[1], ","):
            term = _clean_term(part)
            if term:
                pairs.append((head, term))
    return pairs


def _read_trans(path: Path) -> list[tuple[str, str]]:
    """Pairs of a Ding/``trans`` file (``left | left2 :: right | right2``), left to right."""
    pairs: list[tuple[str, str]] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("#") or " :: " not in line:
                continue
            left, right = line.rstrip("\n").split(" :: ", 1)
            lparts, rparts = _split_top_level(left, " | "), _split_top_level(right, " | ")
            if len(lparts) != len(rparts):  # no correspondence to rely on: keep the first parts
                lparts, rparts = lparts[:1], rparts[:1]
            for lp, rp in zip(lparts, rparts):
                lterms = [t for t in (_clean_term(x) for x in _split_top_level(lp, ";")) if t]
                rterms = [t for t in (_clean_term(x) for x in _split_top_level(rp, ";")) if t]
                pairs.extend((a, b) for a in lterms for b in rterms)
    return pairs


def _read_columns(path: Path) -> tuple[list[tuple[str, str]], int]:
    """Pairs of a two-column file (tab-separated, else two whitespace-separated words)."""
    pairs, skipped = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            cols = line.split("\t")
            if len(cols) != 2:
                cols = line.split()
            if len(cols) != 2:
                skipped += 1
                continue
            pairs.append((cols[0], cols[1]))
    return pairs, skipped


def _dictd_files(path: Path) -> tuple[Path, Path] | None:
    """(index, data) of a dictd database named by either file, or None."""
    name = path.name
    for suffix in (".dict.dz", ".dict", ".index"):
        if name.endswith(suffix):
            stem = path.with_name(name[: -len(suffix)])
            index = stem.with_name(stem.name + ".index")
            for data in (stem.with_name(stem.name + ".dict.dz"), stem.with_name(stem.name + ".dict")):
                if index.is_file() and data.is_file():
                    return index, data
            return None
    return None


def dictionary_format(path) -> str:
    """``"dictd"``, ``"trans"`` or ``"columns"``: how :func:`read_bilingual_dictionary` reads ``path``."""
    path = Path(path)
    if _dictd_files(path) is not None:
        return "dictd"
    with open(path, encoding="utf-8", errors="replace") as f:
        for _, line in zip(range(50), f):
            if line.startswith("#"):
                continue
            if " :: " in line:
                return "trans"
    return "columns"


def read_bilingual_dictionary(
    source,
    *,
    reverse: bool = False,
    single_words: bool = True,
    option: str = "dictionary",
) -> list[tuple[str, str]]:
    """Word pairs (source-language word, target-language word) from a dictionary.

    Args:
        source: a list of pairs, or the path of a FreeDict dictd database (its ``.index``,
            ``.dict`` or ``.dict.dz``), a Ding/``trans`` file or a two-column text file.
        reverse: swap the two sides (for a dictionary written target language first, e.g.
            FreeDict ``deu-eng`` when the model's language is English and the new one German).
        single_words: keep only pairs where both sides are one word (no whitespace): word
            vectors exist for words, not phrases. Two-column files are returned as they are.
        option: the option name to cite in errors.

    Returns:
        Pairs in file order (duplicates kept).

    Raises:
        ResourceError: the path does not exist, or no pair could be read from it.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise ResourceError(
                f"Bilingual dictionary {str(path)!r} ({option}) does not exist. Pass a FreeDict dictd file "
                "(apt-get install dict-freedict-eng-deu: /usr/share/dictd/freedict-eng-deu.index), a Ding/trans "
                "file (apt-get install trans-de-en), a two-column TSV of word pairs, or a list of pairs."
            )
        fmt = dictionary_format(path)
        if fmt == "dictd":
            index, data = _dictd_files(path)
            pairs = _read_dictd(index, data)
        elif fmt == "trans":
            pairs = _read_trans(path)
        else:
            pairs, skipped = _read_columns(path)
            if skipped:
                logger.warning("%s: skipped %d lines that are not two columns", path, skipped)
            single_words = False
        description = f"{str(path)!r} ({fmt})"
    else:
        try:
            pairs = [(str(a), str(b)) for a, b in source]
        except (TypeError, ValueError):
            raise ResourceError(
                f"{option} must be a path or a list of (source word, target word) pairs, not {type(source).__name__}."
            ) from None
        description = f"a list of {len(pairs)} pairs"
    if single_words:
        pairs = [(a, b) for a, b in pairs if a and b and not _SPACE.search(a) and not _SPACE.search(b)]
    if reverse:
        pairs = [(b, a) for a, b in pairs]
    if not pairs:
        raise ResourceError(f"The bilingual dictionary {description} ({option}) gave no word pair.")
    return pairs


def write_pairs(pairs: Iterable[tuple[str, str]], path) -> Path:
    """Write pairs as a two-column TSV (the WECHSEL reference's dictionary format)."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        for a, b in pairs:
            f.write(f"{a}\t{b}\n")
    return path


# -- fortune files ----------------------------------------------------------------------------
def read_fortunes(source, *, max_chars: int | None = None) -> list[str]:
    """The entries of strfile fortune files (entries separated by lines holding ``%``).

    Args:
        source: a fortune file or a folder of them (``/usr/share/games/fortunes/de``);
            the binary ``.dat`` index files and ``.u8`` links are skipped.
        max_chars: stop once this many characters have been collected.

    Returns:
        Entries with their line breaks turned into spaces, in sorted file order.

    Raises:
        ResourceError: nothing readable was found.
    """
    root = Path(source).expanduser()
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix not in (".dat", ".u8") and not p.is_symlink())
    elif root.is_file():
        files = [root]
    else:
        raise ResourceError(f"Fortune file or folder {str(root)!r} does not exist (apt-get install fortunes fortunes-de).")
    out, total = [], 0
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for entry in re.split(r"(?m)^%\s*$", text):
            entry = _SPACE.sub(" ", entry).strip()
            if entry:
                out.append(entry)
                total += len(entry)
                if max_chars is not None and total >= max_chars:
                    return out
    if not out:
        raise ResourceError(f"No fortune entries found under {str(root)!r}.")
    return out


# -- word vectors -----------------------------------------------------------------------------
@dataclass
class WordVectors:
    """Word vectors seen through one interface, whatever they were loaded from.

    Attributes:
        words: the vocabulary, most frequent first where the source records frequencies.
        counts: word frequencies (fastText, gensim ``Word2Vec``), else None.
        dim: vector dimension.
        kind: ``"fasttext"`` (can embed any string from character n-grams) or ``"table"``.
        description: how to name the vectors in messages.
    """

    words: list[str]
    counts: np.ndarray | None
    dim: int
    kind: str
    description: str
    model: object = field(default=None, repr=False)
    table: np.ndarray | None = field(default=None, repr=False)
    _index: dict[str, int] | None = field(default=None, repr=False)

    @property
    def index(self) -> dict[str, int]:
        """word -> row (first occurrence wins), built once."""
        if self._index is None:
            index: dict[str, int] = {}
            for i, w in enumerate(self.words):
                index.setdefault(w, i)
            self._index = index
        return self._index

    @property
    def has_subwords(self) -> bool:
        if self.kind != "fasttext":
            return False
        args = self.model.f.getArgs() if hasattr(self.model, "f") else None
        return bool(args is None or args.maxn > 0)

    def word_id(self, word: str) -> int:
        """Row of ``word`` in the vocabulary, -1 when it is not a word of it."""
        return self.index.get(word, -1)

    def vector(self, text: str) -> np.ndarray:
        """float32 (dim,): fastText's vector of any string (zero when it has no n-gram), or the
        table row of a known word (zero for an unknown one)."""
        if self.kind == "fasttext":
            return self.model.get_word_vector(text)
        i = self.index.get(text, -1)
        return self.table[i] if i >= 0 else np.zeros(self.dim, dtype=np.float32)

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 vectors of ``texts`` (zero rows for texts without one)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = self.vector(t)
        return out

    def word_matrix(self, limit: int | None = None) -> np.ndarray:
        """float32 (n, dim): vectors of the first ``limit`` words (all by default)."""
        n = len(self.words) if limit is None else min(limit, len(self.words))
        if self.kind != "fasttext":
            return np.asarray(self.table[:n], dtype=np.float32)
        return self.vectors(self.words[:n])


def _read_vec(path: Path, limit: int | None) -> tuple[list[str], np.ndarray]:
    """A word2vec/fastText ``.vec`` text file (optional ``count dim`` header)."""
    words, rows = [], []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        first = f.readline().rstrip("\n").split(" ")
        dim = None
        if len(first) == 2 and all(p.isdigit() for p in first):
            dim = int(first[1])
        else:
            f.seek(0)
        for line in f:
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if dim is None:
                dim = len(parts) - 1
            if len(parts) != dim + 1:
                continue
            words.append(parts[0])
            rows.append(np.asarray(parts[1:], dtype=np.float32))
            if limit is not None and len(words) >= limit:
                break
    if not words:
        raise ResourceError(f"{str(path)!r} holds no word vectors (expected lines of 'word v1 v2 ...').")
    return words, np.stack(rows)


def load_word_vectors(source, *, option: str, limit: int | None = None) -> WordVectors:
    """:class:`WordVectors` from a path or an object.

    Args:
        source: a fastText ``.bin`` path or model, a ``.vec``/``.txt`` text file, a gensim
            ``KeyedVectors`` or ``Word2Vec``, or a :class:`WordVectors`.
        option: the option name to cite in errors.
        limit: read at most this many words of a text file.

    Raises:
        ResourceError: the file is missing or unreadable (the message names ``option``).
    """
    if isinstance(source, WordVectors):
        return source
    if source is None:
        raise ResourceError(f"No word vectors given: pass {option}=<path of a fastText .bin or .vec file, or a model object>.")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise ResourceError(
                f"Word vectors {str(path)!r} ({option}) do not exist. Pass the path of a fastText .bin model "
                "(e.g. cc.de.300.bin from https://fasttext.cc/docs/en/crawl-vectors.html), a .vec text file, or "
                "a loaded model object."
            )
        if path.suffix in (".vec", ".txt") or path.name.endswith(".vec.gz"):
            words, table = _read_vec(path, limit)
            return WordVectors(words, None, table.shape[1], "table", str(path), table=table)
        try:
            model = load_fasttext(path)
        except ResourceError as e:
            raise ResourceError(f"{option}: {e}") from None
        return _from_fasttext(model, str(path))
    if hasattr(source, "get_word_vector") and hasattr(source, "get_words"):
        return _from_fasttext(source, f"<{type(source).__name__}>")
    kv = getattr(source, "wv", source)
    if hasattr(kv, "index_to_key") and hasattr(kv, "vectors"):
        words = list(kv.index_to_key)
        counts = None
        try:
            counts = np.asarray([kv.get_vecattr(w, "count") for w in words], dtype=np.int64)
        except (KeyError, AttributeError, ValueError):
            counts = None
        table = np.asarray(kv.vectors, dtype=np.float32)
        return WordVectors(words, counts, table.shape[1], "table", f"<{type(source).__name__}>", table=table)
    raise ResourceError(
        f"{option} must be a path or a fastText/gensim model, not {type(source).__name__}."
    )


def _from_fasttext(model, description: str) -> WordVectors:
    words, counts = model.get_words(include_freq=True, on_unicode_error="ignore")
    return WordVectors(list(words), np.asarray(counts, dtype=np.int64), int(model.get_dimension()), "fasttext", description, model=model)


# -- explicit downloads -----------------------------------------------------------------------
def download(url: str, dest, *, option: str, timeout: float = 30.0, gunzip: bool = False) -> Path:
    """Download ``url`` to ``dest`` (atomically), only because the caller asked for it.

    Args:
        url: what to fetch.
        dest: the final file; returned at once when it already exists.
        option: the option that asked for the download, cited in errors.
        timeout: seconds to wait for the server.
        gunzip: the download is gzip-compressed; store it decompressed.

    Raises:
        ResourceError: the network or the server is unreachable, or the download failed.
    """
    dest = Path(dest).expanduser()
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s to %s (%s)", url, dest, option)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            stream = gzip.GzipFile(fileobj=response) if gunzip else response
            shutil.copyfileobj(stream, out, length=1 << 20)
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, EOFError, ValueError) as e:
        Path(tmp).unlink(missing_ok=True)
        raise ResourceError(
            f"Could not download {url} for {option} ({e}). The network may be unreachable: download it "
            f"elsewhere and pass its local path as {option}."
        ) from None
    return dest


def default_resource_dir() -> Path:
    """``$HF_VOCABSWAP_CACHE/resources`` or ``~/.cache/hf_vocabswap/resources``."""
    root = os.environ.get("HF_VOCABSWAP_CACHE")
    base = Path(root).expanduser() if root else Path("~/.cache/hf_vocabswap").expanduser()
    return base / "resources"
