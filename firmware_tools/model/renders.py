"""Renders from real 3D engines, made locally and cached under build/model/renders/.

Four engines besides the numpy ray caster in scenes.py:
- Blender 4.2's Cycles path tracer (the `bpy` wheel): random scenes of blender_scenes.py,
  with procedural and photograph-textured materials.
- OpenGL as games use it (moderngl on Mesa's llvmpipe, headless EGL): random game-like
  scenes of gl_scenes.py, textured with crops of the training photographs.
  Both are held out as whole engines: the shipped model never trained on either. Both
  render in subprocesses: bpy keeps one global scene, and a GL context must not be
  shared with the forked data workers.
- POV-Ray 3.7 (Debian packages `povray`, `povray-examples`): the sample scenes that ship
  with it, each rendered at a native 400x300 with antialiasing. The scene folders are
  split: some train, the others are held out (different scenes, authors and materials).
- matplotlib's mplot3d on the Agg rasteriser: shaded surfaces, bars and meshes. This
  engine is held out as a whole: training never sees a single Agg 3D render.

Everything here is deterministic for a given package version; a render that fails or
runs past RENDER_TIMEOUT_S is skipped (and the count the card quotes says so).
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

POVRAY_SCENES = Path("/usr/share/povray-3.7/scenes")
POVRAY_INCLUDE = Path("/usr/share/povray-3.7/include")
POVRAY_SIZE = (400, 300)
RENDER_TIMEOUT_S = 20
BLENDER_SCENES = 60
GL_SCENES = 60
TEXTURE_SIZE = 1024  # photograph textures for the scene engines are stored at most this wide
# Sample-scene folders by role. animations/qtvr need frame clocks or panoramas; skipped.
POVRAY_TRAIN_FOLDERS = ("objects", "textures", "incdemo", "templates", "objectmods", "language")
POVRAY_HELDOUT_FOLDERS = ("advanced", "camera", "interior", "lights", "portfolio", "radiosity", "gamma", "bsp", "subsurface")


def povray_scene_files(folders):
    files = []
    for folder in folders:
        files.extend(sorted((POVRAY_SCENES / folder).rglob("*.pov")))
    return files


def _render_povray(job):
    scene, out = job
    if out.exists():
        return str(out) if out.stat().st_size > 0 else None
    width, height = POVRAY_SIZE
    # POV-Ray's I/O restrictions allow writing in the working directory: render there.
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        command = ["nice", "-n", "19", "povray", f"+I{scene}", "+Orender.png", f"+W{width}", f"+H{height}",
                   "+A0.3", "+R3", "+WT1", "+FN", "-D", "-GA", f"+L{scene.parent}", f"+L{POVRAY_INCLUDE}"]
        try:
            subprocess.run(command, cwd=work, capture_output=True, timeout=RENDER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        produced = Path(work) / "render.png"
        ok = False
        if produced.exists():
            try:
                image = np.asarray(Image.open(produced).convert("RGB"))
                # An empty scene (all one colour) teaches nothing.
                ok = image.shape[:2] == (height, width) and float(image.std()) > 2.0
            except OSError:
                ok = False
        if ok:
            os.replace(produced, out)
        else:
            out.write_bytes(b"")  # remembered as failed
    return str(out) if ok else None


def povray_renders(cache_dir, folders, processes=2):
    """[(source name, uint8 HxWx3)] for the sample scenes of the given folders."""
    cache_dir = Path(cache_dir) / "povray"
    cache_dir.mkdir(parents=True, exist_ok=True)
    if not POVRAY_SCENES.is_dir():
        raise SystemExit("POV-Ray sample scenes missing: apt-get install povray povray-examples (make model does)")
    jobs = []
    for scene in povray_scene_files(folders):
        relative = scene.relative_to(POVRAY_SCENES)
        jobs.append((scene, cache_dir / (str(relative.with_suffix("")).replace("/", "__") + ".png")))
    with Pool(processes) as pool:
        done = pool.map(_render_povray, jobs, chunksize=1)
    result = []
    for (scene, _), path in zip(jobs, done):
        if path:
            result.append((str(scene.relative_to(POVRAY_SCENES)), np.asarray(Image.open(path).convert("RGB"))))
    return result


def engine_of(name):
    """The engine a render's source name comes from: "blender:..." and "gl:..." name
    theirs; POV-Ray's are scene paths."""
    return name.split(":", 1)[0] if ":" in name else "povray"


