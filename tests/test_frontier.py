"""The quality/efficiency frontier: every candidate measured the same way, the results written once."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from hf_vocabswap import errors
from hf_vocabswap.corpus import first_chars
from hf_vocabswap.evaluate import bits_per_character
from hf_vocabswap.frontier import FRONTIER_FILE, FrontierConfig, candidates, choice_lines, frontier, markdown_table
from hf_vocabswap.surgery import find_embeddings

CONFIG = FrontierConfig(add_tokens=(60, 240), vocab_sizes=(700,), method="fvt", heldout_chars=4000, progress=False)


@pytest.fixture(scope="module")
def texts(ukrainian_train, ukrainian_heldout):
    return first_chars(ukrainian_train, 40_000), first_chars(ukrainian_heldout, 6000)


@pytest.fixture(scope="module")
def measured(splade_path, texts, tmp_path_factory):
    train, held = texts
    out = tmp_path_factory.mktemp("frontier") / "uk"
    rows = frontier(str(splade_path), train, held, output_dir=out, config=CONFIG)
    return rows, out


def test_candidates_follow_the_config():
    names = [c.name for c in candidates(CONFIG)]
    assert names == ["parent", "trim", "trim+60", "trim+240", "replace-700"]
    assert [c.name for c in candidates(FrontierConfig(add_tokens=(5,), vocab_sizes=(), trim=False, include_trim=False))] == ["parent", "source+5"]


def test_every_row_is_measured_on_the_same_heldout_text(measured, splade_path, texts):
    rows, _ = measured
    by = {r["name"]: r for r in rows}
    assert [r["kind"] for r in rows] == ["parent", "trim", "expand", "expand", "replace"]
    model = AutoModelForMaskedLM.from_pretrained(splade_path)
    tok = AutoTokenizer.from_pretrained(splade_path)
    parent = by["parent"]
    assert parent["vocab_size"] == len(tok) and parent["parameters"] == sum(p.numel() for p in model.parameters())
    handles = find_embeddings(model)
    assert parent["embedding_parameters"] == handles.input_weight.numel() + sum(b.numel() for b in handles.biases.values())
    held = first_chars(texts[1], CONFIG.heldout_chars)
    expected = bits_per_character(model, tok, held, progress=False)["bits_per_character"]
    assert parent["zero_shot_bpc"] == pytest.approx(expected, abs=1e-4), "the parent line is the source model itself"


def test_expansion_buys_compression_and_trim_saves_parameters(measured):
    rows, _ = measured
    by = {r["name"]: r for r in rows}
    assert by["trim"]["parameters"] < by["parent"]["parameters"]
    assert by["trim"]["vocab_size"] < by["trim+60"]["vocab_size"] < by["trim+240"]["vocab_size"]
    assert by["trim+240"]["vocab_size"] - by["trim"]["vocab_size"] <= 240
    assert by["trim+240"]["tokens_per_word"] < by["trim+60"]["tokens_per_word"] < by["trim"]["tokens_per_word"]
    assert by["replace-700"]["vocab_size"] == 700
    # Trim keeps the parent's logits on kept tokens; the softmax over fewer tokens only sharpens.
    assert by["trim"]["zero_shot_bpc"] <= by["parent"]["zero_shot_bpc"] + 1e-3
    for r in rows:
        assert r["method"] == (None if r["kind"] == "parent" else "trim" if r["kind"] == "trim" else "fvt")


def test_the_folder_holds_json_table_plot_and_tokenizers(measured):
    rows, out = measured
    record = json.loads((out / FRONTIER_FILE).read_text())
    assert record["rows"] == rows
    assert record["config"]["add_tokens"] == [60, 240] and record["heldout_characters"] > 0
    choice = choice_lines(rows)
    assert choice and all(line.startswith("- ") for line in choice)
    assert (out / "frontier.md").read_text() == markdown_table(rows) + "\nWhich point to choose:\n\n" + "\n".join(choice) + "\n"
    assert (out / "frontier.png").stat().st_size > 1000
    for r in rows:
        tok = AutoTokenizer.from_pretrained(out / "tokenizers" / r["name"])
        assert len(tok) == r["vocab_size"]


def test_bad_settings_fail_before_any_work(splade_path, texts, tmp_path):
    train, held = texts
    for bad in ({"add_tokens": (0,)}, {"add_tokens": ("100",)}, {"heldout_chars": 0}, {"trim": "yes"}):
        with pytest.raises(errors.MethodOptionError):
            FrontierConfig(**bad)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(errors.OutputExistsError):
        frontier(str(splade_path), train, held, output_dir=tmp_path / "taken", config=CONFIG)
    with pytest.raises(errors.CorpusError):
        frontier(str(splade_path), None, held, config=CONFIG)
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["notes.txt"]


def test_expansions_are_learned_once_for_the_largest_k(splade_path, texts, monkeypatch):
    import hf_vocabswap.frontier as module

    calls = []
    real = module.learn_expansion

    def counting(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "learn_expansion", counting)
    train, held = texts
    torch.manual_seed(0)
    rows = frontier(str(splade_path), train, held, config=FrontierConfig(add_tokens=(30, 90), vocab_sizes=(), include_trim=False,
                                                                          method="fvt", heldout_chars=2000, progress=False))
    assert calls == [90] and [r["name"] for r in rows] == ["parent", "trim+30", "trim+90"]


def _row(name, kind, tpw, params, bpc, **extra):
    return {"name": name, "kind": kind, "tokens_per_word": tpw, "parameters": params, "zero_shot_bpc": bpc, **extra}


def test_choose_picks_per_need_from_the_measured_rows():
    from hf_vocabswap.frontier import choice_lines, choose

    rows = [_row("parent", "parent", 2.2, 270, 1.83), _row("trim", "trim", 2.2, 110, 1.83),
            _row("trim+4000", "expand", 1.9, 113, 1.88), _row("trim+16000", "expand", 1.7, 123, 1.92),
            _row("replace-32000", "replace", 1.6, 120, 2.5)]
    picks = dict(choose(rows))
    assert picks["fewest tokens per word within 0.10 bpc of the parent"]["name"] == "trim+16000"
    assert picks["fewest parameters within 0.10 bpc of the parent"]["name"] == "trim"
    assert picks["fewest tokens per word at any cost"]["name"] == "replace-32000"
    assert dict(choose(rows, tolerance=0.06))["fewest tokens per word within 0.06 bpc of the parent"]["name"] == "trim+4000"
    lines = choice_lines(rows)
    assert any("trim+16000" in line and "-22.7% tokens per word" in line and "+0.090 bpc zero-shot" in line for line in lines)
    # Trained rows are judged after training: the zero-shot loser can be the pick.
    trained = [dict(r, best_bpc=b) for r, b in zip(rows, (1.71, 1.71, 1.74, 1.77, 1.75))]
    assert dict(choose(trained, tolerance=0.05))["fewest tokens per word within 0.05 bpc of the parent"]["name"] == "replace-32000"
    # Nothing but the parent within the tolerance: only the at-any-cost pick remains.
    assert [need for need, _ in choose([rows[0], *rows[2:]], tolerance=0.01)] == ["fewest tokens per word at any cost"]


def test_cli_frontier_writes_the_folder_and_says_what_to_choose(splade_path, texts, tmp_path, capsys):
    from hf_vocabswap.cli import main

    train, held = texts
    (tmp_path / "train.txt").write_text("\n".join(train), encoding="utf-8")
    (tmp_path / "held.txt").write_text("\n".join(held), encoding="utf-8")
    out = tmp_path / "uk"
    argv = ["-q", "frontier", str(splade_path), "--corpus", str(tmp_path / "train.txt"), "--heldout", str(tmp_path / "held.txt"),
            "--out", str(out), "--add-tokens", "50", "--vocab-sizes", "--no-include-trim", "--method", "fvt",
            "--heldout-chars", "2000", "--max-chars", "20000"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    saved = json.loads((out / FRONTIER_FILE).read_text(encoding="utf-8"))
    assert [r["name"] for r in saved["rows"]] == ["parent", "trim+50"]
    assert saved["config"]["max_chars"] == 20000 and saved["config"]["heldout_chars"] == 2000
    assert "| trim+50 |" in printed and "Which point to choose" in printed and "fewest tokens per word at any cost" in printed
    assert (out / "tokenizers" / "trim+50" / "tokenizer.json").is_file()
    assert main(argv) == 2  # the folder is taken: --overwrite replaces it
    assert main(argv + ["--overwrite"]) == 0
    assert main(argv[:-4] + ["--add-tokens", "0"]) == 2  # refused by FrontierConfig, nothing written
