"""Build the shipped scene classifier end to end: `make model` runs this in .venv-train.

data (generated frames + packaged photographs) -> train a small Keras CNN -> float32 and
full-integer int8 TFLite -> evaluate float against int8 on the held-out set with the
device's interpreter -> models/ (model, labels, metrics JSON, model card) and the
committed held-out set the tests re-score.
"""

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from . import dataset

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "models"
INT8_MODEL = MODELS_DIR / "synthseal_scene_int8.tflite"
FLOAT_MODEL = MODELS_DIR / "synthseal_scene_float32.tflite"
LABELS_FILE = MODELS_DIR / "labels.txt"
METRICS_FILE = MODELS_DIR / "synthseal_scene_metrics.json"
CARD_FILE = MODELS_DIR / "MODEL_CARD.md"
HELDOUT_FILE = REPO / "tests" / "data_classifier" / "heldout_eval.npz"
WORK_DIR = REPO / "build" / "model"

SEED = 7


def build_network(input_size, n_classes):
    """~110k-parameter CNN. Stride 1 first so pixel-level traces (noise, demosaic,
    subpixel aliasing) reach the features before any downsampling; global average
    pooling turns them into frame-level statistics."""
    import tensorflow as tf
    from tensorflow.keras import layers

    def conv(x, filters, stride):
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x)

    inputs = tf.keras.Input((input_size, input_size, 3), name="rgb_unit")
    x = conv(inputs, 16, 1)
    x = conv(x, 24, 2)
    x = conv(x, 32, 1)
    x = conv(x, 48, 2)
    x = conv(x, 64, 2)
    x = conv(x, 96, 2)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="scene")(x)
    return tf.keras.Model(inputs, outputs, name="synthseal_scene")


def train(train_split, val_split, epochs, batch_size=64):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    images, labels, _ = train_split
    val_images, val_labels, _ = val_split

    def augment(image, label):
        image = tf.image.random_flip_left_right(image)
        image = tf.image.random_flip_up_down(image)
        return image, label

    def to_unit(image, label):
        return tf.cast(image, tf.float32) / 255.0, label

    train_ds = (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .shuffle(len(images), seed=SEED)
        .map(augment)
        .map(to_unit)
        .batch(batch_size)
        .prefetch(2)
    )
    val_ds = tf.data.Dataset.from_tensor_slices((val_images, val_labels)).map(to_unit).batch(256)
    model = build_network(dataset.INPUT_SIZE, len(dataset.LABELS))
    steps = epochs * int(np.ceil(len(images) / batch_size))
    schedule = tf.keras.optimizers.schedules.CosineDecay(3e-3, steps, alpha=0.02)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=2)
    return model, {k: [float(v) for v in values] for k, values in history.history.items()}


def generator_code_hash():
    """Hash of the code that generates frames: a cached split is reused only if it matches."""
    digest = hashlib.sha256()
    for module in ("dataset.py", "scenes.py"):
        digest.update((Path(__file__).parent / module).read_bytes())
    import inspect

    from ...device import classifier

    for function in (classifier.sample_grid, classifier.preprocess):
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
    print(f"built {path.relative_to(REPO)}: {len(split[0])} frames in {time.time() - started:.0f} s")
    return split


def per_source_accuracy(probabilities, labels, sources):
    predicted = probabilities.argmax(axis=1)
    result = {}
    for source in sorted(set(sources.tolist())):
        chosen = sources == source
        name = source.split(":", 1)[-1]
        result[f"{dataset.LABELS[int(labels[chosen][0])]}/{name}"] = {
            "n": int(chosen.sum()),
            "accuracy": float((predicted[chosen] == labels[chosen]).mean()),
        }
    return result


