"""Bring your own model: convert a Keras or SavedModel classifier to full-integer int8 TFLite.

Run it in the training environment (TensorFlow), e.g.:

    make .venv-train/.stamp-train
    .venv-train/bin/python -m synthseal.firmware_tools.convert_model my_model.keras \\
        --representative vendor_data/calibration --labels my_labels.txt \\
        --eval vendor_data/labelled --out models/vendor_int8.tflite

Model contract (the device feeds every model the same way): a patch classifier, one
input of shape [N, S, S, 3] taking N native-resolution RGB patches / 255 (float in
[0, 1]), one output [N, classes] of per-patch class scores (softmax) in the order of the
labels file, which must name the classes the labeling policy acts on (`synthetic`,
`screen`; `real` by convention). A Keras model with a free batch size is given the fixed
batch of --patches here. The device cuts N patches from each camera frame
(device.classifier.preprocess) and averages their scores (device.classifier.aggregate);
representative and evaluation images go through the same functions here.

Steps: convert with post-training full-integer quantization using the representative
images; fail unless every tensor is integer (int8, with int32 biases) and input and
output are int8; load the result with the device's Classifier (checks the labels and that
the output is a softmax); only then write --out and <out>.labels.txt;
with --eval, score float32 and int8 on a folder with one subfolder per class (subfolder
names = labels) and print accuracy and confusion matrices. Exit status 0 when the model
is fully integer and loads, 1 otherwise.
"""

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def image_files(folder):
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def load_frame(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def class_subfolders(folder, labels):
    """The class subfolders of a labelled folder (a class may be absent; an unknown name is an error)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"--eval {folder}: not a folder; give one subfolder per class, named as in --labels")
    subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir())
    unknown = [name for name in subfolders if name not in labels]
    if unknown:
        raise SystemExit(f"--eval {folder}: subfolders {unknown} are not in the labels {labels}")
    return subfolders


def labelled_images(folder, labels, count, size):
    """Images and label indices from folder/<label>/*."""
    from ..device.classifier import preprocess

    folder = Path(folder)
    subfolders = class_subfolders(folder, labels)
    images, targets = [], []
    for name in subfolders:
        for path in image_files(folder / name):
            images.append(preprocess(load_frame(path), count, size))
            targets.append(labels.index(name))
    if not images:
        raise SystemExit(f"--eval {folder}: no images found in class subfolders")
    return np.stack(images), np.array(targets)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m synthseal.firmware_tools.convert_model",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="Keras model file (.keras or .h5) or SavedModel directory")
    parser.add_argument("--representative", required=True, help="folder of representative frames (any size; searched recursively)")
    parser.add_argument("--labels", required=True, help="labels file, one class per line, in model output order")
    parser.add_argument("--out", required=True, help="output .tflite path; the labels are copied beside it as <out>.labels.txt")
    parser.add_argument("--eval", help="labelled folder: one subfolder per class, named as in --labels")
    parser.add_argument("--max-representative", type=int, default=100, help="representative frames used (default 100)")
    parser.add_argument("--patches", type=int, default=12,
                        help="patches per frame, for a Keras model with a free batch size (default 12)")
    parser.add_argument("--report", help="also write the JSON report to this file")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from ..device.classifier import Classifier, ClassifierError, preprocess, read_labels
    from ..device.core.policy import CLASS_RULES, missing_classes
    from .model.metrics import confusion_matrix
    from .model.tflite_eval import FloatModel, fully_integer_problems, predict_int8

    try:
        labels = read_labels(args.labels)
    except ClassifierError as exc:
        raise SystemExit(str(exc)) from None
    missing = missing_classes(labels)
    if missing:
        raise SystemExit(f"--labels {args.labels}: lacks the classes {missing} that the labeling policy acts on")
    # Check the inputs before the minutes-long conversion, not after it.
    if not Path(args.model).exists():
        raise SystemExit(f"model {args.model} not found; give a .keras/.h5 file or a SavedModel folder")
    rep_files = image_files(args.representative)[: args.max_representative]
    if not rep_files:
        raise SystemExit(f"--representative {args.representative}: no images found")
    if args.eval:
        class_subfolders(args.eval, labels)
    from .model import quantize  # TensorFlow: seconds to import

    try:
        model = quantize.with_patch_batch(quantize.load_model(args.model), args.patches)
        float_bytes = quantize.convert_float(model)
    except Exception as exc:  # TensorFlow raises many types; the first line says what
        raise SystemExit(f"cannot load or convert {args.model}: {_first_line(exc)}") from None
    with tempfile.TemporaryDirectory() as scratch:
        float_path = Path(scratch) / "float32.tflite"
        float_path.write_bytes(float_bytes)
        float_model = FloatModel(float_path)
        count, height, width, channels = (int(n) for n in float_model.input["shape"])
        if channels != 3 or height != width:
            raise SystemExit(f"model input is [{count}, {height}, {width}, {channels}]; the device feeds "
                             "[patches, S, S, 3] (square RGB patches)")

        representative = np.stack([preprocess(load_frame(p), count, height) for p in rep_files])
        try:
            int8_bytes = quantize.convert_int8(model, representative, max_samples=len(representative))
        except Exception as exc:
            raise SystemExit(f"full-integer conversion failed (an op with no int8 kernel?): {_first_line(exc)}") from None

        # Checked in the scratch folder; --out is written only for a model the device accepts.
        out = Path(args.out)
        labels_out = out.with_suffix(".labels.txt")
        int8_path = Path(scratch) / "int8.tflite"
        int8_path.write_bytes(int8_bytes)
        scratch_labels = Path(scratch) / "labels.txt"
        scratch_labels.write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")

        report = {"model": str(out), "labels": str(labels_out), "input": [count, height, width, 3],
                  "representative_frames": len(representative), "size_bytes": len(int8_bytes)}
        problems = fully_integer_problems(int8_path)
        report["fully_integer"] = not problems
        report["problems"] = problems
        try:
            classifier = Classifier(int8_path, scratch_labels, required_labels=tuple(CLASS_RULES))
        except ClassifierError as exc:
            report["problems"].append(str(exc))
            classifier = None
        if not report["problems"]:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(int8_path, out)
            shutil.copyfile(scratch_labels, labels_out)

        if args.eval and classifier is not None:
            images, targets = labelled_images(args.eval, labels, count, height)
            float_pred = float_model.predict(images).argmax(axis=1)
            int8_pred = predict_int8(classifier, images).argmax(axis=1)
            report["eval"] = {
                "n_images": int(len(targets)),
                "accuracy_float32": float((float_pred == targets).mean()),
                "accuracy_int8": float((int8_pred == targets).mean()),
                "confusion_matrix_int8": confusion_matrix(targets, int8_pred, len(labels)).tolist(),
                "confusion_matrix_float32": confusion_matrix(targets, float_pred, len(labels)).tolist(),
            }

    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        Path(args.report).write_text(text + "\n", encoding="utf-8")
    if report["problems"]:
        print("conversion did not produce a usable full-integer model: " + "; ".join(report["problems"]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
