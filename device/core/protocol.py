"""Messages carried in frames (framing.py). Documented in docs/PROTOCOL.md.

Every payload starts with a 3-byte header, little-endian:

    u8  type        request types < 0x80; a response is the request type | 0x80,
                    or TYPE_ERROR
    u16 request_id  chosen by the host, echoed by the device so a late answer to an
                    earlier request is never taken for the answer to this one

then a body whose layout depends on the type.
"""

import json
import struct

PROTOCOL_VERSION = 1
_HEADER = "<BH"
HEADER_LEN = 3

TYPE_HELLO = 0x01      # body: empty. Response: JSON device info
TYPE_LOG_READ = 0x02   # body: u32 start_seq, u16 max_records. Response: log batch
TYPE_LOG_STREAM = 0x03  # body: u32 start_seq, u32 end_seq, u16 chunk. Response: several stream frames
TYPE_UPLOAD_BEGIN = 0x10  # body: u32 size, 32-byte SHA-256, UTF-8 name. Response: u32 token
TYPE_UPLOAD_DATA = 0x11   # body: u32 token, u32 offset, bytes. Response: u32 offset, u32 length
TYPE_UPLOAD_END = 0x12    # body: u32 token. Response: the 32-byte SHA-256 of the stored file
TYPE_AUTH_BEGIN = 0x20   # body: JSON host nonce, ephemeral key, operator chain. Response: JSON (docs)
TYPE_AUTH_PROVE = 0x21   # body: JSON operator signature over the transcript. Response: JSON roles
TYPE_SECURE = 0x22       # body: u32 counter, inner message, 16-byte MAC. Response: the same form
TYPE_STATUS = 0x04       # body: empty. Response: JSON device info with log head (collector)
TYPE_CHECKPOINT = 0x05   # body: JSON {"old_size", "host_time_ms"}. Response: JSON signed tree head + proof (collector)
TYPE_ACK = 0x06          # body: JSON {"size", "root"} of a verified head. Response: JSON {"acked_size"} (collector)
TYPE_ENROL_BEGIN = 0x30  # body: JSON {"mode"}. Response: JSON CSRs (provisioner)
TYPE_ENROL_COMMIT = 0x31  # body: JSON certificates, anchor, signed config. Response: JSON (provisioner)
TYPE_CONFIGURE = 0x32    # body: a signed configuration document. Response: JSON (provisioner)
TYPE_DECOMMISSION = 0x33  # body: JSON {"reason"}. Response: JSON (provisioner)
TYPE_ERROR = 0x7F      # body: u16 error code, UTF-8 message
RESPONSE = 0x80

ERR_BAD_FRAME = 1      # the request frame failed COBS or CRC: send it again
ERR_BAD_REQUEST = 2    # a well-formed frame whose message does not parse
ERR_UNKNOWN_TYPE = 3
ERR_LOG_RANGE = 4      # the requested records are no longer on the device
ERR_INTERNAL = 5
ERR_UPLOAD = 6         # the upload cannot go on: no upload under way, bad size, or hash mismatch
ERR_AUTH = 7           # no authenticated session, the wrong role, or a message that fails its MAC
ERR_REFUSED = 8        # an authenticated request the device's state does not allow (message says why)


class ProtocolError(ValueError):
    pass


def encode_message(msg_type, request_id, body=b""):
    return struct.pack(_HEADER, msg_type, request_id & 0xFFFF) + body


def decode_message(payload):
    """Return (type, request_id, body)."""
    if len(payload) < HEADER_LEN:
        raise ProtocolError("message shorter than its header")
    msg_type, request_id = struct.unpack(_HEADER, payload[:HEADER_LEN])
    return msg_type, request_id, payload[HEADER_LEN:]


def encode_json(obj):
    return json.dumps(obj).encode()


def decode_json(body):
    try:
        return json.loads(bytes(body).decode())
    except (ValueError, UnicodeError, RuntimeError):  # RuntimeError: nesting too deep
        raise ProtocolError("message body is not UTF-8 JSON")


def encode_log_read(start_seq, max_records):
    return struct.pack("<IH", start_seq, max_records)


def decode_log_read(body):
    if len(body) != 6:
        raise ProtocolError("LOG_READ body must be 6 bytes")
    return struct.unpack("<IH", body)


# A log batch answer: message header, u32 first_seq + u16 count, then u16 length + bytes
# per record. Both sizes are part of the one definition of what fits a frame.
LOG_BATCH_HEAD_LEN = 6
LOG_BATCH_RECORD_OVERHEAD = 2


def log_batch_fits(max_payload, record_lengths, head_len=LOG_BATCH_HEAD_LEN):
    """True if a LOG_READ answer (or, with head_len=LOG_STREAM_HEAD_LEN, a LOG_STREAM
    frame) holding records of these lengths fits max_payload."""
    total = HEADER_LEN + head_len
    for n in record_lengths:
        total += LOG_BATCH_RECORD_OVERHEAD + n
    return total <= max_payload


