"""Tiny random models of every supported family, with tokenizers of the matching kind.

Tokenizers are trained locally with the `tokenizers` library on real Ukrainian text (no Hub
access): byte-level BPE (GPT-2/RoBERTa/Qwen2/BART/ModernBERT), SentencePiece Unigram
(XLM-R/T5/mBART/DeBERTa-v2), SentencePiece BPE with byte fallback (Llama/Mistral/Gemma) and
WordPiece (BERT/DistilBERT/ELECTRA, from the real splade-tiny tokenizer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from hf_vocabswap import assets

SPECIALS = {
    # kind -> (ordered special tokens, role map, post-processor template or None)
    "roberta_bpe": (["<s>", "<pad>", "</s>", "<unk>", "<mask>"], dict(bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>", mask_token="<mask>", cls_token="<s>", sep_token="</s>"), "roberta"),
    "gpt2_bpe": (["<|endoftext|>"], dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"), None),
    "qwen_bpe": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], dict(eos_token="<|im_end|>", pad_token="<|endoftext|>"), None),
    "xlmr_unigram": (["<s>", "<pad>", "</s>", "<unk>", "<mask>"], dict(bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>", mask_token="<mask>", cls_token="<s>", sep_token="</s>"), "roberta"),
    "deberta_unigram": (["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"], dict(pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", unk_token="[UNK]", mask_token="[MASK]", bos_token="[CLS]", eos_token="[SEP]"), "bert"),
    "t5_unigram": (["<pad>", "</s>", "<unk>"], dict(pad_token="<pad>", eos_token="</s>", unk_token="<unk>"), "eos"),
    "llama_spbpe": (["<unk>", "<s>", "</s>"], dict(unk_token="<unk>", bos_token="<s>", eos_token="</s>"), "bos"),
    "gemma_spbpe": (["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"], dict(pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>", mask_token="<mask>"), "bos"),
}


def _post_processor(style, specials, tok_map):
    ids = {t: i for i, t in enumerate(specials)}
    if style == "roberta":
        return processors.RobertaProcessing(("</s>", ids["</s>"]), ("<s>", ids["<s>"]), add_prefix_space=False, trim_offsets=False)
    if style == "bert":
        return processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    if style == "eos":
        return processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", ids["</s>"])])
    if style == "bos":
        bos = tok_map["bos_token"]
        return processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, ids[bos])])
    return None


def build_tokenizer(kind: str, texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    specials, tok_map, post = SPECIALS[kind]
    if kind.endswith("_bpe"):
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(texts, trainer)
    elif kind.endswith("_unigram"):
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token=tok_map["unk_token"], show_progress=False)
        tok.train_from_iterator(texts, trainer)
    elif kind.endswith("_spbpe"):
        tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size - 256, special_tokens=specials, show_progress=False)
        tok.train_from_iterator(texts, trainer)
        # Insert the 256 byte-fallback pieces right after the special tokens, as SentencePiece does.
        spec = json.loads(tok.to_str())
        vocab = spec["model"]["vocab"]
        ordered = sorted(vocab.items(), key=lambda kv: kv[1])
        head, tail = ordered[: len(specials)], ordered[len(specials):]
        merged = [k for k, _ in head] + [f"<0x{b:02X}>" for b in range(256)] + [k for k, _ in tail]
        spec["model"]["vocab"] = {k: i for i, k in enumerate(merged)}
        spec["added_tokens"] = [dict(a, id=merged.index(a["content"])) for a in spec["added_tokens"]]
        tok = Tokenizer.from_str(json.dumps(spec))
        tok.decoder = decoders.Sequence([decoders.Metaspace(), decoders.ByteFallback(), decoders.Fuse()])
    else:
        raise ValueError(kind)
    processor = _post_processor(post, specials, tok_map)
    if processor is not None:
        tok.post_processor = processor
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=128, **tok_map)
    return fast


@lru_cache(maxsize=None)
def tokenizer_pair(kind: str) -> tuple[PreTrainedTokenizerFast, PreTrainedTokenizerFast]:
    """(source, target): trained on different slices of Ukrainian text, different sizes."""
    texts = assets.ukrainian_texts("train", max_chars=120_000)
    half = len(texts) // 2
    if kind == "wordpiece":
        src = AutoTokenizer.from_pretrained(assets.splade_tiny_path())
        src.model_max_length = 128
        tgt = src.train_new_from_iterator(texts[half:], 2500)
        return src, tgt
    return build_tokenizer(kind, texts[:half], 3000), build_tokenizer(kind, texts[half:], 2000)


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # masked / causal / seq2seq
    tokenizer: str
    config_class: str
    model_class: str
    auto_class: str
    config: tuple  # extra config items

    def build(self, vocab_size: int, tokenizer):
        ids = {}
        for role in ("pad", "bos", "eos"):
            tid = getattr(tokenizer, f"{role}_token_id")
            if tid is not None:
                ids[f"{role}_token_id"] = tid
        cfg = getattr(transformers, self.config_class)(vocab_size=vocab_size, **ids, **dict(self.config))
        return getattr(transformers, self.model_class)(cfg).eval()


_SMALL = (("hidden_size", 32), ("num_hidden_layers", 2), ("num_attention_heads", 2), ("intermediate_size", 64), ("max_position_embeddings", 128))
_DEC = (("hidden_size", 32), ("num_hidden_layers", 2), ("num_attention_heads", 2), ("num_key_value_heads", 1), ("intermediate_size", 64), ("max_position_embeddings", 128))
_S2S = (("d_model", 32), ("encoder_layers", 1), ("decoder_layers", 1), ("encoder_attention_heads", 2), ("decoder_attention_heads", 2), ("encoder_ffn_dim", 64), ("decoder_ffn_dim", 64), ("max_position_embeddings", 128))
_T5 = (("d_model", 32), ("d_kv", 16), ("d_ff", 64), ("num_layers", 2), ("num_heads", 2), ("decoder_start_token_id", 0))

FAMILIES = [
    Family("bert", "masked", "wordpiece", "BertConfig", "BertForMaskedLM", "AutoModelForMaskedLM", _SMALL),
    Family("xlm-roberta", "masked", "xlmr_unigram", "XLMRobertaConfig", "XLMRobertaForMaskedLM", "AutoModelForMaskedLM", _SMALL),
    Family("roberta", "masked", "roberta_bpe", "RobertaConfig", "RobertaForMaskedLM", "AutoModelForMaskedLM", _SMALL),
    Family("deberta-v2", "masked", "deberta_unigram", "DebertaV2Config", "DebertaV2ForMaskedLM", "AutoModelForMaskedLM", _SMALL),
    Family("distilbert", "masked", "wordpiece", "DistilBertConfig", "DistilBertForMaskedLM", "AutoModelForMaskedLM", (("dim", 32), ("n_layers", 2), ("n_heads", 2), ("hidden_dim", 64), ("max_position_embeddings", 128))),
    Family("electra", "masked", "wordpiece", "ElectraConfig", "ElectraForMaskedLM", "AutoModelForMaskedLM", (("embedding_size", 16),) + _SMALL),
    Family("modernbert", "masked", "roberta_bpe", "ModernBertConfig", "ModernBertForMaskedLM", "AutoModelForMaskedLM", _SMALL[:4] + (("max_position_embeddings", 128), ("global_attn_every_n_layers", 2), ("local_attention", 16))),
    Family("gpt2", "causal", "gpt2_bpe", "GPT2Config", "GPT2LMHeadModel", "AutoModelForCausalLM", (("n_embd", 32), ("n_layer", 2), ("n_head", 2), ("n_positions", 128))),
    Family("llama", "causal", "llama_spbpe", "LlamaConfig", "LlamaForCausalLM", "AutoModelForCausalLM", _DEC + (("tie_word_embeddings", False),)),
    Family("gemma3", "causal", "gemma_spbpe", "Gemma3TextConfig", "Gemma3ForCausalLM", "AutoModelForCausalLM", _DEC + (("head_dim", 16), ("sliding_window", 16))),
    Family("qwen2", "causal", "qwen_bpe", "Qwen2Config", "Qwen2ForCausalLM", "AutoModelForCausalLM", _DEC + (("tie_word_embeddings", False),)),
    Family("mistral", "causal", "llama_spbpe", "MistralConfig", "MistralForCausalLM", "AutoModelForCausalLM", _DEC + (("tie_word_embeddings", False),)),
    Family("t5", "seq2seq", "t5_unigram", "T5Config", "T5ForConditionalGeneration", "AutoModelForSeq2SeqLM", _T5),
    Family("mt5", "seq2seq", "t5_unigram", "MT5Config", "MT5ForConditionalGeneration", "AutoModelForSeq2SeqLM", _T5 + (("tie_word_embeddings", False),)),
    Family("bart", "seq2seq", "roberta_bpe", "BartConfig", "BartForConditionalGeneration", "AutoModelForSeq2SeqLM", _S2S + (("decoder_start_token_id", 2), ("forced_eos_token_id", 2))),
    Family("mbart", "seq2seq", "xlmr_unigram", "MBartConfig", "MBartForConditionalGeneration", "AutoModelForSeq2SeqLM", _S2S + (("decoder_start_token_id", 2),)),
]

FAMILY_BY_NAME = {f.name: f for f in FAMILIES}


def randomize_biases(model) -> None:
    """Fresh models have zero output biases: make them distinct so a by-index remap would show."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        out = model.get_output_embeddings()
        if out is not None and getattr(out, "bias", None) is not None:
            out.bias.copy_(torch.randn(out.bias.shape, generator=gen))
        if hasattr(model, "final_logits_bias"):
            model.final_logits_bias.copy_(torch.randn(model.final_logits_bias.shape, generator=gen))
