"""Run TFLite models over image arrays with the device's interpreter (no TensorFlow).

Shared by the build (card metrics), the vendor converter, the benchmark and the tests,
so every figure is produced by the interpreter the device itself runs.
"""

import numpy as np

from ...device.classifier import Classifier, aggregate, load_interpreter_class


def predict_int8(classifier: Classifier, items):
    """Frame probabilities (M x classes) for M model-shaped patch batches (M x N x size x size x 3)."""
    return np.array([[p[label] for label in classifier.labels] for p in map(classifier.classify_patches, items)])


class FloatModel:
    """A float32 TFLite classifier taking RGB in [0, 1], for float-versus-int8 comparisons;
    per-patch outputs aggregated with the device's rule."""

    def __init__(self, model_path, num_threads=2):
        self.interpreter = load_interpreter_class()(model_path=str(model_path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        if self.input["dtype"] != np.float32:
            raise ValueError(f"{model_path} input is {np.dtype(self.input['dtype']).name}, not float32")

    def predict_item(self, patches):
        self.interpreter.set_tensor(self.input["index"], patches.astype(np.float32) / 255.0)
        self.interpreter.invoke()
        return aggregate(self.interpreter.get_tensor(self.output["index"]).astype(np.float64))

    def predict(self, items):
        return np.array([self.predict_item(patches) for patches in items])


ALLOWED_INTEGER_DTYPES = (np.int8, np.int32)


def fully_integer_problems(model_path):
    """What keeps a .tflite from being full-integer int8; an empty list when it is.

    int32 is allowed for biases and shape tensors, which is what full-integer
    post-training quantization produces; everything else must be int8.
    """
    interpreter = load_interpreter_class()(model_path=str(model_path))
    interpreter.allocate_tensors()
    problems = []
    for role, details in (("input", interpreter.get_input_details()), ("output", interpreter.get_output_details())):
        for detail in details:
            if detail["dtype"] != np.int8:
                problems.append(f"{role} {detail['name']} is {np.dtype(detail['dtype']).name}, not int8")
    for detail in interpreter.get_tensor_details():
        if detail["dtype"] not in ALLOWED_INTEGER_DTYPES:
            problems.append(f"tensor {detail['name']} is {np.dtype(detail['dtype']).name}")
    return problems
