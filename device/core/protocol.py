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
TYPE_ERROR = 0x7F      # body: u16 error code, UTF-8 message
RESPONSE = 0x80

ERR_BAD_FRAME = 1      # the request frame failed COBS or CRC: send it again
ERR_BAD_REQUEST = 2    # a well-formed frame whose message does not parse
ERR_UNKNOWN_TYPE = 3
ERR_LOG_RANGE = 4      # the requested records are no longer on the device
ERR_INTERNAL = 5


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
        return json.loads(body.decode())
    except (ValueError, UnicodeError):
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


def log_batch_fits(max_payload, record_lengths):
    """True if a LOG_READ answer holding records of these lengths fits max_payload."""
    total = HEADER_LEN + LOG_BATCH_HEAD_LEN
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


def encode_error(code, message):
    return struct.pack("<H", code) + message.encode()


def decode_error(body):
    if len(body) < 2:
        return ERR_INTERNAL, "malformed error message"
    (code,) = struct.unpack("<H", body[:2])
    return code, bytes(body[2:]).decode("utf-8", "replace")
