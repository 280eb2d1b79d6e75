"""One fuzz input through everything that parses bytes from the wire, on both ends:
the frame reader, the message header, every request body the device accepts (through
DeviceEndpoint.handle_request, with a real log and upload folder) and every answer
body the host parses. Shared by the hypothesis test in the suite
(tests/test_fuzz_codec.py) and the atheris target (tests/fuzz/fuzz_framing.py).

The contract: nothing raises but the codec's own errors, every answer fits a frame,
and the reader's buffer stays within one frame's size whatever arrives."""

from synthseal.device.core import framing, protocol as p, transfer
from synthseal.device.core.auditlog import AuditLog
from synthseal.device.core.handlers import DeviceEndpoint, bad_frame_response

# Small enough that an UPLOAD_BEGIN with a random size stays cheap to stage.
FUZZ_MAX_UPLOAD = 1 << 16

HOST_PARSERS = (p.decode_log_batch, p.decode_log_stream_frame, p.decode_upload_ack, p.decode_u32,
                p.decode_json, p.decode_log_read, p.decode_log_stream_request, p.decode_upload_begin,
                p.decode_upload_data)


def make_endpoint(directory):
    log = AuditLog(directory + "/audit.log")
    if log.count == 0:
        for i in range(40):
            log.append(i, b"\x01" * 32, 1, "FUZZ-%d" % i, {"rule": "capture", "pad": "x" * (i * 37 % 600)})
    return DeviceEndpoint(lambda: {"serial": "FUZZ"}, log, upload_dir=directory + "/up",
                          max_upload=FUZZ_MAX_UPLOAD)


def check_answer(answer):
    answers = answer if isinstance(answer, list) else [answer]
    assert 1 <= len(answers) <= transfer.MAX_STREAM_FRAMES
    for one in answers:
        assert isinstance(one, bytes)
        framing.encode_frame(one)  # raises if it does not fit a frame
        p.decode_message(one)


def one_input(data, endpoint, cuts=(7, 1, 300)):
    """Feed `data` to a reader in pieces, answer every frame as the device would, and
    parse every payload with each host parser."""
    reader = framing.FrameReader()
    at = 0
    pieces = []
    i = 0
    while at < len(data):
        n = cuts[i % len(cuts)]
        pieces.append(data[at:at + n])
        at += n
        i += 1
    # The bytes also arrive as whole frames: a fuzzer's payload reaches the handlers.
    pieces.append(framing.encode_frame(data[:framing.MAX_PAYLOAD]))
    for piece in pieces:
        for payload, error in reader.feed(piece):
            assert len(reader._buffer) <= framing.FrameReader.MAX_ENCODED
            if error is not None:
                assert isinstance(error, framing.FrameError)
                check_answer(bad_frame_response(error))
                continue
            check_answer(endpoint.handle_request(payload))
            body = payload[p.HEADER_LEN:]
            for parse in HOST_PARSERS:
                try:
                    parse(body)
                except p.ProtocolError:
                    pass
            p.decode_error(body)
