"""Trace a file to the seal record it came from, when its labels were stripped or its
pixels were re-encoded, resized or cropped (docs/TRACING.md).

Three ways, strongest first, each against the records pulled into a log database:
1. "pixels":    the SHA-256 of the decoded pixels equals a record's (device/fingerprint.py):
                the same image, only its metadata changed (exiftool -all=, a stripped
                C2PA manifest);
2. "watermark": the invisible watermark decodes to a record's identifier
                (device/watermark.py): survives recompression, resizing and cropping
                within the documented limits;
3. "pdq":       the nearest record's PDQ hash is within PDQ_MATCH_DISTANCE bits.

trace_file() never raises on a bad file or database: the result says why nothing was
traced. A record found in a log that does not verify against the vendor root (when
trust anchors are given) is reported, with the log's problems, as not traced.
"""

import datetime
import io
import sqlite3

import c2pa
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..device import fingerprint, watermark
from ..device.core import aigc, jpeg
from . import logdb
from .verify import FileRefused, pixels_refused, read_limited

METHODS = ("pixels", "watermark", "pdq")
_SKIPPED_SHOWN = 3  # rows of an edited database named in the detail; the rest are counted
_LABEL_NAMES = {None: "a real capture (no AIGC label)"}
_LABEL_NAMES.update({value: "Label %s (%s)" % (value, meaning) for value, meaning in aigc.LABEL_VALUES.items()})


def trace_file(path, db_path, trust_anchors_pem=None):
    """Trace one file. Returns:
        traced      bool
        method      "pixels" | "watermark" | "pdq" | None
        serial, seq, produce_id, label ("1"/"2"/"3"/None), sealed_at (ISO 8601, UTC,
                    the device's clock): the record's, or None
        distance    PDQ Hamming distance between the file and the record (None if not computed)
        labels      what the file still carries: {"aigc": bool, "c2pa": bool}
        summary     one sentence: "sealed by device X as Label 1 (...) on DATE; labels removed"
        detail      how it was found, or why not
        log_problems  the log's problems against the trust anchors ([] when it verifies,
                    None when not checked)
    """
    result = {"file": str(path), "traced": False, "method": None, "serial": None, "seq": None, "produce_id": None,
              "label": None, "sealed_at": None, "distance": None, "labels": None, "summary": None, "detail": None,
              "log_problems": None}
    try:
        return _trace(path, db_path, trust_anchors_pem, result)
    except Exception as err:  # the last guard: a result, never a traceback in a batch
        result.update(traced=False, method=None)
        result["detail"] = "unexpected error (please report it): %s: %s" % (type(err).__name__, str(err)[:200])
        result["summary"] = "not traced: unexpected error"
        return result


def _trace(path, db_path, trust_anchors_pem, result):
    try:
        data = read_limited(path)
    except (OSError, FileRefused) as err:
        result["detail"] = "cannot read %s: %s" % (path, getattr(err, "strerror", None) or err)
        result["summary"] = "not traced: not a readable file"
        return result
    try:
        # The picture's size from its header, before anything is decoded (jpeg.MAX_PIXELS).
        size = jpeg.frame_size(data) if data[:2] == b"\xff\xd8" else None
    except jpeg.JpegError:
        size = None  # Pillow says what is wrong with it below
    try:
        image = None if size and pixels_refused(*size) else Image.open(io.BytesIO(data))  # the header only
        refused = pixels_refused(*(size or image.size))
        if refused:
            result["detail"] = refused
            result["summary"] = "not traced: too large an image"
            return result
        image.load()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        result["detail"] = "cannot read %s as an image (%s)" % (path, err)
        result["summary"] = "not traced: not an image"
        return result
    result["labels"] = _labels_carried(data, image.format)
    try:
        db = logdb.open_readonly(db_path)
    except logdb.LogDbError as err:
        result["detail"] = str(err)
        result["summary"] = "not traced: no audit database"
        return result
    try:
        found, notes = _find(db, image.convert("RGB"), result)
    except sqlite3.Error as err:
        result["detail"] = "the audit database cannot be read (%s)" % err
        result["summary"] = "not traced: the audit database cannot be read"
        return result
    finally:
        db.close()
    if found is None:
        result["detail"] = "; ".join(notes)
        result["summary"] = "not traced: no record in %s matches" % db_path
        return result
    record, method = found
    decision = record["decision"]
    result.update(method=method, serial=record["device_serial"], seq=record["seq"], produce_id=record["produce_id"],
                  label=decision.get("label"), sealed_at=_iso(record["time_ms"]))
    if trust_anchors_pem is not None:
        result["log_problems"] = logdb.verify_log(db_path, record["device_serial"], trust_anchors_pem)
    result["traced"] = not result["log_problems"]
    result["detail"] = "; ".join(notes)
    result["summary"] = "sealed by device %s as %s on %s; %s" % (
        result["serial"], _LABEL_NAMES.get(result["label"], "Label %s" % result["label"]), result["sealed_at"],
        _labels_state(result["labels"], result["label"]))
    if method == "watermark" and result["distance"] > fingerprint.PDQ_MATCH_DISTANCE:
        # A crop moves PDQ this far; so would a watermark copied onto another picture.
        result["summary"] += "; by its watermark only: the picture differs from the sealed one (PDQ distance %d of %d)" \
            % (result["distance"], fingerprint.PDQ_BITS)
    if result["log_problems"]:
        result["summary"] = "not traced: the log holding the matching record does not verify (%s)" % result["summary"]
    return result


