"""The GB 45438-2025 implicit label (Annex E) and its carriage in XMP.

The only module that knows the AIGC field names. The label is a JSON object with
exactly seven keys, written bare (readers also accept the {"AIGC": {...}} wrapper):

    Label              "1" AI-generated, "2" possibly, "3" suspected
    ContentProducer    provider name or code
    ProduceID          the provider's unique number for this content
    ReservedCode1      integrity protection: our device signature, format below
    ContentPropagator  on first write equal to ContentProducer
    PropagateID        on first write equal to ProduceID
    ReservedCode2      unused by us, empty

Values are printable ASCII without space, '"' or '\\' (0x21, 0x23-0x5B, 0x5D-0x7E).

ReservedCode1 = "SS1." + base64url, unpadded, of the 64-byte ES256 signature r||s
(P-256, SHA-256) made with the device's content key over label_signing_message():

    "synthseal-aigc-v1\\n" Label "\\n" ContentProducer "\\n" ProduceID "\\n"
    lowercase hex of the image-data digest (jpeg.image_data_digest)

It binds the producer's fields to the pixels, and leaves the propagator fields free
for later propagators to rewrite, as Annex E intends.

Carriage in images (TC260 practice guide): XMP, namespace
http://www.tc260.org.cn/ns/AIGC/1.0/, prefix TC260, property TC260:AIGC.
"""

import binascii
import json

FIELDS = ("Label", "ContentProducer", "ProduceID", "ReservedCode1",
          "ContentPropagator", "PropagateID", "ReservedCode2")
SIGNED_FIELDS = ("Label", "ContentProducer", "ProduceID")
LABEL_VALUES = {"1": "AI-generated", "2": "possibly AI-generated", "3": "suspected AI-generated"}
XMP_NAMESPACE = "http://www.tc260.org.cn/ns/AIGC/1.0/"
XMP_PREFIX = "TC260"
XMP_PROPERTY = "AIGC"
RESERVED_CODE1_PREFIX = "SS1."
_SIGNING_CONTEXT = "synthseal-aigc-v1"


class LabelError(ValueError):
    pass


def check_value(name, value):
    """Raise LabelError unless value uses only the characters Annex E allows."""
    if not isinstance(value, str):
        raise LabelError("%s must be a string" % name)
    for ch in value:
        c = ord(ch)
        if not (c == 0x21 or 0x23 <= c <= 0x5B or 0x5D <= c <= 0x7E):
            raise LabelError("%s contains a character outside the allowed set: %r" % (name, ch))


def build_label(label, producer, produce_id, reserved_code1, reserved_code2=""):
    """Return the label JSON text, keys in Annex E order, for a first write."""
    if label not in LABEL_VALUES:
        raise LabelError("Label must be one of 1, 2, 3")
    values = (label, producer, produce_id, reserved_code1, producer, produce_id, reserved_code2)
    parts = []
    for name, value in zip(FIELDS, values):
        check_value(name, value)
        # The character set excludes '"' and '\\', so values need no JSON escaping.
        parts.append('"%s":"%s"' % (name, value))
    return "{" + ",".join(parts) + "}"


def parse_label(text):
    """Parse label JSON (bare or wrapped); return a dict of the seven fields.

    Raises LabelError naming the first problem: not JSON, missing or extra keys,
    non-string values, characters outside the allowed set, unknown Label value.
    """
    try:
        obj = json.loads(text)
    except (ValueError, RuntimeError):  # RuntimeError: nested too deep (RecursionError in CPython)
        raise LabelError("AIGC label is not valid JSON")
    if isinstance(obj, dict) and len(obj) == 1 and "AIGC" in obj:
        obj = obj["AIGC"]
    if not isinstance(obj, dict):
        raise LabelError("AIGC label is not a JSON object")
    missing = [k for k in FIELDS if k not in obj]
    extra = [k for k in obj if k not in FIELDS]
    if missing:
        raise LabelError("AIGC label lacks " + ", ".join(missing))
    if extra:
        raise LabelError("AIGC label has unknown keys " + ", ".join(extra))
    for name in FIELDS:
        check_value(name, obj[name])
    if obj["Label"] not in LABEL_VALUES:
        raise LabelError("Label %r is not 1, 2 or 3" % obj["Label"])
    return obj


def label_signing_message(label, producer, produce_id, image_digest):
    return (_SIGNING_CONTEXT + "\n" + label + "\n" + producer + "\n" + produce_id + "\n"
            + binascii.hexlify(image_digest).decode()).encode()


def encode_reserved_code1(raw_signature):
    if len(raw_signature) != 64:
        raise LabelError("ES256 signature must be 64 bytes r||s")
    b64 = binascii.b2a_base64(raw_signature).decode().strip()
    return RESERVED_CODE1_PREFIX + b64.replace("+", "-").replace("/", "_").rstrip("=")


def decode_reserved_code1(text):
    if not text.startswith(RESERVED_CODE1_PREFIX):
        raise LabelError("ReservedCode1 is not a synthseal signature (no %s prefix)" % RESERVED_CODE1_PREFIX)
    b64 = text[len(RESERVED_CODE1_PREFIX):].replace("-", "+").replace("_", "/")
    b64 += "=" * (-len(b64) % 4)
    try:
        raw = binascii.a2b_base64(b64)
    except (ValueError, binascii.Error):
        raise LabelError("ReservedCode1 is not valid base64url")
    if len(raw) != 64:
        raise LabelError("ReservedCode1 does not hold a 64-byte ES256 signature")
    return raw


def _xml_escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_xmp(label_json):
    """Return an XMP packet (UTF-8 bytes) holding the label as TC260:AIGC."""
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about="" xmlns:' + XMP_PREFIX + '="' + XMP_NAMESPACE + '">\n'
        '   <' + XMP_PREFIX + ':' + XMP_PROPERTY + '>' + _xml_escape(label_json)
        + '</' + XMP_PREFIX + ':' + XMP_PROPERTY + '>\n'
        '  </rdf:Description>\n'
        ' </rdf:RDF>\n'
        '</x:xmpmeta>\n'
        '<?xpacket end="w"?>'
    ).encode()