def encode_log_batch(first_seq, records):
    """u32 first_seq, u16 count, then per record: u16 length, record bytes."""
    parts = [struct.pack("<IH", first_seq, len(records))]
    for record in records:
        parts.append(struct.pack("<H", len(record)))
        parts.append(record)
    return b"".join(parts)


def decode_log_batch(body):
    if len(body) < 6:
        raise ProtocolError("log batch shorter than its header")
    first_seq, count = struct.unpack("<IH", body[:6])
    at = 6
    records = []
    for _ in range(count):
        if at + 2 > len(body):
            raise ProtocolError("log batch truncated")
        (n,) = struct.unpack("<H", body[at:at + 2])
        at += 2
        if at + n > len(body):
            raise ProtocolError("log batch truncated")
        records.append(bytes(body[at:at + n]))
        at += n
    if at != len(body):
        raise ProtocolError("log batch has trailing bytes")
    return first_seq, records


def encode_log_stream_request(start_seq, end_seq, chunk):
    return struct.pack("<IIH", start_seq, end_seq, chunk)


def decode_log_stream_request(body):
    if len(body) != 10:
        raise ProtocolError("LOG_STREAM body must be 10 bytes")
    return struct.unpack("<IIH", body)


# A LOG_STREAM answer frame: a flags byte, then a log batch. Each frame names its own
# first seq, so the host places it whatever arrived before it.
LOG_STREAM_HEAD_LEN = 1 + LOG_BATCH_HEAD_LEN
STREAM_LAST = 0x01     # flag: the last frame of this answer


def encode_log_stream_frame(flags, first_seq, records):
    return bytes([flags]) + encode_log_batch(first_seq, records)


def decode_log_stream_frame(body):
    """Return (flags, first_seq, records)."""
    if len(body) < 1:
        raise ProtocolError("log stream frame is empty")
    first_seq, records = decode_log_batch(body[1:])
    return body[0], first_seq, records


UPLOAD_DIGEST_LEN = 32
UPLOAD_NAME_MAX = 64


def encode_upload_begin(size, sha256, name):
    return struct.pack("<I", size) + sha256 + name.encode()


def decode_upload_begin(body):
    """Return (size, sha256, name)."""
    if len(body) < 4 + UPLOAD_DIGEST_LEN + 1 or len(body) > 4 + UPLOAD_DIGEST_LEN + UPLOAD_NAME_MAX:
        raise ProtocolError("UPLOAD_BEGIN body has the wrong size")
    (size,) = struct.unpack("<I", body[:4])
    try:
        name = bytes(body[4 + UPLOAD_DIGEST_LEN:]).decode()
    except UnicodeError:
        raise ProtocolError("upload name is not UTF-8")
    return size, bytes(body[4:4 + UPLOAD_DIGEST_LEN]), name


def upload_token(sha256):
    """Names one upload in every data frame, so a late frame of an earlier upload is
    never written into this one."""
    return struct.unpack("<I", sha256[:4])[0]


def encode_upload_data(token, offset, data):
    return struct.pack("<II", token, offset) + data


def decode_upload_data(body):
    """Return (token, offset, data)."""
    if len(body) < 8:
        raise ProtocolError("UPLOAD_DATA body shorter than its header")
    token, offset = struct.unpack("<II", body[:8])
    return token, offset, bytes(body[8:])


UPLOAD_DATA_HEAD_LEN = 8


def encode_upload_ack(offset, length):
    return struct.pack("<II", offset, length)


def decode_upload_ack(body):
    if len(body) != 8:
        raise ProtocolError("UPLOAD_DATA answer must be 8 bytes")
    return struct.unpack("<II", body)


def encode_u32(value):
    return struct.pack("<I", value)


def decode_u32(body):
    if len(body) != 4:
        raise ProtocolError("body must be one u32")
    return struct.unpack("<I", body)[0]


# A SECURE message wraps one inner message (header included) of an authenticated
# session: u32 counter (strictly increasing per direction), the inner message, and the
# first 16 bytes of HMAC-SHA256 over the counter and the inner message under that
# direction's session key. Only the session's two ends know the keys.
SECURE_COUNTER_LEN = 4
SECURE_TAG_LEN = 16


def encode_secure(counter, inner, tag):
    return struct.pack("<I", counter) + inner + tag


def decode_secure(body):
    """Return (counter, inner message, tag)."""
    if len(body) < SECURE_COUNTER_LEN + HEADER_LEN + SECURE_TAG_LEN:
        raise ProtocolError("SECURE body shorter than its counter, header and MAC")
    (counter,) = struct.unpack("<I", body[:SECURE_COUNTER_LEN])
    return counter, bytes(body[SECURE_COUNTER_LEN:-SECURE_TAG_LEN]), bytes(body[-SECURE_TAG_LEN:])


def encode_error(code, message):
    return struct.pack("<H", code) + message.encode()


def decode_error(body):
    if len(body) < 2:
        return ERR_INTERNAL, "malformed error message"
    (code,) = struct.unpack("<H", body[:2])
    return code, bytes(body[2:]).decode("utf-8", "replace")
