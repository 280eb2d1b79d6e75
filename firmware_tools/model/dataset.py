"""Build the training, calibration and held-out sets as native-resolution patches.

Every frame is made at camera-frame size and cut into patches with the device's own
extract_patches (device.classifier.preprocess): training sees exactly what the device
feeds the model, pixel for pixel.

Sources, by role (the card lists them from SOURCES):
- training only: photographs in scipy 1.11 (scipy/misc face, ascent), matplotlib
  (grace_hopper.jpg) and the OpenCV sample data of Debian's opencv-doc
  (OPENCV_TRAIN_PHOTO_FILES, examples/data and alphamat), eight of the nature
  photographs of Debian's mate-backgrounds (MATE_TRAIN_PHOTO_FILES); POV-Ray sample scenes of the folders renders.POVRAY_TRAIN_FOLDERS;
  the numpy render families of scenes.py; the simulated camera on natural content;
  RGB-stripe and PenTile panels.
- calibration only (the default threshold): photographs in scikit-learn (china.jpg,
  flower.jpg), PyWavelets (aero) and other opencv-doc sample folders
  (OPENCV_CALIBRATION_PHOTO_FILES: hfs, reg, dnn_superres, text scene photographs, aero1),
  and four of mate-backgrounds' nature photographs (MATE_CALIBRATION_PHOTO_FILES), used
  neither for training nor for the held-out figures.
- held-out only: photographs in scikit-image 0.22 (skimage/data), Debian's
  lomiri-wallpapers-16.04 (full-size camera photographs) and KPhotoAlbum's demo album
  (package_images.py), POV-Ray sample scenes of renders.POVRAY_HELDOUT_FOLDERS, three
  engines training never saw: matplotlib mplot3d, Blender Cycles scenes
  (blender_scenes.py) and game-like OpenGL scenes (gl_scenes.py), both textured with
  training photographs; the in-game screenshots of three games' Debian data packages
  (package_images.py); LED-wall panels (a layout training never saw) beside the two
  trained ones.
No held-out or calibration photograph reaches training in any form (neither as a "real"
frame nor as content shown on a simulated screen).
"""

import warnings
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

from ...device.classifier import preprocess
from . import package_images, renders, scenes

LABELS = ("real", "synthetic", "screen")
PATCH_SIZE = 64
PATCH_COUNT = 12
SPLIT_SEEDS = {"train": 1, "val": 2, "calibration": 4, "heldout": 3}

TRAIN_PANELS = ("rgb_stripe", "pentile")
HELDOUT_PANELS = scenes.PANEL_LAYOUTS  # led_wall is new to the model

# Camera photographs in the scikit-image wheel (skimage/data). Left out on purpose:
# drawings and test patterns (chessboard, color, logo, phantom, horse), microscopy and
# telescope images (cell, ihc, retina, microaneurysms, hubble_deep_field), the second
# view of the stereo pair (motorcycle_right) and the scanned page.
HELDOUT_PHOTO_FILES = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "clock_motion.png",
    "coffee.png", "coins.png", "grass.png", "gravel.png", "moon.png",
    "motorcycle_left.png", "rocket.jpg", "text.png",
)
# Camera photographs of the Ubuntu 16.04 wallpaper contest in Debian's
# lomiri-wallpapers-16.04: full-size captures (1365x1074 up to 5312x2988) from several
# cameras, the closest thing in a package to the frames the device sees. Left out:
# analogpattern (an abstract texture, not clearly a photograph).
LOMIRI_FOLDER = Path("/usr/share/backgrounds")
HELDOUT_LOMIRI_PHOTO_FILES = (
    "Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "Picture_0B_by_freespace.jpg",
    "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg", "aitzgorri_by_Aitzol_Berasategi.jpg",
    "free_by_Peter_Nerlich.jpg", "friends_by_Aitzol_Berasategi.jpg", "greentock_by_Peter_Nerlich.jpg",
    "life_by_Aitzol_Berasategi.jpg", "picosdeeuropa_by_Aitzol_Berasategi.jpg",
    "seeding_by_Clements_Engelhardt.jpg", "sunset_by_Aitzol_Berasategi.jpg",
)
HELDOUT_CROPS_PER_PHOTO = 8
HELDOUT_MPLOT3D_RENDERS = 40
HELDOUT_POVRAY_MAX = 80
HELDOUT_SCREENS = 60
CALIBRATION_CROPS_PER_PHOTO = 30