def write_textures(photos, folder):
    """The training photographs as PNG textures for the scene engines (at most TEXTURE_SIZE
    wide), written afresh every time: the folder holds exactly these photographs."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.png"):
        stale.unlink()
    for index, photo in enumerate(photos):
        image = Image.fromarray(photo)
        image.thumbnail((TEXTURE_SIZE, TEXTURE_SIZE))
        image.save(folder / f"photo-{index:02d}.png")
    return folder


def engine_cache_key(module, textures):
    """Hash of a scene engine's code and of its texture files: its cached frames are
    reused only while both are unchanged."""
    digest = hashlib.sha256((Path(__file__).parent / f"{module}.py").read_bytes())
    for texture in sorted(textures.glob("*.png")):
        digest.update(texture.read_bytes())
    return digest.hexdigest()[:10]


# Engines that render scenes of their own in subprocesses, each frame <engine>-<seed>.png:
# module, scene count, scenes per subprocess (a Cycles scene takes ~15 s, a GL one ~1 s).
SCENE_ENGINES = {
    "blender": ("blender_scenes", BLENDER_SCENES, 1),
    "gl": ("gl_scenes", GL_SCENES, 25),
}


# A Cycles scene at 32 samples takes about 25 s on one core; a stuck renderer must not
# hang the build.
SCENE_TIMEOUT_S = 180


def scene_engine_arguments(description, engine, argv=None):
    """The command line both scene engines share, checked: --out, --first >= 0, --count >= 1,
    --textures an existing folder of PNG photographs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", required=True, type=Path, help=f"folder for {engine}-<seed>.png")
    parser.add_argument("--first", type=int, default=0, help="first scene seed (>= 0)")
    parser.add_argument("--count", type=int, default=1, help="number of scenes (>= 1)")
    parser.add_argument("--textures", type=Path, required=True,
                        help="folder of photograph textures (PNG; renders.write_textures makes it)")
    args = parser.parse_args(argv)
    if args.first < 0:
        parser.error("--first must be >= 0")
    if args.count < 1:
        parser.error("--count must be >= 1")
    if not args.textures.is_dir() or not any(args.textures.glob("*.png")):
        parser.error(f"--textures {args.textures}: not a folder of PNG files")
    return args


def _render_scene_engine(job):
    module, out_dir, textures, first, count = job
    command = ["nice", "-n", "19", sys.executable, "-m", f"synthseal.firmware_tools.model.{module}",
               "--out", str(out_dir), "--first", str(first), "--count", str(count), "--textures", str(textures)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=SCENE_TIMEOUT_S * count)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{module} scenes {first}..{first + count - 1} ran past {SCENE_TIMEOUT_S * count} s") from None
    if result.returncode != 0:
        # RuntimeError, not SystemExit: a worker's SystemExit would leave Pool.map waiting forever.
        raise RuntimeError(f"{module} scenes {first}..{first + count - 1} failed:\n{result.stderr[-2000:]}")


