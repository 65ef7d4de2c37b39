"""``python -m benchmarks.quality`` (from the repository root) or ``python benchmarks/quality``
(from anywhere, without installing hf_vocabswap)."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# Run as a folder, Python puts the folder itself first on the path, where config.py or cli.py
# would shadow top-level modules of those names: drop it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(REPO) not in sys.path:  # run as a folder from anywhere: find hf_vocabswap and this package
    sys.path.insert(0, str(REPO))

from benchmarks.quality.cli import main  # noqa: E402 - after the path is set

if __name__ == "__main__":
    sys.exit(main())
