"""Fuzzing in the suite (bounded): the frame reader, the message codec and the device's
request handler never crash, hang or grow without bound on any input. The same harness
runs for as long as you like under atheris: tests/fuzz/fuzz_framing.py."""

import struct

from hypothesis import HealthCheck, given, settings, strategies as st

from synthseal.device.core import framing, protocol as p
from tests.fuzz.harness import make_endpoint, one_input

REQUEST_TYPES = [p.TYPE_HELLO, p.TYPE_LOG_READ, p.TYPE_LOG_STREAM, p.TYPE_UPLOAD_BEGIN, p.TYPE_UPLOAD_DATA,
                 p.TYPE_UPLOAD_END, p.TYPE_ERROR, 0x00, 0x7E, 0x81, 0xFF]

_ENDPOINTS = {}


def _endpoint(tmp_path_factory):
    if "e" not in _ENDPOINTS:
        _ENDPOINTS["e"] = make_endpoint(str(tmp_path_factory.mktemp("fuzz")))
    return _ENDPOINTS["e"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=3000), st.tuples(st.integers(1, 400), st.integers(1, 400), st.integers(1, 400)))
def test_arbitrary_bytes_never_escape_the_codec(tmp_path_factory, data, cuts):
    one_input(data, _endpoint(tmp_path_factory), cuts)


# Well-formed headers with hostile bodies reach every handler, not just the header check.
_bodies = st.one_of(
    st.binary(max_size=120),
    st.builds(lambda a, b, c: struct.pack("<IIH", a, b, c), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
              st.integers(0, 2**16 - 1)),
    st.builds(lambda size, name: struct.pack("<I", size) + bytes(32) + name, st.integers(0, 70000),
              st.binary(min_size=1, max_size=70)),
    st.builds(lambda token, off, data: struct.pack("<II", token, off) + data, st.sampled_from([0, 2**32 - 1]),
              st.integers(0, 2**32 - 1), st.binary(max_size=64)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(REQUEST_TYPES), st.integers(0, 0xFFFF), _bodies)
def test_every_request_type_answers_hostile_bodies_with_a_frame(tmp_path_factory, msg_type, request_id, body):
    one_input(p.encode_message(msg_type, request_id, body), _endpoint(tmp_path_factory), (10**6,))


def test_a_flood_without_delimiters_stays_within_one_frame_of_memory():
    reader = framing.FrameReader()
    for _ in range(200):
        assert reader.feed(b"\x07" * 4096) == []
        assert len(reader._buffer) <= framing.FrameReader.MAX_ENCODED
    assert len(reader.feed(b"\x00")) == 1


def test_deeply_nested_json_is_a_protocol_error_not_a_crash():
    import pytest
    with pytest.raises(p.ProtocolError):
        p.decode_json(b"[" * 100000)
