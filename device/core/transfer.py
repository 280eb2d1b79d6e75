"""Bulk transfers over the serial link, both ways: the sizes and times both ends
derive out of the line's rate, the packing of log records into stream frames, and the
staging of an upload. Documented in docs/PROTOCOL.md ("Streaming").

One definition of the frame size: the host chooses the chunk (the largest message
payload of a data frame) with `chunk_size`, from the baud rate and the bit error rate
it has measured, and the device packs to it, never beyond `framing.MAX_PAYLOAD`.

Why sqrt: a frame of L payload bytes plus H bytes of framing arrives whole with
probability (1 - b)^(8(L + H)) at bit error rate b, and carries L / (L + H) payload.
Their product is largest near L = sqrt(H / 8b): about 450 bytes at b = 1e-5,
140 bytes at 1e-4 (clamped to MIN_CHUNK), the maximum on a clean line.
"""

import hashlib
import os

from . import framing
from . import protocol as p

BITS_PER_BYTE = 10        # 8N1: start bit, 8 data bits, stop bit
MIN_CHUNK = 256           # one ordinary capture record (about 223 bytes) and its heads
MAX_CHUNK = 4096          # a clean line gains under 0.3 % from larger frames
MAX_FRAME_SECONDS = 0.5   # no frame longer than this on the line: at 9600 baud 480 bytes
# Bytes a frame costs beyond its chunk of records: message header, stream head, CRC,
# delimiter and about two COBS code bytes.
FRAME_OVERHEAD = p.HEADER_LEN + p.LOG_STREAM_HEAD_LEN + 4 + 1 + 2
# One LOG_STREAM request is answered with at most this many frames and bytes, so the
# device's answer stays small in memory and a lost request costs little.
MAX_STREAM_FRAMES = 32
MAX_STREAM_BYTES = 65536
# Time a device or an operating system may take to turn a request around (scheduling,
# USB polling, a flash read), on top of the time the bytes take on the line.
TURNAROUND_SECONDS = 0.25
MAX_UPLOAD = 1 << 26      # 64 MiB: the largest upload a device stages


def chunk_size(baudrate, bit_error_rate):
    """The chunk for this line: see the module docstring for the rule."""
    limit = MAX_CHUNK
    if baudrate:
        limit = min(limit, int(baudrate / BITS_PER_BYTE * MAX_FRAME_SECONDS))
    if bit_error_rate > 0:
        limit = min(limit, int((FRAME_OVERHEAD / (8.0 * bit_error_rate)) ** 0.5))
    return max(MIN_CHUNK, min(limit, framing.MAX_PAYLOAD))


def wire_bytes(payload_len):
    """Bytes a frame of this payload takes on the line: CRC, COBS codes, delimiter."""
    body = payload_len + 4
    return body + body // 254 + 2


def line_seconds(n_bytes, baudrate):
    return n_bytes * BITS_PER_BYTE / float(baudrate)


def silence_timeout(baudrate, chunk):
    """How long a receiver waits for the next whole frame before it takes what is
    outstanding as lost: the turnaround plus three frames' time on the line (two
    damaged frames in a row are no reason to start over)."""
    return TURNAROUND_SECONDS + 3 * line_seconds(wire_bytes(chunk), baudrate)