def _find(db, image, result):
    """(record, method) or None, and the notes that say how (or why not)."""
    skipped = []  # rows of an edited database left out, and why (each reason once)
    pixels = fingerprint.pixel_sha256(image)
    file_pdq, quality = fingerprint.pdq(image)
    found, notes = _search(db, image, result, pixels, file_pdq, quality, skipped)
    skipped = list(dict.fromkeys(skipped))
    notes += skipped[:_SKIPPED_SHOWN]
    if len(skipped) > _SKIPPED_SHOWN:
        notes.append("%d more rows of the database skipped" % (len(skipped) - _SKIPPED_SHOWN))
    return found, notes


def _search(db, image, result, pixels, file_pdq, quality, skipped):
    notes = []
    for record in logdb.trace_candidates(db, pixel_sha256=pixels, skipped=skipped):
        result["distance"] = fingerprint.pdq_distance(file_pdq, record["trace"]["pdq"])
        notes.append("decoded pixels identical to record %s/%d (SHA-256 %s)" % (record["device_serial"], record["seq"], pixels))
        return (record, "pixels"), notes
    notes.append("no record has these decoded pixels")

    mark = watermark.detect(image, sizes=logdb.traced_frame_sizes(db, skipped))
    if mark["identifier"] is None:
        notes.append("no watermark decoded (tile sync score %.1f, %.1f needed)" % (mark["sync_score"], watermark.MIN_SYNC_SCORE))
    else:
        records = logdb.trace_candidates(db, watermark=mark["identifier"], skipped=skipped)
        if records:
            # Two seals may draw the same 48-bit identifier (rarely): the pixels decide.
            distances = [fingerprint.pdq_distance(file_pdq, r["trace"]["pdq"]) for r in records]
            best = int(np.argmin(distances))
            result["distance"] = distances[best]
            notes.append("watermark %s decoded (sync score %.1f, at %dx%d) names record %s/%d; PDQ distance %d"
                         % (mark["identifier"], mark["sync_score"], mark["size"][0], mark["size"][1],
                            records[best]["device_serial"], records[best]["seq"], distances[best]))
            if len(records) > 1:
                notes.append("%d records share this identifier; the nearest by PDQ was taken" % len(records))
            if distances[best] > fingerprint.PDQ_MATCH_DISTANCE:
                notes.append("the pixels differ from the sealed image beyond the PDQ threshold of %d: an edited "
                             "copy, or a watermark copied onto other pixels" % fingerprint.PDQ_MATCH_DISTANCE)
            return (records[best], "watermark"), notes
        notes.append("watermark %s decoded but no record in the log carries it" % mark["identifier"])

    nearest, distance = None, None
    candidates = logdb.trace_candidates(db, skipped=skipped)
    if candidates:
        distances = _pdq_distances(file_pdq, [c["trace"]["pdq"] for c in candidates])
        best = int(np.argmin(distances))
        nearest, distance = candidates[best], int(distances[best])
    if nearest is None:
        notes.append("no seal record in the log carries a perceptual hash")
    elif quality < fingerprint.PDQ_MIN_QUALITY:
        notes.append("PDQ not used: the image's PDQ quality is %d (below %d, too flat to match)"
                     % (quality, fingerprint.PDQ_MIN_QUALITY))
    elif distance <= fingerprint.PDQ_MATCH_DISTANCE:
        result["distance"] = distance
        notes.append("PDQ hash %d bits from record %s/%d (threshold %d)"
                     % (distance, nearest["device_serial"], nearest["seq"], fingerprint.PDQ_MATCH_DISTANCE))
        return (nearest, "pdq"), notes
    else:
        result["distance"] = distance
        notes.append("nearest PDQ hash is %d bits away (record %s/%d), above the threshold of %d"
                     % (distance, nearest["device_serial"], nearest["seq"], fingerprint.PDQ_MATCH_DISTANCE))
    return None, notes


def _pdq_distances(query_hex, hashes_hex):
    query = np.frombuffer(bytes.fromhex(query_hex), np.uint8)
    table = np.frombuffer(b"".join(bytes.fromhex(h) for h in hashes_hex), np.uint8).reshape(len(hashes_hex), -1)
    return np.unpackbits(table ^ query, axis=1).sum(axis=1)


def _labels_carried(data, image_format):
    """Whether the file still carries the TC260 AIGC metadata label and a C2PA manifest."""
    try:
        packets = jpeg.xmp_packets(data) if image_format == "JPEG" else []
    except jpeg.JpegError:  # segments a decoder skips over but the XMP reader cannot walk
        packets = []
    has_aigc = any(aigc.XMP_NAMESPACE.encode() in packet for _, packet in packets)
    mime = {"JPEG": "image/jpeg", "PNG": "image/png"}.get(image_format)
    has_c2pa = False
    if mime:
        try:
            c2pa.Reader(mime, io.BytesIO(data)).close()
            has_c2pa = True
        except Exception:  # c2pa raises its own error types for "no manifest"; any failure means none usable
            has_c2pa = False
    return {"aigc": has_aigc, "c2pa": has_c2pa}


def _labels_state(labels, label):
    if label is None:  # a real capture never had an AIGC label: only its manifest can be gone
        return "C2PA manifest present (check it with `verify`)" if labels["c2pa"] else "C2PA manifest removed"
    if not labels["aigc"] and not labels["c2pa"]:
        return "labels removed"
    if labels["aigc"] and labels["c2pa"]:
        return "labels present (check them with `verify`)"
    return "C2PA manifest removed" if labels["aigc"] else "AIGC metadata label removed"


def _iso(time_ms):
    return datetime.datetime.fromtimestamp(time_ms / 1000.0, datetime.timezone.utc).isoformat(timespec="seconds")
