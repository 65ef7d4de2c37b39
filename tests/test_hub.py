"""Pushing to the Hub, against the local Hub stand-in in tests/hub_server.py.

huggingface_hub reads HF_ENDPOINT when it is imported, and other test modules import it
first in the same pytest process, so everything that talks to the server runs in a child
Python process whose environment points at the server (see ``hub_env``). Folder checks and
token resolution need no network and run in-process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from transformers import AutoTokenizer

from hf_vocabswap import assets
from hf_vocabswap.errors import HubError, NotAnOutputFolderError, VocabSwapError
from hf_vocabswap.hub import check_output_folder, push_folder, resolve_token
from hf_vocabswap.transplant import transplant_tokenizer

from .hub_server import HubServer, hub_env

TOKEN = "hf_TESTtoken0123456789abcdefSECRET"
OTHER_TOKEN = "hf_OTHERtoken9876543210zyxwvuSECRET"
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def output_folder(splade_path, tmp_path_factory):
    src = AutoTokenizer.from_pretrained(splade_path)
    target = src.train_new_from_iterator(assets.ukrainian_texts("train", max_chars=60_000), 1000)
    result = transplant_tokenizer(str(splade_path), target, "fvt")
    return result.save_pretrained(tmp_path_factory.mktemp("hub") / "out")


def _run_child(code: str, env: dict, timeout: int = 300) -> tuple[dict, str]:
    """Run ``code`` in a fresh Python with DEBUG logging; return (its JSON result line, all output)."""
    prelude = "import json, logging, sys\nlogging.basicConfig(level=logging.DEBUG, stream=sys.stderr)\n"
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, output[-6000:]
    return json.loads(lines[-1][len("RESULT "):]), output


# ------------------------------------------------------------------ round trip


ROUND_TRIP = """
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer
from hf_vocabswap import assets
from hf_vocabswap.transplant import transplant_tokenizer

source = str(assets.splade_tiny_path())
texts = assets.ukrainian_texts("train", max_chars=60_000)
target = AutoTokenizer.from_pretrained(source).train_new_from_iterator(texts, 1000)
result = transplant_tokenizer(source, target, "fvt")
commit = result.push_to_hub("user/uk-model")
print("pushed", commit.commit_url)

model = AutoModelForMaskedLM.from_pretrained("user/uk-model").eval()
tokenizer = AutoTokenizer.from_pretrained("user/uk-model")
batch = tokenizer(assets.ukrainian_texts("heldout", max_chars=2_000)[:4], return_tensors="pt", padding=True, truncation=True)
with torch.no_grad():
    pulled = model(**batch).logits
    pushed = result.model.eval()(**batch).logits
print("RESULT " + json.dumps({
    "equal": bool(torch.equal(pulled, pushed)),
    "same_vocab": tokenizer.get_vocab() == result.tokenizer.get_vocab(),
    "same_ids": tokenizer(texts[:3])["input_ids"] == result.tokenizer(texts[:3])["input_ids"],
    "commit": commit.oid,
}))
"""


def test_push_then_load_with_stock_auto_classes_through_hf_endpoint(tmp_path):
    with HubServer(tokens={TOKEN: "user"}) as hub:
        out, output = _run_child(ROUND_TRIP, hub_env(hub, tmp_path, token=TOKEN))
        repo = hub.repos["user/uk-model"]

    assert out["equal"] and out["same_vocab"] and out["same_ids"]
    # Created private, and everything arrived in one commit after the repo's initial one.
    assert hub.create_payloads[0]["visibility"] == "private"
    assert repo.private
    assert len(repo.commits) == 2 and repo.sha == out["commit"]
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "vocabswap.json", "vocabswap_plan.safetensors"} <= set(repo.commits[-1]["files"])
    assert repo.files["model.safetensors"].lfs
    # The card's snippet names the repo, and its YAML parses.
    card = ModelCard(repo.files["README.md"].content.decode("utf-8"))
    assert card.data.library_name == "transformers"
    assert 'model_id = "user/uk-model"\n' in card.text
    # The token never shows, even with DEBUG logging of every request.
    assert "Authorization" in output or "HTTP Request" in output  # the requests were logged
    assert TOKEN not in output
    assert all(r.user == "user" for r in hub.requests if r.path.startswith("/api/models/user/uk-model/commit"))


# ------------------------------------------------------------------ errors and logins


PUSH = """
import os
from pathlib import Path
from huggingface_hub import constants
from hf_vocabswap.errors import HubError
from hf_vocabswap.hub import push_folder

folder = FOLDER
results = {}

def attempt(name, repo_id, env_token=None, token=None):
    if env_token is None:
        os.environ.pop("HF_TOKEN", None)
    else:
        os.environ["HF_TOKEN"] = env_token
    try:
        info = push_folder(folder, repo_id, token=token)
        results[name] = {"ok": True, "url": info.commit_url}
    except HubError as e:
        results[name] = {"ok": False, "error": str(e), "status": e.status_code, "repo_id": e.repo_id,
                         "is_oserror": isinstance(e, OSError)}

