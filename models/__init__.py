"""The shipped model, its manifest and model card, and the tooling that makes models (``amgs model``).

Importing this package is cheap: TensorFlow is imported only by the training and quantization tools.
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = MODELS_DIR / "amgs_inceptionv3_synthetic.tflite"
"""The model scoring uses when none is configured (synthetic-trained: a demonstration, not validated on mice)."""
DEFAULT_DETECTOR = MODELS_DIR / "amgs_face_detector_synthetic.tflite"
"""The face detector used when a device's ``[detector]`` names no file or ``amgs score`` gets a whole frame
(trained on SYNTHETIC cage scenes: a demonstration, not validated on real mice)."""
