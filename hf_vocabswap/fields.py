"""Dataclass fields as options: the one set of type rules for the Python API and the CLI.

Method configs, :class:`~hf_vocabswap.calibration.CalibrationConfig` and the training config
are dataclasses whose fields are options. :func:`check_option_types` checks given values
against the fields' annotations before a config is built (so ``faithful="false"`` is refused by
name instead of switching faithful mode on, and ``neighbors="abc"`` fails before any work);
:func:`cli_type` turns the same annotations into argparse converters.

Rules: a ``bool`` field takes only ``True``/``False``; an ``int`` field an integer (not a bool,
not ``2.5``); a ``float`` field an int or a float (not a bool, not a string); a ``str`` field a
string; ``X | None`` also takes None; ``Any`` and other types (objects, paths) take anything;
``list[str]`` takes a list or tuple of strings.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from .errors import OptionValueError

__all__ = ["check_at_least", "check_option_types", "cli_type", "parse_bool"]


def _members(annotation) -> tuple[list, bool]:
    """(the non-None members of a union annotation, whether None is allowed)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = list(typing.get_args(annotation))
        return [a for a in args if a is not type(None)], type(None) in args
    return [annotation], annotation is type(None)


def _accepts(member, value) -> bool | None:
    """Whether one member type takes ``value`` (None: a type these rules do not check)."""
    origin = typing.get_origin(member) or member
    if member is Any:
        return True
    if member is bool:
        return isinstance(value, bool)
    if member is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if member is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if member is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        inner = typing.get_args(member)
        return isinstance(value, (list, tuple)) and (not inner or inner[0] is Any or all(_accepts(inner[0], v) is not False for v in value))
    if origin is dict:
        return isinstance(value, dict)
    return None


def _describe(members: list, optional: bool) -> str:
    names = {bool: "True or False", int: "an integer", float: "a number", str: "a string"}
    parts = [names.get(m, getattr(m, "__name__", str(m))) for m in members]
    return " or ".join(parts + (["None"] if optional else []))


def check_option_types(cls, options: dict, *, owner: str, error: type[Exception]) -> None:
    """Raise ``error`` naming the first option whose value does not match its field's annotation.

    Args:
        cls: the config dataclass.
        options: option name -> value (names that are not fields are left to the caller).
        owner: what the options belong to, for the message ("FOCUS option", "calibration option").
        error: the exception class to raise (e.g. ``MethodOptionError``).

    Raises:
        error: a value of the wrong type (strings like ``"false"`` or ``"0.5"`` are refused).
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name not in options:
            continue
        value = options[f.name]
        members, optional = _members(hints.get(f.name, Any))
        if value is None and optional:
            continue
        verdicts = [_accepts(m, value) for m in members]
        if any(v is True for v in verdicts) or all(v is None for v in verdicts):
            continue
        hint = " (a string is not converted: pass the value itself)" if isinstance(value, str) else ""
        raise error(f"{owner} {f.name} must be {_describe(members, optional)}, not {value!r}{hint}.")


def parse_bool(text: str) -> bool:
    """``true/false``, ``yes/no``, ``on/off``, ``1/0`` -> bool, for the CLI.

    Raises:
        argparse.ArgumentTypeError: any other text.
    """
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def cli_type(annotation):
    """The argparse converter of a field's annotation: bool, int, float or str."""
    members, _ = _members(annotation)
    member = members[0] if len(members) == 1 else str
    if member is bool:
        return parse_bool
    if member in (int, float):
        return member
    return str


def check_at_least(minimum: int | float, **values) -> None:
    """Refuse any of ``values`` (option name -> value; None is skipped) below ``minimum``.

    Raises:
        OptionValueError: an option is below ``minimum`` (the message names it and the value).
    """
    for name, value in values.items():
        if value is not None and value < minimum:
            raise OptionValueError(f"{name} must be at least {minimum}, not {value!r}.")