SCENARIOS
print("RESULT " + json.dumps(results))
"""


def _push(hub, output_folder, home, scenarios: str, token=None):
    """Run push attempts in one child process (``attempt(name, repo_id, env_token=, token=)`` lines)."""
    code = PUSH.replace("FOLDER", repr(str(output_folder))).replace("SCENARIOS", textwrap.dedent(scenarios))
    return _run_child(code, hub_env(hub, home, token=token))


def test_push_errors_say_what_to_do_and_never_show_the_token(output_folder, tmp_path):
    scenarios = f"""
    attempt("not_logged_in", "user/m")                     # no argument, no HF_TOKEN, nothing stored
    attempt("rejected", "user/m", env_token="hf_invalid_token_SECRET")
    attempt("taken", "other/taken", env_token={TOKEN!r})   # someone else's existing repo
    attempt("namespace", "other/new-model", token={TOKEN!r})  # someone else's namespace
    Path(constants.HF_TOKEN_PATH).parent.mkdir(parents=True, exist_ok=True)
    Path(constants.HF_TOKEN_PATH).write_text({TOKEN!r})    # what `hf auth login` stores
    attempt("stored_login", "mine")                        # a bare name goes to the user
    """
    with HubServer(tokens={TOKEN: "user", OTHER_TOKEN: "other"}) as hub:
        hub.add_repo("other/taken", "other", private=False, files={"config.json": b"{}"})
        res, output = _push(hub, output_folder, tmp_path, scenarios)

    nolog = res["not_logged_in"]
    assert not nolog["ok"] and "Not logged in" in nolog["error"] and "hf auth login" in nolog["error"]
    assert hub.requests[0].path == "/api/whoami-v2" and hub.requests[0].status == 401  # nothing sent before

    rejected = res["rejected"]
    assert not rejected["ok"] and rejected["status"] == 401 and "rejected" in rejected["error"]

    taken = res["taken"]
    assert not taken["ok"] and taken["status"] == 403 and taken["repo_id"] == "other/taken" and taken["is_oserror"]
    assert "'other' is not your account ('user')" in taken["error"]
    assert hub.repos["other/taken"].files.keys() == {".gitattributes", "config.json"}

    namespace = res["namespace"]
    assert not namespace["ok"] and namespace["status"] == 403 and "other/new-model" not in hub.repos

    assert res["stored_login"]["ok"], res["stored_login"]
    assert hub.repos["user/mine"].private and hub.repos["user/mine"].owner == "user"

    assert "HTTP Request" in output  # requests were logged at DEBUG ...
    for secret in (TOKEN, OTHER_TOKEN, "hf_invalid_token_SECRET"):  # ... without any token
        assert secret not in output


def test_second_push_replaces_stale_weight_files(output_folder, tmp_path):
    with HubServer(tokens={TOKEN: "user"}) as hub:
        hub.add_repo("user/m", "user", private=True, files={
            "model-00001-of-00002.safetensors": b"old", "model.safetensors.index.json": b"{}", "notes.md": b"keep me",
        })
        res, _ = _push(hub, output_folder, tmp_path, f'attempt("again", "user/m", env_token={TOKEN!r})')
        files = set(hub.repos["user/m"].files)
    assert res["again"]["ok"], res
    assert "model-00001-of-00002.safetensors" not in files and "model.safetensors.index.json" not in files
    assert {"notes.md", "model.safetensors", "README.md"} <= files
    assert len(hub.repos["user/m"].commits) == 2


# ------------------------------------------------------------------ folder checks (no network)


def test_folder_check_lists_the_files_to_upload(output_folder):
    files = {p.as_posix() for p in check_output_folder(output_folder)}
    assert {"README.md", "config.json", "model.safetensors", "vocabswap.json"} <= files


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda f: (f / "vocabswap.json").unlink(), "no vocabswap.json"),
        (lambda f: (f / "vocabswap.json").write_text("{not json"), "vocabswap.json is damaged"),
        (lambda f: (f / "model.safetensors").unlink(), r"model weights"),
        (lambda f: (f / "tokenizer.json").unlink() or (f / "tokenizer_config.json").unlink(), "tokenizer.json or tokenizer_config.json"),
        (lambda f: (f / "config.json").unlink(), "missing config.json"),
        (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:5000]), "truncated or damaged"),
        (lambda f: (f / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "model-00002-of-00002.safetensors"}})),
         "model-00002-of-00002.safetensors"),
    ],
)
def test_incomplete_or_foreign_folders_are_refused_before_any_network(output_folder, tmp_path, damage, match, monkeypatch):
    folder = tmp_path / "copy"
    shutil.copytree(output_folder, folder)
    damage(folder)
    monkeypatch.setattr("hf_vocabswap.hub.resolve_token", lambda token=None: pytest.fail("the folder check must come first"))
    with pytest.raises(NotAnOutputFolderError, match=match) as info:
        push_folder(folder, "user/m", token=TOKEN)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, VocabSwapError)


def test_missing_folder(tmp_path):
    with pytest.raises(NotAnOutputFolderError, match="does not exist"):
        check_output_folder(tmp_path / "nope")


def test_token_argument_wins_and_missing_login_is_a_hub_error(monkeypatch):
    assert resolve_token("hf_given") == "hf_given"
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    with pytest.raises(HubError, match="Not logged in") as info:
        resolve_token(None)
    assert isinstance(info.value, OSError)


def test_a_folder_without_card_gets_one_in_the_same_commit(output_folder, tmp_path):
    folder = tmp_path / "nocard"
    shutil.copytree(output_folder, folder)
    (folder / "README.md").unlink()
    with HubServer(tokens={TOKEN: "user"}) as hub:
        res, _ = _push(hub, folder, tmp_path, f'attempt("nocard", "user/m", env_token={TOKEN!r})')
        repo = hub.repos["user/m"]
    assert res["nocard"]["ok"], res
    assert len(repo.commits) == 2 and "README.md" in repo.commits[-1]["files"]
    card = ModelCard(repo.files["README.md"].content.decode("utf-8"))
    assert "vocabswap-fvt" in card.data.tags and 'model_id = "user/m"\n' in card.text
    assert not (folder / "README.md").exists()  # the user's folder is left as it was
