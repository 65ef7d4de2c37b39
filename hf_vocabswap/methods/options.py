"""Options that several methods share, each defined once.

A config dataclass declares a shared option with one of the ``*_option`` functions below, in the
place it wants it in its field order (``to_dict`` and the option listings follow that order).
Each returns a ``dataclasses.field`` with the option's default and ``help`` metadata; where the
methods word the help differently, the function takes the differing part as an argument.
The ``check_*`` functions raise the :class:`MethodOptionError` every method raises for a bad value.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from ..errors import MethodOptionError

# What a method does with new tokens its similarity source has no vector for (OFA, WECHSEL).
FALLBACKS = ("fvt", "random")


def device_option(work: str = "the similarity and top-k") -> Any:
    """``device: str | None``: where ``work`` runs; None: the transplant's device."""
    return field(default=None, metadata={"help": f"where {work} run ('cpu', 'cuda'); default: the transplant's device"})


def chunk_size_option(note: str = "") -> Any:
    """``chunk_size: int | None``: new tokens per similarity block; ``note`` ends the default's description."""
    return field(default=None, metadata={"help": f"new tokens per similarity block (default: blocks of about 16M scores{note})"})


def progress_option(text: str = "show progress bars") -> Any:
    """``progress: bool``: whether progress bars are shown (default True)."""
    return field(default=True, metadata={"help": text})


def neighbors_option() -> Any:
    """``neighbors: int``: the k of a top-k similarity mixture (default 10)."""
    return field(default=10, metadata={"help": "source tokens mixed into each new token (top-k by cosine similarity)"})


def temperature_option() -> Any:
    """``temperature: float``: of the softmax over the top-k similarities (default 0.1)."""
    return field(default=0.1, metadata={"help": "softmax temperature over the top-k similarities"})


def fallback_option(tokens: str, note: str = "") -> Any:
    """``fallback: str``, one of :data:`FALLBACKS` (default "fvt"), for the ``tokens`` described."""
    return field(
        default="fvt",
        metadata={
            "help": f"{tokens}: 'fvt' = mean of the source subwords of their text, then a random draw; "
            f"'random' = N(mean, std) of the source rows{note}"
        },
    )


def check_choice(method: str, config: Any, name: str, choices: tuple[str, ...]) -> None:
    """Raise unless option ``name`` of ``config`` is one of ``choices``."""
    value = getattr(config, name)
    if value not in choices:
        raise MethodOptionError(f"{method} option {name} must be one of {choices}, not {value!r}.")


def check_at_least_one(method: str, config: Any, *names: str) -> None:
    """Raise unless each of the options ``names`` (optional integers) is None or >= 1, checked in order."""
    for name in names:
        value = getattr(config, name)
        if value is not None and value < 1:
            raise MethodOptionError(f"{method} option {name} must be >= 1, not {value}.")


def check_topk_mixing(method: str, config: Any) -> None:
    """Check ``fallback``, ``neighbors`` and ``temperature`` of a top-k softmax mixing method, in that order."""
    check_choice(method, config, "fallback", FALLBACKS)
    check_neighbors_and_temperature(method, config)


def check_neighbors_and_temperature(method: str, config: Any) -> None:
    """Raise unless ``neighbors`` >= 1 and ``temperature`` > 0, checked in that order."""
    if config.neighbors < 1:
        raise MethodOptionError(f"{method} option neighbors must be >= 1, not {config.neighbors}.")
    if not config.temperature > 0:
        raise MethodOptionError(f"{method} option temperature must be > 0, not {config.temperature}.")
