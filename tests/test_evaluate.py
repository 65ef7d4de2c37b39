"""Tokenizer statistics and bits per character: hand-checkable toys and the real splade-tiny."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    BertForMaskedLM,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

from hf_vocabswap import assets
from hf_vocabswap.errors import ModelError
from hf_vocabswap.evaluate import bits_per_character, evaluate_model, format_results, tokenizer_stats

hf_logging.disable_progress_bar()

WORDS = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
SPECIALS = ["<bos>", "<pad>", "<unk>", "<mask>", "</s>", "<extra>"]  # 6 specials + 10 words = 16


def toy_tokenizer(order: list[str] | None = None, template: str | None = "<bos> $A") -> PreTrainedTokenizerFast:
    """Whole-word tokenizer over SPECIALS + WORDS; ``order`` permutes the ids."""
    tokens = order or SPECIALS + WORDS
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if template is not None:
        names = [t for t in ("<bos>", "</s>") if t in template]
        tok.post_processor = processors.TemplateProcessing(single=template, special_tokens=[(t, vocab[t]) for t in names])
    kwargs = dict(pad_token="<pad>", unk_token="<unk>", mask_token="<mask>", eos_token="</s>")
    if template is not None and "<bos>" in template:
        kwargs["bos_token"] = "<bos>"
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


def tiny_gpt2(vocab_size: int = 16, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab_size, n_positions=64, n_embd=16, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=4, pad_token_id=1)
    return GPT2LMHeadModel(config).eval()


def zero_head(model) -> None:
    with torch.no_grad():
        head = model.get_output_embeddings()
        head.weight.zero_()
        if getattr(head, "bias", None) is not None:
            head.bias.zero_()


# --------------------------------------------------------------------------- stats


def test_tokenizer_stats_hand_made(splade_path):
    tok = AutoTokenizer.from_pretrained(splade_path)
    assert tok.tokenize("tokenization works") == ["token", "##ization", "works"]
    stats = tokenizer_stats(tok, ["tokenization works"])
    assert stats["num_words"] == 2 and stats["num_tokens"] == 3  # [CLS]/[SEP] not counted
    assert stats["num_characters"] == 18
    assert stats["tokens_per_word"] == pytest.approx(1.5)
    assert stats["continued_words"] == pytest.approx(0.5)
    assert stats["characters_per_token"] == pytest.approx(6.0)
    assert stats["unknown_rate"] == 0.0

    toy = toy_tokenizer()
    stats = tokenizer_stats(toy, ["a b zzz", "  c  "])
    assert stats["num_words"] == 4 and stats["num_tokens"] == 4  # bos not counted
    assert stats["num_unknown"] == 1 and stats["unknown_rate"] == pytest.approx(0.25)
    assert stats["continued_words"] == 0.0
    assert stats["num_characters"] == 7 + 5


# --------------------------------------------------------------------------- bpc toys


@pytest.mark.parametrize("max_length", [512, 3])
def test_uniform_causal_model_gives_hand_computed_bpc(max_length):
    tok = toy_tokenizer()
    model = tiny_gpt2()
    zero_head(model)  # logits all zero: uniform over the 16 rows
    texts = ["a b c a", "d e"]  # 4 + 2 tokens, 7 + 3 characters
    result = bits_per_character(model, tok, texts, max_length=max_length, batch_size=2, progress=False)
    assert result["num_tokens"] == 6 and result["num_unpredicted"] == 0
    assert result["num_characters"] == 10
    assert result["bits_per_character"] == pytest.approx(6 * math.log2(16) / 10, rel=1e-6)
    assert result["bits_per_token"] == pytest.approx(4.0, rel=1e-6)
    # windows of 3 = <bos> + 2 tokens: [a b] [c a] [d e]
    assert result["num_sequences"] == (2 if max_length == 512 else 3)


def test_causal_windows_start_with_bos():
    tok = toy_tokenizer()
    model = tiny_gpt2()
    seen = []
    model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs["input_ids"].clone()), with_kwargs=True)
    bits_per_character(model, tok, ["a b c a d", "e"], max_length=3, batch_size=8, progress=False)
    ids = torch.cat([s for s in seen])
    assert (ids[:, 0] == tok.convert_tokens_to_ids("<bos>")).all()


def test_causal_without_prefix_token_counts_unpredicted():
    tok = toy_tokenizer(template=None)
    tok.eos_token = None
    assert tok.bos_token_id is None and tok.eos_token_id is None
    model = tiny_gpt2()
    zero_head(model)
    result = bits_per_character(model, tok, ["a b c", "d"], progress=False)
    assert result["num_unpredicted"] == 2 and result["num_tokens"] == 2
    assert result["bits_per_character"] == pytest.approx(2 * 4 / 6, rel=1e-6)


def test_uniform_masked_model_predicts_every_token_once():
    tok = toy_tokenizer(template="<bos> $A </s>")
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=64, pad_token_id=1)).eval()
    zero_head(model)
    texts = ["a b c d e f g h i j a b", "c"]  # 12 + 1 tokens, 23 + 1 characters
    result = bits_per_character(model, tok, texts, batch_size=4, progress=False)
    assert result["model_kind"] == "masked"
    assert result["num_tokens"] == 13
    assert result["num_sequences"] == 7 + 1  # 7 groups for 15%, one for the 1-token text
    assert result["bits_per_character"] == pytest.approx(13 * 4 / 24, rel=1e-6)


def test_uniform_seq2seq_model_gives_hand_computed_bpc():
    tok = toy_tokenizer(template="$A </s>")
    torch.manual_seed(0)
    config = BartConfig(vocab_size=16, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                        encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=1, bos_token_id=0, eos_token_id=4, decoder_start_token_id=4)
    model = BartForConditionalGeneration(config).eval()
    zero_head(model)
    result = bits_per_character(model, tok, ["a b c", "d e"], progress=False)
    assert result["model_kind"] == "seq2seq" and result["num_tokens"] == 5
    assert result["bits_per_character"] == pytest.approx(5 * 4 / 8, rel=1e-6)


def test_base_model_is_refused():
    tok = toy_tokenizer()
    model = BertModel(BertConfig(vocab_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))
    with pytest.raises(ModelError, match="no language-modeling head"):
        bits_per_character(model, tok, ["a b"], progress=False)


def test_same_split_different_ids_gives_same_bpc():
    """A tokenizer with permuted ids and the model with rows permuted alike: same number."""
    base_order = SPECIALS + WORDS
    g = torch.Generator().manual_seed(3)
    perm = torch.randperm(len(base_order), generator=g).tolist()
    new_order = [base_order[i] for i in perm]  # new id j holds old token perm[j]
    tok_a, tok_b = toy_tokenizer(base_order), toy_tokenizer(new_order)
    model_a = tiny_gpt2(seed=1)
    model_b = tiny_gpt2(seed=1)
    with torch.no_grad():
        model_b.get_input_embeddings().weight.copy_(model_a.get_input_embeddings().weight[perm])
    assert tok_a("a b c")["input_ids"] != tok_b("a b c")["input_ids"]
    texts = ["a b c d e f g h", "j i h", "b"]
    ra = bits_per_character(model_a, tok_a, texts, max_length=4, batch_size=2, progress=False)
    rb = bits_per_character(model_b, tok_b, texts, max_length=4, batch_size=2, progress=False)
    assert rb["num_tokens"] == ra["num_tokens"]
    assert rb["bits_per_character"] == pytest.approx(ra["bits_per_character"], rel=1e-5)


# --------------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def splade(splade_path):
    return AutoModelForMaskedLM.from_pretrained(splade_path).eval(), AutoTokenizer.from_pretrained(splade_path)


def test_masked_bpc_is_deterministic(splade):
    model, tok = splade
    texts = ["The capital of France is Paris.", "Tokenizer transplants need an evaluation that survives a vocabulary change."]
    a = bits_per_character(model, tok, texts, seed=5, batch_size=3, progress=False)
    b = bits_per_character(model, tok, texts, seed=5, batch_size=7, progress=False)
    c = bits_per_character(model, tok, texts, seed=6, progress=False)
    assert a["bits_per_character"] == pytest.approx(b["bits_per_character"], rel=1e-6)
    assert a["num_tokens"] == c["num_tokens"] == len(tok(texts[0], add_special_tokens=False)["input_ids"]) + len(tok(texts[1], add_special_tokens=False)["input_ids"])
    assert c["bits_per_character"] != a["bits_per_character"]  # another grouping, another number


def test_real_masked_lm_permuted_vocabulary_gives_same_bpc(splade):
    model, tok = splade
    n = len(tok)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()  # new id j = old id perm[j]
    new_of_old = {old: new for new, old in enumerate(perm)}
    data = json.loads(tok.backend_tokenizer.to_str())
    data["model"]["vocab"] = {t: new_of_old[i] for t, i in data["model"]["vocab"].items()}
    for added in data.get("added_tokens", []):
        added["id"] = new_of_old[added["id"]]
    for spec in data["post_processor"]["special_tokens"].values():
        spec["ids"] = [new_of_old[i] for i in spec["ids"]]
    tok_b = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(data)), unk_token="[UNK]", pad_token="[PAD]",
                                    cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    model_b = AutoModelForMaskedLM.from_config(model.config).eval()
    model_b.load_state_dict(model.state_dict())
    with torch.no_grad():
        model_b.get_input_embeddings().weight.copy_(model.get_input_embeddings().weight[perm])
        model_b.cls.predictions.bias.copy_(model.cls.predictions.bias[perm])
    model_b.config.pad_token_id = new_of_old[model.config.pad_token_id]
    texts = assets.ukrainian_texts("heldout", max_chars=400) + ["Hello world, this is English."]
    assert [tok_b.convert_ids_to_tokens(x) for x in tok_b(texts)["input_ids"]] == [tok.convert_ids_to_tokens(x) for x in tok(texts)["input_ids"]]
    ra = bits_per_character(model, tok, texts, max_length=64, progress=False)
    rb = bits_per_character(model_b, tok_b, texts, max_length=64, progress=False)
    assert rb["bits_per_character"] == pytest.approx(ra["bits_per_character"], rel=1e-5)


def test_splade_on_heldout_ukrainian_is_finite_and_positive(splade_path, tmp_path):
    texts = assets.ukrainian_texts("heldout", max_chars=2000)
    heldout = assets.write_texts(texts, tmp_path / "heldout.txt")
    result = evaluate_model(splade_path, heldout, max_length=128, batch_size=32, progress=False)
    bpc = result["bits_per_character"]
    assert math.isfinite(bpc) and bpc > 0
    assert result["model_kind"] == "masked"
    assert result["bpc"]["num_characters"] == sum(len(t) for t in texts)
    # an English WordPiece vocabulary cuts Ukrainian into nearly single letters
    assert result["tokenizer"]["characters_per_token"] < 2
    table = format_results([result, result])
    assert table.count("| model | kind |") == 1 and table.count("masked") == 2 and f"{bpc:.4f}" in table
    assert f"{bpc:.4f}" in format_results(result, markdown=False)
