"""Short, readable views of a transplant record: changed options, flat statistics, a terminal report.

The full record (every option, every nested statistic, full paths) stays in ``vocabswap.json``;
the model card and ``hf-vocabswap transplant`` show these summaries of it:

* :func:`changed_options`: the options whose value differs from the method's default;
* :func:`flat_stats`: nested method statistics as ``(dotted.key, readable value)`` rows;
* :func:`public_name`: a local path shown by its file or folder name only;
* :func:`report_summary`: the report in lines that fit a terminal.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

from .errors import UnknownMethodError
from .methods import get_method
from .methods.base import recorded_value

__all__ = ["changed_options", "flat_stats", "format_value", "is_local_path", "public_name", "public_value", "report_summary"]

# Statistics too detailed for a summary (the record keeps them).
_SKIPPED_STATS = ("history",)


def is_local_path(text) -> bool:
    """Whether ``text`` names a file or folder on this machine rather than a Hub id.

    Absolute paths, paths starting with ``~``, ``./`` or ``../``, Windows paths, ``.gguf`` files
    and anything that exists on disk count as local.
    """
    if not isinstance(text, str) or not text or "\n" in text or len(text) > 4096:
        return False
    if text.startswith(("/", "~", "./", "../", ".\\", "..\\")) or "\\" in text or text.endswith(".gguf"):
        return True
    if len(text) > 2 and text[1] == ":" and text[2] in "/\\":  # C:\... or C:/...
        return True
    try:
        return os.path.exists(text)
    except (OSError, ValueError):
        return False


def public_name(text: str) -> str:
    """``text`` with a local path replaced by its last component (``/home/me/uk.txt`` -> ``uk.txt``)."""
    if not is_local_path(text):
        return text
    return Path(text.replace("\\", "/").rstrip("/")).name or text


def public_value(value):
    """A recorded value with every local path in it replaced by its name (lists and dicts too)."""
    if isinstance(value, str):
        return public_name(value)
    if isinstance(value, (list, tuple)):
        return [public_value(v) for v in value]
    if isinstance(value, dict):
        return {k: public_value(v) for k, v in value.items()}
    return value


def format_value(value) -> str:
    """A statistic or option value as a short string: 12,345; 0.8418; yes; a, b; 3 entries."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        if len(value) <= 6 and all(isinstance(v, (str, int, float, bool)) for v in value):
            return ", ".join(format_value(v) for v in value) or "none"
        return f"{len(value)} entries"
    if isinstance(value, dict):
        return f"{len(value)} values"
    return public_name(str(value))


def changed_options(method: str, options: dict) -> list[tuple[str, object, object]]:
    """``(name, value, default)`` of every option whose recorded value differs from the method's default.

    An option of a method this install does not know is listed with the default ``"?"``.
    """
    try:
        defaults = {name: recorded_value(default) for name, _, default, _ in get_method(method).config_class.option_fields()}
    except UnknownMethodError:
        defaults = {}
    rows = []
    for name, value in (options or {}).items():
        default = defaults.get(name, "?")
        if value != default:
            rows.append((name, public_value(value), default))
    return rows


def flat_stats(stats: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Nested method statistics as ``(dotted.key, readable value)`` rows, in the record's order."""
    rows: list[tuple[str, str]] = []
    for key, value in (stats or {}).items():
        if key in _SKIPPED_STATS:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += flat_stats(value, prefix=f"{name}.")
        else:
            rows.append((name, format_value(value)))
    return rows


def _wrapped(label: str, text: str, width: int) -> list[str]:
    """``label`` then ``text`` wrapped to ``width``, continuation lines under the text."""
    lead = f"  {label + ':':<18}"
    return textwrap.wrap(text, width=width, initial_indent=lead, subsequent_indent=" " * len(lead),
                         break_long_words=True, break_on_hyphens=False) or [lead.rstrip()]


def _calibration_text(cal: dict) -> str:
    if not cal.get("calibrated"):
        return f"skipped ({cal['skipped']})" if cal.get("skipped") else "not run"
    return (f"{cal['calibrated']:,} new tokens shifted ({cal.get('mode')}); their predicted share "
            f"{100 * cal['mass_before']:.1f}% -> {100 * cal['mass_after']:.1f}% (corpus {100 * cal['corpus_share']:.1f}%)")


def report_summary(report, width: int | None = None) -> str:
    """The report of a transplant in lines of at most ``width`` characters (default: the terminal's).

    Options are listed when they differ from the method's defaults, statistics by their top-level
    values; the full record is ``vocabswap.json``.
    """
    width = width or min(shutil.get_terminal_size((100, 24)).columns, 120)
    prov, total = report.provenance or {}, max(sum(report.counts.values()), 1)
    lines = [f"hf_vocabswap transplant ({report.model_kind} model, {report.alignment.get('mode', 'replace')} mode)"]
    lines += _wrapped("source", str(prov.get("source")), width)
    lines += _wrapped("target tokenizer", f"{prov.get('target_tokenizer')} ({sum(report.counts.values()):,} tokens)", width)
    stats = dict(report.method_stats or {})
    auto = stats.pop("auto", None)
    lines += _wrapped("method", f"{report.method}, seed {report.seed}" + (f" (auto: {auto})" if auto else ""), width)
    changed = changed_options(report.method, report.options)
    lines += _wrapped("options", "; ".join(f"{n}={format_value(v)}" for n, v, _ in changed) if changed else "the method's defaults", width)
    if report.language or report.datasets:
        lines += _wrapped("card", f"language {report.language or '-'}; datasets {', '.join(report.datasets) or '-'}", width)
    lines += _wrapped("overlap", f"{report.overlap:,} of {total:,} target tokens ({100 * report.overlap / total:.1f}%)", width)
    for name in ("copied", "combined", "random", "mean"):
        n = report.counts.get(name, 0)
        lines.append(f"  {name + ':':<18}{n:>8,}  ({100 * n / total:5.1f}%)")
    cal = stats.pop("calibration", None)
    if isinstance(cal, dict):
        lines += _wrapped("calibration", _calibration_text(cal), width)
    scalars = [f"{k}={format_value(v)}" for k, v in stats.items() if not isinstance(v, (dict, list))]
    nested = [f"{k}: {len(v)} values" for k, v in stats.items() if isinstance(v, dict)]
    if scalars or nested:
        lines += _wrapped("method stats", "; ".join(scalars + nested), width)
    rows = report.surgery.get("rows")
    lines += _wrapped("embedding rows", f"{rows if rows is not None else '?'}; tied head {report.surgery.get('tied')}; {report.seconds:.1f} s", width)
    lines += _wrapped("full record", "vocabswap.json (every option and statistic, full paths)", width)
    return "\n".join(lines)
