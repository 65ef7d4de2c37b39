"""``hf-vocabswap demo --push``: the Space's files, the wheel they install, and the deployed app.

The end-to-end test pushes an adapted model and the Space to the local Hub stand-in
(tests/hub_server.py), installs the Space from its own files into a fresh virtual environment
(hf_vocabswap only from the uploaded wheel; torch, transformers and gradio borrowed from this
environment, as ``--system-site-packages`` would, so nothing is downloaded), starts its app and
asks it for a tokenization through ``gradio_client``.
"""

from __future__ import annotations

import hashlib
import base64
import json
import os
import re
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml

from hf_vocabswap import __version__
from hf_vocabswap.cli import main
from hf_vocabswap.space import build_wheel, space_app_dir, space_files, wheel_name

from .hub_server import HubServer, hub_env
from .test_hub import _run_child
from .test_space import SPACE, UK_TEXT, build_adapted_folder, free_port

TOKEN = "hf_SPACEtoken0123456789abcdefSECRET"


# ------------------------------------------------------------------ the wheel and the files (no network)


def test_wheel_holds_the_running_package_and_its_metadata(tmp_path):
    wheel = build_wheel(tmp_path / "a")
    assert wheel.name == wheel_name() == f"hf_vocabswap-{__version__}-py3-none-any.whl"
    assert build_wheel(tmp_path / "b").read_bytes() == wheel.read_bytes()  # same files, same bytes
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        package = Path(__file__).resolve().parent.parent / "hf_vocabswap"
        assert zf.read("hf_vocabswap/card.py") == (package / "card.py").read_bytes()  # what runs is what is packed
        assert {"hf_vocabswap/__init__.py", "hf_vocabswap/model_cards/default.md", "hf_vocabswap/space_app/app.py"} <= names
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        dist = f"hf_vocabswap-{__version__}.dist-info"
        metadata = zf.read(f"{dist}/METADATA").decode()
        assert f"Version: {__version__}" in metadata and "Requires-Dist: langcodes" in metadata
        assert 'Requires-Dist: gradio>=5; extra == "demo"' in metadata
        assert "hf-vocabswap = hf_vocabswap.cli:main" in zf.read(f"{dist}/entry_points.txt").decode()
        for line in zf.read(f"{dist}/RECORD").decode().splitlines():
            name, digest, size = line.split(",")
            if digest:
                data = zf.read(name)
                assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert int(size) == len(data)


def test_space_files_name_the_wheel_and_the_models(tmp_path):
    wheel = build_wheel(tmp_path)
    files = space_files("me/uk-demo", adapted="me/uk-model", wheel=wheel, endpoint="https://hub.example")
    assert set(files) == {"app.py", "README.md", "requirements.txt", "vocabswap_demo.json", wheel.name}
    assert files["app.py"] == (space_app_dir() / "app.py").read_bytes() == (SPACE / "app.py").read_bytes()
    meta = yaml.safe_load(files["README.md"].decode().split("---\n")[1])
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and meta["models"] == ["me/uk-model"]
    reqs = [line for line in files["requirements.txt"].decode().splitlines() if line and not line.startswith("#")]
    assert f"hf-vocabswap @ https://hub.example/spaces/me/uk-demo/resolve/main/{wheel.name}" in reqs
    assert json.loads(files["vocabswap_demo.json"]) == {"adapted": "me/uk-model", "source": None}
    pypi = space_files("me/uk-demo", adapted=str(tmp_path), source="me/src")  # a local folder is no Hub model to list
    assert f"hf-vocabswap=={__version__}" in pypi["requirements.txt"].decode() and wheel.name not in pypi
    assert yaml.safe_load(pypi["README.md"].decode().split("---\n")[1])["models"] == ["me/src"]


