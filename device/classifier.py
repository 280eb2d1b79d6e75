"""On-device scene classifier: a full-integer int8 TFLite model run on every capture.

It is a safety net for sources that do not declare themselves synthetic: a rendered
avatar fed through a capture card, an undeclared generator, a camera filming a screen.
The policy reads its verdict; this module only loads the model and classifies frames.

Runs with tflite-runtime (preferred, numpy<2) or ai-edge-litert (same Interpreter API);
TensorFlow is never needed on the device.
"""

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np

# The shipped model is package data of `synthseal.models`, so it sits beside that
# module in every install form (checkout, venv, --user, system).
from ..models import SHIPPED_LABELS as DEFAULT_LABELS, SHIPPED_MODEL as DEFAULT_MODEL

CHANNEL_ORDERS = ("RGB", "BGR")


class ClassifierError(Exception):
    """The model, its labels or a frame cannot be used; the message says what to do."""


def load_interpreter_class():
    """Return the TFLite Interpreter class: tflite-runtime first, then ai-edge-litert."""
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter
    except ImportError:
        pass
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter
    except ImportError:
        raise ClassifierError(
            "no TFLite interpreter: install the device extra, pip install 'synthseal[device]' "
            "(tflite-runtime with numpy<2, or ai-edge-litert)"
        ) from None


# Patch origins are multiples of this: an even row and column keep the colour-filter
# array's phase (RGGB stays RGGB in every patch), and 16 keeps the JPEG 8x8 blocks and
# 4:2:0 macroblocks of the frame aligned with the patch, so a patch carries exactly the
# demosaic and compression traces that the frame carries at that place.
PATCH_ALIGN = 16


def patch_grid(count, frame_h, frame_w):
    """rows x cols == count, the factorisation whose cell shape is closest to square for this frame."""
    best = None
    for rows in range(1, count + 1):
        if count % rows:
            continue
        cols = count // rows
        mismatch = abs(np.log((frame_h / rows) / (frame_w / cols)))
        if best is None or mismatch < best[0]:
            best = (mismatch, rows, cols)
    return best[1], best[2]


