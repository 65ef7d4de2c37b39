"""Output folders: claimed before the work, written beside, moved into place; nothing lost, nothing left.

:func:`claim_output` takes an output folder at the start of a run: it creates it empty with a
claim marker (a second run asking for the same folder fails at once, while the first works),
refuses a path that is a file, and with ``overwrite`` moves an existing hf_vocabswap output
aside (never a folder holding anything else, such as a user's own files). The result is written
to a temporary sibling (:meth:`OutputClaim.temporary`) and :meth:`OutputClaim.commit` moves it
into the claimed folder only while the claim is still ours. A failure, Ctrl-C or SIGTERM
(:func:`terminate_as_interrupt`) releases the claim: the temporary folder is removed and the
previous output put back. Folders get the user's usual permissions (umask), not ``mkdtemp``'s 0700.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import tempfile
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError, OutputExistsError, OutputPathError
from .record import FRONTIER_FILE, HISTORY_FILE, RECORD_FILE

__all__ = ["CLAIM_FILE", "OutputClaim", "claim_output", "terminate_as_interrupt", "write_output"]

CLAIM_FILE = ".hf_vocabswap-claim"
# Files that make a folder an hf_vocabswap output, which ``overwrite`` may replace.
_OUTPUT_MARKERS = (RECORD_FILE, HISTORY_FILE, FRONTIER_FILE)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _claim_owner(folder: Path) -> dict | None:
    """The claim marker of ``folder`` when a live process holds it, else None."""
    try:
        info = json.loads((folder / CLAIM_FILE).read_text(encoding="utf-8"))
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no marker, a damaged one, or its process is gone: a stale claim
    return info


def _replaceable(folder: Path) -> bool:
    """Whether ``overwrite`` may replace ``folder``: empty (but for a stale claim) or an hf_vocabswap output."""
    names = {p.name for p in folder.iterdir()} - {CLAIM_FILE}
    return not names or any(m in names for m in _OUTPUT_MARKERS)


class OutputClaim:
    """An output folder claimed by this run (see the module docstring).

    Attributes:
        path: the output folder (it exists, empty but for the claim marker, until :meth:`commit`).
        token: this claim's identity, written in the marker.
        previous: where the replaced output waits until :meth:`commit` (None when there was none).
    """

    def __init__(self, path: Path, token: str, previous: Path | None):
        self.path, self.token, self.previous = path, token, previous
        self._temporaries: list[Path] = []
        self.done = False

    def temporary(self) -> Path:
        """A new temporary folder beside the output, for writing the result (removed on release)."""
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        self._temporaries.append(tmp)
        return tmp

    def holds(self) -> bool:
        """Whether the output folder still carries this claim's marker."""
        try:
            return json.loads((self.path / CLAIM_FILE).read_text(encoding="utf-8")).get("token") == self.token
        except (OSError, ValueError):
            return False

    def commit(self, folder: Path) -> Path:
        """Move the complete ``folder`` into the claimed output folder; the replaced output is deleted.

        Raises:
            OutputExistsError: the claim was lost (another run took the folder): nothing is replaced.
        """
        if not self.holds():
            raise OutputExistsError(self.path, reason="another run replaced it while this one worked; the result was not written")
        (self.path / CLAIM_FILE).unlink()
        self.path.rmdir()  # empty now; a file someone added makes this fail, and nothing is lost
        os.replace(folder, self.path)
        os.chmod(self.path, 0o777 & ~_umask())
        self._temporaries = [t for t in self._temporaries if t != folder]
        self.done = True
        self.release()
        return self.path

    def release(self) -> None:
        """Undo what is not committed: remove temporary folders and the empty claimed folder, and
        put the previous output back. Safe to call more than once."""
        for tmp in self._temporaries:
            shutil.rmtree(tmp, ignore_errors=True)
        self._temporaries = []
        if not self.done and self.holds():
            (self.path / CLAIM_FILE).unlink(missing_ok=True)
            try:
                self.path.rmdir()
            except OSError:  # someone put files there: leave them
                return
        if self.previous is not None:
            if self.done:
                shutil.rmtree(self.previous, ignore_errors=True)
            elif not self.path.exists():
                os.replace(self.previous, self.path)
            self.previous = None


