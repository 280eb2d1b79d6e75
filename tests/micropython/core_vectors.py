# Runs unchanged on CPython and MicroPython: exercises every core module with fixed
# inputs and prints one JSON object of results. tests/test_core_portable.py runs it on
# both and requires identical answers.
import binascii
import json

from synthseal.device.core import aigc, auditlog, framing, handlers, jpeg, logrecord, merkle, policy, protocol, transfer


def hx(b):
    return binascii.hexlify(b).decode()


out = {}
payload = bytes(range(256)) + b"\x00" * 3 + b"synthseal"
frame = framing.encode_frame(payload)
out["frame"] = hx(frame)
out["frame_round_trip"] = framing.decode_frame(frame[:-1]) == payload
reader = framing.FrameReader()
got = reader.feed(b"noise\x00" + frame + frame[:10])
out["reader"] = [[hx(p) if p is not None else None, e is not None] for p, e in got]

decision = policy.decide("rig")
out["decision"] = decision
out["dst"] = policy.digital_source_type_uri(decision)

record = logrecord.encode_record(1, 1700000000123, logrecord.GENESIS_HASH, b"\x11" * 32,
                                 logrecord.EVENT_SEAL, "SN-1", {"rule": "rig"})
out["record"] = hx(record)
out["record_hash"] = hx(logrecord.record_hash(record))
out["record_decoded_seq"] = logrecord.decode_record(record)["seq"]

log = auditlog.AuditLog("vectors-audit.log")
for i in range(3):
    log.append(1700000000000 + i, b"\x22" * 32, logrecord.EVENT_SEAL, "SN-%d" % (i + 1), {"i": i})
records = log.read(1, 10)
out["log_chain_ok"] = logrecord.verify_chain(records) is None
out["log_head"] = hx(log.head_hash)

endpoint = handlers.DeviceEndpoint(lambda: {"serial": "SN"}, log)
answer = endpoint.handle_request(protocol.encode_message(protocol.TYPE_LOG_READ, 7, protocol.encode_log_read(2, 5)))
msg_type, request_id, body = protocol.decode_message(answer)
first, batch = protocol.decode_log_batch(body)
out["log_read"] = [msg_type, request_id, first, len(batch)]
answer = endpoint.handle_request(protocol.encode_message(0x33, 9))
out["unknown_type"] = protocol.decode_message(answer)[0]

# Streaming: the chunk rule, the frames a LOG_STREAM answer holds, and an upload
# staged, checked and stored through the device's filesystem.
out["chunks"] = [transfer.chunk_size(baud, ber) for baud in (9600, 115200, 1000000) for ber in (0, 1e-6, 1e-5, 1e-4)]
out["wire_bytes"] = [transfer.wire_bytes(n) for n in (0, 250, 254, 4096)]
stream = endpoint.handle_request(protocol.encode_message(protocol.TYPE_LOG_STREAM, 11,
                                                         protocol.encode_log_stream_request(1, 4, 256)))
out["log_stream"] = [hx(frame) for frame in stream]
blob = bytes(range(256)) * 3
import hashlib
digest = hashlib.sha256(blob).digest()
uploads = handlers.DeviceEndpoint(lambda: {}, log, upload_dir="vectors-up")
answers = [uploads.handle_request(protocol.encode_message(protocol.TYPE_UPLOAD_BEGIN, 1,
                                                          protocol.encode_upload_begin(len(blob), digest, "fw.bin")))]
token = protocol.upload_token(digest)
for offset in (512, 0, 256):
    answers.append(uploads.handle_request(protocol.encode_message(
        protocol.TYPE_UPLOAD_DATA, 2, protocol.encode_upload_data(token, offset, blob[offset:offset + 256]))))
answers.append(uploads.handle_request(protocol.encode_message(protocol.TYPE_UPLOAD_END, 3, protocol.encode_u32(token))))
out["upload_answers"] = [hx(a) for a in answers]
with open("vectors-up/fw.bin", "rb") as f:
    out["upload_stored"] = f.read() == blob

label = aigc.build_label("1", "Vendor", "SN-00000001-abcd", aigc.encode_reserved_code1(bytes(range(64))))
out["label"] = label
out["label_parsed"] = aigc.parse_label('{"AIGC":' + label + "}")["ProduceID"]
out["signing_message"] = hx(aigc.label_signing_message("1", "Vendor", "SN", b"\x33" * 32))
out["xmp"] = hx(aigc.build_xmp(label))
try:
    aigc.check_value("ContentProducer", "has space")
    out["charset_rejected"] = False
except aigc.LabelError:
    out["charset_rejected"] = True

# A minimal JPEG: SOI, APP0, DQT stand-in, SOS, scan bytes, EOI.
tiny = (b"\xff\xd8" + b"\xff\xe0\x00\x04ab" + b"\xff\xdb\x00\x04cd" + b"\xff\xda\x00\x04ef"
        + b"scan-data" + b"\xff\xd9")
labelled = jpeg.insert_xmp(tiny, aigc.build_xmp(label))
out["jpeg_labelled"] = hx(labelled)
out["jpeg_digest_stable"] = jpeg.image_data_digest(tiny) == jpeg.image_data_digest(labelled)
out["jpeg_xmp_found"] = jpeg.find_xmp(labelled) == aigc.build_xmp(label)

tree = merkle.MerkleTree()
for i in range(13):
    tree.append(b"leaf-%d" % i)
out["merkle_roots"] = [hx(tree.root(n)) for n in (0, 1, 7, 8, 13)]
out["merkle_path"] = [hx(h) for h in tree.inclusion_proof(5, 11)]
out["merkle_proofs_ok"] = merkle.verify_inclusion(5, 11, tree.leaf(5), tree.inclusion_proof(5, 11), tree.root(11)) and \
    merkle.verify_consistency(6, 13, tree.root(6), tree.root(), tree.consistency_proof(6))

print(json.dumps(out))