def _aligned_starts(length, cells, size):
    centres = (np.arange(cells) + 0.5) * length / cells
    last = ((length - size) // PATCH_ALIGN) * PATCH_ALIGN
    starts = (np.maximum(centres - size / 2, 0) // PATCH_ALIGN).astype(np.int64) * PATCH_ALIGN
    return np.minimum(starts, last)


def patch_origins(frame_h, frame_w, count, size):
    """(top, left) of count native-resolution size x size patches spread over the frame:
    one per cell of a rows x cols grid, centred in its cell, aligned to PATCH_ALIGN."""
    rows, cols = patch_grid(count, frame_h, frame_w)
    tops = _aligned_starts(frame_h, rows, size)
    lefts = _aligned_starts(frame_w, cols, size)
    return [(int(top), int(left)) for top in tops for left in lefts]


def extract_patches(frame, count, size):
    """count x size x size x 3 patches cut from the frame at native pixel scale.

    No resizing of any kind: every pixel the model sees is a pixel of the frame, with its
    own sensor noise, demosaic correlations, sharpening halo, JPEG block and screen-grid
    aliasing, which are the cues that separate a camera capture from a render or a
    recapture. A frame smaller than a patch is mirrored out to the patch size first.
    The cost is a copy of count*size*size pixels whatever the frame size.
    Training data goes through this same function, so the model sees what it was taught on.
    """
    frame_h, frame_w = frame.shape[:2]
    if frame_h < size or frame_w < size:
        frame = np.pad(frame, ((0, max(0, size - frame_h)), (0, max(0, size - frame_w)), (0, 0)), mode="symmetric")
        frame_h, frame_w = frame.shape[:2]
    return np.stack([frame[top:top + size, left:left + size] for top, left in patch_origins(frame_h, frame_w, count, size)])


def check_frame(frame, channel_order="RGB"):
    """Raise ClassifierError unless frame is an HxWx3 uint8 array in a known channel order."""
    if channel_order not in CHANNEL_ORDERS:
        raise ClassifierError(
            f"channel_order {channel_order!r} is not one of {CHANNEL_ORDERS}; "
            "use 'BGR' for picamera2 RGB888 buffers"
        )
    if not isinstance(frame, np.ndarray):
        raise ClassifierError(
            f"frame is a {type(frame).__name__}, expected an HxWx3 uint8 numpy array"
        )
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ClassifierError(
            f"frame has shape {frame.shape}, expected HxWx3 (drop the alpha channel of "
            "XRGB8888 buffers first, e.g. frame[..., :3])"
        )
    if frame.dtype != np.uint8:
        raise ClassifierError(f"frame has dtype {frame.dtype}, expected uint8")


def preprocess(frame, count, size, channel_order="RGB"):
    """HxWx3 uint8 frame in channel_order -> count x size x size x 3 uint8 RGB patches."""
    check_frame(frame, channel_order)
    patches = extract_patches(frame, count, size)
    if channel_order == "BGR":
        # picamera2's RGB888 format is B, G, R in memory.
        patches = patches[..., ::-1]
    return np.ascontiguousarray(patches)


def aggregate(patch_probabilities):
    """The frame's verdict from its patches' verdicts: the mean of the per-patch class
    probabilities (N x classes -> classes).

    A mean, not a max: a real photograph has patches without any trace (a clear sky, a
    blown highlight) that read as anything, and one such patch must not flag the frame;
    the mean needs most of the frame to agree, and still sums to one.
    """
    return np.asarray(patch_probabilities, np.float64).mean(axis=0)


def read_labels(labels_path):
    labels_path = Path(labels_path)
    try:
        text = labels_path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise ClassifierError(
            f"cannot read labels file {labels_path}: {reason}; "
            "pass the labels.txt shipped with the model (classifier.labels, or --labels PATH)"
        ) from None
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise ClassifierError(f"labels file {labels_path} is empty; it needs one class per line")
    return labels


# Loads the model in a child process: the TFLite runtime does not verify the flatbuffer
# and dereferences whatever offsets a truncated or corrupt file holds (a segfault, not
# an exception). The child crashing is how we learn the file is bad without the agent dying.
_PROBE_SCRIPT = """
import importlib, sys
interpreter = importlib.import_module(sys.argv[1]).Interpreter(model_path=sys.argv[2])
interpreter.allocate_tensors()
"""
PROBE_TIMEOUT_S = 120


def check_model_file(model_path, interpreter_class):
    """Raise ClassifierError unless model_path is a TFLite flatbuffer the runtime can load."""
    model_path = Path(model_path)
    try:
        with open(model_path, "rb") as handle:
            header = handle.read(8)
    except OSError as exc:
        raise ClassifierError(f"cannot read model file {model_path}: {exc.strerror or exc}") from None
    if len(header) < 8 or header[4:8] != b"TFL3":
        raise ClassifierError(
            f"model file {model_path} is not a TFLite model (no TFL3 identifier); "
            "pass a .tflite file (classifier.model, or --model PATH)"
        )
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _PROBE_SCRIPT, interpreter_class.__module__, str(model_path)],
            capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise ClassifierError(
            f"model file {model_path} did not load within {PROBE_TIMEOUT_S} s; "
            "it may be corrupt: copy it again or pass another with --model PATH"
        ) from None
    if probe.returncode != 0:
        if probe.returncode < 0:
            reason = f"the interpreter crashed with signal {-probe.returncode}"
        else:
            lines = [line for line in probe.stderr.strip().splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit status {probe.returncode}"
        raise ClassifierError(
            f"model file {model_path} is not a loadable TFLite model ({reason}); "
            "it may be truncated or corrupt: copy it again or pass another with --model PATH"
        )


def _tensor_description(detail):
    return f"{detail['name']} {np.dtype(detail['dtype']).name}{list(detail['shape'])}"


# int8 softmax outputs step in 1/256; a sum this far from 1 is not a softmax.
SOFTMAX_SUM_TOLERANCE = 0.05


def probabilities_from_output(raw, scale, zero_point):
    """Dequantize an int8 softmax output and renormalize its rounding away.
    Raise ClassifierError for anything that is not a probability distribution."""
    scores = (np.asarray(raw).astype(np.float32) - zero_point) * scale
    total = float(scores.sum())
    if scores.min() < -1e-6 or abs(total - 1.0) > SOFTMAX_SUM_TOLERANCE:
        raise ClassifierError(
            f"model output {np.round(scores, 3).tolist()} is not a probability distribution "
            "(the model must end in a softmax)"
        )
    return np.clip(scores, 0.0, None) / total


# One interpreter thread: the network is small, and on a loaded two-core device a second
# thread waits for a core at every layer (measured 30x slower under load with 2 threads;
# `make bench` reports both). A device with idle cores may raise classifier.threads.
DEFAULT_THREADS = 1


class Classifier:
    """One int8 interpreter for the life of the object; classify() maps a frame to class probabilities.

    The model takes a batch of N native-resolution patches ([N, size, size, 3], N and
    size read from the model) and returns one softmax per patch ([N, classes]);
    classify() cuts the patches from the frame (extract_patches) and aggregates their
    verdicts into the frame's (aggregate).
    """

    def __init__(self, model_path=DEFAULT_MODEL, labels_path=DEFAULT_LABELS, num_threads=DEFAULT_THREADS,
                 required_labels=()):
        """required_labels: class names the caller acts on (the policy's); a labels file
        without them is refused, so that a renamed class can never read as "not found".
        num_threads: interpreter threads; 1 by default (see DEFAULT_THREADS)."""
        model_path = Path(model_path)
        if not model_path.is_file():
            raise ClassifierError(
                f"model file {model_path} not found; pass the model with --model PATH "
                "(classifier.model in the agent configuration; 'none' runs without the classifier)"
            )
        if not isinstance(num_threads, int) or num_threads < 1:
            raise ClassifierError(f"num_threads must be a positive integer, got {num_threads!r}")
        interpreter_class = load_interpreter_class()
        check_model_file(model_path, interpreter_class)
        try:
            self._interpreter = interpreter_class(
                model_path=str(model_path), num_threads=num_threads
            )
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClassifierError(
                f"model file {model_path} is not a loadable TFLite model ({first_line}); "
                "it may be truncated or corrupt: copy it again or pass another with --model PATH"
            ) from None
        self.model_path = model_path
        self.num_threads = num_threads

        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ClassifierError(
                f"model {model_path} has {len(inputs)} inputs and {len(outputs)} outputs; "
                "expected one image input and one class-score output"
            )
        self._input, self._output = inputs[0], outputs[0]
        for role, detail in (("input", self._input), ("output", self._output)):
            if detail["dtype"] != np.int8:
                raise ClassifierError(
                    f"model {model_path} {role} is {_tensor_description(detail)}, not int8; "
                    "convert it with full-integer quantization "
                    "(python -m synthseal.firmware_tools.convert_model --help)"
                )
        shape = tuple(int(n) for n in self._input["shape"])
        if len(shape) != 4 or shape[0] < 1 or shape[1] != shape[2] or shape[1] < 8 or shape[3] != 3:
            raise ClassifierError(
                f"model {model_path} input shape {list(shape)} is not [patches, size, size, 3]"
            )
        self.patch_count, self.patch_size = shape[0], shape[1]
        # (scale, zero_point) as stored in the model: real_value = scale * (int8 - zero_point).
        self.input_quantization = tuple(self._input["quantization"])
        self.output_quantization = tuple(self._output["quantization"])
        self._input_scale, self._input_zero_point = self.input_quantization
        self._output_scale, self._output_zero_point = self.output_quantization
        if self._input_scale == 0 or self._output_scale == 0:
            raise ClassifierError(
                f"model {model_path} has no quantization parameters on its input or output; "
                "convert it with full-integer quantization"
            )
        # Frames are always fed as pixel/255: the input's int8 range must cover [0, 1].
        low = self._input_scale * (-128 - self._input_zero_point)
        high = self._input_scale * (127 - self._input_zero_point)
        if low > 0.01 or high < 0.99:
            raise ClassifierError(
                f"model {model_path} input is quantized for [{low:.3g}, {high:.3g}], not pixel/255 "
                "in [0, 1]; convert it with representative images scaled to [0, 1]"
            )

        # Recorded with every decision, so a verdict names the exact model that made it.
        self.model_sha256 = hashlib.sha256(model_path.read_bytes()).hexdigest()
        self.labels = read_labels(labels_path)
        output_shape = [int(n) for n in self._output["shape"]]
        if len(output_shape) != 2 or output_shape[0] != self.patch_count:
            raise ClassifierError(
                f"model {model_path} output shape {output_shape} is not [{self.patch_count}, classes]: "
                "one class-score row per input patch"
            )
        if len(self.labels) != output_shape[1]:
            raise ClassifierError(
                f"labels file {labels_path} has {len(self.labels)} classes but model "
                f"{model_path} outputs {output_shape[1]}; use the labels.txt built with this model"
            )
        missing = [name for name in required_labels if name not in self.labels]
        if missing:
            raise ClassifierError(
                f"labels file {labels_path} lacks the classes {missing} that the labeling policy "
                f"acts on (it has {self.labels}); name the model's classes as the policy does"
            )
        # A zero frame through the network once: a model whose output is not a probability
        # distribution (logits, no softmax) is refused here rather than misread per frame.
        self.classify_patches(np.zeros(self.patches_shape, np.uint8))

    @property
    def patches_shape(self):
        return (self.patch_count, self.patch_size, self.patch_size, 3)

    def quantize_input(self, image):
        """uint8 RGB patches -> int8 input tensor, with the model's own scale/zero point.

        Every model takes pixel/255 (the contract checked at load); the scale and zero point
        that map it to int8 are read from the model, since each conversion picks its own.
        """
        real = image.astype(np.float32) / 255.0
        quantized = np.round(real / self._input_scale) + self._input_zero_point
        return np.clip(quantized, -128, 127).astype(np.int8)

    def patch_probabilities(self, patches):
        """N x size x size x 3 uint8 RGB patches -> N x classes per-patch probabilities."""
        if not isinstance(patches, np.ndarray) or patches.shape != self.patches_shape or patches.dtype != np.uint8:
            raise ClassifierError(
                f"model patches must be a uint8 array of shape {self.patches_shape}; "
                "pass camera frames of any size to classify() instead"
            )
        self._interpreter.set_tensor(self._input["index"], self.quantize_input(patches))
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._output["index"])
        return np.stack([probabilities_from_output(row, self._output_scale, self._output_zero_point) for row in raw])

    def classify_patches(self, patches):
        """Model-shaped patches -> {class_name: probability} for the frame they came from."""
        scores = aggregate(self.patch_probabilities(patches))
        return {label: float(score) for label, score in zip(self.labels, scores)}

    def classify(self, frame, channel_order="RGB"):
        """HxWx3 uint8 frame of any size -> {class_name: probability}, summing to ~1.

        channel_order is "RGB", or "BGR" for picamera2 RGB888 buffers. The model reads
        the processed (ISP) frame; it does not need picamera2's raw Bayer stream.
        """
        return self.classify_patches(preprocess(frame, self.patch_count, self.patch_size, channel_order))
