"""Pushing an hf_vocabswap output folder to the Hugging Face Hub in one commit.

:func:`push_folder` is what ``TransplantResult.push_to_hub`` and ``hf-vocabswap push DIR
REPO_ID`` call. It checks the folder before anything goes over the network, then creates the
repository (private by default) and uploads every file, the model card included, in a single
commit, so the repo never shows a model without its card or a card without its weights.

The token comes from the usual places (the ``token`` argument, ``HF_TOKEN``, the login
stored by ``hf auth login``) and is never printed, logged or put into an error message.
"""

from __future__ import annotations

import fnmatch
import logging
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RevisionNotFoundError

from .card import render_folder_card, with_repo_id
from .errors import HubError, NotLoggedInError
from .record import CARD_FILE, PLAN_FILE, RECORD_FILE, check_output_folder, commit_message as default_commit_message, read_record

logger = logging.getLogger(__name__)

# Remote files of these kinds that the folder does not have are deleted in the same commit:
# a stale shard index or tokenizer file left from an earlier push would win over the new ones.
REPLACED_PATTERNS = (
    "*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json", "*.gguf",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "*.model", "chat_template.jinja",
    "config.json", "generation_config.json", RECORD_FILE, PLAN_FILE,
)


def resolve_token(token: str | None = None) -> str:
    """The token to push with: ``token``, else ``HF_TOKEN``, else the stored ``hf auth login``.

    Raises:
        NotLoggedInError: no token anywhere (a :class:`HubError`).
    """
    if token:
        return token
    found = get_token()
    if not found:
        raise NotLoggedInError(
            "Not logged in to the Hugging Face Hub: no token was given, HF_TOKEN is not set and no "
            "login is stored. Run `hf auth login`, set HF_TOKEN, or pass token=... (a token with write access)."
        )
    return found


def push_folder(
    folder,
    repo_id: str,
    *,
    private: bool = True,
    token: str | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    delete_stale: bool = True,
):
    """Upload an hf_vocabswap output folder to a Hub model repo in one commit.

    Args:
        folder (`str` or `os.PathLike`): the folder written by ``save_pretrained``.
        repo_id (`str`): ``"owner/name"``, or ``"name"`` for a repo of the logged-in user.
        private (`bool`, defaults to True): create the repo private. An existing repo keeps
            its visibility (a warning is logged when it is public and ``private`` is True).
        token (`str`, *optional*): a token with write access; defaults to ``HF_TOKEN`` or the
            stored login. Never printed or logged.
        commit_message (`str`, *optional*): defaults to the record's headline
            (:func:`hf_vocabswap.record.commit_message`, as ``TransplantResult.push_to_hub`` uses).
        commit_description (`str`, *optional*): the commit's longer description.
        revision (`str`, *optional*): the branch to commit to (default ``main``).
        create_pr (`bool`, defaults to False): open a pull request instead of committing.
        delete_stale (`bool`, defaults to True): delete remote weight, tokenizer, config and
            record files the folder does not have, in the same commit, so an earlier push of
            another layout (shards, other tokenizer files) cannot shadow this one.

    Returns:
        `huggingface_hub.CommitInfo`: ``commit_url``, ``oid``, ``repo_url`` (and ``pr_url``).

    Raises:
        NotAnOutputFolderError: the folder is not an hf_vocabswap output or is incomplete
            (checked before any network access).
        HubError: not logged in, the token is rejected, the namespace or repo belongs to
            someone else (HTTP 401/403), the revision does not exist, or the Hub cannot be
            reached. ``status_code`` holds the HTTP status when there was one.

    Example:
        >>> from hf_vocabswap.hub import push_folder
        >>> info = push_folder("xlmr-uk", "me/xlmr-uk")           # private by default
        >>> print(info.commit_url)
    """
    folder = Path(folder)
    files = check_output_folder(folder)
    token = resolve_token(token)
    api = HfApi(token=token)
    try:
        return _push(api, folder, files, repo_id, private=private, commit_message=commit_message,
                     commit_description=commit_description, revision=revision, create_pr=create_pr,
                     delete_stale=delete_stale)
    except HubError as e:
        raise _scrubbed(e, token) from None