def claim_output(path, *, overwrite: bool = False) -> OutputClaim:
    """Claim ``path`` as this run's output folder (see the module docstring).

    Args:
        path: the output folder.
        overwrite: replace an existing hf_vocabswap output (or an empty folder).

    Returns:
        The :class:`OutputClaim`; call :meth:`~OutputClaim.commit` with the written folder, or
        :meth:`~OutputClaim.release` on failure (:func:`write_output` does both).

    Raises:
        OutputExistsError: the folder exists and ``overwrite`` is False, another run is writing
            it, or it holds files that are not an hf_vocabswap output (they are never deleted).
        OutputPathError: ``path`` is a file or the current folder.
        OutputError: the folder cannot be created (permissions, a file where a parent folder should be).
    """
    target = Path(path).expanduser()
    if target.resolve() == Path.cwd().resolve() or str(path) in (".", ""):
        raise OutputPathError(f"The output folder {str(path)!r} is the current folder: name a new folder (e.g. --out my-model).")
    if target.exists() and not target.is_dir():
        raise OutputPathError(f"The output {str(path)!r} is a file, not a folder: name a folder (it is never replaced by one).")
    previous = None
    token = uuid.uuid4().hex
    if target.is_dir():
        owner = _claim_owner(target)
        if owner is not None:
            raise OutputExistsError(target, reason=f"another run (process {owner.get('pid')}) is writing it")
        if not overwrite:
            raise OutputExistsError(target)
        if not _replaceable(target):
            raise OutputExistsError(target, reason="it holds files that are not an hf_vocabswap output, so --overwrite does not delete it")
        previous = target.with_name(f".{target.name}.previous-{token[:8]}")
        os.replace(target, previous)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file where a parent folder should be, no permission
        raise OutputError(f"Cannot create the output folder {str(path)!r}: {e.strerror or e}. Choose a folder you can write to.") from None
    try:
        target.mkdir()  # exclusive: a run that raced us here loses
    except FileExistsError:
        kept = f"; the output it replaced is kept as {previous.name}" if previous is not None else ""
        raise OutputExistsError(target, reason=f"another run created it at the same moment{kept}") from None
    except OSError as e:
        if previous is not None:
            os.replace(previous, target)
        raise OutputError(f"Cannot create the output folder {str(path)!r}: {e.strerror or e}. Choose a folder you can write to.") from None
    (target / CLAIM_FILE).write_text(json.dumps({"pid": os.getpid(), "token": token}), encoding="utf-8")
    return OutputClaim(target, token, previous)


def write_output(path, write, *, overwrite: bool = False, claim: OutputClaim | None = None) -> Path:
    """Write an output folder atomically: ``write(tmp_folder)`` fills a temporary folder, which then
    replaces the claimed output folder.

    Args:
        path: the output folder.
        write: a function that writes every file into the folder it is given.
        overwrite: as :func:`claim_output` (ignored when ``claim`` is given).
        claim: a claim taken earlier (the CLI claims before the work starts); else one is taken now.

    Returns:
        The output folder.

    Raises:
        OutputExistsError, OutputError: see :func:`claim_output`; OutputError also when the disk
            fills up or a file cannot be written (nothing is left half-written).
    """
    claim = claim if claim is not None else claim_output(path, overwrite=overwrite)
    try:
        with terminate_as_interrupt():
            tmp = claim.temporary()
            try:
                write(tmp)
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
                    raise OutputError(f"Cannot write {str(path)!r}: {e.strerror}. Free space or choose another folder; nothing was written.") from None
                raise
            return claim.commit(tmp)
    finally:
        claim.release()


@contextmanager
def terminate_as_interrupt():
    """Within the block, SIGTERM raises KeyboardInterrupt (as Ctrl-C does), so clean-up code runs.

    Only in the main thread (signal handlers cannot be set elsewhere); the previous handler is restored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
