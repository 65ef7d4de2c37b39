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
same inputs loads the cached ``.bin`` instead of retraining.

Word level: a pretrained fastText word model (e.g. ``cc.uk.300.bin``) embeds each token's
text through its subword n-grams; load it with :func:`load_fasttext`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..corpus import batches
from ..errors import CorpusError, MismatchError, ResourceError
from ..loading import tokenizer_fingerprint

logger = logging.getLogger(__name__)

# fastText splits lines into words at these characters; a token containing one of them
# can never be a fastText word.
FASTTEXT_SEPARATORS = frozenset(" \n\t\v\f\r\0")
# fastText's end-of-line word, present in every model trained on lines of text.
FASTTEXT_EOS = "</s>"
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


def write_token_corpus(corpus, tokenizer, path, *, batch_size: int = 1000, progress: bool = True) -> dict:
    """Write every sample of ``corpus`` as its target-token strings joined by spaces.

    One line per sample, tokens as ``tokenizer.tokenize(sample)`` gives them (no special
    tokens added) - the format the FOCUS reference trains on.

    Args:
        corpus: a :class:`~hf_vocabswap.corpus.Corpus`.
        tokenizer: the target tokenizer (fast).
        path: the text file to write (UTF-8).
        batch_size: samples tokenized at once.
        progress: show a progress bar.

    Returns:
        ``{"samples": int, "tokens": int}``.

    Raises:
        CorpusError: a corpus file is not UTF-8.
    """
    backend = tokenizer.backend_tokenizer
    samples = tokens = 0
    in_memory = isinstance(corpus.source, (list, tuple)) and getattr(corpus, "_files", None) is None
    total = len(corpus.source) if in_memory else None  # for the progress bar only
    with open(path, "w", encoding="utf-8") as out, tqdm(
        total=total, desc="hf_vocabswap: tokenizing corpus for fastText", unit=" samples", disable=not progress, leave=False
    ) as bar:
        for batch in batches(corpus, batch_size):
            for enc in backend.encode_batch(batch, add_special_tokens=False):
                out.write(" ".join(enc.tokens))
                out.write("\n")
                tokens += len(enc.tokens)
            samples += len(batch)
            bar.update(len(batch))
    return {"samples": samples, "tokens": tokens}


def train_fasttext(text_path, params: FastTextParams, threads: int | None = None):
    """Train an unsupervised fastText model on a whitespace-tokenized text file.

    Multi-threaded (``threads`` defaults to every CPU). fastText's training is lock-free
    across threads, so only ``threads=1`` gives bit-identical models run to run; the cache
    makes later runs identical to the first.

    Raises:
        CorpusError: no token occurs ``min_count`` times.
    """
    import fasttext  # lazy: a native library that only the fastText-based methods need

    threads = threads or os.cpu_count() or 1
    options = dict(
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
        thread=threads,
        verbose=0,
    )
    for attempt in range(1, NAN_RETRIES + 1):
        try:
            # After a NaN abort, train in a fresh child process: inside a long-lived process
            # whose state other libraries changed, fastText was seen to abort on every retry
            # while the same training succeeded in a new process.
            train = fasttext.train_unsupervised if attempt == 1 else _train_in_child
            model = train(str(text_path), **options)
            if not _all_finite(model):
                raise RuntimeError("Encountered NaN in the trained word vectors.")
            return model
        except (RuntimeError, ValueError) as e:
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


def _train_in_child(text_path: str, **options):
    """fastText's unsupervised training in a new Python process; the model comes back as a file."""
    import fasttext  # lazy: a native library that only the fastText-based methods need

    code = (
        "import json, sys, fasttext\n"
        "m = fasttext.train_unsupervised(sys.argv[1], **json.loads(sys.argv[2]))\n"
        "m.save_model(sys.argv[3])\n"
    )
    with tempfile.TemporaryDirectory(prefix="hf_vocabswap_ft_") as tmp:
        out = Path(tmp) / "model.bin"
        done = subprocess.run([sys.executable, "-c", code, text_path, json.dumps(options), str(out)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError((done.stderr.strip().splitlines() or ["fastText training failed"])[-1])
        return fasttext.load_model(str(out))


def _all_finite(model) -> bool:
    """Whether every dictionary word has a finite vector (fastText can diverge silently)."""
    get = model.get_word_vector
    return all(np.isfinite(get(w)).all() for w in model.get_words(on_unicode_error="replace"))


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
        CorpusError: the corpus is empty, unreadable, or too small for ``min_count``.

    Example:
        >>> from hf_vocabswap.corpus import Corpus
        >>> model, path = token_fasttext(Corpus("uk.txt"), target_tokenizer)
        >>> model.get_word_vector("▁кіт").shape
        (100,)
    """
    params = params or FastTextParams()
    path = fasttext_cache_path(corpus, tokenizer, params, cache_dir)
    folder, name = path.parent, path.name
    if use_cache and path.is_file():
        logger.info("loading cached fastText model %s", path)
        return load_fasttext(path), path

    if use_cache:
        folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fasttext-", dir=folder if use_cache else None) as tmp:
        text_path = Path(tmp) / "tokens.txt"
        counts = write_token_corpus(corpus, tokenizer, text_path, progress=progress)
        if counts["tokens"] == 0:
            raise CorpusError(f"Corpus {corpus.description!r} gives no target tokens; it needs target-language text.")
        logger.info(
            "training fastText (%s, dim %d, %d epochs, minCount %d) on %d tokens of %d samples",
            params.model, params.dim, params.epoch, params.min_count, counts["tokens"], counts["samples"],
        )
        model = train_fasttext(text_path, params, threads)
        if not use_cache:
            return model, None
        partial = Path(tmp) / name
        model.save_model(str(partial))
        os.replace(partial, path)  # atomic: a cached file is always complete
    logger.info("cached fastText model at %s", path)
    return model, path


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

    Args:
        model: a fastText model object or the path of a ``.bin``.
        description: how to name the model in messages (default: its path or type).
    """

    def __init__(self, model, description: str | None = None):
        self.description = description or (str(model) if isinstance(model, (str, os.PathLike)) else f"<{type(model).__name__}>")
        self.model = load_fasttext(model)
        self._word_ids: dict[str, int] | None = None

    @property
    def dim(self) -> int:
        return int(self.model.get_dimension())

    @property
    def has_subwords(self) -> bool:
        """Whether the model has character n-grams (can embed strings it never saw)."""
        args = self.model.f.getArgs() if hasattr(self.model, "f") else None
        return bool(args is None or args.maxn > 0)

    @property
    def word_ids(self) -> dict[str, int]:
        """Word -> row of the model's dictionary (words that met minCount), built once."""
        if self._word_ids is None:
            words = self.model.get_words(on_unicode_error="replace")
            self._word_ids = {w: i for i, w in enumerate(words)}
        return self._word_ids

    def in_vocab(self, strings) -> np.ndarray:
        """Boolean array: which strings are words of the model (O(1) each)."""
        ids = self.word_ids
        return np.fromiter((s in ids for s in strings), dtype=bool, count=len(strings))

    def vectors(self, strings) -> np.ndarray:
        """float32 array (n, dim): fastText's word vector of each string.

        For a word of the dictionary this is its own vector averaged with its n-gram
        vectors; for any other string the average of its n-gram vectors (zero when it has
        none in the model).
        """
        out = np.zeros((len(strings), self.dim), dtype=np.float32)
        get = self.model.get_word_vector
        for i, s in enumerate(strings):
            out[i] = get(s)
        return out

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