def _push(api, folder, files, repo_id, *, private, commit_message, commit_description, revision, create_pr, delete_stale):
    user = _whoami(api)
    if "/" not in repo_id:
        repo_id = f"{user}/{repo_id}"
    namespace = repo_id.split("/")[0]

    with _hub_errors(repo_id, f"create the repository {repo_id!r}", namespace=namespace, user=user):
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    with _hub_errors(repo_id, f"read the repository {repo_id!r}", namespace=namespace, user=user):
        info = api.repo_info(repo_id, revision=revision, repo_type="model")
    if private and not getattr(info, "private", True):
        logger.warning("%s already exists and is public: it stays public (change it in the repo settings).", repo_id)

    operations = []
    for rel in files:
        name = rel.as_posix()
        if name == CARD_FILE:
            text = (folder / rel).read_text(encoding="utf-8")
            operations.append(CommitOperationAdd(path_in_repo=name, path_or_fileobj=with_repo_id(text, repo_id).encode("utf-8")))
        else:
            operations.append(CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / rel)))
    if not (folder / CARD_FILE).is_file():
        logger.info("%s has no README.md: generating the model card from %s", folder, RECORD_FILE)
        operations.append(CommitOperationAdd(path_in_repo=CARD_FILE, path_or_fileobj=str(render_folder_card(folder, repo_id=repo_id)).encode("utf-8")))
    local = {op.path_in_repo for op in operations}
    stale = []
    if delete_stale:
        remote = [s.rfilename for s in (getattr(info, "siblings", None) or [])]
        stale = sorted(r for r in remote if r not in local and any(fnmatch.fnmatch(Path(r).name, p) for p in REPLACED_PATTERNS))
        operations += [CommitOperationDelete(path_in_repo=r) for r in stale]

    if commit_message is None:
        commit_message = default_commit_message(read_record(folder))
    logger.info("pushing %d files%s to %s (%s)", len(local), f", deleting {len(stale)} stale" if stale else "", repo_id,
                "private" if getattr(info, "private", private) else "public")
    with _hub_errors(repo_id, f"push to {repo_id!r}", namespace=namespace, user=user):
        commit = api.create_commit(
            repo_id,
            operations=operations,
            commit_message=commit_message,
            commit_description=commit_description,
            repo_type="model",
            revision=revision,
            create_pr=create_pr,
        )
    logger.info("pushed %s: %s", repo_id, getattr(commit, "commit_url", url))
    return commit


def _whoami(api) -> str:
    with _hub_errors(None, "check the token", namespace=None, user=None):
        who = api.whoami()
    return who["name"]


class _hub_errors:
    """Turns huggingface_hub and transport errors into HubError with a message that says what to do."""

    def __init__(self, repo_id, action, *, namespace, user):
        self.repo_id, self.action, self.namespace, self.user = repo_id, action, namespace, user

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or isinstance(exc, HubError):
            return False
        if isinstance(exc, OfflineModeIsEnabled):
            raise HubError("Cannot push: HF_HUB_OFFLINE is set. Unset it to reach the Hub.", repo_id=self.repo_id) from None
        if isinstance(exc, HfHubHTTPError):
            status = getattr(getattr(exc, "response", None), "status_code", None)
            server = getattr(exc, "server_message", None) or ""
            detail = f" (the Hub said: {server.strip()})" if server.strip() else ""
            if status == 401 and self.repo_id is None:
                message = ("The Hugging Face token was rejected (invalid or expired). Log in again with "
                           "`hf auth login`, set HF_TOKEN, or pass token=... (a token with write access).")
            elif status in (401, 403):
                whose = (f"{self.namespace!r} is not your account ({self.user!r}) or an organization where you can write"
                         if self.namespace and self.user and self.namespace != self.user
                         else "the token has no write access to it")
                message = (f"Not allowed to {self.action}: {whose}{detail}. Push to a repo of your own "
                           f"(e.g. '{self.user or 'your-name'}/{(self.repo_id or 'model').split('/')[-1]}'), or use a token with write access.")
            elif isinstance(exc, RevisionNotFoundError) or status == 404:
                message = f"Cannot {self.action}: the repository or revision was not found{detail}."
            else:
                message = f"Cannot {self.action}: the Hub answered HTTP {status}{detail}."
            raise HubError(message, repo_id=self.repo_id, status_code=status) from None
        if _is_transport_error(exc):
            raise HubError(f"Cannot {self.action}: the Hub at {constants.ENDPOINT} cannot be reached ({type(exc).__name__}). "
                           "Check the network connection or HF_ENDPOINT.", repo_id=self.repo_id) from None
        return False


def _is_transport_error(exc) -> bool:
    return any(cls.__name__ in ("TransportError", "ConnectError", "TimeoutException") for cls in type(exc).__mro__)


def _scrubbed(error: HubError, token: str) -> HubError:
    """The same error with the token removed from its message (belt and braces)."""
    text = str(error)
    if token and token in text:
        return HubError(text.replace(token, "<token>"), repo_id=error.repo_id, status_code=error.status_code)
    return error


__all__ = ["check_output_folder", "push_folder", "resolve_token"]