def stream_frames(log, start_seq, end_seq, chunk):
    """Payload bodies answering LOG_STREAM: records start_seq..end_seq-1 (fewer if the
    log ends first, or the answer limits are reached), packed into frames of at most
    `chunk` bytes of message payload. A record too large for the chunk goes alone in a
    frame if it fits MAX_PAYLOAD. The last frame carries STREAM_LAST."""
    chunk = max(MIN_CHUNK, min(chunk, framing.MAX_PAYLOAD))
    end_seq = min(end_seq, log.next_seq)

    def fits(lengths):
        limit = chunk if len(lengths) > 1 else framing.MAX_PAYLOAD
        return p.log_batch_fits(limit, lengths, p.LOG_STREAM_HEAD_LEN)

    frames = []
    seq = start_seq
    total = 0
    while seq < end_seq and len(frames) < MAX_STREAM_FRAMES and total < MAX_STREAM_BYTES:
        records = log.read(seq, end_seq - seq, fits)
        if not records:
            if not frames:
                raise RecordTooLargeError("record %d does not fit one frame of %d bytes"
                                          % (seq, framing.MAX_PAYLOAD))
            break
        frames.append([seq, records])
        seq += len(records)
        for record in records:
            total += len(record) + p.LOG_BATCH_RECORD_OVERHEAD
    if not frames:
        frames.append([start_seq, []])  # nothing there: one empty frame says so
    bodies = []
    for i in range(len(frames)):
        flags = p.STREAM_LAST if i == len(frames) - 1 else 0
        bodies.append(p.encode_log_stream_frame(flags, frames[i][0], frames[i][1]))
    return bodies


class RecordTooLargeError(Exception):
    pass


class UploadError(Exception):
    pass


_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"


def check_upload_name(name):
    if not name or name[0] == "." or len(name) > p.UPLOAD_NAME_MAX:
        raise UploadError("upload name %r is not allowed" % name)
    for c in name:
        if c not in _NAME_CHARS:
            raise UploadError("upload name %r is not allowed: letters, digits, '.', '_', '-' only" % name)


class UploadStage:
    """One upload at a time, staged in `directory`/.upload.part and moved to its name
    only after its SHA-256 matches. Each data frame says where its bytes go, so frames
    may arrive in any order and any number of times; the device keeps no window."""

    STAGING = ".upload.part"

    def __init__(self, directory, max_upload=MAX_UPLOAD):
        self.directory = directory
        self.max_upload = max_upload
        self._current = None  # [token, size, sha256, name, done]

    def _path(self, name):
        return self.directory + "/" + name

    def begin(self, size, sha256, name):
        check_upload_name(name)
        if size > self.max_upload:
            raise UploadError("upload of %d bytes exceeds the %d-byte limit" % (size, self.max_upload))
        token = p.upload_token(sha256)
        current = self._current
        if current is not None and current[:4] == [token, size, sha256, name] and not current[4]:
            return token  # the same upload again (a lost answer, a resume): keep its bytes
        _makedirs(self.directory)
        with open(self._path(self.STAGING), "wb") as f:
            block = bytes(4096)
            left = size
            while left > 0:
                f.write(block[:min(left, 4096)])
                left -= 4096
        self._current = [token, size, sha256, name, False]
        return token

    def _check(self, token):
        if self._current is None or self._current[0] != token:
            raise UploadError("no upload with token %08x under way; begin it again" % token)

    def write(self, token, offset, data):
        self._check(token)
        if self._current[4]:
            return  # already verified and stored; a late duplicate
        if offset + len(data) > self._current[1]:
            raise UploadError("bytes %d..%d lie past the end of the %d-byte upload"
                              % (offset, offset + len(data), self._current[1]))
        with open(self._path(self.STAGING), "r+b") as f:
            f.seek(offset)
            f.write(data)

    def finish(self, token):
        """Check the staged bytes' SHA-256 and move them to their name; return it."""
        self._check(token)
        token, size, sha256, name, done = self._current
        if done:
            return sha256
        digest = hashlib.sha256()
        with open(self._path(self.STAGING), "rb") as f:
            while True:
                block = f.read(4096)
                if not block:
                    break
                digest.update(block)
        digest = digest.digest()
        if digest != sha256:
            raise UploadError("staged upload's SHA-256 does not match; send the missing bytes again")
        try:
            _remove(self._path(name))
        except OSError:
            pass
        _rename(self._path(self.STAGING), self._path(name))
        self._current[4] = True
        return digest


def _makedirs(path):
    built = ""
    parts = path.split("/")
    for i in range(len(parts)):
        built = parts[i] if i == 0 else built + "/" + parts[i]
        if parts[i]:
            try:
                os.mkdir(built)
            except OSError:
                pass  # exists


def _remove(path):
    os.remove(path)


def _rename(src, dst):
    os.rename(src, dst)
