"""Frames that local clients (an avatar rig, a generator) hand to the agent: checked and
turned into an HxWx3 uint8 array, or refused with a reason the client can act on.

Raw frames: pixel_format RGB888 / BGR888 (3 bytes a pixel) or RGBX8888 / BGRX8888 (4,
the fourth ignored), width, height and stride (bytes per row, >= width x bytes per
pixel; rows may be padded, as GPU read-backs often are). Encoded images: "jpeg" or
"png", decoded by Pillow after their declared size is checked against the limits.

Whatever the format, an intake frame is synthetic: the policy refuses to seal it as a
real capture (policy.check_origin).
"""

import io
import warnings

import numpy as np
from PIL import Image

from .core import policy

RAW_FORMATS = {"RGB888": (3, "RGB"), "BGR888": (3, "BGR"), "RGBX8888": (4, "RGB"), "BGRX8888": (4, "BGR")}
ENCODED_FORMATS = {"jpeg": "JPEG", "png": "PNG"}
MIN_SIDE = 16
MAX_SIDE = 16384
MAX_CLIENT_NAME = 64


class IntakeError(ValueError):
    """The submitted frame cannot be sealed; the message says what to send instead."""


def _dimension(header, key):
    value = header.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_SIDE <= value <= MAX_SIDE:
        raise IntakeError("%s must be a whole number of pixels from %d to %d, got %r" % (key, MIN_SIDE, MAX_SIDE, value))
    return value


def client_name(header):
    name = header.get("client", "unnamed")
    if not isinstance(name, str) or not name or len(name) > MAX_CLIENT_NAME or \
            any(not (0x21 <= ord(c) <= 0x7E) for c in name):
        raise IntakeError("client must be 1 to %d printable ASCII characters without spaces" % MAX_CLIENT_NAME)
    return name


def declared_source(header):
    source = header.get("source")
    if source not in policy.INTAKE_SOURCES:
        raise IntakeError("source must be %s: frames handed to the agent are sealed as synthetic only, "
                          "got %r" % (" or ".join(repr(s) for s in policy.INTAKE_SOURCES), source))
    return source


def decoded_bytes(header, data):
    """The memory the decoded frame will take (HxWx3), read from an encoded image's
    header without decoding it; 0 for raw frames, which are used in place."""
    encoding = header.get("encoding", "raw")
    if encoding not in ENCODED_FORMATS:
        return 0
    width, height = _open_image(encoding, data).size
    _check_sides(width, height)
    return width * height * 3


def decode_frame(header, data, max_decoded_bytes):
    """Return (frame, channel_order) from a submit header and its data. An encoded image
    is refused from its header alone if it would decode to more than max_decoded_bytes:
    a small PNG can describe gigabytes of pixels."""
    encoding = header.get("encoding", "raw")
    if encoding == "raw":
        return _decode_raw(header, data)
    if encoding in ENCODED_FORMATS:
        return _decode_image(encoding, data, max_decoded_bytes), "RGB"
    raise IntakeError("encoding must be 'raw', 'jpeg' or 'png', got %r" % (encoding,))


def _decode_raw(header, data):
    pixel_format = header.get("pixel_format")
    if pixel_format not in RAW_FORMATS:
        raise IntakeError("pixel_format must be one of %s, got %r" % (", ".join(RAW_FORMATS), pixel_format))
    bytes_per_pixel, channel_order = RAW_FORMATS[pixel_format]
    width, height = _dimension(header, "width"), _dimension(header, "height")
    stride = header.get("stride", width * bytes_per_pixel)
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < width * bytes_per_pixel \
            or stride > width * bytes_per_pixel + 4096:
        raise IntakeError("stride must be from %d (width x %d bytes) to %d bytes per row, got %r"
                          % (width * bytes_per_pixel, bytes_per_pixel, width * bytes_per_pixel + 4096, stride))
    # The last row need not carry its padding.
    expected = stride * (height - 1) + width * bytes_per_pixel
    if len(data) not in (expected, stride * height):
        raise IntakeError("a %dx%d %s frame with stride %d is %d bytes, got %d (truncated or wrong size?)"
                          % (width, height, pixel_format, stride, stride * height, len(data)))
    buffer = np.frombuffer(data, dtype=np.uint8)
    if bytes_per_pixel == 3 and stride == width * 3:
        return buffer[:height * stride].reshape(height, width, 3), channel_order  # the received bytes, no copy
    rows = np.lib.stride_tricks.as_strided(buffer, shape=(height, width, bytes_per_pixel),
                                           strides=(stride, bytes_per_pixel, 1), writeable=False)
    return np.ascontiguousarray(rows[:, :, :3]), channel_order


def _open_image(encoding, data):
    try:
        return Image.open(io.BytesIO(data), formats=[ENCODED_FORMATS[encoding]])
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise IntakeError("not a readable %s image: %s" % (encoding, _first_line(err))) from None


def _check_sides(width, height):
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise IntakeError("image of %dx%d pixels; each side must be %d to %d" % (width, height, MIN_SIDE, MAX_SIDE))


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _decode_image(encoding, data, max_decoded_bytes):
    image = _open_image(encoding, data)
    width, height = image.size
    _check_sides(width, height)
    if width * height * 3 > max_decoded_bytes:
        raise IntakeError("a %dx%d image decodes to %d bytes; agent.max_frame_bytes allows %d"
                          % (width, height, width * height * 3, max_decoded_bytes))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked above
            image = image.convert("RGB")  # decodes; a truncated file fails here
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise IntakeError("not a readable %s image: %s" % (encoding, _first_line(err))) from None
    return np.asarray(image)
