"""Framing and message codec: round trips, and fuzzed input never escapes as anything
but the module's own error."""

import os
import struct

import pytest
from hypothesis import given, settings, strategies as st

from synthseal.device.core import framing, protocol as p
from synthseal.device.core.framing import FrameError, FrameReader, decode_frame, encode_frame


@given(st.binary(max_size=2000))
def test_frame_round_trip_has_a_single_delimiter(payload):
    frame = encode_frame(payload)
    assert frame.count(0) == 1 and frame.endswith(b"\x00")
    assert decode_frame(frame[:-1]) == payload


def test_largest_payload_round_trips_and_one_more_byte_is_refused():
    payload = os.urandom(framing.MAX_PAYLOAD)
    assert decode_frame(encode_frame(payload)[:-1]) == payload
    with pytest.raises(FrameError):
        encode_frame(payload + b"x")


@settings(max_examples=500)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_decode_or_raise_frame_error(data):
    try:
        decode_frame(data)
    except FrameError:
        pass


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=300), st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_any_single_byte_corruption_is_detected(payload, position, flip):
    frame = bytearray(encode_frame(payload)[:-1])
    frame[position % len(frame)] ^= flip
    if 0 in frame:
        return  # a zero splits the frame on the wire: covered by the reader test
    try:
        assert decode_frame(bytes(frame)) != payload
    except FrameError:
        pass


def test_reader_resynchronises_after_noise_and_across_chunk_boundaries():
    stream = b"\x13\x37garbage\x00" + encode_frame(b"first") + encode_frame(b"\x00second\x00")
    reader = FrameReader()
    results = []
    for i in range(0, len(stream), 3):
        results.extend(reader.feed(stream[i:i + 3]))
    payloads = [payload for payload, error in results if payload is not None]
    errors = [error for payload, error in results if error is not None]
    assert payloads == [b"first", b"\x00second\x00"]
    assert len(errors) == 1


def test_reader_drops_an_oversized_frame_and_recovers():
    reader = FrameReader()
    results = reader.feed(b"\x01" * (FrameReader.MAX_ENCODED + 10) + b"\x00" + encode_frame(b"ok"))
    assert isinstance(results[0][1], FrameError)
    assert results[1] == (b"ok", None)


@given(st.lists(st.binary(max_size=300), max_size=20), st.integers(min_value=1, max_value=2**32 - 1))
def test_log_batch_round_trip(records, first_seq):
    assert p.decode_log_batch(p.encode_log_batch(first_seq, records)) == (first_seq, records)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_log_batch_parser_only_raises_protocol_error(body):
    try:
        p.decode_log_batch(body)
    except p.ProtocolError:
        pass


def test_message_header_round_trip_and_short_message():
    assert p.decode_message(p.encode_message(p.TYPE_HELLO, 0x1234, b"x")) == (p.TYPE_HELLO, 0x1234, b"x")
    with pytest.raises(p.ProtocolError):
        p.decode_message(b"\x01\x00")
    assert p.decode_log_read(struct.pack("<IH", 7, 100)) == (7, 100)


# A device with many ordinary captures: every LOG_READ answer must fit one frame, with
# the per-record length fields counted (80 records of 223 bytes once overflowed it).
def _log_with_records(tmp_path, sizes):
    from synthseal.device.core import logrecord
    from synthseal.device.core.auditlog import AuditLog
    log = AuditLog(str(tmp_path / "audit.log"))
    for size in sizes:
        base = len(logrecord.encode_record(1, 0, b"\0" * 32, b"\0" * 32, 1, "P", {"x": ""}))
        log.append(0, b"\1" * 32, logrecord.EVENT_SEAL, "P", {"x": "y" * max(0, size - base)})
    return log


def _pull_through_endpoint(log):
    from synthseal.device.core.handlers import DeviceEndpoint
    endpoint = DeviceEndpoint(lambda: {}, log)
    pulled, seq = [], 1
    while seq < log.next_seq:
        answer = endpoint.handle_request(p.encode_message(p.TYPE_LOG_READ, 7, p.encode_log_read(seq, 0xFFFF)))
        encode_frame(answer)  # raises if the answer does not fit one frame
        msg_type, _, body = p.decode_message(answer)
        assert msg_type == p.TYPE_LOG_READ | p.RESPONSE, p.decode_error(body)
        first, records = p.decode_log_batch(body)
        assert first == seq and records
        pulled += records
        seq += len(records)
    return pulled


def test_a_log_of_ordinary_captures_is_pulled_in_frames_that_fit(tmp_path):
    log = _log_with_records(tmp_path, [223] * 200)
    assert _pull_through_endpoint(log) == log.read(1, 1000)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=90, max_value=2000), min_size=1, max_size=60))
def test_every_log_batch_answer_fits_one_frame_whatever_the_record_sizes(tmp_path_factory, sizes):
    # sizes up to 2000 bytes: records are bounded at logrecord.MAX_RECORD_LEN when built
    log = _log_with_records(tmp_path_factory.mktemp("log"), sizes)
    assert _pull_through_endpoint(log) == log.read(1, 1000)


def test_a_record_larger_than_a_frame_gets_an_error_not_a_dead_service(tmp_path, monkeypatch):
    """New records are bounded when built; a log written before that bound may still
    hold one, and it must not stop the service."""
    from synthseal.device.core import logrecord
    from synthseal.device.core.handlers import DeviceEndpoint
    monkeypatch.setattr(logrecord, "MAX_RECORD_LEN", 1 << 20)
    log = _log_with_records(tmp_path, [framing.MAX_PAYLOAD + 100])
    answer = DeviceEndpoint(lambda: {}, log).handle_request(
        p.encode_message(p.TYPE_LOG_READ, 9, p.encode_log_read(1, 10)))
    encode_frame(answer)
    msg_type, request_id, body = p.decode_message(answer)
    assert (msg_type, request_id) == (p.TYPE_ERROR, 9)
    assert p.decode_error(body)[0] == p.ERR_INTERNAL
