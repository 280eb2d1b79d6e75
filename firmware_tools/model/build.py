"""Build the shipped scene classifier end to end: `make model` runs this in .venv-train.

data (generated frames + packaged photographs) -> train a small Keras CNN -> float32 and
full-integer int8 TFLite -> evaluate float against int8 on the held-out set with the
device's interpreter -> models/ (model, labels, metrics JSON, model card) and the
committed held-out set the tests re-score.
"""

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from . import dataset, package_images

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "models"
INT8_MODEL = MODELS_DIR / "synthseal_scene_int8.tflite"
FLOAT_MODEL = MODELS_DIR / "synthseal_scene_float32.tflite"
LABELS_FILE = MODELS_DIR / "labels.txt"
METRICS_FILE = MODELS_DIR / "synthseal_scene_metrics.json"
CARD_FILE = MODELS_DIR / "MODEL_CARD.md"
HELDOUT_FILE = REPO / "tests" / "data_classifier" / "heldout_eval.npz"
CALIBRATION_FILE = REPO / "tests" / "data_classifier" / "calibration.npz"
WORK_DIR = REPO / "build" / "model"

SEED = 7
# The default threshold keeps this share of calibration photographs (sources neither
# trained on nor in the held-out set) below it.
CALIBRATION_TARGET_FPR = 0.01


def build_network(patch_size, n_classes, batch_size=None):
    """~53k-parameter CNN on one native-resolution patch. Stride 1 first so pixel-level
    traces (noise, demosaic, subpixel aliasing, JPEG blocks) reach the features before
    any downsampling; global average pooling turns them into patch-level statistics.
    Small on purpose: it runs on every patch of every capture."""
    import tensorflow as tf
    from tensorflow.keras import layers

    def conv(x, filters, stride):
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x)

    inputs = tf.keras.Input((patch_size, patch_size, 3), batch_size=batch_size, name="rgb_unit")
    x = conv(inputs, 16, 1)
    x = conv(x, 24, 2)
    x = conv(x, 32, 2)
    x = conv(x, 48, 2)
    x = conv(x, 64, 2)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="scene")(x)
    return tf.keras.Model(inputs, outputs, name="synthseal_scene")


def frame_accuracy(model, split):
    """Validation accuracy per frame, with the device's aggregation rule."""
    from ...device.classifier import aggregate

    patches, labels, _ = split
    flat = patches.reshape((-1,) + patches.shape[2:]).astype(np.float32) / 255.0
    probabilities = model.predict(flat, batch_size=256, verbose=0).reshape(patches.shape[0], patches.shape[1], -1)
    predicted = np.array([aggregate(p).argmax() for p in probabilities])
    return float((predicted == labels).mean())