# Camera photographs among the OpenCV samples in Debian's opencv-doc (installed by
# `make model`), each looked at by eye. Left out on purpose: drawings, logos, text pages,
# test patterns and renders (Blender_Suzanne*, ml.png, pic*.png, cards, HappyFish, ...),
# the painting starry_night, images with synthetic or edited content (ela_modified,
# text_defocus, text_motion, licenseplate_motion), and the second view of every stereo
# or flow pair (aloeR, leuvenB, right*, left02-14, basketball2, rubberwhale2, graf3,
# aero3) so that no scene sits on both sides of the training/calibration split.
OPENCV_EXAMPLES = Path("/usr/share/doc/opencv-doc/examples")
OPENCV_TRAIN_PHOTO_FILES = (
    "data/aloeL.jpg", "data/apple.jpg", "data/baboon.jpg", "data/basketball1.png",
    "data/blox.jpg", "data/board.jpg", "data/box.png", "data/box_in_scene.png",
    "data/building.jpg", "data/butterfly.jpg", "data/chicky_512.png", "data/ela_original.jpg",
    "data/fruits.jpg", "data/graf1.png", "data/home.jpg", "data/left.jpg", "data/left01.jpg",
    "data/leuvenA.jpg", "data/messi5.jpg", "data/orange.jpg", "data/pca_test1.jpg",
    "data/rubberwhale1.png", "data/squirrel_cls.jpg", "data/stuff.jpg", "data/sudoku.png",
    "alphamat/input_images/plant.jpg",
)
# Calibration photographs come from other folders of the same package than the training
# ones (and aero1, whose neighbour aero3 is left out), so they are neither trained on nor
# views of a trained scene.
OPENCV_CALIBRATION_PHOTO_FILES = (
    "data/aero1.jpg", "dnn_superres/butterfly.png", "hfs/data/000.jpg", "hfs/data/001.jpg",
    "hfs/data/002.jpg", "reg/home.png", "text/scenetext01.jpg", "text/scenetext02.jpg",
    "text/scenetext03.jpg", "text/scenetext04.jpg", "text/scenetext05.jpg", "text/scenetext06.jpg",
)
# Photographs among the MATE desktop's wallpapers in Debian's mate-backgrounds (installed by
# `make model`): the "nature" folder, twelve camera photographs (macro, bokeh, grass, sky,
# wood), each looked at by eye. The abstract and desktop folders are drawings and renders
# and are left out. Close-ups with blurred backgrounds are what a small traces model most
# easily mistakes for a render, so eight train it and four more calibrate the threshold.
MATE_NATURE = Path("/usr/share/backgrounds/mate/nature")
MATE_TRAIN_PHOTO_FILES = (
    "Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg",
    "Garden.jpg", "GreenMeadow.jpg", "LadyBird.jpg", "RainDrops.jpg",
)
MATE_CALIBRATION_PHOTO_FILES = ("Storm.jpg", "TwoWings.jpg", "Wood.jpg", "YellowFlower.jpg")
MATE_LICENCE = "GPL-2+, one photographer or two per file (Debian copyright file of mate-backgrounds)"
OPENCV_LICENCE = ("Apache-2.0 AND BSD-3-Clause (Debian copyright file of opencv, `Files: *`); "
                  "the photographs' own origin is not stated there")

