"""The few JPEG segment operations the labels need: insert and find the XMP APP1
segment, and digest the image data independently of metadata.

A JPEG is SOI, then marker segments (FFxx + u16 big-endian length that counts itself),
then SOS and the entropy-coded scan up to EOI.
"""

import hashlib
import struct

XMP_SIGNATURE = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_EXTENSION = b"http://ns.adobe.com/xmp/extension/\x00"
_EXIF_SIGNATURE = b"Exif\x00\x00"
_XMP_STARTS = (b"<?xpacket", b"<x:xmpmeta", b"<rdf:RDF")
_SOI = b"\xff\xd8"
_APP0 = 0xE0
_APP1 = 0xE1
_APP15 = 0xEF
_COM = 0xFE
_SOS = 0xDA
_MAX_SEGMENT = 0xFFFF - 2
# Frame headers (SOF0..SOF15), not DHT (C4), JPG (C8) or DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}

# The most pixels a picture may have for the host to decode it (verify, trace) or to
# scale one to (the watermark detector). The largest frame synthseal seals is 4056x3040
# (a Pi HQ frame, about 12.3 megapixels); this is four times that, so a sealed frame
# enlarged twice in each side is still read. The checks hold several float copies of a
# frame: a flat 10000x10000 JPEG is 1.5 MB on disk and took 2.5 GB to verify. So the size
# is read from the frame header and refused before anything is decoded.
MAX_PIXELS = 50000000


class JpegError(ValueError):
    pass


def segments(data):
    """Yield (marker, start, end) for each header segment up to and including SOS;
    for SOS, end is the end of the data (the scan and everything after it)."""
    if data[:2] != _SOI:
        raise JpegError("not a JPEG file (no SOI marker)")
    at = 2
    n = len(data)
    while at < n:
        if data[at] != 0xFF:
            raise JpegError("JPEG marker expected at offset %d" % at)
        marker = data[at + 1] if at + 1 < n else -1
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if at + 4 > n:
            raise JpegError("JPEG truncated in a segment header")
        (length,) = struct.unpack(">H", data[at + 2:at + 4])
        end = at + 2 + length
        if length < 2 or end > n:
            raise JpegError("JPEG segment at offset %d runs past the end" % at)
        if marker == _SOS:
            yield marker, at, n
            return
        yield marker, at, end
        at = end
    raise JpegError("JPEG has no image scan (no SOS marker)")


def frame_size(data):
    """(width, height) from the JPEG's frame header (SOFn), without decoding; None when
    the header has none before the scan. JpegError when the file is not a JPEG."""
    for marker, start, end in segments(data):
        if marker in _SOF and end - start >= 9:
            height, width = struct.unpack(">HH", data[start + 5:start + 9])
            return width, height
    return None


def size_allowed(size):
    """Whether `size` is a (width, height) of positive integers within MAX_PIXELS: one a
    recorded frame size or a frame header may give for the host to decode or scale to."""
    try:
        width, height = size
    except (TypeError, ValueError):
        return False
    return all(type(v) is int and v > 0 for v in (width, height)) and width * height <= MAX_PIXELS


def insert_xmp(data, xmp_packet):
    """Return the JPEG with an XMP APP1 segment after SOI/APP0. Refuses a file that
    already carries XMP: GB 45438 allows one metadata label per file."""
    if find_xmp(data) is not None:
        raise JpegError("file already carries an XMP packet")
    payload = XMP_SIGNATURE + xmp_packet
    if len(payload) > _MAX_SEGMENT:
        raise JpegError("XMP packet too large for one APP1 segment")
    insert_at = 2
    for marker, start, end in segments(data):
        if marker != _APP0:
            break
        insert_at = end
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return data[:insert_at] + segment + data[insert_at:]


def find_xmp(data):
    """Return the XMP packet bytes of the first XMP APP1 segment, or None."""
    for marker, start, end in segments(data):
        if marker == _APP1 and data[start + 4:start + 4 + len(XMP_SIGNATURE)] == XMP_SIGNATURE:
            return bytes(data[start + 4 + len(XMP_SIGNATURE):end])
    return None


def xmp_packets(data):
    """Every XMP packet a reader may find in the file, in file order, as (extended,
    packet bytes): the standard packet of each XMP APP1 segment (a JPEG may carry one; a
    second is reported, not ignored), XMP in any other APP1 segment but Exif, and each
    extended XMP (APP1 "http://ns.adobe.com/xmp/extension/", the chunks of one GUID
    joined by their offsets). The device writes one standard packet only."""
    found, extended = [], {}  # found: (False, a packet's bytes) or (True, the GUID of an extended XMP)
    for marker, start, end in segments(data):
        if marker != _APP1:
            continue
        body = start + 4
        if data[body:body + len(XMP_SIGNATURE)] == XMP_SIGNATURE:
            found.append((False, bytes(data[body + len(XMP_SIGNATURE):end])))
        elif data[body:body + len(_XMP_EXTENSION)] == _XMP_EXTENSION:
            at = body + len(_XMP_EXTENSION)
            if end - at < 40:
                raise JpegError("extended XMP segment at offset %d is truncated" % start)
            guid = bytes(data[at:at + 32])
            (offset,) = struct.unpack(">I", data[at + 36:at + 40])
            if guid not in extended:
                extended[guid] = []
                found.append((True, guid))
            extended[guid].append((offset, bytes(data[at + 40:end])))
        elif data[body:body + 6] != _EXIF_SIGNATURE:
            # Readers such as exiftool also take XMP behind a header that is not the
            # standard one ("XMP\0", the URI without its NUL, none at all): so does this.
            segment = bytes(data[body:end])
            starts = [segment.find(mark) for mark in _XMP_STARTS if mark in segment]
            if starts:
                found.append((False, segment[min(starts):]))
    return [(True, b"".join(chunk for _, chunk in sorted(extended[value]))) if is_extended else (False, value)
            for is_extended, value in found]


def image_data_digest(data):
    """SHA-256 over every segment except APPn and COM: the tables, frame header, scan
    and EOI. Metadata (XMP, Exif, the C2PA manifest in APP11) may come and go; any
    change to the coded pixels changes this digest."""
    h = hashlib.sha256()
    h.update(_SOI)
    view = memoryview(data)
    for marker, start, end in segments(data):
        if _APP0 <= marker <= _APP15 or marker == _COM:
            continue
        h.update(view[start:end])
    return h.digest()