def train(train_split, val_split, epochs, patches_per_frame, batch_size=128):
    """A patch of a training frame is one example labelled with its frame's class;
    patches_per_frame of each frame's patches (chosen at random, seeded) are used, which
    buys more frames for the same training time than all patches of fewer frames."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(SEED)
    patches, labels, _ = train_split
    rng = np.random.default_rng(SEED)
    chosen = np.stack([rng.permutation(patches.shape[1])[:patches_per_frame] for _ in range(len(patches))])
    images = np.take_along_axis(patches, chosen[:, :, None, None, None], axis=1).reshape((-1,) + patches.shape[2:])
    patch_labels = np.repeat(labels, patches_per_frame)

    def augment(image, label):
        image = tf.image.random_flip_left_right(image)
        return image, label

    def to_unit(image, label):
        return tf.cast(image, tf.float32) / 255.0, label

    train_ds = (
        tf.data.Dataset.from_tensor_slices((images, patch_labels))
        .shuffle(len(images), seed=SEED)
        .map(augment)
        .map(to_unit)
        .batch(batch_size)
        .prefetch(2)
    )
    val_patches, val_labels, _ = val_split
    val_ds = tf.data.Dataset.from_tensor_slices(
        (val_patches.reshape((-1,) + val_patches.shape[2:]), np.repeat(val_labels, val_patches.shape[1]))
    ).map(to_unit).batch(512)
    model = build_network(dataset.PATCH_SIZE, len(dataset.LABELS))
    steps = epochs * int(np.ceil(len(images) / batch_size))
    schedule = tf.keras.optimizers.schedules.CosineDecay(3e-3, steps, alpha=0.02)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=2)
    history = {k: [float(v) for v in values] for k, values in history.history.items()}
    history["val_frame_accuracy"] = frame_accuracy(model, val_split)
    return model, history


def generator_code_hash():
    """Hash of the code that generates frames: a cached split is reused only if it matches."""
    digest = hashlib.sha256()
    for module in ("dataset.py", "scenes.py", "renders.py", "blender_scenes.py", "gl_scenes.py",
                   "package_images.py", "package_images.json"):
        digest.update((Path(__file__).parent / module).read_bytes())
    import inspect

    from ...device import classifier

    for function in (classifier.patch_origins, classifier.extract_patches, classifier.preprocess):
        digest.update(inspect.getsource(function).encode())
    return digest.hexdigest()[:10]


def load_or_build_split(name, build):
    path = WORK_DIR / f"{name}-{generator_code_hash()}.npz"
    if path.exists():
        print(f"reusing {path.relative_to(REPO)}")
        return dataset.load_split(path)
    started = time.time()
    split = build()
    dataset.save_split(path, *split)
    print(f"built {path.relative_to(REPO)}: {len(split[0])} frames in {time.time() - started:.0f} s", flush=True)
    return split


def per_source_accuracy(probabilities, labels, sources, threshold):
    """Per source: argmax accuracy, and the share the policy flags at the threshold."""
    from .metrics import flag_scores

    predicted = probabilities.argmax(axis=1)
    flagged = flag_scores(probabilities, list(dataset.LABELS)) >= threshold
    result = {}
    for source in sorted(set(sources.tolist())):
        chosen = sources == source
        name = source.split(":", 1)[-1]
        result[f"{dataset.LABELS[int(labels[chosen][0])]}/{name}"] = {
            "n": int(chosen.sum()),
            "accuracy": float((predicted[chosen] == labels[chosen]).mean()),
            "flagged": float(flagged[chosen].mean()),
        }
    return result


def sha256_of(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def calibrate_threshold(calibration_probabilities, target=CALIBRATION_TARGET_FPR):
    """The lowest threshold (in steps of 0.01) at which at most `target` of the calibration
    photographs would be flagged."""
    from .metrics import flag_scores

    scores = flag_scores(calibration_probabilities, list(dataset.LABELS))
    for step in range(1, 101):
        threshold = step / 100
        if (scores >= threshold).mean() <= target:
            return threshold
    return 1.0


def per_photograph_calibration(calibration_probabilities, sources, threshold):
    """Which calibration photographs the threshold rests on: per photograph, the median
    policy score of its crops and the share of its crops flagged at the threshold."""
    from .metrics import flag_scores

    scores = flag_scores(calibration_probabilities, list(dataset.LABELS))
    result = {}
    for source in sorted(set(sources.tolist())):
        chosen = sources == source
        result[source.split(":", 1)[-1]] = {
            "n": int(chosen.sum()),
            "median_score": float(np.median(scores[chosen])),
            "flagged": float((scores[chosen] >= threshold).mean()),
        }
    return result


def evaluate_and_write(heldout, calibration, trained):
    """Score the models in models/ on the calibration and held-out sets and write the
    metrics JSON and the model card. trained: what the training run knows (history,
    parameters, timings, source counts)."""
    from ...device.classifier import Classifier
    from ...device.core.policy import CLASS_RULES
    from . import card
    from .bench_classifier import bench_classifier
    from .metrics import evaluate, flag_scores, perturbation_table, threshold_curve
    from .tflite_eval import FloatModel, fully_integer_problems, predict_int8

    problems = fully_integer_problems(INT8_MODEL)
    if problems:
        raise SystemExit("int8 model is not fully integer: " + "; ".join(problems))
    items, labels, sources = heldout
    classifier = Classifier(INT8_MODEL, LABELS_FILE, num_threads=1, required_labels=tuple(CLASS_RULES))
    int8_probabilities = predict_int8(classifier, items)
    float_probabilities = FloatModel(FLOAT_MODEL).predict(items)
    calibration_probabilities = predict_int8(classifier, calibration[0])
    threshold = calibrate_threshold(calibration_probabilities)
    int8 = evaluate(int8_probabilities, labels, dataset.LABELS, threshold)
    metrics = {
        "labels": list(dataset.LABELS),
        "input": {"patches": dataset.PATCH_COUNT, "patch_size": dataset.PATCH_SIZE, "channels": "RGB",
                  "range": "uint8 / 255", "aggregation": "mean of per-patch probabilities"},
        "heldout_file": str(HELDOUT_FILE.relative_to(REPO)),
        "heldout_sha256": sha256_of(HELDOUT_FILE),
        "calibration_file": str(CALIBRATION_FILE.relative_to(REPO)),
        "calibration_sha256": sha256_of(CALIBRATION_FILE),
        "calibration": {
            "target_false_positive_rate": CALIBRATION_TARGET_FPR,
            "threshold": threshold,
            "n_photographs": int(len(calibration[0])),
            "flagged_at_threshold": float((flag_scores(calibration_probabilities, list(dataset.LABELS)) >= threshold).mean()),
            "curve": threshold_curve(calibration_probabilities, calibration[1], dataset.LABELS),
            "per_photograph": per_photograph_calibration(calibration_probabilities, calibration[2], threshold),
        },
        "heldout": {
            "float32": evaluate(float_probabilities, labels, dataset.LABELS, threshold),
            "int8": int8,
            "int8_per_source": per_source_accuracy(int8_probabilities, labels, sources, threshold),
            "int8_threshold_curve": threshold_curve(int8_probabilities, labels, dataset.LABELS),
            "int8_perturbations": perturbation_table(
                lambda batch: predict_int8(classifier, batch), items, labels, dataset.LABELS, threshold),
        },
        "validation_frame_accuracy_keras_float": trained["validation_frame_accuracy_keras_float"],
        "training": trained["training"],
        "sources": trained["sources"],
        "model": {
            "file": str(INT8_MODEL.relative_to(REPO)),
            "size_bytes": INT8_MODEL.stat().st_size,
            "sha256": sha256_of(INT8_MODEL),
            "parameters": trained["model"]["parameters"],
            "float32_file": str(FLOAT_MODEL.relative_to(REPO)),
            "float32_size_bytes": FLOAT_MODEL.stat().st_size,
        },
        "latency": {**bench_classifier(), "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}"},
        "build_seconds": trained["build_seconds"],
    }
    METRICS_FILE.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    CARD_FILE.write_text(card.render(metrics), encoding="utf-8")
    print(json.dumps({"threshold": threshold, "auc_real_vs_render": int8["roc_auc_real_vs_synthetic"],
                      "flagged": int8["flagged_at_threshold"][str(threshold)]}))
    return metrics


def scene_engine_counts(heldout_sources):
    """Held-out frames per scene engine (renders.SCENE_ENGINES), as the card counts them."""
    from .renders import SCENE_ENGINES

    sources = list(heldout_sources)
    return {f"{engine.upper()}_HELDOUT": sources.count(f"engine:{engine}") for engine in SCENE_ENGINES}


def source_counts(train_renders, heldout_renders, heldout_sources):
    """The card's source list with the counts that depend on what rendered here."""
    counts = {"POVRAY_TRAIN": len(train_renders), "POVRAY_HELDOUT": len(heldout_renders),
              **scene_engine_counts(heldout_sources)}
    return [dict(source, count=counts.get(source["count"], source["count"])) for source in dataset.SOURCES]


