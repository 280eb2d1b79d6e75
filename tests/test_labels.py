"""The implicit label: Annex E fields, the character set, ReservedCode1, and XMP
carriage in JPEG."""

import io
import json
import struct

import pytest
from hypothesis import given, strategies as st
from PIL import Image

from synthseal.device.core import aigc, jpeg
from synthseal.host.verify import read_xmp_label

RC1 = aigc.encode_reserved_code1(bytes(range(64)))


def test_label_has_the_seven_keys_in_order_and_first_write_propagator_fields():
    label = json.loads(aigc.build_label("1", "Vendor", "SN-1", RC1))
    assert list(label) == list(aigc.FIELDS)
    assert label["ContentPropagator"] == "Vendor" and label["PropagateID"] == "SN-1"


def test_parse_accepts_the_bare_object_and_the_wrapper():
    text = aigc.build_label("1", "Vendor", "SN-1", RC1)
    assert aigc.parse_label(text) == aigc.parse_label('{"AIGC":%s}' % text)


@pytest.mark.parametrize("bad,reason", [
    ('{"Label":"1"}', "lacks"),
    ("not json", "not valid JSON"),
    ("[1]", "not a JSON object"),
])
def test_parse_names_what_is_wrong(bad, reason):
    with pytest.raises(aigc.LabelError, match=reason):
        aigc.parse_label(bad)


def test_parse_refuses_extra_keys_and_unknown_label_values():
    label = json.loads(aigc.build_label("1", "Vendor", "SN-1", RC1))
    with pytest.raises(aigc.LabelError, match="unknown keys"):
        aigc.parse_label(json.dumps(dict(label, Extra="x")))
    with pytest.raises(aigc.LabelError, match="not 1, 2 or 3"):
        aigc.parse_label(json.dumps(dict(label, Label="4")))


@given(st.text(min_size=1, max_size=20))
def test_character_set_is_exactly_annex_e(value):
    allowed = all(c == "!" or "#" <= c <= "[" or "]" <= c <= "~" for c in value)
    try:
        aigc.check_value("ProduceID", value)
        assert allowed
    except aigc.LabelError:
        assert not allowed


@given(st.binary(min_size=64, max_size=64))
def test_reserved_code1_round_trips_within_the_character_set(raw):
    text = aigc.encode_reserved_code1(raw)
    aigc.check_value("ReservedCode1", text)
    assert aigc.decode_reserved_code1(text) == raw


def _jpeg():
    out = io.BytesIO()
    Image.new("RGB", (48, 32), (10, 200, 30)).save(out, "JPEG")
    return out.getvalue()


def test_xmp_round_trips_through_a_jpeg_and_leaves_the_image_digest_alone():
    data = _jpeg()
    label = aigc.build_label("1", "Vendor", "SN-1", RC1)
    labelled = jpeg.insert_xmp(data, aigc.build_xmp(label))
    assert read_xmp_label(jpeg.find_xmp(labelled)) == label
    assert jpeg.image_data_digest(labelled) == jpeg.image_data_digest(data)
    assert Image.open(io.BytesIO(labelled)).size == (48, 32)


def test_a_second_metadata_label_is_refused():
    labelled = jpeg.insert_xmp(_jpeg(), aigc.build_xmp("{}"))
    with pytest.raises(jpeg.JpegError, match="already carries"):
        jpeg.insert_xmp(labelled, aigc.build_xmp("{}"))


def test_reader_accepts_the_attribute_form_and_refuses_two_labels():
    ns = aigc.XMP_NAMESPACE
    attribute = ('<?xpacket begin="" id="x"?><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
                 'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
                 'xmlns:TC260="%s" TC260:AIGC="{&quot;Label&quot;:&quot;1&quot;}"/></rdf:RDF></x:xmpmeta>'
                 '<?xpacket end="w"?>' % ns)
    assert read_xmp_label(attribute.encode()) == '{"Label":"1"}'
    twice = attribute.replace("/></rdf:RDF>", '><TC260:AIGC>{}</TC260:AIGC></rdf:Description></rdf:RDF>')
    with pytest.raises(aigc.LabelError, match="allows one"):
        read_xmp_label(twice.encode())


def test_a_pixel_change_changes_the_image_digest():
    data = bytearray(_jpeg())
    digest = jpeg.image_data_digest(bytes(data))
    data[-10] ^= 1
    assert jpeg.image_data_digest(bytes(data)) != digest


@given(st.binary(max_size=400))
def test_segment_walker_only_raises_jpeg_error(data):
    try:
        list(jpeg.segments(b"\xff\xd8" + data))
    except jpeg.JpegError:
        pass


def test_reader_takes_a_packet_without_the_xpacket_wrapper_and_refuses_a_dtd():
    label = aigc.build_label("1", "Vendor", "SN-1", RC1)
    packet = aigc.build_xmp(label).decode()
    bare = packet.split("?>", 1)[1].rsplit("<?xpacket", 1)[0]  # the wrapper is optional in XMP
    assert read_xmp_label(bare.encode()) == label
    with pytest.raises(aigc.LabelError, match="DTD"):
        read_xmp_label(b'<!DOCTYPE x [<!ENTITY a "aaaa">]>' + bare.encode())


def _app1(payload):
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def test_every_xmp_packet_is_found_the_standard_ones_and_each_extended_xmp_joined():
    label = aigc.build_label("1", "Vendor", "SN-1", RC1)
    packet = aigc.build_xmp(label)
    data = jpeg.insert_xmp(_jpeg(), packet)
    guid = b"0123456789ABCDEF0123456789ABCDEF"
    extension = b"http://ns.adobe.com/xmp/extension/\x00"
    chunks = [packet[:100], packet[100:]]
    header = struct.pack(">I", len(packet))
    # The chunks arrive out of order, around a second standard packet: all are reported,
    # in file order (the extended XMP where its first chunk is).
    tail = (_app1(extension + guid + header + struct.pack(">I", 100) + chunks[1])
            + _app1(jpeg.XMP_SIGNATURE + b"<x/>")
            + _app1(extension + guid + header + struct.pack(">I", 0) + chunks[0]))
    data = data[:2] + tail + data[2:]
    assert jpeg.xmp_packets(data) == [(True, packet), (False, b"<x/>"), (False, packet)]
    with pytest.raises(jpeg.JpegError, match="truncated"):
        jpeg.xmp_packets(_jpeg()[:2] + _app1(extension + guid) + _jpeg()[2:])


@pytest.mark.parametrize("header", [b"XMP\x00", b"http://ns.adobe.com/xap/1.0/", b""])
def test_xmp_behind_a_header_other_than_the_standard_one_is_found_as_exiftool_finds_it(header):
    packet = aigc.build_xmp(aigc.build_label("3", "Other", "SN-2", RC1))
    data = _jpeg()
    data = data[:2] + _app1(header + packet) + _app1(b"Exif\x00\x00<?xpacket not xmp") + data[2:]
    assert jpeg.xmp_packets(data) == [(False, packet)]
