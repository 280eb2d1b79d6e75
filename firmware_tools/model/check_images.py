"""Score the shipped classifier on your own photographs and renders.

The card's figures come from the project's own held-out set. A vendor, an auditor or a
regulator checks the model on pictures the project never saw: put camera photographs in
one folder and renders (or generated images) in another, and this reports what the
device would do with each as a frame declared to be a real capture:

    python -m synthseal.firmware_tools.model.check_images --real photos/ --renders renders/

Each file is one frame, read as the device reads a frame (RGB, every size accepted), and
classified by the device's own int8 model and rule (device.classifier). Reported: ROC-AUC
real vs renders, the share flagged at the default threshold, and the same with the
forger's move applied to the renders (white noise sigma=4 then JPEG q90, the card's
acceptance perturbation). Needs no TensorFlow. Exit 0 when it ran, 2 on bad input.

With --as-frame 4056x3040 each picture is first scaled (bicubic) to cover a frame of the
camera's size and centre-cropped to it: the picture as it would reach the classifier if
it were injected in place of a camera frame. The forger's move is then applied to that
frame.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ...device.classifier import DEFAULT_LABELS, DEFAULT_MODEL, Classifier, ClassifierError
from ...device.core.jpeg import MAX_PIXELS, size_allowed
from ...device.core.policy import CLASS_RULES, DEFAULT_THRESHOLD
from .dataset import PATCH_SIZE
from .metrics import flag_scores, roc_auc
from .scenes import add_noise, jpeg_roundtrip

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".ppm", ".pgm"}
FORGER_NOISE_SIGMA = 4.0
FORGER_JPEG_QUALITY = 90


class UsageError(Exception):
    """Bad input: the message says what to give instead."""


def image_files(folder):
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    return files


def read_frame(path, min_side=PATCH_SIZE):
    """An RGB uint8 frame, or None with a reason for a file that is not a usable image.

    16-bit greyscale keeps its top 8 bits (Pillow's own conversion would clip it to
    white); 32-bit integer and float pixels have no agreed 8-bit scale and are refused."""
    try:
        with Image.open(path) as image:
            if not size_allowed(image.size):
                return None, f"{image.width}x{image.height} is over the {MAX_PIXELS} pixel limit"
            if min(image.width, image.height) < min_side:
                return None, f"{image.width}x{image.height} is smaller than one {min_side}-pixel patch"
            if image.mode.startswith("I;16"):
                grey = (np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8)
                return np.repeat(grey[..., None], 3, axis=2), None
            if image.mode in ("I", "F"):
                return None, f"pixel mode {image.mode} (32-bit): convert it to 8-bit RGB first"
            return np.asarray(image.convert("RGB")), None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return None, f"not a readable image ({exc.__class__.__name__})"


def parse_frame_size(text):
    """'WIDTHxHEIGHT' -> (width, height), for --as-frame."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 4056x3040") from None
    if min(width, height) < PATCH_SIZE or not size_allowed((width, height)):
        raise argparse.ArgumentTypeError(
            f"{text}: each side at least {PATCH_SIZE} pixels and at most {MAX_PIXELS} pixels in all")
    return width, height


def as_frame(picture, size):
    """The picture scaled (bicubic) to cover a frame of size (width, height), centre-cropped."""
    width, height = size
    scale = max(width / picture.shape[1], height / picture.shape[0])
    scaled = Image.fromarray(picture).resize(
        (max(width, round(picture.shape[1] * scale)), max(height, round(picture.shape[0] * scale))), Image.BICUBIC)
    left, top = (scaled.width - width) // 2, (scaled.height - height) // 2
    return np.asarray(scaled.crop((left, top, left + width, top + height)))


def forge(frame, seed):
    """The forger's move the card's acceptance names: white noise, then JPEG."""
    rng = np.random.default_rng(seed)
    return jpeg_roundtrip(add_noise(frame, FORGER_NOISE_SIGMA, rng), FORGER_JPEG_QUALITY)


def flag_score(probabilities):
    """What the policy compares with its threshold: metrics.flag_scores of one frame's
    {class: probability}."""
    names = list(probabilities)
    return float(flag_scores(np.array([[probabilities[name] for name in names]]), names)[0])


