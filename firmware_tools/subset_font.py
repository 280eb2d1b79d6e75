"""Subset the label font shipped in device/fonts/.

The explicit label needs only a handful of glyphs ("AI生成", "人工智能合成", digits and
ASCII for custom texts), so the device ships a subset of Noto Sans CJK SC Bold
(SIL Open Font License 1.1, licence beside the font) of a few tens of KB instead of
the 20 MB collection. Run on a development machine with the Debian package
fonts-noto-cjk installed:

    .venv/bin/python -m synthseal.firmware_tools.subset_font
"""

import argparse
import sys
from pathlib import Path

SOURCE = "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"
SOURCE_FAMILY = "Noto Sans CJK SC"
OUTPUT = Path(__file__).resolve().parent.parent / "device" / "fonts" / "NotoSansCJKsc-Bold-label-subset.otf"
# Every character a GB 45438 image label may need: the two required elements in
# both languages, common companions, and printable ASCII for vendor texts.
LABEL_CHARACTERS = "人工智能生成合成内容由本图像视频虚拟场景数字人" + "".join(chr(c) for c in range(0x20, 0x7F))


def main(argv=None):
    from fontTools import subset
    from fontTools.ttLib import TTCollection

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=SOURCE, help="font collection to subset (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=OUTPUT, help="output font (default: %(default)s)")
    args = parser.parse_args(argv)
    if not Path(args.source).exists():
        sys.exit("error: %s not found; install it with: apt-get install fonts-noto-cjk" % args.source)
    collection = TTCollection(args.source)
    font = next((f for f in collection.fonts if f["name"].getDebugName(1) == SOURCE_FAMILY), None)
    if font is None:
        sys.exit("error: %s has no %s face" % (args.source, SOURCE_FAMILY))
    options = subset.Options()
    options.name_IDs = ["*"]  # keep the copyright and licence names
    options.layout_features = []
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=LABEL_CHARACTERS)
    subsetter.subset(font)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    font.save(str(args.out))
    print("wrote %s (%d bytes, %d glyphs)" % (args.out, args.out.stat().st_size, len(font.getGlyphOrder())))


if __name__ == "__main__":
    main()
