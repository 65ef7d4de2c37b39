"""Progress bars in named groups that a user can switch off, one group or all of them.

Built on ``huggingface_hub.utils.tqdm``, whose bars look up their group (and its parents) in
one table, so ``hf_vocabswap`` bars follow the same rules as the Hub's: the environment
variable ``HF_HUB_DISABLE_PROGRESS_BARS=1`` silences everything, and
:func:`disable_progress_bars` silences one group (``"hf_vocabswap.fasttext"``), every group
of this library (``"hf_vocabswap"``, the default), or every bar of huggingface_hub's table
(``None``).

Groups (each a child of ``hf_vocabswap``):

========================  ==============================================================
``hf_vocabswap.corpus``     reading and tokenizing corpora
``hf_vocabswap.tokenizer``  training, trimming and expanding tokenizers
``hf_vocabswap.fasttext``   writing the fastText training file, fastText training
``hf_vocabswap.method``     the methods' similarity and mixing blocks (FOCUS, WECHSEL, ...)
``hf_vocabswap.calibration`` output calibration
``hf_vocabswap.evaluate``   held-out bits per character
``hf_vocabswap.train``      continued pretraining (and the teacher's passes)
``hf_vocabswap.save``       writing shards of a streamed checkpoint
========================  ==============================================================

Example:
    >>> from hf_vocabswap.progress import disable_progress_bars
    >>> disable_progress_bars("hf_vocabswap.fasttext")   # keep every other bar
    >>> disable_progress_bars()                          # no hf_vocabswap bar at all
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from huggingface_hub.utils import are_progress_bars_disabled as _hub_disabled
from huggingface_hub.utils import disable_progress_bars as _hub_disable
from huggingface_hub.utils import enable_progress_bars as _hub_enable
from huggingface_hub.utils import tqdm as _hub_tqdm

ROOT = "hf_vocabswap"
GROUPS = ("corpus", "tokenizer", "fasttext", "method", "calibration", "evaluate", "train", "save")

__all__ = ["GROUPS", "ROOT", "are_progress_bars_disabled", "disable_progress_bars", "enable_progress_bars", "progress_bar"]


def _group_name(group: str | None) -> str:
    """``"fasttext"`` or ``"hf_vocabswap.fasttext"`` -> ``"hf_vocabswap.fasttext"``; None -> the root.

    Raises:
        ValueError: ``group`` is not one of :data:`GROUPS`.
    """
    if group is None or group == ROOT:
        return ROOT
    short = group[len(ROOT) + 1 :] if group.startswith(ROOT + ".") else group
    if short not in GROUPS:
        raise ValueError(f"unknown progress group {group!r}; the groups are {', '.join(GROUPS)} (under {ROOT!r})")
    return f"{ROOT}.{short}"


def progress_bar(iterable: Iterable | None = None, *, group: str, desc: str, enabled: bool = True, **kwargs: Any):
    """A tqdm bar of ``group`` (see the table above); it is off when ``enabled`` is False or the group is disabled.

    Args:
        iterable: what to iterate over (or None, and ``total=`` with manual ``update``).
        group: one of :data:`GROUPS`, short (``"fasttext"``) or full (``"hf_vocabswap.fasttext"``).
        desc: what the bar counts, shown before it.
        enabled: the caller's own switch (a ``progress=False`` option).
        **kwargs: passed to ``tqdm`` (``total``, ``unit``, ``unit_scale``, ...); ``leave`` defaults to False.

    Returns:
        A ``tqdm`` instance (usable as an iterator and as a context manager).

    Raises:
        ValueError: ``group`` is not a known group.
    """
    kwargs.setdefault("leave", False)
    return _hub_tqdm(iterable, desc=desc, disable=not enabled, name=_group_name(group), **kwargs)


def disable_progress_bars(group: str | None = ROOT) -> None:
    """Switch off the bars of ``group`` (default: every hf_vocabswap bar; None: every bar of the Hub's library too).

    Raises:
        ValueError: ``group`` is not a known group.
    """
    _hub_disable(None if group is None else _group_name(group))


def enable_progress_bars(group: str | None = ROOT) -> None:
    """Switch the bars of ``group`` back on (the ``HF_HUB_DISABLE_PROGRESS_BARS`` variable still wins).

    Raises:
        ValueError: ``group`` is not a known group.
    """
    _hub_enable(None if group is None else _group_name(group))


def are_progress_bars_disabled(group: str | None = ROOT) -> bool:
    """Whether the bars of ``group`` are off (by this module, its parents or the environment).

    Raises:
        ValueError: ``group`` is not a known group.
    """
    return _hub_disabled(_group_name(group) if group is not None else None)
