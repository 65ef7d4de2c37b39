"""The demo Space: its files, a wheel of this hf_vocabswap, and pushing both to a Space repo.

``hf-vocabswap demo --push OWNER/NAME [--adapted REPO]`` calls :func:`push_space`, which creates
(or updates) a Gradio Space in one commit holding:

* ``app.py``, the demo of ``spaces/hf-vocabswap-demo`` (shipped inside the package as
  ``hf_vocabswap/space_app``, so it works from a pip install too);
* ``README.md``, the Space's card with its YAML (``sdk: gradio`` ...; ``models:`` names the adapted
  model when one is given);
* ``requirements.txt``, which installs *this* version of hf_vocabswap: a wheel built from the
  installed package (:func:`build_wheel`) is uploaded with the app and named by its URL in the
  Space (Spaces install ``requirements.txt`` on its own, before the other files are there), or
  ``hf-vocabswap==VERSION`` from PyPI with ``from_pypi=True`` once that version is published;
* ``vocabswap_demo.json``, the models the app shows at start (``adapted``, ``source``).

A Space whose requirements name its own wheel must be public: a private Space's files need a
token, which the Space's build does not send.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import tempfile
import tomllib
import zipfile
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, SpaceCard, constants

from .version import __version__
from .errors import VocabSwapError
from .hub import _hub_errors as hub_errors, _whoami, resolve_token
from .summary import is_local_path

logger = logging.getLogger(__name__)

__all__ = ["DEMO_CONFIG_FILE", "build_wheel", "push_space", "space_app_dir", "space_files", "wheel_name"]

DIST_NAME = "hf-vocabswap"
DEMO_CONFIG_FILE = "vocabswap_demo.json"
_PACKAGE_DIR = Path(__file__).resolve().parent
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same files give the same wheel


def space_app_dir() -> Path:
    """The folder of the demo Space (``app.py``, ``README.md``, ``requirements.txt``).

    Raises:
        VocabSwapError: the package was installed without its Space files.
    """
    for folder in (_PACKAGE_DIR / "space_app", _PACKAGE_DIR.parent / "spaces" / "hf-vocabswap-demo"):
        if (folder / "app.py").is_file():
            return folder
    raise VocabSwapError(f"The demo Space's files are not in {_PACKAGE_DIR / 'space_app'}; reinstall hf-vocabswap.")


def wheel_name(version: str = __version__) -> str:
    """The file name of the wheel :func:`build_wheel` writes, e.g. ``hf_vocabswap-0.1.0-py3-none-any.whl``."""
    return f"hf_vocabswap-{version}-py3-none-any.whl"


def _project_metadata() -> tuple[str, dict[str, str]]:
    """(METADATA text, console scripts) of the package that is running.

    From the ``pyproject.toml`` beside the package when it runs from a source tree (what is
    imported is what gets packed), else from the installed distribution's metadata.
    """
    pyproject = _PACKAGE_DIR.parent / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}) if pyproject.is_file() else {}
    if project.get("name") == DIST_NAME:
        lines = ["Metadata-Version: 2.1", f"Name: {DIST_NAME}", f"Version: {__version__}"]
        lines += [f"Summary: {project['description']}"] if project.get("description") else []
        lines += [f"Requires-Python: {project['requires-python']}"] if project.get("requires-python") else []
        lines += [f"Requires-Dist: {req}" for req in project.get("dependencies", [])]
        for extra, reqs in project.get("optional-dependencies", {}).items():
            lines.append(f"Provides-Extra: {extra}")
            lines += [f'Requires-Dist: {req}; extra == "{extra}"' for req in reqs]
        return "\n".join(lines) + "\n", dict(project.get("scripts", {}))
    try:
        dist = importlib.metadata.distribution(DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        raise VocabSwapError("hf_vocabswap runs without its package metadata (no pyproject.toml, not installed): "
                             "install it (pip install -e .) to build a wheel of it.") from None
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    text = dist.read_text("METADATA") or ""
    return text.replace(f"\nVersion: {dist.version}\n", f"\nVersion: {__version__}\n"), scripts


def _package_files() -> list[tuple[str, Path]]:
    """(path in the wheel, file) for every file of the running package, links followed, caches left out."""
    out = []
    # os.walk follows the linked folders (model_cards, space_app), which Path.rglob does not enter.
    for root, dirs, files in os.walk(_PACKAGE_DIR, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")) or name.startswith("."):
                continue
            path = Path(root) / name
            out.append((f"hf_vocabswap/{path.relative_to(_PACKAGE_DIR).as_posix()}", path))
    return out


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(out_dir) -> Path:
    """Pack the running hf_vocabswap (its files as imported, its metadata) into a pure-Python wheel.

    Args:
        out_dir: the folder to write the wheel to (created if missing).

    Returns:
        The wheel's path (``out_dir / wheel_name()``); the same files give the same bytes.

    Raises:
        VocabSwapError: the package's metadata cannot be found.
    """
    metadata, scripts = _project_metadata()
    dist_info = f"hf_vocabswap-{__version__}.dist-info"
    entries = [(name, path.read_bytes()) for name, path in _package_files()]
    entries.append((f"{dist_info}/METADATA", metadata.encode("utf-8")))
    entries.append((f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: hf_vocabswap\nRoot-Is-Purelib: true\nTag: py3-none-any\n"))
    if scripts:
        text = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in sorted(scripts.items()))
        entries.append((f"{dist_info}/entry_points.txt", text.encode("utf-8")))
    record = "\n".join([_record_line(n, d) for n, d in entries] + [f"{dist_info}/RECORD,,"]) + "\n"
    entries.append((f"{dist_info}/RECORD", record.encode("utf-8")))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / wheel_name()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return path


def _requirements(wheel_url: str | None) -> str:
    pin = f"hf-vocabswap @ {wheel_url}" if wheel_url else f"hf-vocabswap=={__version__}"
    return (
        "# Python packages of the Space, written by `hf-vocabswap demo --push`. Spaces install gradio\n"
        "# themselves, at the README's sdk_version. A CPU build of torch (no multi-GB CUDA wheels).\n"
        "--extra-index-url https://download.pytorch.org/whl/cpu\n"
        "torch>=2.1\n"
        f"# This version of hf_vocabswap{' (the wheel uploaded with the app)' if wheel_url else ''}; it brings transformers and the rest.\n"
        f"{pin}\n"
    )


def _readme(adapted: str | None, source: str | None) -> str:
    card = SpaceCard((space_app_dir() / "README.md").read_text(encoding="utf-8"))
    models = [m for m in (adapted, source) if m and not is_local_path(m)]
    if models:
        card.data.models = models
    return str(card)


def space_files(repo_id: str, *, adapted: str | None = None, source: str | None = None, wheel: Path | None = None,
                endpoint: str | None = None) -> dict[str, bytes]:
    """The files of the demo Space ``repo_id``: path in the repo -> content.

    Args:
        repo_id: ``owner/name`` of the Space (names the wheel's URL).
        adapted, source: the models the app shows at start (Hub ids); None: the app's defaults.
        wheel: a wheel of hf_vocabswap to upload (see :func:`build_wheel`); None: install from PyPI.
        endpoint: the Hub's address (default: ``HF_ENDPOINT``).
    """
    app_dir = space_app_dir()
    url = f"{(endpoint or constants.ENDPOINT).rstrip('/')}/spaces/{repo_id}/resolve/main/{wheel.name}" if wheel else None
    files = {
        "app.py": (app_dir / "app.py").read_bytes(),
        "README.md": _readme(adapted, source).encode("utf-8"),
        "requirements.txt": _requirements(url).encode("utf-8"),
        DEMO_CONFIG_FILE: (json.dumps({"adapted": adapted, "source": source}, indent=1) + "\n").encode("utf-8"),
    }
    if wheel is not None:
        files[wheel.name] = Path(wheel).read_bytes()
    return files


def push_space(repo_id: str, *, adapted: str | None = None, source: str | None = None, private: bool = False,
               token: str | None = None, from_pypi: bool = False, work_dir=None):
    """Create or update the demo Space ``repo_id`` in one commit (app, README, requirements, wheel).

    Args:
        repo_id: ``owner/name`` of the Space, or ``name`` for one of the logged-in user.
        adapted: the adapted model the app shows at start (a Hub id), e.g. what ``hf-vocabswap push`` uploaded.
        source: the source model shown beside it (default: the adapted model's recorded source).
        private: create the Space private (its build then cannot download the wheel: use ``from_pypi``).
        token: a token with write access (default: ``HF_TOKEN`` or the stored login); never logged.
        from_pypi: name ``hf-vocabswap==VERSION`` from PyPI instead of uploading a wheel.
        work_dir: where the wheel is built (default: a temporary folder).

    Returns:
        The ``huggingface_hub.CommitInfo`` of the commit.

    Raises:
        HubError: not logged in (checked before anything is built), no write access, or the Hub
            cannot be reached.
    """
    token = resolve_token(token)
    api = HfApi(token=token)
    user = _whoami(api)
    repo_id = repo_id if "/" in repo_id else f"{user}/{repo_id}"
    if private and not from_pypi:
        logger.warning("%s is private: its build cannot download the wheel uploaded with it. Make it public, or use "
                       "--from-pypi once hf-vocabswap %s is on PyPI.", repo_id, __version__)
    with (contextlib.nullcontext(str(work_dir)) if work_dir is not None else tempfile.TemporaryDirectory(prefix="hf-vocabswap-space-")) as folder:
        wheel = None if from_pypi else build_wheel(folder)
        files = space_files(repo_id, adapted=adapted, source=source, wheel=wheel)
        namespace = repo_id.split("/")[0]
        with hub_errors(repo_id, f"create the Space {repo_id!r}", namespace=namespace, user=user):
            api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=data) for name, data in files.items()]
        with hub_errors(repo_id, f"push to the Space {repo_id!r}", namespace=namespace, user=user):
            commit = api.create_commit(repo_id, operations=operations, repo_type="space",
                                       commit_message=f"hf_vocabswap {__version__} demo" + (f" of {adapted}" if adapted else ""))
    logger.info("pushed the demo Space %s: %s", repo_id, getattr(commit, "commit_url", ""))
    return commit
