"""Serial framing: COBS-encoded frames, each closed by a 0x00 delimiter.

    wire frame = COBS(payload || CRC32(payload) as 4 bytes little-endian) || 0x00

COBS removes every zero byte from the frame body, so 0x00 marks frame boundaries
unambiguously and a receiver resynchronises after noise at the next delimiter. CRC32
(IEEE 802.3, as `binascii.crc32`) catches corrupted bytes. COBS is written out here
rather than taken from the `cobs` package because this module must also run on
MicroPython, where that package's C extension does not exist.
"""

import struct
from binascii import crc32

DELIMITER = b"\x00"
# Largest payload either side sends or accepts. 16 KiB keeps a log batch per round
# trip large (see STYLE.md on mpremote's 256-byte chunks) while fitting a small MCU.
MAX_PAYLOAD = 16384
_CRC_LEN = 4


class FrameError(ValueError):
    """A received frame is malformed: bad COBS, bad CRC or wrong size."""


def cobs_encode(data):
    out = bytearray(b"\x00")  # placeholder for the first code byte
    code_index = 0
    code = 1
    for byte in data:
        if byte == 0:
            out[code_index] = code
            code_index = len(out)
            out.append(0)
            code = 1
            continue
        out.append(byte)
        code += 1
        if code == 0xFF:
            out[code_index] = code
            code_index = len(out)
            out.append(0)
            code = 1
    out[code_index] = code
    return bytes(out)


def cobs_decode(data):
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise FrameError("zero byte inside a COBS frame")
        end = i + code
        if end > n:
            raise FrameError("COBS block runs past the end of the frame")
        out.extend(data[i + 1:end])
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode_frame(payload):
    """Wrap one payload for the wire, delimiter included."""
    if len(payload) > MAX_PAYLOAD:
        raise FrameError("payload of %d bytes exceeds the %d-byte limit" % (len(payload), MAX_PAYLOAD))
    body = bytes(payload) + struct.pack("<I", crc32(payload) & 0xFFFFFFFF)
    return cobs_encode(body) + DELIMITER


def decode_frame(frame):
    """Return the payload of one frame given without its delimiter; raise FrameError."""
    if len(frame) == 0:
        raise FrameError("empty frame")
    body = cobs_decode(frame)
    if len(body) < _CRC_LEN:
        raise FrameError("frame shorter than its CRC")
    payload = body[:-_CRC_LEN]
    if len(payload) > MAX_PAYLOAD:
        raise FrameError("frame payload exceeds %d bytes" % MAX_PAYLOAD)
    (expected,) = struct.unpack("<I", body[-_CRC_LEN:])
    if crc32(payload) & 0xFFFFFFFF != expected:
        raise FrameError("frame CRC mismatch")
    return payload


class FrameReader:
    """Accumulates bytes from a stream and yields complete frames' payloads.

    Bytes beyond the largest legal frame are dropped until the next delimiter, so a
    noisy line cannot make the reader grow without bound.
    """

    # COBS adds at most one byte per 254 plus one; the CRC adds four.
    MAX_ENCODED = MAX_PAYLOAD + _CRC_LEN + (MAX_PAYLOAD + _CRC_LEN) // 254 + 2

    def __init__(self):
        self._buffer = bytearray()
        self._overflow = False

    def feed(self, data):
        """Add received bytes; return a list of (payload, None) or (None, FrameError)."""
        results = []
        start = 0
        while True:
            end = data.find(DELIMITER, start)
            chunk = data[start:] if end < 0 else data[start:end]
            if not self._overflow:
                self._buffer.extend(chunk)
                if len(self._buffer) > self.MAX_ENCODED:
                    self._overflow = True
                    self._buffer = bytearray()
            if end < 0:
                return results
            if self._overflow:
                results.append((None, FrameError("frame exceeds the size limit")))
            elif len(self._buffer):
                try:
                    results.append((decode_frame(bytes(self._buffer)), None))
                except FrameError as err:
                    results.append((None, err))
            self._buffer = bytearray()
            self._overflow = False
            start = end + 1
