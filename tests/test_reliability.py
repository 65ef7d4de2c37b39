"""Every bad input gets one clear line, nothing is lost, nothing is left behind (issue: reliability).

The CLI cases come from tests/bad_inputs.py (the README's table); processes are real where the
behaviour needs them (two writers of one folder, signals).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from hf_vocabswap import assets, errors, get_method, transplant_tokenizer
from hf_vocabswap.cli import main
from hf_vocabswap.output import CLAIM_FILE

from . import bad_inputs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def target_dir(tmp_path_factory, splade_path):
    src = AutoTokenizer.from_pretrained(splade_path)
    folder = tmp_path_factory.mktemp("tok") / "uk"
    src.train_new_from_iterator(assets.ukrainian_texts("train", max_chars=60_000), 1000).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    return assets.write_texts(assets.ukrainian_texts("train", max_chars=40_000), tmp_path_factory.mktemp("corpus") / "uk.txt")


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("case", bad_inputs.CASES, ids=[c.name for c in bad_inputs.CASES])
def test_bad_cli_input_gets_one_error_line_and_writes_nothing(case, splade_path, target_dir, corpus_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("my own work")
    before = _listing(tmp_path)
    values = {"model": str(splade_path), "target": str(target_dir), "tmp": str(tmp_path), "corpus": str(corpus_file)}
    corpus_before = corpus_file.read_bytes()
    code = main(["-q", *[a.format(**values) for a in case.argv]])
    err = capsys.readouterr().err
    assert code == case.exit_code, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and case.shown in last, last
    assert "Traceback" not in err
    assert _listing(tmp_path) == before, "nothing is written, nothing is deleted"
    assert corpus_file.read_bytes() == corpus_before


def test_readme_shows_every_bad_input():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [row for row in bad_inputs.markdown_rows() if row not in readme]
    assert not missing, "README's bad-input table is out of date (python -m tests.bad_inputs prints it): " + "\n".join(missing)


@pytest.mark.parametrize(
    "method, options, named",
    [
        ("focus", {"faithful": "false"}, "faithful"),
        ("hybrid", {"neighbors": "abc"}, "neighbors"),
        ("hybrid", {"neighbors": 2.5}, "neighbors"),
        ("hybrid", {"global_weight": "0.5"}, "global_weight"),
        ("focus", {"epochs": "3"}, "epochs"),
    ],
)
def test_option_types_are_checked_before_any_work(method, options, named, splade_path, target_dir, monkeypatch):
    loads = []
    monkeypatch.setattr("hf_vocabswap.transplant.open_source", lambda *a, **k: loads.append(1))
    with pytest.raises(errors.MethodOptionError, match=rf"{named} must be") as info:
        transplant_tokenizer(str(splade_path), str(target_dir), method, corpus=["текст"] * 10, **options)
    assert repr(options[named]) in str(info.value)
    assert not loads, "the model is not loaded before the options are checked"
    with pytest.raises(errors.MethodOptionError, match=named):  # a config built by hand, too
        get_method(method)(get_method(method).config_class(**options))


def test_explain_refuses_a_string_that_is_not_a_token_and_suggests_spellings(splade_path, target_dir):
    result = transplant_tokenizer(str(splade_path), str(target_dir), "fvt")
    vocab = result.tokenizer.get_vocab()
    word = next(t for t in vocab if len(t) > 3 and not t.startswith("[") and not t.startswith("##"))
    with pytest.raises(errors.TokenizerError, match="not a token of the target vocabulary") as info:
        result.explain("▁" + word)  # SentencePiece spelling on a WordPiece target (the README's example)
    assert repr(word) in str(info.value), "the nearest spelling is suggested"
    assert result.explain(word).startswith(word)


def test_wrong_source_tokenizer_is_refused_unless_allowed(splade_path, target_dir):
    model = AutoModelForMaskedLM.from_pretrained(splade_path)
    src = AutoTokenizer.from_pretrained(splade_path)
    other = AutoTokenizer.from_pretrained(splade_path)
    other.add_special_tokens({"pad_token": "[UNK]"})  # same size, pad id no longer the config's
    assert len(other) == len(src)
    with pytest.raises(errors.MismatchError, match="pad_token_id=0"):
        transplant_tokenizer(model, str(target_dir), "fvt", source_tokenizer=other)
    result = transplant_tokenizer(model, str(target_dir), "fvt", source_tokenizer=other, allow_mismatch=True)
    assert result.report.counts["copied"] > 0


def test_corpus_the_target_cannot_read_warns_with_the_share(splade_path, target_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="hf_vocabswap.transplant"):
        transplant_tokenizer(str(splade_path), str(target_dir), "fvt", corpus=["🙂🙃 😀 🚀🚀"] * 40 + ["Добрий день"] * 5, calibrate=False)
    warning = [r.getMessage() for r in caplog.records if "unknown token" in r.getMessage()]
    assert warning and "%" in warning[0]
    share = float(warning[0].split("%")[0])
    assert share > 20


def test_output_folder_gets_the_users_permissions(splade_path, target_dir, tmp_path):
    result = transplant_tokenizer(str(splade_path), str(target_dir), "overlap")
    out = result.save_pretrained(tmp_path / "out")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask


def test_full_disk_leaves_nothing(splade_path, target_dir, tmp_path, monkeypatch):
    result = transplant_tokenizer(str(splade_path), str(target_dir), "overlap")

    def full(folder):
        (Path(folder) / "partial.bin").write_bytes(b"x" * 10)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(result, "_write_model", full)
    with pytest.raises(errors.OutputError, match="No space left on device"):
        result.save_pretrained(tmp_path / "out")
    assert _listing(tmp_path) == []


def test_parent_that_is_a_file_is_an_error(splade_path, target_dir, tmp_path):
    (tmp_path / "file").write_text("x")
    result = transplant_tokenizer(str(splade_path), str(target_dir), "overlap")
    with pytest.raises(errors.OutputError, match="Cannot create the output folder"):
        result.save_pretrained(tmp_path / "file" / "out")
    assert _listing(tmp_path) == ["file"]


def _cli(*args, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.Popen([sys.executable, "-m", "hf_vocabswap.cli", "-q", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _slow_transplant(splade_path, target_dir, corpus_file, out, cache) -> subprocess.Popen:
    """A CLI transplant that works for a while after claiming ``out``: FOCUS training fastText for
    many epochs into a cache of its own (an earlier run's cached model would make it quick)."""
    return _cli("transplant", str(splade_path), str(target_dir), "--method", "focus", "--corpus", str(corpus_file),
                "--epochs", "400", "--cache-dir", str(cache), "--out", str(out))


@pytest.mark.slow
def test_two_runs_into_one_folder_do_not_replace_each_other(splade_path, target_dir, corpus_file, tmp_path, tmp_path_factory):
    out = tmp_path / "out"
    first = _slow_transplant(splade_path, target_dir, corpus_file, out, tmp_path_factory.mktemp("ft"))
    _wait_for(out / CLAIM_FILE, first)
    # Both start while the first works: with --overwrite too, a folder being written is not taken.
    others = [_cli("transplant", str(splade_path), str(target_dir), "--method", "overlap", "--out", str(out), *extra)
              for extra in ((), ("--overwrite",))]
    for second in others:
        _, err = second.communicate(timeout=300)
        assert second.returncode == 2 and "another run" in err and "is writing it" in err, err
    assert first.poll() is None, "the first run was still working when the others were refused"
    assert first.wait(timeout=900) == 0, first.communicate()
    assert json.loads((out / "vocabswap.json").read_text())["method"] == "focus"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_work_leaves_nothing_behind(sig, splade_path, target_dir, corpus_file, tmp_path, tmp_path_factory):
    out = tmp_path / "out"
    proc = _slow_transplant(splade_path, target_dir, corpus_file, out, tmp_path_factory.mktemp("ft"))
    _wait_for(out / CLAIM_FILE, proc)
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert list(tmp_path.iterdir()) == [], "the claimed folder and any temporary folder are removed"


def test_an_interrupt_inside_exec_still_exits_130(tmp_path):
    """An interrupt that lands in code run by ``exec`` of a string (dataclasses do that during an
    import) made ``python -m hf_vocabswap.cli`` die by SIGINT (-2) after printing that it was
    interrupted, because CPython remembered it as unhandled; the exit status must stay 130."""
    (tmp_path / "interrupted_cli.py").write_text(
        "import sys\n"
        "from hf_vocabswap import cli\n"
        "cli.cmd_methods = lambda args, table: exec('raise KeyboardInterrupt')\n"
        "sys.exit(cli.main(['methods']))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", "interrupted_cli"], env=env, capture_output=True, text=True, timeout=120)
    assert "interrupted" in done.stderr, done.stderr
    assert done.returncode == 130, done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_save_leaves_nothing_behind(sig, tmp_path):
    script = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from hf_vocabswap import assets, transplant_tokenizer
from transformers import AutoTokenizer
src = str(assets.splade_tiny_path())
result = transplant_tokenizer(src, AutoTokenizer.from_pretrained(src), "overlap")
def slow(folder):
    (folder / "partial.bin").write_bytes(b"x")
    print("writing", flush=True)
    while True:
        time.sleep(0.05)
result._write_model = slow
result.save_pretrained({str(tmp_path / 'out')!r})
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert list(tmp_path.iterdir()) == [], "no output, no hidden temporary folder"