# What the card says about every source: role, package, files, licence.
SOURCES = [
    {"class": "real", "role": "train", "package": "scipy 1.11 (wheel)", "files": "scipy/misc/face.dat, ascent.dat", "count": 2, "licence": "public domain (per the scipy.misc docstrings)"},
    {"class": "real", "role": "train", "package": "matplotlib 3.8 (wheel)", "files": "mpl-data/sample_data/grace_hopper.jpg", "count": 1, "licence": "public domain (US Navy photograph)"},
    {"class": "real", "role": "train", "package": "Debian opencv-doc 4.6 (OpenCV samples)", "files": "examples/: " + ", ".join(OPENCV_TRAIN_PHOTO_FILES), "count": len(OPENCV_TRAIN_PHOTO_FILES), "licence": OPENCV_LICENCE},
    {"class": "real", "role": "train", "package": "Debian mate-backgrounds 1.26", "files": "backgrounds/mate/nature/: " + ", ".join(MATE_TRAIN_PHOTO_FILES), "count": len(MATE_TRAIN_PHOTO_FILES), "licence": MATE_LICENCE},
    {"class": "real", "role": "train", "package": "synthseal scenes.py", "files": "simulated camera (RGGB mosaic, shot+read noise, bilinear demosaic, tone curve, sharpening, JPEG) on dead-leaves, landscape and flat subjects", "count": None, "licence": "Apache-2.0 (this project)"},
    {"class": "real", "role": "calibration", "package": "scikit-learn 1.5 (wheel)", "files": "sklearn/datasets/images/china.jpg, flower.jpg", "count": 2, "licence": "CC-BY 2.0 (sklearn/datasets/images/README.txt)"},
    {"class": "real", "role": "calibration", "package": "PyWavelets 1.7 (wheel)", "files": "pywt/data/aero.npz", "count": 1, "licence": "shipped in PyWavelets (MIT); the image's own origin is not stated there"},
    {"class": "real", "role": "calibration", "package": "Debian opencv-doc 4.6 (OpenCV samples)", "files": "examples/: " + ", ".join(OPENCV_CALIBRATION_PHOTO_FILES), "count": len(OPENCV_CALIBRATION_PHOTO_FILES), "licence": OPENCV_LICENCE},
    {"class": "real", "role": "calibration", "package": "Debian mate-backgrounds 1.26", "files": "backgrounds/mate/nature/: " + ", ".join(MATE_CALIBRATION_PHOTO_FILES), "count": len(MATE_CALIBRATION_PHOTO_FILES), "licence": MATE_LICENCE},
    {"class": "real", "role": "held out", "package": "scikit-image 0.22 (wheel)", "files": "skimage/data: " + ", ".join(HELDOUT_PHOTO_FILES), "count": len(HELDOUT_PHOTO_FILES), "licence": "per file in skimage/data/README.txt"},
    {"class": "real", "role": "held out", "package": "Debian lomiri-wallpapers-16.04 20.04.0", "files": "backgrounds/: " + ", ".join(HELDOUT_LOMIRI_PHOTO_FILES), "count": len(HELDOUT_LOMIRI_PHOTO_FILES), "licence": "CC-BY-4.0, CC-BY-SA-4.0 or CC0-1.0 per file (Debian copyright file of lomiri-wallpapers)"},
    {"class": "synthetic", "role": "train", "package": "synthseal scenes.py", "files": "numpy renders: flat_shapes, cg_texture, ui_text, clean_scene, shaded_3d (ray-cast)", "count": None, "licence": "Apache-2.0 (this project)"},
    {"class": "synthetic", "role": "train", "package": "Debian povray 3.7 + povray-examples", "files": "sample scenes in " + ", ".join(renders.POVRAY_TRAIN_FOLDERS) + ", rendered here at 400x300, AA 0.3", "count": "POVRAY_TRAIN", "licence": "scenes CC-BY-3.0, include files CC-BY-SA-3.0 (Debian copyright file); renders made here"},
    {"class": "synthetic", "role": "held out", "package": "Debian povray 3.7 + povray-examples", "files": "sample scenes in " + ", ".join(renders.POVRAY_HELDOUT_FOLDERS) + ", rendered here at 400x300, AA 0.3", "count": "POVRAY_HELDOUT", "licence": "scenes CC-BY-3.0, include files CC-BY-SA-3.0 (Debian copyright file); renders made here"},
    {"class": "synthetic", "role": "held out", "package": "Blender 4.2 Cycles (bpy wheel; engine never trained)", "files": "random scenes of blender_scenes.py: procedural and training-photograph textures, glass, metal, sky or photograph worlds, sun, area, point and spot lights; 16 or 32 samples, mostly denoised; AgX, Filmic or Standard view; 360-640 px", "count": "BLENDER_HELDOUT", "licence": "GPL-2+ (Blender); scenes and renders made by this project"},
    {"class": "synthetic", "role": "held out", "package": "moderngl 5.12 on Mesa llvmpipe, OpenGL (engine never trained)", "files": "game-like scenes of gl_scenes.py: ground, buildings, crates and spheres with training-photograph and procedural textures, mipmaps, bilinear/anisotropic or nearest filtering, Blinn-Phong, fog; no AA, 2x SSAA or 4x MSAA; 512-800 px", "count": "GL_HELDOUT", "licence": "MIT (moderngl, Mesa); scenes and renders made by this project"},
    {"class": "synthetic", "role": "held out", "package": "matplotlib 3.8 mplot3d, Agg rasteriser (engine never trained)", "files": "shaded surfaces, bars, tori drawn here at 400x300", "count": HELDOUT_MPLOT3D_RENDERS, "licence": "PSF-based matplotlib licence; drawn by this project"},
] + package_images.sources() + [
    {"class": "screen", "role": "train", "package": "synthseal scenes.py", "files": "RGB-stripe and PenTile panels showing training photographs and renders, filmed by the simulated camera", "count": None, "licence": "Apache-2.0 (this project)"},
    {"class": "screen", "role": "held out", "package": "synthseal scenes.py", "files": "RGB-stripe, PenTile and LED-wall (layout never trained) panels showing held-out photographs and renders", "count": HELDOUT_SCREENS, "licence": "Apache-2.0 (this project)"},
]


