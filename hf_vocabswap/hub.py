"""Pushing an adapted model folder to the Hugging Face Hub in one commit."""

from __future__ import annotations

from pathlib import Path


def push_folder(folder, repo_id: str, *, private: bool = True, token: str | None = None, commit_message: str = "Upload with hf_vocabswap", revision: str | None = None):
    """Create the repo (private by default) and upload every file of ``folder`` in one commit."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    return api.upload_folder(folder_path=str(Path(folder)), repo_id=repo_id, repo_type="model", commit_message=commit_message, revision=revision)
