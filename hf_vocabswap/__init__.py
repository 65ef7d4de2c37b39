"""hf_vocabswap: swap a model's tokenizer and initialize the new embeddings well."""

__version__ = "0.1.0"
