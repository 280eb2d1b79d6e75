"""Keras / SavedModel -> float32 and full-integer int8 TFLite (needs TensorFlow: .venv-train)."""

import os

import numpy as np

# TensorFlow's C++ info lines drown the report; warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402


def _converter(model_or_path):
    if isinstance(model_or_path, tf.keras.Model):
        return tf.lite.TFLiteConverter.from_keras_model(model_or_path)
    return tf.lite.TFLiteConverter.from_saved_model(str(model_or_path))


def load_model(path):
    """A .keras/.h5 file loads as a Keras model; a directory is taken as a SavedModel path."""
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        return path
    return tf.keras.models.load_model(path, compile=False)


def with_patch_batch(model_or_path, patches):
    """A Keras patch classifier with a free batch size, given the device's fixed batch of
    `patches` (the TFLite input is then [patches, S, S, 3]). SavedModel paths pass as they are."""
    if not isinstance(model_or_path, tf.keras.Model):
        return model_or_path
    if model_or_path.inputs[0].shape[0] is not None:
        return model_or_path
    size = model_or_path.inputs[0].shape[1:]
    inputs = tf.keras.Input(tuple(size), batch_size=patches, name="patches")
    return tf.keras.Model(inputs, model_or_path(inputs), name=model_or_path.name + "_patches")


def convert_float(model_or_path):
    return _converter(model_or_path).convert()


def convert_int8(model_or_path, representative_images, max_samples=100):
    """Full-integer post-training quantization with int8 input and output.

    representative_images: model-shaped uint8 RGB patch batches (frames cut by
    device.classifier.preprocess), fed as RGB/255 (the model's input contract). Restricting to TFLITE_BUILTINS_INT8 makes conversion fail rather
    than silently leave float ops in the graph.
    """
    converter = _converter(model_or_path)
    samples = np.asarray(representative_images)[:max_samples]

    def representative_dataset():
        for image in samples:
            yield [image.astype(np.float32) / 255.0]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()
