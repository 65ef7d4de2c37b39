"""fastText auxiliary embeddings: token-level training on the target corpus, caching, loading.

Token level (the FOCUS paper's setting): every corpus sample is tokenized with the target
tokenizer and written as its token strings joined by spaces, one sample per line; fastText
then learns a vector for every token seen at least ``min_count`` times, plus character
n-gram vectors that can embed any other string. The defaults are those of the FOCUS
reference (``deepfocus`` 1.0.1): cbow, dim 100, 3 epochs, minCount 10, neg 10, and
fastText's own defaults for the rest (lr 0.05, ws 5, minn 3, maxn 6, bucket 2,000,000).
The token file is written exactly as the reference writes it, so one model file can be
given to both.

Trained models are cached under a key made of the corpus content hash, the target
tokenizer's hash (its full ``tokenizer.json``) and the parameters, so a second run with the
same inputs loads the cached ``.bin`` instead of retraining. Beside it the vector cache
(:mod:`.vector_cache`) keeps the vectors a transplant read, so the same transplant again
never loads the ``.bin`` at all. Training runs in a child process (Ctrl-C stops it at once),
on a token file checked first (:func:`check_learnable`: a corpus the target tokenizer turns
into nothing but its unknown token is refused instead of training forever).

Word level: a pretrained fastText word model (e.g. ``cc.uk.300.bin``) embeds each token's
text through its subword n-grams; load it with :func:`load_fasttext`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from ..corpus import UNKNOWN_SHARE_WARNING, batches
from ..errors import CorpusError, MismatchError, ResourceError
from ..loading import tokenizer_fingerprint
from ..progress import progress_bar
from .vector_cache import VectorCache

logger = logging.getLogger(__name__)

# fastText splits lines into words at these characters; a token containing one of them
# can never be a fastText word.
FASTTEXT_SEPARATORS = frozenset(" \n\t\v\f\r\0")
# fastText's end-of-line word, present in every model trained on lines of text.
FASTTEXT_EOS = "</s>"
_FASTTEXT_SPLIT = re.compile("[" + re.escape("".join(sorted(FASTTEXT_SEPARATORS))) + "]")
CACHE_FORMAT = 1
NAN_RETRIES = 4


@dataclass(frozen=True)
class FastTextParams:
    """Training parameters of a token-level fastText model (defaults: the FOCUS reference)."""

    model: str = "cbow"
    dim: int = 100
    epoch: int = 3
    min_count: int = 10
    neg: int = 10
    lr: float = 0.05
    ws: int = 5
    minn: int = 3
    maxn: int = 6
    bucket: int = 2_000_000

    def __post_init__(self):
        if self.model not in ("cbow", "skipgram"):
            raise ValueError(f"fastText model must be 'cbow' or 'skipgram', not {self.model!r}")
        for name in ("dim", "epoch", "min_count", "neg", "ws", "bucket"):
            if getattr(self, name) < 1:
                raise ValueError(f"fastText parameter {name} must be >= 1, not {getattr(self, name)}")


def default_cache_dir() -> Path:
    """``$HF_VOCABSWAP_CACHE/fasttext``, or ``~/.cache/hf_vocabswap/fasttext``."""
    root = os.environ.get("HF_VOCABSWAP_CACHE")
    base = Path(root).expanduser() if root else Path("~/.cache/hf_vocabswap").expanduser()
    return base / "fasttext"


def _tokenizer_hash(tokenizer) -> str:
    return tokenizer_fingerprint(tokenizer)


def fasttext_cache_path(corpus, tokenizer, params: FastTextParams, cache_dir=None) -> Path:
    """Where the model trained on ``corpus`` tokenized by ``tokenizer`` with ``params`` is cached."""
    key = json.dumps(
        {
            "format": CACHE_FORMAT,
            "corpus": corpus.content_hash(),
            "tokenizer": _tokenizer_hash(tokenizer),
            "params": asdict(params),
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return folder / f"tokens-{digest}.bin"


def write_token_corpus(
    corpus, tokenizer, path, *, batch_size: int = 1000, progress: bool = True, word_counts: Counter | None = None
) -> dict:
    """Write every sample of ``corpus`` as its target-token strings joined by spaces.

    One line per sample, tokens as ``tokenizer.tokenize(sample)`` gives them (no special
    tokens added) - the format the FOCUS reference trains on.

    Args:
        corpus: a :class:`~hf_vocabswap.corpus.Corpus`.
        tokenizer: the target tokenizer (fast).
        path: the text file to write (UTF-8).
        batch_size: samples tokenized at once.
        progress: show a progress bar.
        word_counts: when given, updated with the count of every word as fastText will read
            the file (tokens split at fastText's separators, ``</s>`` once per line).

    Returns:
        ``{"samples": int, "tokens": int}``.

    Raises:
        CorpusError: a corpus file is not UTF-8.
    """
    backend = _unpadded(tokenizer.backend_tokenizer)
    samples = tokens = 0
    in_memory = isinstance(corpus.source, (list, tuple)) and getattr(corpus, "_files", None) is None
    total = len(corpus.source) if in_memory else None  # for the progress bar only
    with open(path, "w", encoding="utf-8") as out, progress_bar(
        total=total, group="fasttext", desc="hf_vocabswap: tokenizing corpus for fastText", unit=" samples", enabled=progress
    ) as bar:
        for batch in batches(corpus, batch_size):
            for enc in backend.encode_batch(batch, add_special_tokens=False):
                out.write(" ".join(enc.tokens))
                out.write("\n")
                tokens += len(enc.tokens)
                if word_counts is not None:
                    word_counts.update(enc.tokens)
            samples += len(batch)
            bar.update(len(batch))
    if word_counts is not None:
        _as_fasttext_words(word_counts, samples)
    return {"samples": samples, "tokens": tokens}


def _unpadded(backend):
    """``backend`` without padding and truncation (a copy when it has either), as ``tokenize`` cuts text.

    A tokenizer saved with padding on would pad every sample of a batch to the longest with
    its pad token, and fastText would learn the pad token as the corpus's commonest word.
    """
    if backend.padding is None and backend.truncation is None:
        return backend
    copy = Tokenizer.from_str(backend.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy


def _as_fasttext_words(counts: Counter, lines: int) -> None:
    """Turn token counts into the counts of the words fastText reads (in place).

    A token holding a separator is several words to fastText (none when it is only
    separators), and each newline in it ends a line: one more ``</s>``.
    """
    eos = lines
    for token in [t for t in counts if _FASTTEXT_SPLIT.search(t)]:
        n = counts.pop(token)
        eos += n * token.count("\n")
        for word in _FASTTEXT_SPLIT.split(token):
            if word:
                counts[word] += n
    if eos:
        counts[FASTTEXT_EOS] += eos


def check_learnable(word_counts: Counter, unknown_token: str | None, min_count: int, description: str) -> dict:
    """Refuse a token file fastText cannot learn from, before it trains; warn when it is mostly unknown.

    fastText keeps the words seen ``min_count`` times (``</s>`` included). With no target
    token among them it learns nothing the methods can use, and with a single word its
    negative sampling never finds a negative: training loops forever. A corpus the target
    tokenizer cannot read (emoji, another script) gives exactly that: nothing but the unknown
    token.

    Returns:
        ``{"tokens", "unknown", "unknown_share", "learnable_words"}``.

    Raises:
        CorpusError: no target token other than the unknown one is seen ``min_count`` times,
            or fastText's dictionary would hold a single word.
    """
    tokens = sum(c for w, c in word_counts.items() if w != FASTTEXT_EOS)
    unknown = word_counts.get(unknown_token, 0) if unknown_token else 0
    share = unknown / tokens if tokens else 0.0
    kept = [w for w, c in word_counts.items() if c >= min_count]
    learnable = [w for w in kept if w not in (FASTTEXT_EOS, unknown_token)]
    what = f"Corpus {description!r}"
    if not learnable:
        raise CorpusError(
            f"{what} gives fastText nothing to learn: {share:.0%} of its {tokens:,} target tokens are the unknown "
            f"token {unknown_token!r}, and no other target token occurs {min_count} times ({tokens - unknown:,} "
            "tokens left without the unknown ones). Give more text in the target tokenizer's language and script "
            "(is it the right file?), a target tokenizer trained on text like this corpus, or a lower min_count."
        )
    if len(kept) < 2:
        raise CorpusError(
            f"{what} gives fastText a single word seen {min_count} times ({kept[0]!r}), and its training cannot "
            "draw negative samples from one word. Give more varied target-language text or a lower min_count."
        )
    if share > UNKNOWN_SHARE_WARNING:
        logger.warning(
            "%.0f%% of the %s target tokens fastText trains on are the unknown token %r: the corpus is mostly text "
            "the target tokenizer cannot represent (wrong file or language?); the vectors learn little from it.",
            100 * share, f"{tokens:,}", unknown_token,
        )
    return {"tokens": tokens, "unknown": unknown, "unknown_share": share, "learnable_words": len(learnable)}


def _options(params: FastTextParams, threads: int | None) -> dict:
    """``fasttext.train_unsupervised`` keyword arguments for ``params``."""
    return dict(
        model=params.model,
        dim=params.dim,
        epoch=params.epoch,
        minCount=params.min_count,
        neg=params.neg,
        lr=params.lr,
        ws=params.ws,
        minn=params.minn,
        maxn=params.maxn,
        bucket=params.bucket,
        thread=threads or os.cpu_count() or 1,
        verbose=0,
    )


def train_fasttext_file(text_path, out_path, params: FastTextParams, threads: int | None = None) -> Path:
    """Train an unsupervised fastText model on a whitespace-tokenized text file into ``out_path``.

    Training runs in a child process, so Ctrl-C (or SIGTERM turned into KeyboardInterrupt)
    stops it at once: fastText's native loop never returns to Python to see a signal, and an
    in-process training would run to its end. The model is not loaded here.

    Multi-threaded (``threads`` defaults to every CPU). fastText's training is lock-free
    across threads, so only ``threads=1`` gives bit-identical models run to run; the cache
    makes later runs identical to the first.

    Raises:
        CorpusError: no token occurs ``min_count`` times.
        RuntimeError: fastText failed (after retrying its spurious NaN aborts).
    """
    options = _options(params, threads)
    for attempt in range(1, NAN_RETRIES + 1):
        try:
            _train_in_child(str(text_path), str(out_path), options)
            return Path(out_path)
        except RuntimeError as e:
            message = str(e).lower()
            if "empty vocabulary" in message:
                raise CorpusError(
                    f"No target token occurs {params.min_count} times in the corpus, so fastText has nothing to "
                    "learn. Give more target-language text or lower min_count."
                ) from None
            # fastText now and then aborts small trainings with "Encountered NaN" (not
            # reproducible from run to run, even with one thread); a new run succeeds.
            if "nan" not in message or attempt == NAN_RETRIES:
                raise
            logger.warning("fastText training stopped with %r; retrying (%d/%d)", str(e), attempt, NAN_RETRIES - 1)
    raise AssertionError("unreachable")


def train_fasttext(text_path, params: FastTextParams, threads: int | None = None):
    """Train an unsupervised fastText model on a whitespace-tokenized text file; the model object.

    As :func:`train_fasttext_file` (in a child process, interruptible), then loaded.

    Raises:
        CorpusError: no token occurs ``min_count`` times.
    """
    with tempfile.TemporaryDirectory(prefix="hf_vocabswap_ft_") as tmp:
        out = train_fasttext_file(text_path, Path(tmp) / "model.bin", params, threads)
        return load_fasttext(out)


# The child: SIGINT kills it at once (a Ctrl-C reaches the whole process group); a model with
# a non-finite vector (fastText can diverge silently) is reported as fastText's NaN abort.
_CHILD = (
    "import json, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
    "import fasttext, numpy as np\n"
    "m = fasttext.train_unsupervised(sys.argv[1], **json.loads(sys.argv[2]))\n"
    "get = m.get_word_vector\n"
    "if not all(np.isfinite(get(w)).all() for w in m.get_words(on_unicode_error='replace')):\n"
    "    sys.exit('Encountered NaN in the trained word vectors.')\n"
    "m.save_model(sys.argv[3])\n"
)


def _train_in_child(text_path: str, out_path: str, options: dict) -> None:
    """fastText's unsupervised training in a new Python process, saved to ``out_path``.

    On KeyboardInterrupt the child is killed before the exception goes on (``subprocess.run``
    kills it), so nothing keeps training.
    """
    done = subprocess.run([sys.executable, "-c", _CHILD, text_path, json.dumps(options), out_path], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError((done.stderr.strip().splitlines() or ["fastText training failed"])[-1])


def token_fasttext_file(
    corpus, tokenizer, params: FastTextParams | None = None, *, cache_dir=None, threads: int | None = None, progress: bool = True
) -> Path:
    """The cached ``.bin`` of the token-level fastText model of ``corpus`` under ``tokenizer``.

    Trained once (see :func:`token_fasttext`); a cached model is returned without being
    loaded. The corpus is checked before training (:func:`check_learnable`).

    Raises:
        CorpusError: the corpus is empty, unreadable, mostly unknown tokens, or too small for
            ``min_count``.
    """
    params = params or FastTextParams()
    path = fasttext_cache_path(corpus, tokenizer, params, cache_dir)
    if path.is_file():
        logger.info("cached fastText model %s", path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fasttext-", dir=path.parent) as tmp:
        partial = Path(tmp) / path.name
        _train_tokens(corpus, tokenizer, params, Path(tmp), partial, threads, progress)
        os.replace(partial, path)  # atomic: a cached file is always complete
    logger.info("cached fastText model at %s", path)
    return path


def _train_tokens(corpus, tokenizer, params: FastTextParams, tmp: Path, out: Path, threads, progress) -> None:
    """Write the token file of ``corpus`` in ``tmp``, check it, train fastText into ``out``."""
    text_path = tmp / "tokens.txt"
    words: Counter = Counter()
    counts = write_token_corpus(corpus, tokenizer, text_path, progress=progress, word_counts=words)
    if counts["tokens"] == 0:
        raise CorpusError(f"Corpus {corpus.description!r} gives no target tokens; it needs target-language text.")
    check_learnable(words, getattr(tokenizer, "unk_token", None), params.min_count, corpus.description)
    logger.info(
        "training fastText (%s, dim %d, %d epochs, minCount %d) on %d tokens of %d samples",
        params.model, params.dim, params.epoch, params.min_count, counts["tokens"], counts["samples"],
    )
    train_fasttext_file(text_path, out, params, threads)


def token_fasttext(
    corpus,
    tokenizer,
    params: FastTextParams | None = None,
    *,
    cache_dir=None,
    threads: int | None = None,
    progress: bool = True,
    use_cache: bool = True,
):
    """Token-level fastText model of ``corpus`` under ``tokenizer``, trained once and cached.

    Args:
        corpus: a :class:`~hf_vocabswap.corpus.Corpus` of target-language text.
        tokenizer: the target tokenizer (fast).
        params: training parameters (default: the FOCUS reference's).
        cache_dir: folder of cached models (default :func:`default_cache_dir`).
        threads: fastText training threads (default: every CPU).
        progress: show a progress bar while tokenizing.
        use_cache: read and write the cache (False: always train, keep nothing).

    Returns:
        ``(model, path)``: the fastText model and the ``.bin`` it was loaded from or saved to
        (None when ``use_cache`` is False).

    Raises:
        CorpusError: the corpus is empty, unreadable, mostly unknown tokens, or too small for
            ``min_count``.

    Example:
        >>> from hf_vocabswap.corpus import Corpus
        >>> model, path = token_fasttext(Corpus("uk.txt"), target_tokenizer)
        >>> model.get_word_vector("▁кіт").shape
        (100,)
    """
    params = params or FastTextParams()
    if use_cache:
        path = token_fasttext_file(corpus, tokenizer, params, cache_dir=cache_dir, threads=threads, progress=progress)
        return load_fasttext(path), path
    with tempfile.TemporaryDirectory(prefix="fasttext-") as tmp:
        out = Path(tmp) / "model.bin"
        _train_tokens(corpus, tokenizer, params, Path(tmp), out, threads, progress)
        return load_fasttext(out), None


def load_fasttext(model):
    """A fastText model object from a ``.bin`` path (objects are returned unchanged).

    Raises:
        ResourceError: the file does not exist or is not a fastText ``.bin`` model.
    """
    if not isinstance(model, (str, os.PathLike)):
        if not hasattr(model, "get_word_vector"):
            raise TypeError(f"fasttext_model must be a path or a fastText model, not {type(model).__name__}")
        return model
    path = Path(model).expanduser()
    if not path.is_file():
        raise ResourceError(f"fastText model {str(path)!r} does not exist. Pass the path of a fastText .bin file.")
    import fasttext  # lazy: a native library that only the fastText-based methods need

    try:
        return fasttext.load_model(str(path))
    except (ValueError, RuntimeError, MemoryError) as e:
        raise ResourceError(
            f"{str(path)!r} is not a fastText .bin model ({e}). Pass a model saved by fastText's save_model "
            "(.vec text files cannot embed unseen strings)."
        ) from None


class FastTextAuxiliary:
    """A fastText model seen as a lookup of auxiliary vectors for strings.

    Given a ``.bin`` path, the model is loaded only when a lookup is not in the vector cache
    (:mod:`.vector_cache`): a second transplant with the same model and vocabulary reads
    every vector from the cache and never opens the file. Cached answers are bit-identical.

    Args:
        model: a fastText model object or the path of a ``.bin``.
        description: how to name the model in messages (default: its path or type).
        cache_dir: the fastText cache folder holding the vector cache of models outside it
            (default :func:`default_cache_dir`).
        vector_cache: use the vector cache (paths only).
    """

    def __init__(self, model, description: str | None = None, *, cache_dir=None, vector_cache: bool = True):
        is_path = isinstance(model, (str, os.PathLike))
        self.description = description or (str(model) if is_path else f"<{type(model).__name__}>")
        self._model = None if is_path else load_fasttext(model)
        self._cache: VectorCache | None = None
        self._word_ids: dict[str, int] | None = None
        if is_path:
            path = Path(model).expanduser()
            if not path.is_file():
                load_fasttext(path)  # raises the missing-file error
            self._path = path
            if vector_cache:
                folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
                self._cache = VectorCache(path, folder)

    @property
    def model(self):
        """The fastText model object (loaded from the ``.bin`` on first use)."""
        if self._model is None:
            logger.info("loading fastText model %s", self._path)
            self._model = load_fasttext(self._path)
        return self._model

    def _cached(self) -> bool:
        return self._cache is not None and self._cache.valid

    def _meta(self) -> dict:
        """Dimension, n-grams and dictionary size: from the vector cache, else from the model."""
        if self._cached():
            return self._cache.meta
        args = self.model.f.getArgs() if hasattr(self.model, "f") else None
        return {
            "dim": int(self.model.get_dimension()),
            "has_subwords": bool(args is None or args.maxn > 0),
            "num_words": len(self.word_ids),
        }

    @property
    def dim(self) -> int:
        """The vectors' dimension."""
        return int(self._meta()["dim"])

    @property
    def has_subwords(self) -> bool:
        """Whether the model has character n-grams (can embed strings it never saw)."""
        return bool(self._meta()["has_subwords"])

    @property
    def num_words(self) -> int:
        """How many words the model's dictionary holds."""
        return int(self._meta()["num_words"])

    @property
    def word_ids(self) -> dict[str, int]:
        """Word -> row of the model's dictionary (words that met minCount), built once."""
        if self._word_ids is None:
            if self._cached() and self._cache.words is not None:
                words = self._cache.words
            else:
                words = self.model.get_words(on_unicode_error="replace")
            self._word_ids = {w: i for i, w in enumerate(words)}
            if self._cache is not None and self._cache.words is None:
                self._cache.set_words(words, self._meta())
        return self._word_ids

    def _lookup(self, strings) -> tuple[np.ndarray, np.ndarray]:
        """``(in_dict, vectors)`` of every string: from the vector cache, the model for the rest."""
        strings = list(strings)
        if self._cache is None:
            return self._from_model(strings)
        rows = self._cache.rows(strings) if self._cached() else np.full(len(strings), -1, dtype=np.int64)
        missing = np.flatnonzero(rows < 0)
        if len(missing):
            fresh = list(dict.fromkeys(strings[i] for i in missing.tolist()))
            in_dict, vectors = self._from_model(fresh)
            self._cache.add(fresh, in_dict, vectors, self._meta())
            rows = self._cache.rows(strings)
        return self._cache.in_dict[rows], self._cache.vectors[rows]

    def _from_model(self, strings: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The model's answers: dictionary membership and word vector of each string."""
        ids = self.word_ids
        in_dict = np.fromiter((s in ids for s in strings), dtype=bool, count=len(strings))
        out = np.zeros((len(strings), int(self.model.get_dimension())), dtype=np.float32)
        get = self.model.get_word_vector
        for i, s in enumerate(strings):
            out[i] = get(s)
        return in_dict, out

    def in_vocab(self, strings) -> np.ndarray:
        """Boolean array: which strings are words of the model."""
        return self._lookup(strings)[0]

    def vectors(self, strings) -> np.ndarray:
        """float32 array (n, dim): fastText's word vector of each string.

        For a word of the dictionary this is its own vector averaged with its n-gram
        vectors; for any other string the average of its n-gram vectors (zero when it has
        none in the model).
        """
        if len(strings) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._lookup(strings)[1]

    @staticmethod
    def usable(vectors: np.ndarray) -> np.ndarray:
        """Rows that can be compared by cosine: finite, and not zero.

        Rows whose entries are all subnormal count as zero: their squared norm underflows,
        and the reference implementation turns them into NaN similarities and crashes.
        """
        tiny = np.finfo(np.float32).tiny
        return np.isfinite(vectors).all(1) & (np.abs(vectors).max(1, initial=0) >= tiny)

    # -- validation -----------------------------------------------------------------------
    def check_dimension(self, expected: int | None) -> None:
        """Raise :class:`MismatchError` when ``expected`` is set and differs from the model's."""
        if expected is not None and expected != self.dim:
            raise MismatchError(
                f"fastText model {self.description} has dimension {self.dim}, but dim={expected} was "
                f"asked for. Pass dim={self.dim} (or leave dim unset), or give a model of dimension {expected}."
            )

    def check_token_level(self, tokenizer, min_share: float = 0.5) -> float:
        """Check that the model was trained on text tokenized by ``tokenizer``.

        A token-level model's dictionary consists of that tokenizer's token strings. When
        fewer than ``min_share`` of its words are tokens of ``tokenizer`` it was trained with
        another tokenizer (or on plain words), and its vectors would be looked up for the
        wrong strings.

        Returns:
            The share of the model's words that are tokens of ``tokenizer``.

        Raises:
            MismatchError: the share is below ``min_share``.
        """
        vocab = tokenizer.get_vocab()
        words = [w for w in self.word_ids if w != FASTTEXT_EOS]
        if not words:
            raise MismatchError(f"fastText model {self.description} has an empty dictionary.")
        share = sum(1 for w in words if w in vocab) / len(words)
        if share < min_share:
            example = [w for w in words[:200] if w not in vocab][:5]
            raise MismatchError(
                f"fastText model {self.description} was not trained with the target tokenizer: only "
                f"{share:.1%} of its {len(words):,} words are target tokens (e.g. {example} are not). "
                "Train it on the target corpus tokenized by the target tokenizer (omit fasttext_model and "
                "pass corpus=...), or use auxiliary='word' for a pretrained fastText word model."
            )
        return share