def score_folder(classifier, files, forged=False, frame_size=None):
    """Each readable file's score as given (or as_frame() of it, with frame_size) and,
    with forged, also after forge(): one read and decode per file. Returns (scores,
    forged scores, skipped files)."""
    scores, forged_scores, skipped = [], [], []
    for index, path in enumerate(files):
        frame, problem = read_frame(path, classifier.patch_size)
        if frame is None:
            skipped.append({"file": str(path), "reason": problem})
            continue
        if frame_size:
            frame = as_frame(frame, frame_size)
        scores.append({"file": str(path), "score": flag_score(classifier.classify(frame))})
        if forged:
            forged_scores.append({"file": str(path), "score": flag_score(classifier.classify(forge(frame, index)))})
    return scores, forged_scores, skipped


def summarise(real, renders, threshold):
    real_scores = np.array([item["score"] for item in real])
    render_scores = np.array([item["score"] for item in renders])
    summary = {
        "real_flagged": float((real_scores >= threshold).mean()) if len(real_scores) else None,
        "renders_flagged": float((render_scores >= threshold).mean()) if len(render_scores) else None,
        "roc_auc_real_vs_renders": None,
    }
    if len(real_scores) and len(render_scores):
        summary["roc_auc_real_vs_renders"] = roc_auc(
            np.r_[real_scores, render_scores], np.r_[np.zeros(len(real_scores), bool), np.ones(len(render_scores), bool)])
    return summary


def check(real_dir, renders_dir, model=DEFAULT_MODEL, labels=DEFAULT_LABELS, threshold=DEFAULT_THRESHOLD,
          frame_size=None):
    classifier = Classifier(model, labels, num_threads=1, required_labels=tuple(CLASS_RULES))
    real, _, real_skipped = score_folder(classifier, image_files(real_dir), frame_size=frame_size)
    renders, forged, render_skipped = score_folder(classifier, image_files(renders_dir), forged=True,
                                                   frame_size=frame_size)
    return {
        "model": str(model),
        "threshold": threshold,
        "as_frame": "x".join(map(str, frame_size)) if frame_size else None,
        "n_real": len(real),
        "n_renders": len(renders),
        "as_given": summarise(real, renders, threshold),
        "renders_noise4_jpeg90": summarise(real, forged, threshold),
        "real": real,
        "renders": renders,
        "skipped": real_skipped + render_skipped,
    }


def _pct(value):
    return "n/a" if value is None else f"{100 * value:.1f}%"


def print_table(report, out=None):
    out = out or sys.stdout
    print(f"model {report['model']}, threshold {report['threshold']}: "
          f"{report['n_real']} real photographs, {report['n_renders']} renders"
          + (f", each as a {report['as_frame']} frame" if report["as_frame"] else ""), file=out)
    for key, title in (("as_given", "renders as given"), ("renders_noise4_jpeg90", "renders + noise 4 + JPEG q90")):
        part = report[key]
        auc = part["roc_auc_real_vs_renders"]
        print(f"  {title:30} ROC-AUC {'n/a' if auc is None else f'{auc:.4f}'}, real flagged {_pct(part['real_flagged'])}, "
              f"renders flagged {_pct(part['renders_flagged'])}", file=out)
    for item in report["skipped"]:
        print(f"  skipped {item['file']!a}: {item['reason']}", file=out)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Score the shipped scene classifier on folders of your own photographs and renders.")
    parser.add_argument("--real", required=True, help="folder of camera photographs (searched recursively)")
    parser.add_argument("--renders", required=True, help="folder of renders or generated images")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="int8 TFLite model (default: the shipped one)")
    parser.add_argument("--labels", default=str(DEFAULT_LABELS), help="labels file of the model")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help=f"flag threshold (default: the policy's, {DEFAULT_THRESHOLD})")
    parser.add_argument("--as-frame", metavar="WIDTHxHEIGHT", type=parse_frame_size,
                        help="score each picture scaled to cover a camera frame of this size and centre-cropped "
                             "(e.g. 4056x3040), as if injected in place of a capture (default: as given)")
    parser.add_argument("--json", action="store_true", help="print the whole report, every file's score included, as JSON")
    args = parser.parse_args(argv)
    if not 0.0 < args.threshold <= 1.0:
        parser.error("--threshold must be in (0, 1]")
    try:
        report = check(args.real, args.renders, args.model, args.labels, args.threshold, args.as_frame)
    except (ClassifierError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