def _as_rgb(array):
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(array[..., :3].astype(np.uint8))


def package_photos(folder, files, install):
    """(name, RGB array) of photographs a package installs under folder; install says
    what to install when some are missing."""
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise SystemExit(f"missing sample photographs under {folder}: {', '.join(missing)}; "
                         f"install {install} (`make model` does)")
    return [(name, _as_rgb(Image.open(folder / name).convert("RGB"))) for name in files]


def opencv_photos(files):
    return package_photos(OPENCV_EXAMPLES, files, "Debian's opencv-doc (a dpkg path-exclude of /usr/share/doc drops "
                          "its examples)")


def mate_photos(files):
    return package_photos(MATE_NATURE, files, "Debian's mate-backgrounds")


def training_photos():
    """The training photographs, never the calibration or evaluation ones."""
    from matplotlib import cbook
    from scipy import misc

    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        hopper = np.asarray(Image.open(handle).convert("RGB"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        packaged = [_as_rgb(misc.face()), _as_rgb(misc.ascent()), _as_rgb(hopper)]
    named = opencv_photos(OPENCV_TRAIN_PHOTO_FILES) + mate_photos(MATE_TRAIN_PHOTO_FILES)
    return packaged + [photo for _, photo in named]


def calibration_photos():
    import pywt
    from sklearn.datasets import load_sample_images

    images = load_sample_images()
    named = [(Path(name).name, _as_rgb(image)) for name, image in zip(images.filenames, images.images)]
    return (named + [("aero", _as_rgb(np.clip(pywt.data.aero(), 0, 255)))]
            + opencv_photos(OPENCV_CALIBRATION_PHOTO_FILES) + mate_photos(MATE_CALIBRATION_PHOTO_FILES))


def heldout_photos():
    """(source, RGB array): source is "package:file"."""
    import skimage

    data_dir = Path(skimage.__file__).resolve().parent / "data"
    return ([(f"skimage:{name}", photo) for name, photo in package_photos(data_dir, HELDOUT_PHOTO_FILES, "scikit-image 0.22")]
            + [(f"lomiri:{name}", photo) for name, photo in
               package_photos(LOMIRI_FOLDER, HELDOUT_LOMIRI_PHOTO_FILES, "Debian's lomiri-wallpapers-16.04")]
            + [(f"{name.split('/')[0]}:{name.rsplit('/', 1)[-1]}", photo)
               for name, photo in package_images.load("real", "held out")])


def random_frame_size(rng):
    height = int(rng.integers(192, 385))
    aspect = [1.0, 4 / 3, 3 / 4, 16 / 9][int(rng.integers(0, 4))]
    return height, max(128, int(height * aspect))


def random_crop(rng, photo, min_fraction=0.4):
    """A random window of a photograph, as a differently framed capture of the scene."""
    height, width, _ = photo.shape
    crop_h = int(height * rng.uniform(min_fraction, 1.0))
    crop_w = int(min(width, crop_h * rng.uniform(0.75, 1.5)))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    crop = photo[top:top + crop_h, left:left + crop_w]
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def numpy_render(rng, height, width):
    families = tuple(scenes.RENDER_FAMILIES)
    family = families[int(rng.integers(0, len(families)))]
    return scenes.RENDER_FAMILIES[family](rng, height, width), family


def natural_content(rng, height, width):
    if rng.random() < 0.65:
        return scenes.natural_scene(rng, height, width)
    return scenes.landscape_scene(rng, height, width)


def engine_render(rng, engine_renders):
    """A crop of a real engine's render at native scale (sometimes the whole frame)."""
    name, image = engine_renders[int(rng.integers(0, len(engine_renders)))]
    if rng.random() < 0.5:
        image = random_crop(rng, image, 0.6)
    elif rng.random() < 0.5:
        image = image[:, ::-1]
    return np.ascontiguousarray(image), "povray:" + name.split("/")[0]


def make_real(rng, photos):
    pick = rng.random()
    if pick < 0.45:
        # A photograph as a package ships it: already captured, processed and stored.
        photo = photos[int(rng.integers(0, len(photos)))]
        return random_crop(rng, photo), "photo"
    height, width = random_frame_size(rng)
    if pick < 0.57:
        # The same photographs as scenes in front of the simulated camera: content the
        # render classes also show, so that content alone decides nothing.
        photo = photos[int(rng.integers(0, len(photos)))]
        content = scenes.resize(scenes.to_float(random_crop(rng, photo)), height, width, Image.BICUBIC)
        source = "camera_of_photo"
    elif pick < 0.7:
        # A camera filming a flat, printed or painted subject is still a real capture.
        content, _ = numpy_render(rng, height, width)
        source = "camera_of_flat_subject"
    else:
        content = natural_content(rng, height, width)
        source = "camera_of_scene"
    # Many photographs are stored smaller than captured, which averages the noise down.
    downscale = 1.0 if rng.random() < 0.6 else rng.uniform(1.5, 3.0)
    return scenes.camera_capture(rng, content, downscale), source


def make_stored_photo(rng, photos):
    """A real photograph as packages and websites store it: captured by the simulated
    camera at 2-4x the stored size, then reduced and re-encoded, which averages the sensor
    noise away and leaves a clean-looking but natural image."""
    height = int(rng.integers(192, 289))
    width = max(128, int(height * [1.0, 4 / 3, 3 / 4][int(rng.integers(0, 3))]))
    pick = rng.random()
    if pick < 0.3:
        photo = photos[int(rng.integers(0, len(photos)))]
        content = scenes.resize(scenes.to_float(random_crop(rng, photo)), height, width, Image.BICUBIC)
        source = "stored_photo_of_photo"
    elif pick < 0.45:
        content, _ = numpy_render(rng, height, width)
        source = "stored_photo_of_flat_subject"
    else:
        content = natural_content(rng, height, width)
        source = "stored_photo_of_scene"
    frame = scenes.camera_capture(rng, content, rng.uniform(2.0, 4.0))
    if rng.random() < 0.6:
        frame = scenes.jpeg_roundtrip(frame, rng.uniform(70, 97))
    return frame, source


def make_synthetic(rng, engine_renders):
    if engine_renders and rng.random() < 0.5:
        return engine_render(rng, engine_renders)
    height, width = random_frame_size(rng)
    image, family = numpy_render(rng, height, width)
    return scenes.finish_render(rng, image), family


def make_screen(rng, photos, engine_renders, panels):
    height, width = random_frame_size(rng)
    pick = rng.random()
    if photos and pick < 0.35:
        content = random_crop(rng, photos[int(rng.integers(0, len(photos)))])
        source = "photo"
    elif engine_renders and pick < 0.6:
        content, source = engine_render(rng, engine_renders)
    elif pick < 0.8:
        image, source = numpy_render(rng, height, width)
        content = scenes.to_uint8(image)
    else:
        content, source = scenes.to_uint8(natural_content(rng, height, width)), "scene"
    layout = panels[int(rng.integers(0, len(panels)))]
    return scenes.screen_recapture(rng, content, height, width, layout), f"{source}_on_{layout}"


def maybe_grayscale(rng, frame, probability=0.2):
    """Many photographs are monochrome; colour must not be a shortcut to any class."""
    if rng.random() < probability:
        gray = (frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round().astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return frame


def to_patches(frame):
    return preprocess(frame, PATCH_COUNT, PATCH_SIZE)


_WORKER = {}


def _init_worker(state):
    _WORKER.update(state)


def _make_training_sample(job):
    split, class_index, sample_index = job
    rng = np.random.default_rng([SPLIT_SEEDS[split], class_index, sample_index])
    label = LABELS[class_index]
    photos, engine = _WORKER["photos"], _WORKER["renders"]
    if label == "real":
        frame, source = make_real(rng, photos)
    elif label == "synthetic":
        frame, source = make_synthetic(rng, engine)
    else:
        frame, source = make_screen(rng, photos, engine, TRAIN_PANELS)
    frame = scenes.robustness_augment(rng, maybe_grayscale(rng, frame), forged=label != "real")
    return to_patches(frame), class_index, source


def _make_stored_photo_sample(job):
    split, sample_index = job
    rng = np.random.default_rng([SPLIT_SEEDS[split], 10, sample_index])
    frame, source = make_stored_photo(rng, _WORKER["photos"])
    frame = scenes.robustness_augment(rng, maybe_grayscale(rng, frame))
    return to_patches(frame), LABELS.index("real"), source


def _make_calibration_sample(job):
    photo_index, crop_index = job
    rng = np.random.default_rng([SPLIT_SEEDS["calibration"], photo_index, crop_index])
    name, photo = _WORKER["photos"][photo_index]
    return to_patches(random_crop(rng, photo, 0.5)), LABELS.index("real"), f"calibration:{name}"


def _make_heldout_sample(job):
    kind, index = job
    rng = np.random.default_rng([SPLIT_SEEDS["heldout"], ["real", "povray", "mplot3d", "screen", "scene", "game"].index(kind), index])
    photos, engine = _WORKER["photos"], _WORKER["renders"]
    if kind == "real":
        name, photo = photos[index // HELDOUT_CROPS_PER_PHOTO]
        # The first view of each photograph is the whole of it, as the package ships it.
        frame = photo if index % HELDOUT_CROPS_PER_PHOTO == 0 else random_crop(rng, photo, 0.5)
        return to_patches(frame), 0, name
    if kind == "povray":
        name, image = engine[index]
        return to_patches(image), 1, "povray:" + name.split("/")[0]
    if kind == "mplot3d":
        return to_patches(renders.matplotlib_3d_render(index)), 1, "mplot3d"
    if kind == "scene":
        name, image = _WORKER["scenes"][index]
        return to_patches(image), 1, "engine:" + renders.engine_of(name)
    if kind == "game":
        # The screenshot whole, as its package ships it.
        name, image = _WORKER["screenshots"][index]
        return to_patches(image), 1, "game:" + name.split("/")[0]
    # Screens show held-out photographs or held-out renders: content disjoint from training.
    layout = HELDOUT_PANELS[index % len(HELDOUT_PANELS)]
    height, width = random_frame_size(rng)
    if index % 2 == 0:
        _, content = photos[int(rng.integers(0, len(photos)))]
        content, source = random_crop(rng, content), "photo"
    else:
        _, content = engine[int(rng.integers(0, len(engine)))]
        source = "povray"
    return to_patches(scenes.screen_recapture(rng, content, height, width, layout)), 2, f"{source}_on_{layout}"


def _collect(results):
    patches = np.stack([r[0] for r in results])
    labels = np.array([r[1] for r in results], np.int64)
    sources = np.array([r[2] for r in results])
    return patches, labels, sources


def build_training_split(split, per_class, engine_renders, processes=2):
    """(N x PATCH_COUNT x size x size x 3 patches, labels, sources): one row per frame."""
    # The scene engines (Blender, OpenGL) are held out as whole engines: never trained on.
    held_out = sorted({renders.engine_of(name) for name, _ in engine_renders} & set(renders.SCENE_ENGINES))
    if held_out:
        raise ValueError(f"held-out engines in the training renders: {', '.join(held_out)}")
    jobs = [(split, c, i) for c in range(len(LABELS)) for i in range(per_class)]
    state = {"photos": training_photos(), "renders": engine_renders}
    with Pool(processes, initializer=_init_worker, initargs=(state,)) as pool:
        return _collect(pool.map(_make_training_sample, jobs, chunksize=16))


def build_stored_photo_split(split, count, processes=2):
    """Extra real frames of the stored-photograph kind (make_stored_photo)."""
    jobs = [(split, i) for i in range(count)]
    with Pool(processes, initializer=_init_worker, initargs=({"photos": training_photos()},)) as pool:
        return _collect(pool.map(_make_stored_photo_sample, jobs, chunksize=16))


def build_calibration(processes=2):
    photos = calibration_photos()
    jobs = [(p, i) for p in range(len(photos)) for i in range(CALIBRATION_CROPS_PER_PHOTO)]
    with Pool(processes, initializer=_init_worker, initargs=({"photos": photos},)) as pool:
        return _collect(pool.map(_make_calibration_sample, jobs, chunksize=8))


def build_heldout(heldout_renders, scene_renders, processes=2):
    """heldout_renders: POV-Ray's held-out scene folders; scene_renders: whole frames of the
    scene engines (renders.SCENE_ENGINES), none of which training uses."""
    photos = heldout_photos()
    engine = heldout_renders[:HELDOUT_POVRAY_MAX]
    screenshots = package_images.load("synthetic", "held out")
    jobs = ([("real", i) for i in range(len(photos) * HELDOUT_CROPS_PER_PHOTO)]
            + [("povray", i) for i in range(len(engine))]
            + [("mplot3d", i) for i in range(HELDOUT_MPLOT3D_RENDERS)]
            + [("scene", i) for i in range(len(scene_renders))]
            + [("game", i) for i in range(len(screenshots))]
            + [("screen", i) for i in range(HELDOUT_SCREENS)])
    state = {"photos": photos, "renders": engine, "scenes": scene_renders, "screenshots": screenshots}
    with Pool(processes, initializer=_init_worker, initargs=(state,)) as pool:
        return _collect(pool.map(_make_heldout_sample, jobs, chunksize=4))


def save_split(path, patches, labels, sources):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, patches=patches, labels=labels, sources=sources, label_names=np.array(LABELS))


def load_split(path):
    with np.load(path) as data:
        return data["patches"], data["labels"], data["sources"]


def contact_sheet(patches, labels, per_class=8):
    """One row of first patches per class, for eyeballing the generated data."""
    rows = []
    for class_index in range(len(LABELS)):
        chosen = patches[labels == class_index][:per_class, 0]
        rows.append(np.concatenate(list(chosen), axis=1))
    return Image.fromarray(np.concatenate(rows, axis=0))