def sha256_of(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def evaluate_and_write(heldout, trained):
    """Score the models in models/ on the held-out split and write the metrics JSON and
    the model card. trained: what the training run knows (history, parameters, timings)."""
    from ...device.classifier import Classifier
    from ...device.core.policy import CLASS_RULES
    from . import card
    from .bench_classifier import bench_classifier
    from .metrics import evaluate
    from .tflite_eval import FloatModel, fully_integer_problems, predict_int8

    problems = fully_integer_problems(INT8_MODEL)
    if problems:
        raise SystemExit("int8 model is not fully integer: " + "; ".join(problems))
    images, labels, sources = heldout
    classifier = Classifier(INT8_MODEL, LABELS_FILE, num_threads=2, required_labels=tuple(CLASS_RULES))
    int8_probabilities = predict_int8(classifier, images)
    float_probabilities = FloatModel(FLOAT_MODEL).predict(images)
    metrics = {
        "labels": list(dataset.LABELS),
        "input": {"height": dataset.INPUT_SIZE, "width": dataset.INPUT_SIZE, "channels": "RGB", "range": "uint8 / 255"},
        "heldout_file": str(HELDOUT_FILE.relative_to(REPO)),
        "heldout_sha256": sha256_of(HELDOUT_FILE),
        "heldout": {
            "float32": evaluate(float_probabilities, labels, dataset.LABELS),
            "int8": evaluate(int8_probabilities, labels, dataset.LABELS),
            "int8_per_source": per_source_accuracy(int8_probabilities, labels, sources),
        },
        "validation_accuracy_keras_float": trained["validation_accuracy_keras_float"],
        "training": trained["training"],
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
    print(json.dumps({k: metrics["heldout"][k]["accuracy"] for k in ("float32", "int8")}))
    return metrics


def main(argv=None):
    if not (REPO / "pyproject.toml").is_file():
        # An installed wheel has no checkout: never write build output or models into site-packages.
        sys.exit("error: the model pipeline runs from a synthseal checkout (`make model`), not an installed package")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-per-class", type=int, default=4000)
    parser.add_argument("--val-per-class", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--processes", type=int, default=2, help="data-generation worker processes")
    parser.add_argument("--card-only", action="store_true",
                        help="no training: re-score the committed models on the committed held-out set and "
                             "rewrite the metrics JSON and the card (needs no TensorFlow)")
    args = parser.parse_args(argv)
    started = time.time()

    if args.card_only:
        trained = json.loads(METRICS_FILE.read_text(encoding="utf-8"))
        evaluate_and_write(dataset.load_split(HELDOUT_FILE), trained)
        print(f"rewrote {CARD_FILE.relative_to(REPO)} and {METRICS_FILE.relative_to(REPO)}")
        return

    import tensorflow as tf

    from . import quantize

    WORK_DIR.mkdir(parents=True, exist_ok=True)
    train_split = load_or_build_split(
        f"train-{args.train_per_class}", lambda: dataset.build_training_split("train", args.train_per_class, args.processes)
    )
    val_split = load_or_build_split(
        f"val-{args.val_per_class}", lambda: dataset.build_training_split("val", args.val_per_class, args.processes)
    )
    heldout = load_or_build_split("heldout", lambda: dataset.build_heldout(args.processes))
    data_seconds = time.time() - started

    model, history = train(train_split, val_split, args.epochs)
    model.save(WORK_DIR / "synthseal_scene.keras")

    MODELS_DIR.mkdir(exist_ok=True)
    FLOAT_MODEL.write_bytes(quantize.convert_float(model))
    # Representative data: training frames of every class, shuffled deterministically.
    order = np.random.default_rng(SEED).permutation(len(train_split[0]))
    INT8_MODEL.write_bytes(quantize.convert_int8(model, train_split[0][order]))
    LABELS_FILE.write_text("".join(f"{label}\n" for label in dataset.LABELS), encoding="utf-8")
    HELDOUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_split(HELDOUT_FILE, *heldout)

    trained = {
        "validation_accuracy_keras_float": float(history["val_accuracy"][-1]),
        "training": {
            "train_frames_per_class": args.train_per_class,
            "val_frames_per_class": args.val_per_class,
            "epochs": args.epochs,
            "history": history,
            "tensorflow": tf.__version__,
            "seed": SEED,
        },
        "model": {"parameters": int(model.count_params())},
        "build_seconds": {"data": round(data_seconds), "total": round(time.time() - started)},
    }
    metrics = evaluate_and_write(heldout, trained)
    print(f"wrote {INT8_MODEL.relative_to(REPO)} ({metrics['model']['size_bytes']} bytes), card, metrics "
          f"in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