def main(argv=None):
    if not (REPO / "pyproject.toml").is_file():
        # An installed wheel has no checkout: never write build output or models into site-packages.
        sys.exit("error: the model pipeline runs from a synthseal checkout (`make model`), not an installed package")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-per-class", type=int, default=3000, help="training frames per class")
    parser.add_argument("--val-per-class", type=int, default=200)
    parser.add_argument("--stored-photos", type=int, default=1500,
                        help="extra real training frames of the stored-photograph kind")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--patches-per-frame", type=int, default=6, help="patches of each training frame trained on")
    parser.add_argument("--processes", type=int, default=2, help="data-generation worker processes")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow threads for training")
    parser.add_argument("--data-only", action="store_true", help="make and cache the data sets, then stop")
    parser.add_argument("--card-only", action="store_true",
                        help="no training: re-score the committed models on the committed held-out set and "
                             "rewrite the metrics JSON and the card (needs no TensorFlow)")
    args = parser.parse_args(argv)
    started = time.time()

    if args.card_only:
        trained = json.loads(METRICS_FILE.read_text(encoding="utf-8"))
        # The source list as the code states it now; the POV-Ray counts are what rendered
        # for the training run.
        heldout = dataset.load_split(HELDOUT_FILE)
        rendered = {(s["class"], s["role"], s["package"]): s["count"] for s in trained["sources"]}
        engines = scene_engine_counts(heldout[2])
        trained["sources"] = [dict(source, count=engines.get(source["count"], rendered.get(
                                  (source["class"], source["role"], source["package"]), source["count"])))
                              if isinstance(source["count"], str) else source for source in dataset.SOURCES]
        evaluate_and_write(heldout, dataset.load_split(CALIBRATION_FILE), trained)
        print(f"rewrote {CARD_FILE.relative_to(REPO)} and {METRICS_FILE.relative_to(REPO)}")
        return

    from . import renders

    WORK_DIR.mkdir(parents=True, exist_ok=True)
    package_images.fetch()
    train_renders = renders.povray_renders(WORK_DIR / "renders", renders.POVRAY_TRAIN_FOLDERS, args.processes)
    heldout_renders = renders.povray_renders(WORK_DIR / "renders", renders.POVRAY_HELDOUT_FOLDERS, args.processes)
    print(f"POV-Ray sample scenes rendered: {len(train_renders)} training, {len(heldout_renders)} held out", flush=True)
    # Engines training never sees, textured with training photographs (never held-out ones).
    scene_renders = []
    textures = dataset.training_photos()
    for engine in renders.SCENE_ENGINES:
        rendered = renders.scene_engine_renders(engine, WORK_DIR / "renders", textures, args.processes)
        print(f"{engine} scenes rendered: {len(rendered)} held out", flush=True)
        scene_renders += rendered
    train_split = load_or_build_split(
        f"train-{args.train_per_class}",
        lambda: dataset.build_training_split("train", args.train_per_class, train_renders, args.processes))
    val_split = load_or_build_split(
        f"val-{args.val_per_class}",
        lambda: dataset.build_training_split("val", args.val_per_class, train_renders, args.processes))
    stored = load_or_build_split(
        f"train-stored-{args.stored_photos}",
        lambda: dataset.build_stored_photo_split("train", args.stored_photos, args.processes))
    val_stored = load_or_build_split(
        "val-stored-100", lambda: dataset.build_stored_photo_split("val", 100, args.processes))
    train_split = tuple(np.concatenate([a, b]) for a, b in zip(train_split, stored))
    val_split = tuple(np.concatenate([a, b]) for a, b in zip(val_split, val_stored))
    calibration = load_or_build_split("calibration", lambda: dataset.build_calibration(args.processes))
    heldout = load_or_build_split("heldout", lambda: dataset.build_heldout(heldout_renders, scene_renders, args.processes))
    data_seconds = time.time() - started
    if args.data_only:
        return

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from . import quantize

    model, history = train(train_split, val_split, args.epochs, args.patches_per_frame)
    model.save(WORK_DIR / "synthseal_scene.keras")
    device_model = quantize.with_patch_batch(model, dataset.PATCH_COUNT)

    MODELS_DIR.mkdir(exist_ok=True)
    FLOAT_MODEL.write_bytes(quantize.convert_float(device_model))
    # Representative data: frames of every class from the training split, shuffled deterministically.
    order = np.random.default_rng(SEED).permutation(len(train_split[0]))
    INT8_MODEL.write_bytes(quantize.convert_int8(device_model, train_split[0][order], max_samples=100))
    LABELS_FILE.write_text("".join(f"{label}\n" for label in dataset.LABELS), encoding="utf-8")
    HELDOUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_split(HELDOUT_FILE, *heldout)
    dataset.save_split(CALIBRATION_FILE, *calibration)

    trained = {
        "validation_frame_accuracy_keras_float": history["val_frame_accuracy"],
        "training": {
            "train_frames_per_class": args.train_per_class,
            "stored_photo_frames": args.stored_photos,
            "val_frames_per_class": args.val_per_class,
            "patches_per_frame": args.patches_per_frame,
            "epochs": args.epochs,
            "history": history,
            "tensorflow": tf.__version__,
            "seed": SEED,
        },
        "sources": source_counts(train_renders, heldout_renders[:dataset.HELDOUT_POVRAY_MAX], heldout[2]),
        "model": {"parameters": int(model.count_params())},
        "build_seconds": {"data": round(data_seconds), "total": round(time.time() - started)},
    }
    metrics = evaluate_and_write(heldout, calibration, trained)
    print(f"wrote {INT8_MODEL.relative_to(REPO)} ({metrics['model']['size_bytes']} bytes), card, metrics "
          f"in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
