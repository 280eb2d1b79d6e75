"""The visible (explicit) label on images, as GB 45438-2025 asks:

- text that contains "人工智能" or "AI" and "生成" and/or "合成" (default "AI生成"), made
  of Chinese characters, spaces and the word "AI" only: "NOT AI生成", "DETAIL合成" or
  "0%AI生成" contain the elements but do not state that the content is generated;
- at an edge or corner of the image (we use a corner, bottom-left by default);
- legible: white text on a darkened plate, readable on any background, and never
  smaller than MIN_INK_PIXELS: a frame too small for that gets no label and is refused;
- text height at least 5 % of the image's shortest side, for every character: the Latin
  capitals of "AI" are shorter than the Chinese characters beside them, so the font is
  sized by the shortest character's ink. We aim at 6 % so JPEG ringing and rounding
  never bring the measured ink height under the minimum.

The font is a subset of Noto Sans CJK shipped in device/fonts/; no system font is used.
"""

import functools
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_PATH = Path(__file__).resolve().parent / "fonts" / "NotoSansCJKsc-Bold-label-subset.otf"
DEFAULT_TEXT = "AI生成"
MIN_HEIGHT_FRACTION = 0.05   # GB 45438-2025, image explicit label: text height >= 5 % of shortest side
TARGET_HEIGHT_FRACTION = 0.06
MIN_INK_PIXELS = 12  # below this the strokes of 智 or 能 merge: the label is no longer legible
# Characters that turn the statement round; none is in the shipped font, and a text that
# has one is refused even if a later font gains the glyph.
NEGATIONS = "非不无未没否"
CORNERS = ("bottom-left", "bottom-right", "top-left", "top-right")
_PLATE_DARKEN = 0.35  # background under the text keeps 35 % of its brightness


class ExplicitLabelError(ValueError):
    pass


def check_label_text(text):
    """Raise ExplicitLabelError unless the text has both elements GB 45438 requires and
    states nothing else that could turn them round: only Chinese characters, spaces and
    the word "AI" (no other Latin word, digit or sign: "NOT AI生成", "0%AI生成" and
    "AI生成?" all contain the elements), and no negation."""
    if not (("AI" in text or "人工智能" in text) and ("生成" in text or "合成" in text)):
        raise ExplicitLabelError(
            'label text %r must contain "AI" or "人工智能" and "生成" or "合成", e.g. "AI生成"' % text)
    words = re.sub(r"(?<![A-Za-z0-9])AI(?![A-Za-z0-9])", " ", text)
    other = sorted(set(ch for ch in words if ch != " " and not "\u4e00" <= ch <= "\u9fff")
                   | set(ch for ch in text if ch in NEGATIONS))
    if other:
        raise ExplicitLabelError(
            "label text %r says more than the statement: only Chinese characters, spaces and the word \"AI\" are "
            "allowed, and no negation (found %s)" % (text, " ".join(repr(ch) for ch in other)))
    font = ImageFont.truetype(str(FONT_PATH), 32)
    missing = [ch for ch in text if ch != " " and font.getmask(ch).getbbox() is None]
    if missing:
        raise ExplicitLabelError("the shipped label font has no glyph for %s" % "".join(missing))


@functools.lru_cache(maxsize=16)
def _layout(text, width, height, corner):
    """Font, text origin, plate box and the ink height of the text's shortest character
    for one text on one frame size (cached: the search for the font size runs once per
    frame size, not once per frame)."""
    shortest = min(width, height)
    target = max(MIN_INK_PIXELS, int(np.ceil(TARGET_HEIGHT_FRACTION * shortest)))
    characters = set(text) - {" "}
    size = target
    while True:
        font = ImageFont.truetype(str(FONT_PATH), size)
        shortest_ink = min(_ink_height(font, ch) for ch in characters)
        if shortest_ink >= target:
            break
        size += max(1, (target - shortest_ink) // 2)
    left, top, right, bottom = font.getbbox(text)
    ink_w, ink_h = right - left, bottom - top
    pad = max(2, ink_h // 4)
    margin = max(2, shortest // 50)
    plate_w, plate_h = ink_w + 2 * pad, ink_h + 2 * pad
    if plate_w + 2 * margin > width or plate_h + 2 * margin > height:
        raise ExplicitLabelError("frame %dx%d is too small for a legible label" % (width, height))
    x0 = margin if corner.endswith("left") else width - margin - plate_w
    y0 = margin if corner.startswith("top") else height - margin - plate_h
    origin = (pad - left, pad - top)  # where to draw so the ink starts at the padding
    return font, origin, (x0, y0, x0 + plate_w, y0 + plate_h), shortest_ink


def _ink_height(font, character):
    left, top, right, bottom = font.getbbox(character)
    return bottom - top


def label_ink(text, width, height, corner):
    """Where draw_explicit_label puts `text` on a width x height frame: (plate box, the
    plate's ink pixels as a boolean array, ink height in pixels of its shortest
    character). The verifier renders the same layout to find the label in a sealed
    file's pixels."""
    font, origin, box, ink_h = _layout(text, width, height, corner)
    mask = Image.new("L", (box[2] - box[0], box[3] - box[1]), 0)
    ImageDraw.Draw(mask).text(origin, text, font=font, fill=255)
    return box, np.asarray(mask) >= 128, ink_h


def draw_explicit_label(image, text=DEFAULT_TEXT, corner="bottom-left"):
    """Draw the label in place into a PIL RGB image or an HxWx3 uint8 array; return
    (plate box, ink height in pixels of the shortest character). Only the plate region
    is touched, so the cost does not grow with the frame: the seal path draws on the
    image it encodes, with no copy of the whole frame."""
    is_array = isinstance(image, np.ndarray)
    if is_array and (image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8):
        raise ExplicitLabelError("frame must be HxWx3 uint8, got %s %s" % (image.shape, image.dtype))
    if not is_array and image.mode != "RGB":
        raise ExplicitLabelError("image must be RGB, got %s" % image.mode)
    if corner not in CORNERS:
        raise ExplicitLabelError("corner must be one of %s" % ", ".join(CORNERS))
    height, width = image.shape[:2] if is_array else (image.height, image.width)
    font, origin, box, ink_h = _layout(text, width, height, corner)
    x0, y0, x1, y1 = box
    region = image[y0:y1, x0:x1] if is_array else np.asarray(image.crop(box))
    plate = Image.fromarray((region.astype(np.uint16) * int(_PLATE_DARKEN * 256) >> 8).astype(np.uint8))
    ImageDraw.Draw(plate).text(origin, text, font=font, fill=(255, 255, 255))
    if is_array:
        region[...] = np.asarray(plate)
    else:
        image.paste(plate, box[:2])
    return box, ink_h
