"""What the audit record says about a sealed file's pixels, so the file can be found
again after its labels were stripped or its bytes re-encoded (host/trace.py):

- pixel_sha256: SHA-256 of the decoded pixels: the file decoded with Pillow (libjpeg),
  converted to 8-bit RGB, the bytes row by row from the top, left to right, R G B per
  pixel, no padding (Image.tobytes()). Metadata edits (exiftool -all=, a stripped C2PA
  manifest) and lossless JPEG rewrites leave it unchanged; any pixel change breaks it.
- pdq: the PDQ perceptual hash (256 bits, Meta's published algorithm, through the
  `pdqhash` bindings) of the image reduced by a whole factor to at most PDQ_SIDE pixels
  on its longer side (box filter): PDQ reduces its input to 64x64 anyway, so this keeps
  the device's cost small without changing what it measures. Similar images have hashes
  a few bits apart; unrelated ones about 128.
The watermark identifier is the third field (device/watermark.py).
"""

import hashlib

import numpy as np
import pdqhash

PDQ_SIDE = 512
PDQ_BITS = 256
# PDQ's authors give 31 of 256 bits as the distance below which two images are the same
# picture (ThreatExchange pdq README); tests/test_trace.py checks unrelated images stay above.
PDQ_MATCH_DISTANCE = 31
# PDQ reports a quality from 0 to 100; below 50 (flat or nearly flat images) its authors
# advise against matching.
PDQ_MIN_QUALITY = 50


# Rows hashed per step: the same digest as hashing Image.tobytes() whole, in about half
# the time for a 12-megapixel frame, because each band is packed and hashed while it
# is still in the CPU cache instead of going through a 37 MB copy.
_HASH_ROWS = 128


def pixel_sha256(image):
    """SHA-256 (hex) of a PIL image's decoded RGB bytes (see the module docstring)."""
    image = _rgb(image)
    width, height = image.size
    digest = hashlib.sha256()
    for top in range(0, height, _HASH_ROWS):
        digest.update(image.crop((0, top, width, min(height, top + _HASH_ROWS))).tobytes())
    return digest.hexdigest()


def pdq(image):
    """(hash as 64 hex digits, quality 0-100) of a PIL image."""
    factor = -(-max(image.size) // PDQ_SIDE)
    small = _rgb(image)
    if factor > 1:
        small = small.reduce(factor)
    bits, quality = pdqhash.compute(np.asarray(small))
    return np.packbits(np.asarray(bits, np.uint8)).tobytes().hex(), int(quality)


def _rgb(image):
    return image if image.mode == "RGB" else image.convert("RGB")


def pdq_distance(a_hex, b_hex):
    """Hamming distance between two PDQ hashes given as hex."""
    return bin(int(a_hex, 16) ^ int(b_hex, 16)).count("1")
