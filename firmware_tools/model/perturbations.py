"""The perturbations the card reports metrics under, applied to native-resolution patches.

Each acts on one 64x64 patch exactly as the same operation on the whole frame would at
that place: added noise is per pixel, and JPEG is block-aligned (patches start on
multiples of 16, device.classifier.PATCH_ALIGN, so the 8x8 blocks and 4:2:0 macroblocks
are the frame's). Blur and brightness are local; the upscale is taken from the patch's
centre. Every random draw is seeded by the item's index, so the figures are reproducible.
"""

import numpy as np
from PIL import Image

from . import scenes


def _noise(sigma):
    def apply(patch, rng):
        return scenes.add_noise(patch, sigma, rng)
    return apply


def _jpeg(quality):
    def apply(patch, rng):
        return scenes.jpeg_roundtrip(patch, quality)
    return apply


def _chain(*steps):
    def apply(patch, rng):
        for step in steps:
            patch = step(patch, rng)
        return patch
    return apply


def _blur(sigma):
    def apply(patch, rng):
        return scenes.blur_u8(patch, sigma)
    return apply


def _brightness(gain, gamma):
    def apply(patch, rng):
        return scenes.brightness(patch, gain, gamma)
    return apply


def _upscale(factor):
    def apply(patch, rng):
        size = patch.shape[0]
        inner = int(round(size / factor))
        start = (size - inner) // 2
        centre = patch[start:start + inner, start:start + inner]
        return np.asarray(Image.fromarray(centre).resize((size, size), Image.BICUBIC))
    return apply


# name -> (what it is, function(patch, rng) -> patch)
PERTURBATIONS = {
    "none": ("as made", None),
    "noise4": ("Gaussian noise sigma=4", _noise(4.0)),
    "jpeg90": ("JPEG q90", _jpeg(90)),
    "noise4_jpeg90": ("Gaussian noise sigma=4, then JPEG q90", _chain(_noise(4.0), _jpeg(90))),
    "noise8_jpeg75": ("Gaussian noise sigma=8, then JPEG q75", _chain(_noise(8.0), _jpeg(75))),
    "blur1": ("Gaussian blur sigma=1 px", _blur(1.0)),
    "dark": ("brightness x0.5", _brightness(0.5, 1.0)),
    "bright": ("brightness x1.3, gamma 0.8", _brightness(1.3, 0.8)),
    "upscale1.5": ("upscaled 1.5x (bicubic)", _upscale(1.5)),
}
ACCEPTANCE_PERTURBATION = "noise4_jpeg90"


def perturb(items, name, seed=0):
    """items: M x N x size x size x 3 uint8 -> the same with perturbation `name` applied."""
    function = PERTURBATIONS[name][1]
    if function is None:
        return items
    out = np.empty_like(items)
    for m in range(items.shape[0]):
        rng = np.random.default_rng([seed, m])
        for n in range(items.shape[1]):
            out[m, n] = function(items[m, n], rng)
    return out