def scene_engine_renders(engine, cache_dir, photos, processes=2):
    """[("<engine>:scene-N", uint8 HxWx3)] for the engine's scenes 0..count-1 (SCENE_ENGINES),
    rendered once and cached under a hash of the engine's code and textures; photos (the
    training photographs) become textures."""
    module, count, batch_size = SCENE_ENGINES[engine]
    textures = write_textures(photos, Path(cache_dir) / "photo-textures")
    out_dir = Path(cache_dir) / f"{engine}-{engine_cache_key(module, textures)}"
    missing = [seed for seed in range(count) if not (out_dir / f"{engine}-{seed}.png").exists()]
    # Runs of consecutive missing seeds, batch_size at most per subprocess: a resumed run
    # re-renders only what is missing.
    batches = []  # [first seed, count]
    for seed in missing:
        if batches and sum(batches[-1]) == seed and batches[-1][1] < batch_size:
            batches[-1][1] += 1
        else:
            batches.append([seed, 1])
    jobs = [(module, out_dir, textures, first, n) for first, n in batches]
    if jobs:
        with Pool(processes) as pool:
            pool.map(_render_scene_engine, jobs, chunksize=1)
    result = []
    for seed in range(count):
        image = np.asarray(Image.open(out_dir / f"{engine}-{seed}.png").convert("RGB"))
        # An empty or blown-out frame (most pixels clipped white) teaches nothing.
        if float(image.std()) > 2.0 and (image.min(axis=2) >= 250).mean() < 0.5:
            result.append((f"{engine}:scene-{seed}", image))
    return result


def matplotlib_3d_render(seed, size=(400, 300)):
    """One shaded 3D plot drawn by matplotlib's Agg rasteriser (no axes clutter half the time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import cm
    from matplotlib.colors import LightSource

    rng = np.random.default_rng([11, seed])
    width, height = size
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_subplot(projection="3d")
    kind = seed % 4
    x, y = np.meshgrid(np.linspace(-3, 3, int(rng.integers(30, 120))), np.linspace(-3, 3, int(rng.integers(30, 120))))
    cmaps = [cm.viridis, cm.coolwarm, cm.terrain, cm.copper, cm.plasma, cm.gist_earth, cm.bone]
    cmap = cmaps[int(rng.integers(0, len(cmaps)))]
    if kind == 0:
        z = np.sin(np.sqrt(x ** 2 + y ** 2) * rng.uniform(0.8, 3)) * rng.uniform(0.5, 2)
        light = LightSource(azdeg=rng.uniform(0, 360), altdeg=rng.uniform(20, 70))
        ax.plot_surface(x, y, z, facecolors=light.shade(z, cmap=cmap), linewidth=0, antialiased=bool(rng.random() < 0.5))
    elif kind == 1:
        z = np.exp(-((x - rng.uniform(-1, 1)) ** 2 + (y - rng.uniform(-1, 1)) ** 2) / rng.uniform(0.5, 3))
        ax.plot_surface(x, y, z, cmap=cmap, rstride=int(rng.integers(1, 6)), cstride=int(rng.integers(1, 6)),
                        edgecolor="k" if rng.random() < 0.4 else "none", linewidth=0.3)
    elif kind == 2:
        n = int(rng.integers(4, 10))
        xs, ys = np.meshgrid(np.arange(n), np.arange(n))
        heights = rng.random(n * n) * rng.uniform(1, 5)
        colors = cmap(heights / heights.max())
        ax.bar3d(xs.ravel(), ys.ravel(), 0, 0.8, 0.8, heights, color=colors, shade=True)
    else:
        u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 60), np.linspace(0, 2 * np.pi, 40))
        big, small = rng.uniform(2, 3), rng.uniform(0.5, 1.2)
        xt = (big + small * np.cos(v)) * np.cos(u)
        yt = (big + small * np.cos(v)) * np.sin(u)
        zt = small * np.sin(v)
        light = LightSource(azdeg=rng.uniform(0, 360), altdeg=rng.uniform(20, 70))
        ax.plot_surface(xt, yt, zt, facecolors=light.shade(zt, cmap=cmap), linewidth=0)
        ax.set_zlim(-3, 3)
    ax.view_init(elev=rng.uniform(10, 60), azim=rng.uniform(0, 360))
    if rng.random() < 0.5:
        ax.set_axis_off()
    fig.patch.set_facecolor(tuple(rng.uniform(0.0, 1.0, 3)) if rng.random() < 0.5 else "white")
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def matplotlib_renders(count, first_seed=0):
    return [(f"mplot3d-{seed}", matplotlib_3d_render(seed)) for seed in range(first_seed, first_seed + count)]