def test_demo_push_without_a_token_is_an_error_before_anything_is_built(monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    monkeypatch.setattr("hf_vocabswap.hub.get_token", lambda: None)
    monkeypatch.setattr("hf_vocabswap.space.build_wheel", lambda *a, **k: pytest.fail("nothing is built without a token"))
    assert main(["-q", "demo", "--push", "me/uk-demo"]) == 2
    err = capsys.readouterr().err
    assert "Not logged in to the Hugging Face Hub" in err and "hf auth login" in err


def test_demo_passes_port_host_and_models_to_the_app(monkeypatch, tmp_path):
    import gradio as gr

    adapted = build_adapted_folder(tmp_path / "models")
    launched = {}

    def fake_launch(self, **kwargs):
        launched.update(kwargs)

    monkeypatch.setattr(gr.Blocks, "launch", fake_launch)
    monkeypatch.delenv("VOCABSWAP_ADAPTED", raising=False)
    monkeypatch.delenv("VOCABSWAP_SOURCE", raising=False)
    assert main(["-q", "demo", "--adapted", str(adapted), "--port", "7999", "--host", "0.0.0.0"]) == 0
    assert launched == {"server_name": "0.0.0.0", "server_port": 7999}
    assert os.environ["VOCABSWAP_ADAPTED"] == str(adapted)


# ------------------------------------------------------------------ deployed from its own files


PUSH = """
from hf_vocabswap.cli import main
from hf_vocabswap.hub import push_folder

push_folder(FOLDER, "user/uk-model", private=False)
code = main(["-q", "demo", "--push", "user/uk-demo", "--adapted", "user/uk-model"])
again = main(["-q", "demo", "--push", "user/uk-demo", "--adapted", "user/uk-model"])
print("RESULT " + json.dumps({"code": code, "again": again}))
"""


def _borrowed_site_packages(tmp_path: Path) -> Path:
    """This environment's packages without hf_vocabswap, as links (what --system-site-packages would lend)."""
    overlay = tmp_path / "borrowed"
    overlay.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = entry.name.lower().replace("-", "_")
        if name.startswith(("hf_vocabswap", "__editable__", "_hf_vocabswap", "__pycache__")) or name.endswith(".pth"):
            continue
        (overlay / entry.name).symlink_to(entry)
    return overlay


def _fresh_venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    # No pip of its own: this environment's pip (borrowed with the rest) installs into it.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "borrowed.pth").write_text(str(_borrowed_site_packages(tmp_path)) + "\n", encoding="utf-8")
    return venv


def _clean_env(**extra) -> dict[str, str]:
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "VOCABSWAP_ADAPTED", "VOCABSWAP_SOURCE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the Space's app exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - the app on 127.0.0.1
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(1)
    pytest.fail(f"the Space's app did not answer within {timeout} s:\n{log.read_text()[-4000:]}")


@pytest.mark.slow
def test_pushed_space_installs_from_its_own_files_and_answers(tmp_path):
    from gradio_client import Client
    from transformers import AutoTokenizer

    folder = build_adapted_folder(tmp_path / "models")
    with HubServer(tokens={TOKEN: "user"}) as hub:
        out, _ = _run_child(PUSH.replace("FOLDER", repr(str(folder))), hub_env(hub, tmp_path, token=TOKEN))
        assert out == {"code": 0, "again": 0}
        repo = hub.repos["spaces/user/uk-demo"]
        assert repo.sdk == "gradio" and not repo.private and len(repo.commits) == 3  # created, then one commit per push
        assert set(repo.commits[1]["files"]) >= {"app.py", "README.md", "requirements.txt", "vocabswap_demo.json", wheel_name()}
        space = tmp_path / "space"
        for path, stored in repo.files.items():
            (space / path).parent.mkdir(parents=True, exist_ok=True)
            (space / path).write_bytes(stored.content)
        requirements = (space / "requirements.txt").read_text()
        assert f"hf-vocabswap @ {hub.url}/spaces/user/uk-demo/resolve/main/{wheel_name()}" in requirements

        venv = _fresh_venv(tmp_path)
        python = str(venv / "bin" / "python")
        env = _clean_env(HF_ENDPOINT=hub.url, HF_HOME=tmp_path / "space_hf_home", HF_HUB_DISABLE_XET=1,
                         GRADIO_ANALYTICS_ENABLED="False", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        install = subprocess.run([python, "-m", "pip", "install", "--no-index", "--disable-pip-version-check", "-r", "requirements.txt"],
                                 cwd=space, env=env, capture_output=True, text=True, timeout=600)
        assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
        where = subprocess.run([python, "-c", "import hf_vocabswap; print(hf_vocabswap.__file__, hf_vocabswap.__version__)"],
                               cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.split()
        assert where[0].startswith(str(venv)) and where[1] == __version__  # installed from the Space's wheel

        port = free_port()
        log = tmp_path / "app.log"
        with open(log, "w") as log_file:
            proc = subprocess.Popen([python, "app.py", "--host", "127.0.0.1", "--port", str(port)], cwd=space, env=env,
                                    stdout=log_file, stderr=subprocess.STDOUT)
        try:
            _wait_for(f"http://127.0.0.1:{port}/", proc, log)
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            source = json.loads((folder / "vocabswap.json").read_text())["provenance"]["source"]
            _, adapted_html, _ = client.predict(UK_TEXT, source, "user/uk-model", False, api_name="/tokenize")
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    ids = AutoTokenizer.from_pretrained(folder)(UK_TEXT, add_special_tokens=False)["input_ids"]
    assert [int(i) for i in re.findall(r'data-id="(\d+)"', adapted_html)] == list(ids)
    assert any(r.path == f"/spaces/user/uk-demo/resolve/main/{wheel_name()}" and r.status == 200 for r in hub.requests)
    assert any(r.path.startswith("/user/uk-model/resolve/") for r in hub.requests)  # the app loaded the model from the Hub
