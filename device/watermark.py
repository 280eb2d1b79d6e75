"""The invisible watermark: a 48-bit identifier of the seal record, spread over the
whole frame, so that a file whose labels were stripped, or that was re-encoded, resized
or cropped, can still be traced to its audit record (host/trace.py).

Why our own and not a library: invisible-watermark (dwtDct) and blind-watermark decode
only from an image of the embedding's size and position; after a 10 % crop or a resize
to half their bits are no better than chance (docs/TRACING.md has the figures). This one
is built for those edits:

- The frame is covered by one tile of TILE x TILE pixels, repeated: a crop keeps whole
  tiles, and the detector finds where they start by correlation, whatever was cut off.
- A tile is TILE_CHIPS x TILE_CHIPS chips of CHIP x CHIP pixels, each +AMPLITUDE or
  -AMPLITUDE grey levels on R, G and B alike (a luma change, no colour shift). Chips of
  CHIP pixels are low enough in frequency to survive JPEG quality 75 even after a resize
  to half, and the whole pattern is +-AMPLITUDE: PSNR about 20 log10(255 / AMPLITUDE).
- SYNC_CHIPS chips of the tile carry a fixed pseudo-random sign pattern (the detector
  locates the tile with it); the rest carry the 64 coded bits (48-bit identifier,
  CRC-16), each bit on DATA_CHIPS_PER_BIT chips per tile, with a pseudo-random sign per
  chip. Every tile repeats every bit: the detector sums all tiles (a 12-megapixel frame
  has about 190 of them), which is the error correction; the CRC says whether the sum
  decoded.

The seeds are public, like the algorithm: anyone can read an identifier, and anyone who
has seen one sealed file can copy its identifier onto other pixels. That is why the
identifier is random per seal (it names no device and cannot be predicted), and why
the host reports a watermark match together with the perceptual-hash distance to the
record (host/trace.py): a copied watermark on different pixels shows as a far hash.

Embedding runs on the full frame before the visible label is drawn, so the label is
drawn over it and looks exactly as it does without a watermark.
"""

import secrets

import numpy as np
from PIL import Image, ImageFilter

from .core import jpeg

ALGORITHM = "org.synthseal.wm.1"  # the C2PA soft-binding alg name; changes if anything below does
CHIP = 8
TILE_CHIPS = 32
TILE = CHIP * TILE_CHIPS
AMPLITUDE = 2
ID_BITS = 48
CRC_BITS = 16
CODED_BITS = ID_BITS + CRC_BITS
SYNC_CHIPS = 256
DATA_CHIPS_PER_BIT = (TILE_CHIPS * TILE_CHIPS - SYNC_CHIPS) // CODED_BITS
# Below this sync peak (in standard deviations of the correlation surface) the detector
# reports no watermark: a tile position found by chance sits around 4 to 5.
MIN_SYNC_SCORE = 7.0


def _layout():
    """The fixed, public chip layout: sign per chip, which chips are sync, which chips
    carry which coded bit."""
    # Part of ALGORITHM: never change. RandomState's streams are frozen across numpy versions.
    rng = np.random.RandomState(0x5EA1)
    signs = rng.choice(np.array([-1, 1], np.int8), size=(TILE_CHIPS, TILE_CHIPS))
    order = rng.permutation(TILE_CHIPS * TILE_CHIPS)
    sync = order[:SYNC_CHIPS]
    data = order[SYNC_CHIPS:SYNC_CHIPS + CODED_BITS * DATA_CHIPS_PER_BIT].reshape(CODED_BITS, DATA_CHIPS_PER_BIT)
    return signs, sync, data


_SIGNS, _SYNC, _DATA = _layout()


def new_identifier():
    """A fresh 48-bit identifier, as the 12 hex digits the record stores."""
    return "%012x" % secrets.randbits(ID_BITS)


