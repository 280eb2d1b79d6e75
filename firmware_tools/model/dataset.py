"""Build the training, validation and held-out sets as model-sized uint8 RGB arrays.

Every frame is generated at camera-frame size and reduced with the device's own
preprocessing (device.classifier.preprocess), so training sees exactly what the device
feeds the model.

Photographs that ship inside installable packages:
- training only: scipy 1.11 (scipy/misc face.dat, ascent.dat) and matplotlib
  (mpl-data/sample_data/grace_hopper.jpg);
- held-out evaluation only: scikit-image 0.22 (skimage/data/*.png|jpg).
The two sets are disjoint, and no held-out photograph reaches training in any form
(neither as a "real" frame nor as content shown on a simulated screen).
"""

from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

from ...device.classifier import preprocess
from . import scenes

LABELS = ("real", "synthetic", "screen")
INPUT_SIZE = 64
SPLIT_SEEDS = {"train": 1, "val": 2, "heldout": 3}

# Camera photographs in the scikit-image wheel (skimage/data). Left out on purpose:
# drawings and test patterns (chessboard, color, logo, phantom, horse), microscopy and
# telescope images (cell, ihc, retina, microaneurysms, hubble_deep_field), the second
# view of the stereo pair (motorcycle_right) and the scanned page.
HELDOUT_PHOTO_FILES = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "clock_motion.png",
    "coffee.png", "coins.png", "grass.png", "gravel.png", "moon.png",
    "motorcycle_left.png", "rocket.jpg", "text.png",
)
HELDOUT_CROPS_PER_PHOTO = 9
HELDOUT_PER_CLASS = len(HELDOUT_PHOTO_FILES) * HELDOUT_CROPS_PER_PHOTO


def _as_rgb(array):
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(array[..., :3].astype(np.uint8))


def training_photos():
    """The training photographs, never the evaluation ones."""
    from matplotlib import cbook
    from scipy import misc

    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        hopper = np.asarray(Image.open(handle).convert("RGB"))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return [_as_rgb(misc.face()), _as_rgb(misc.ascent()), _as_rgb(hopper)]


def heldout_photos():
    import skimage

    data_dir = Path(skimage.__file__).resolve().parent / "data"
    return [(name, _as_rgb(Image.open(data_dir / name).convert("RGB"))) for name in HELDOUT_PHOTO_FILES]


def random_frame_size(rng):
    height = int(rng.integers(128, 385))
    aspect = [1.0, 4 / 3, 3 / 4, 16 / 9][int(rng.integers(0, 4))]
    return height, max(96, int(height * aspect))


def random_crop(rng, photo, min_fraction=0.4):
    """A random window of a photograph, as a differently framed capture of the scene."""
    height, width, _ = photo.shape
    crop_h = int(height * rng.uniform(min_fraction, 1.0))
    crop_w = int(min(width, crop_h * rng.uniform(0.75, 1.5)))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    crop = photo[top:top + crop_h, left:left + crop_w]
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def render(rng, families, height, width):
    family = families[int(rng.integers(0, len(families)))]
    return scenes.RENDER_FAMILIES[family](rng, height, width), family


def natural_content(rng, height, width):
    if rng.random() < 0.65:
        return scenes.natural_scene(rng, height, width)
    return scenes.landscape_scene(rng, height, width)


def make_real(rng, photos):
    height, width = random_frame_size(rng)
    pick = rng.random()
    if photos and pick < 0.15:
        return scenes.finish_render(rng, scenes.to_float(random_crop(rng, photos[int(rng.integers(0, len(photos)))]))), "photo"
    if pick < 0.35:
        # A camera filming a flat, printed or painted subject is still a real capture:
        # this keeps the model on capture traces rather than on content alone.
        content, _ = render(rng, scenes.TRAIN_RENDER_FAMILIES, height, width)
        source = "camera_of_flat_subject"
    else:
        content = natural_content(rng, height, width)
        source = "camera_of_scene"
    # Many photographs are stored smaller than captured, which averages the noise down.
    downscale = 1.0 if rng.random() < 0.5 else rng.uniform(1.5, 4.0)
    return scenes.camera_capture(rng, content, downscale), source


