"""The shipped scene classifier (int8 TFLite), its class labels and its model card.

A package, not a data folder under the environment's prefix, so that every install form
(editable checkout, venv, `pip install --user`, a plain system install) finds the files
beside this module: `synthseal.device.classifier` looks here by default.
"""

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent
SHIPPED_MODEL = MODELS_DIR / "synthseal_scene_int8.tflite"
SHIPPED_LABELS = MODELS_DIR / "labels.txt"