def crc16(data):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF): detects a watermark that did not decode."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _coded_bits(identifier):
    value = int(identifier, 16)
    if not 0 <= value < 1 << ID_BITS or len(identifier) != ID_BITS // 4:
        raise ValueError("watermark identifier must be %d hex digits" % (ID_BITS // 4))
    word = (value << CRC_BITS) | crc16(value.to_bytes(ID_BITS // 8, "big"))
    return [(word >> (CODED_BITS - 1 - k)) & 1 for k in range(CODED_BITS)]


def tile_pattern(identifier):
    """One tile of chip signs (TILE_CHIPS x TILE_CHIPS, +1/-1) carrying `identifier`."""
    chips = _SIGNS.copy().reshape(-1)
    for k, bit in enumerate(_coded_bits(identifier)):
        if not bit:
            chips[_DATA[k]] *= -1
    return chips.reshape(TILE_CHIPS, TILE_CHIPS)


def embed(frame, identifier):
    """Return a copy of the frame (HxWx3 uint8, RGB or BGR: every channel gets the same
    change) with the watermark added. Values are first limited to AMPLITUDE..255-AMPLITUDE
    so that adding +-AMPLITUDE in uint8 cannot wrap around (that limiting makes the copy;
    the caller's frame stays as captured), and the pattern is added one band of tiles at
    a time, so no full-frame pattern is ever built: two passes over the frame."""
    height, width = frame.shape[:2]
    tile = np.kron(tile_pattern(identifier), np.ones((CHIP, CHIP), np.int8)) * AMPLITUDE
    band = np.tile(tile.view(np.uint8)[:, :, None], (1, -(-width // TILE), 3))[:, :width]
    band = np.ascontiguousarray(band)  # -A as its uint8 two's complement: adding it wraps to v - A
    marked = np.clip(frame, AMPLITUDE, 255 - AMPLITUDE)
    for top in range(0, height, TILE):
        rows = marked[top:top + TILE]
        rows += band[:rows.shape[0]]
    return marked


def _residual(plane):
    """The luma (a PIL "L" image) minus its local mean: takes away most of the scene,
    keeps the chips. Clipped, so that a few strong edges do not outvote the many quiet
    pixels."""
    luma = np.asarray(plane, np.float32)
    blurred = np.asarray(plane.filter(ImageFilter.BoxBlur(CHIP)), np.float32)
    return np.clip(luma - blurred, -4 * AMPLITUDE, 4 * AMPLITUDE)


def _fold(residual):
    """Sum every whole tile of the residual into one TILE x TILE tile."""
    h = residual.shape[0] // TILE * TILE
    w = residual.shape[1] // TILE * TILE
    if h == 0 or w == 0:
        return None
    return residual[:h, :w].reshape(h // TILE, TILE, w // TILE, TILE).sum(axis=(0, 2))


def _sync_reference():
    chips = np.zeros(TILE_CHIPS * TILE_CHIPS, np.float32)
    chips[_SYNC] = _SIGNS.reshape(-1)[_SYNC]
    return np.kron(chips.reshape(TILE_CHIPS, TILE_CHIPS), np.ones((CHIP, CHIP), np.float32))


_SYNC_SPECTRUM = np.conj(np.fft.rfft2(_sync_reference()))


def detect_luma(plane):
    """Look for the watermark in a luma plane (PIL "L" image, at the embedding's scale).
    Returns {"identifier": hex or None, "sync_score", "margin"}: identifier only when
    the tile was found and the CRC holds; margin is the weakest bit's share of the
    strongest (0 to 1)."""
    folded = _fold(_residual(plane))
    if folded is None:
        return {"identifier": None, "sync_score": 0.0, "margin": 0.0}
    surface = np.fft.irfft2(np.fft.rfft2(folded) * _SYNC_SPECTRUM, s=folded.shape)
    peak = np.unravel_index(int(np.argmax(surface)), surface.shape)
    score = float((surface[peak] - surface.mean()) / (surface.std() + 1e-9))
    aligned = np.roll(folded, (-peak[0], -peak[1]), axis=(0, 1))
    chips = aligned.reshape(TILE_CHIPS, CHIP, TILE_CHIPS, CHIP).sum(axis=(1, 3)).reshape(-1)
    soft = (chips * _SIGNS.reshape(-1))[_DATA].sum(axis=1)
    word = 0
    for value in soft:
        word = (word << 1) | int(value > 0)
    value, crc = word >> CRC_BITS, word & 0xFFFF
    strongest = float(np.abs(soft).max()) or 1.0
    result = {"identifier": None, "sync_score": round(score, 2), "margin": round(float(np.abs(soft).min()) / strongest, 3)}
    if score >= MIN_SYNC_SCORE and crc16(value.to_bytes(ID_BITS // 8, "big")) == crc:
        result["identifier"] = "%012x" % value
    return result


def detect(image, sizes=()):
    """Look for the watermark in a PIL image: as it is (a crop at the original scale),
    resized to each of `sizes` with its aspect ratio (the frame sizes it may have been
    scaled down from), and at twice its size (a half-size copy that was also cropped).
    No try is made larger than the largest of `sizes` (no sealed frame was larger).
    Returns the first decoded result, or the best-scoring failure, with the size tried."""
    luma = image.convert("L")
    width, height = luma.size
    # A size from an edited database could ask for any enlargement: only sizes a
    # sealed frame can have are tried (jpeg.MAX_PIXELS).
    sizes = [tuple(s) for s in sizes if jpeg.size_allowed(s)]
    tries = [(width, height)]
    tries += [tuple(s) for s in sizes if abs(s[0] * height - s[1] * width) <= 0.01 * s[0] * height]
    tries.append((2 * width, 2 * height))
    largest = max([width * height] + [s[0] * s[1] for s in sizes])
    best = None
    for size in dict.fromkeys(tries):
        if size[0] * size[1] > largest:
            continue
        plane = luma if size == luma.size else luma.resize(size, Image.BICUBIC)
        result = detect_luma(plane)
        result["size"] = list(size)
        if result["identifier"]:
            return result
        if best is None or result["sync_score"] > best["sync_score"]:
            best = result
    return best