def make_synthetic(rng, families):
    height, width = random_frame_size(rng)
    image, family = render(rng, families, height, width)
    return scenes.finish_render(rng, image), family


def make_screen(rng, photos, families):
    height, width = random_frame_size(rng)
    pick = rng.random()
    if photos and pick < 0.4:
        content = random_crop(rng, photos[int(rng.integers(0, len(photos)))])
        source = "photo_on_screen"
    elif pick < 0.7:
        image, family = render(rng, families, height, width)
        content, source = scenes.to_uint8(image), f"{family}_on_screen"
    else:
        content, source = scenes.to_uint8(natural_content(rng, height, width)), "scene_on_screen"
    return scenes.screen_recapture(rng, content, height, width), source


def maybe_grayscale(rng, frame, probability=0.25):
    """Many photographs are monochrome; colour must not be a shortcut to any class."""
    if rng.random() < probability:
        gray = (frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round().astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return frame


_WORKER_PHOTOS = None


def _init_worker(photos):
    global _WORKER_PHOTOS
    _WORKER_PHOTOS = photos


def _make_training_sample(job):
    split, class_index, sample_index = job
    rng = np.random.default_rng([SPLIT_SEEDS[split], class_index, sample_index])
    label = LABELS[class_index]
    if label == "real":
        frame, source = make_real(rng, _WORKER_PHOTOS)
    elif label == "synthetic":
        frame, source = make_synthetic(rng, scenes.TRAIN_RENDER_FAMILIES)
    else:
        frame, source = make_screen(rng, _WORKER_PHOTOS, scenes.TRAIN_RENDER_FAMILIES)
    frame = maybe_grayscale(rng, frame)
    return preprocess(frame, INPUT_SIZE, INPUT_SIZE), class_index, source


def _make_heldout_sample(job):
    class_index, sample_index = job
    rng = np.random.default_rng([SPLIT_SEEDS["heldout"], class_index, sample_index])
    label = LABELS[class_index]
    photo_index = sample_index // HELDOUT_CROPS_PER_PHOTO
    if label == "real":
        name, photo = _WORKER_PHOTOS[photo_index]
        frame, source = random_crop(rng, photo), f"skimage:{name}"
    elif label == "synthetic":
        # A third of the renders come from a family that training never saw.
        families = (scenes.HELD_OUT_RENDER_FAMILY,) if sample_index % 3 == 0 else scenes.TRAIN_RENDER_FAMILIES
        frame, source = make_synthetic(rng, families)
    else:
        # Screens show held-out photographs or renders: content disjoint from training.
        photos = [photo for _, photo in _WORKER_PHOTOS]
        frame, source = make_screen(rng, photos, tuple(scenes.RENDER_FAMILIES))
    return preprocess(frame, INPUT_SIZE, INPUT_SIZE), class_index, source


def _collect(results):
    images = np.stack([r[0] for r in results])
    labels = np.array([r[1] for r in results], np.int64)
    sources = np.array([r[2] for r in results])
    return images, labels, sources


def build_training_split(split, per_class, processes=2):
    jobs = [(split, c, i) for c in range(len(LABELS)) for i in range(per_class)]
    with Pool(processes, initializer=_init_worker, initargs=(training_photos(),)) as pool:
        return _collect(pool.map(_make_training_sample, jobs, chunksize=32))


def build_heldout(processes=2):
    jobs = [(c, i) for c in range(len(LABELS)) for i in range(HELDOUT_PER_CLASS)]
    with Pool(processes, initializer=_init_worker, initargs=(heldout_photos(),)) as pool:
        return _collect(pool.map(_make_heldout_sample, jobs, chunksize=8))


def save_split(path, images, labels, sources):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=images, labels=labels, sources=sources, label_names=np.array(LABELS))


def load_split(path):
    with np.load(path) as data:
        return data["images"], data["labels"], data["sources"]


def contact_sheet(images, labels, per_class=8):
    """One row of examples per class, for eyeballing the generated data."""
    rows = []
    for class_index in range(len(LABELS)):
        chosen = images[labels == class_index][:per_class]
        rows.append(np.concatenate(list(chosen), axis=1))
    return Image.fromarray(np.concatenate(rows, axis=0))


