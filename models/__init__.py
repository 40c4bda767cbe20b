"""The shipped model, its manifest and model card, and the tooling that makes models (``amgs model``).

Importing this package is cheap: TensorFlow is imported only by the training and quantization tools.
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = MODELS_DIR / "amgs_inceptionv3_synthetic.tflite"
"""The model scoring uses when none is configured (synthetic-trained: a demonstration, not validated on mice)."""
