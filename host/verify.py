"""Verify sealed files: Content Credentials, the GB 45438 labels (metadata and the
visible one), the device signature in ReservedCode1, the audit log and revocation. One
report per file with every check in it, rather than an exception at the first problem:
whatever the file, the database or the path, a problem is a line in the report.

A report is a dict (docs/VERIFY.md; its JSON form is host/verify-report.schema.json):
    file, result, ok, label, explicit_label, label_text, source_type, device_serial,
    c2pa_state, log_seq, origin, classifier, lab, sealed_at,
    checks: [{"check": name, "status": "pass" | "fail" | "warn" | "skip", "detail": text}]

result: "failed" when any check failed; otherwise "incomplete" when any check was
skipped (it could not be made: no --db, no --crl, an older seal); otherwise "verified".
"warn" marks what holds cryptographically but a person must weigh (a capture sealed on
a lab bench or with the classifier off): it does not change the result. `ok` is
result == "verified", kept for consumers of the first report format.
"""

import datetime
import errno
import hashlib
import io
import json
import os
import sqlite3
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import c2pa
import numpy as np
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from PIL import Image

from ..device import credentials, explicit_label, fingerprint
from ..device.core import aigc, jpeg, policy
from ..device.seal import C2PA_ASSERTION_LABEL

from . import logdb

# The report format's version: 1 was the unversioned list of reports; 2 added result,
# the explicit_label and trace checks, and the batch envelope (docs/VERIFY.md).
REPORT_SCHEMA_VERSION = 2

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"
VERIFIED, FAILED, INCOMPLETE = "verified", "failed", "incomplete"

# Every report lists these checks, in this order; `trace` only for a file without
# intact Content Credentials (it is what can still say where such a file came from).
CHECKS = ("file", "c2pa", "policy", "provenance", "aigc", "explicit_label", "reserved_code1", "log", "revocation")
TRACE_CHECK = "trace"

# A sealed frame is a JPEG of a few MiB at most (a 4056x3040 Pi HQ frame is about 3 MiB);
# anything far larger is not one, and is not read into memory.
MAX_FILE_BYTES = 256 << 20

# ElementTree's name for TC260:AIGC, as an element or as an attribute.
_XMP_NAME = "{%s}%s" % (aigc.XMP_NAMESPACE, aigc.XMP_PROPERTY)
_APP11 = 0xEB  # JPEG APP11: where C2PA's JUMBF boxes travel

# The visible label found in the pixels: its ink must stand this far (8-bit luminance)
# above the darkened plate around it. The device draws white ink on a plate at 35 % of
# the background, so a real label stands out by well over 100 even after JPEG; a frame
# without one, measured through the same mask, by a few levels.
_MIN_INK_CONTRAST = 64
# Annex E lets a later platform fill these in; ReservedCode1 does not sign them.
_PROPAGATOR_FIELDS = frozenset({"ContentPropagator", "PropagateID"})


def _dict(value):
    return value if isinstance(value, dict) else None


class _Report:
    def __init__(self, path):
        # A name that is not UTF-8 (undecodable bytes) is kept visible as \udcXX escapes,
        # so every output (UTF-8 JSON, CSV, HTML) can carry it.
        name = str(path).encode("utf-8", "backslashreplace").decode("utf-8")
        self.data = {"file": name, "result": None, "ok": False, "label": None, "explicit_label": None,
                     "label_text": None, "source_type": None, "device_serial": None, "c2pa_state": None,
                     "log_seq": None, "origin": None, "classifier": None, "lab": None, "sealed_at": None,
                     "traced_to": None, "checks": []}

    def add(self, check, status, detail):
        self.data["checks"].append({"check": check, "status": status, "detail": detail})

    def status(self, check):
        return next((c["status"] for c in self.data["checks"] if c["check"] == check), None)

    def finish(self):
        d = self.data
        statuses = {c["status"] for c in d["checks"]}
        d["result"] = FAILED if FAIL in statuses else INCOMPLETE if SKIP in statuses else VERIFIED
        d["ok"] = d["result"] == VERIFIED
        return d


def c2pa_reader_context(trust_anchors_pem):
    return c2pa.Context(settings=c2pa.Settings.from_dict({
        "trust": {"trust_anchors": trust_anchors_pem},
        "verify": {"verify_trust": True, "remote_manifest_fetch": False},
    }))


def read_xmp_label(packet):
    """Return the TC260:AIGC text from an XMP packet (element or attribute form, with or
    without the optional <?xpacket?> wrapper), or None."""
    if b"<!DOCTYPE" in packet or b"<!ENTITY" in packet:  # XMP has no DTD; entities only inflate
        raise aigc.LabelError("XMP packet carries a DTD, which XMP does not allow")
    try:
        root = ET.fromstring(packet.decode("utf-8").strip())
    except (ET.ParseError, UnicodeError):
        raise aigc.LabelError("XMP packet is not well-formed XML")
    found = []
    for element in root.iter():
        if element.tag == _XMP_NAME:
            found.append(element.text or "")
        if _XMP_NAME in element.attrib:
            found.append(element.attrib[_XMP_NAME])
    if len(found) > 1:
        raise aigc.LabelError("XMP carries %d TC260:AIGC labels; GB 45438 allows one" % len(found))
    return found[0] if found else None


class Verifier:
    """Verifies files one by one against the same trust anchors, log database and CRL.

    trust_anchors_pem: the vendor root(s), PEM text. db_path: a database written by
    `pull` (opened read-only once, here; LogDbError if it is not one), or None.
    crl_pem: the issuing CA's revocation list as `synthseal-host ca crl --out` writes it
    (the CRL and the issuing CA certificate that signed it), or None."""

    def __init__(self, trust_anchors_pem, db_path=None, crl_pem=None):
        try:
            x509.load_pem_x509_certificates(trust_anchors_pem.encode())
        except ValueError:
            raise ValueError("the trust anchor holds no PEM certificate; give the vendor root "
                             "(vendor-root.pem)") from None
        self.anchors = trust_anchors_pem
        self.crl = crl_pem
        self.context = c2pa_reader_context(trust_anchors_pem)
        self.db = logdb.open_readonly(db_path) if db_path else None
        self.db_path = db_path
        self._log_problems = {}  # serial -> the stored log's problems against the anchors (tracing)

    def close(self):
        if self.db is not None:
            self.db.close()
            self.db = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def verify(self, path):
        """The report for one file; never raises for anything the file holds."""
        report = _Report(path)
        try:
            self._verify(report, Path(path))
        except Exception as err:  # the last guard: a report, never a traceback in a batch
            report.add("verifier", FAIL, "unexpected error (please report it): %s: %s"
                       % (type(err).__name__, str(err)[:200]))
        return report.finish()

    def _verify(self, report, path):
        data = _check_file(report, path)
        if data is None:
            for name in CHECKS[1:]:
                report.add(name, SKIP, "the file could not be read as a JPEG")
            return
        manifest = _check_c2pa(report, data, self.context)
        seal = _dict((manifest or {}).get("assertions", {}).get(C2PA_ASSERTION_LABEL))
        _check_signer_is_sealing_device(report, data, manifest, seal)
        decision = _check_decision(report, manifest, seal)
        _check_provenance(report, decision)
        fields = _check_implicit_label(report, data, seal, decision)
        _check_explicit_label(report, data, seal, decision)
        _check_reserved_code1(report, data, fields, (seal or {}).get("device_serial"), manifest, self.db)
        record = _check_log(report, data, seal, self.db, self._device_log_problems)
        _check_revocation(report, manifest, record, self.anchors, self.crl, self.db)
        if manifest is not None:
            sealed_at = sealing_time(manifest, record)[0]
            report.data["sealed_at"] = sealed_at.isoformat() if sealed_at else None
        if report.status("c2pa") != PASS:
            self._check_trace(report, path, data, fields)

    def _check_trace(self, report, path, data, fields):
        """A file without intact Content Credentials (stripped, re-encoded, resized,
        cropped): which seal record its pixels came from (host/trace.py), in a log that
        verifies against the vendor root; and the metadata label it still carries
        against that record and that device's key."""
        if self.db is None:
            report.add(TRACE_CHECK, SKIP, "no log database given (--db): a file without intact Content Credentials "
                       "is traced through the pulled log")
            return
        from .trace import trace_file
        traced = trace_file(path, self.db_path)
        if traced["method"] is None:
            report.add(TRACE_CHECK, FAIL, "not traced to any seal record in the pulled log: %s" % traced["detail"])
            return
        serial = traced["serial"]
        problems = self._device_log_problems(serial)
        if problems:
            report.add(TRACE_CHECK, FAIL, "its pixels match record %d of device %s, but that device's pulled log "
                       "does not verify against the vendor root: %s" % (traced["seq"], serial, problems[0]))
            return
        # A watermark alone, on a picture far from the sealed one by PDQ, may be a crop
        # or a watermark copied onto other pixels (the scheme is public): a person must
        # weigh it, so it is a warning and traced_to says the picture differs.
        same_picture = traced["method"] != "watermark" or (
            traced["distance"] is not None and traced["distance"] <= fingerprint.PDQ_MATCH_DISTANCE)
        report.data["traced_to"] = dict({key: traced[key] for key in (
            "method", "serial", "seq", "produce_id", "label", "sealed_at", "distance", "summary")},
            same_picture=same_picture)
        if fields is not None and report.status("reserved_code1") == SKIP:
            # Without a manifest nothing named the device; the record does. The new
            # result takes the skipped one's place in the report.
            checks = report.data["checks"]
            at = next(i for i, c in enumerate(checks) if c["check"] == "reserved_code1")
            del checks[at]
            _check_reserved_code1(report, data, fields, serial, None, self.db)
            checks.insert(at, checks.pop())
        if fields is not None and (fields["Label"], fields["ProduceID"]) != (traced["label"], traced["produce_id"]):
            report.add(TRACE_CHECK, FAIL, "its pixels match record %d of device %s, sealed as Label %s with ProduceID "
                       "%s, but the file's TC260:AIGC label says Label %s, ProduceID %s: the label was changed after "
                       "sealing" % (traced["seq"], serial, traced["label"], traced["produce_id"], fields["Label"],
                                    fields["ProduceID"]))
            return
        report.add(TRACE_CHECK, PASS if same_picture else WARN, "%s (record %d, found by %s: %s)"
                   % (traced["summary"], traced["seq"], traced["method"], traced["detail"]))

    def _device_log_problems(self, serial):
        """The device's pulled log against the vendor root (logdb.verify_log), once per
        device in a batch: a record is evidence only from a log that holds."""
        if serial not in self._log_problems:
            try:
                self._log_problems[serial] = logdb.verify_log(self.db_path, serial, self.anchors)
            except (logdb.LogDbError, sqlite3.Error) as err:
                self._log_problems[serial] = ["the audit database cannot be read (%s)" % err]
        return self._log_problems[serial]


def verify_file(path, trust_anchors_pem, db_path=None, crl=None):
    """Verify one file (see Verifier); for many, use one Verifier."""
    with Verifier(trust_anchors_pem, db_path, crl) as verifier:
        return verifier.verify(path)


class FileRefused(ValueError):
    """A path that is not read: not a regular file, or larger than any sealed image."""


def read_limited(path):
    """The bytes of a regular file of at most MAX_FILE_BYTES (verify and trace). The file
    is opened without blocking and checked through the open descriptor, so a FIFO or a
    device is refused at once instead of waiting for a writer. Raises FileRefused, or
    OSError (IsADirectoryError for a folder)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder")
        if not stat.S_ISREG(info.st_mode):  # a pipe or a device would never end
            raise FileRefused("not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise FileRefused("%d bytes: larger than any image synthseal seals (%d MiB at most)"
                              % (info.st_size, MAX_FILE_BYTES >> 20))
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:  # grew while being read
        raise FileRefused("larger than any image synthseal seals (%d MiB at most)" % (MAX_FILE_BYTES >> 20))
    return data


def pixels_refused(width, height):
    """Why a picture of width x height is not decoded, or None when it may be."""
    if width * height > jpeg.MAX_PIXELS:
        return "%d×%d pixels: larger than any image synthseal seals" % (width, height)
    return None


def _check_file(report, path):
    """The file's bytes if it is a readable JPEG, else None (the reason reported)."""
    try:
        if path.is_dir():
            report.add("file", FAIL, "is a folder: give -r to verify the files in it")
            return None
        data = read_limited(path)
    except FileRefused as err:
        report.add("file", FAIL, str(err))
        return None
    except OSError as err:
        report.add("file", FAIL, "cannot read: %s" % (err.strerror or err))
        return None
    try:
        list(jpeg.segments(data))
        size = jpeg.frame_size(data)
    except jpeg.JpegError as err:
        report.add("file", FAIL, "%s; synthseal seals JPEG images" % err)
        return None
    refused = pixels_refused(*size) if size else None
    if refused:  # decided from the frame header: nothing is decoded
        report.add("file", FAIL, refused)
        return None
    report.add("file", PASS, "JPEG, %d bytes" % len(data))
    return data


def _check_c2pa(report, data, context):
    """The active manifest (its assertions under "assertions", the signer certificate
    under "signer"), or None when there is none or it cannot be read."""
    try:
        reader = c2pa.Reader("image/jpeg", io.BytesIO(data), context=context)
    except c2pa.C2paError as err:
        text = str(err)
        if "ManifestNotFound" in type(err).__name__ or "not found" in text.lower() or "JumbfNotFound" in text:
            report.add("c2pa", FAIL, "no Content Credentials (C2PA manifest) in the file")
        else:
            report.add("c2pa", FAIL, "C2PA manifest unreadable: %s" % (text.splitlines() or ["?"])[0])
        return None
    try:
        state = reader.get_validation_state()
        results = _dict(reader.get_validation_results()) or {}
        detailed = json.loads(reader.detailed_json())
        label = detailed["active_manifest"]
        manifest = _dict(detailed["manifests"][label])
        signer = _signer_certificate_info(reader, label)
    except (c2pa.C2paError, ValueError, KeyError, TypeError, RuntimeError):
        manifest = None
    finally:
        reader.close()
    if manifest is None:
        report.add("c2pa", FAIL, "C2PA manifest unreadable: the reader gives no active manifest")
        return None
    report.data["c2pa_state"] = state if isinstance(state, str) else None
    failures = _dict(results.get("activeManifest")) or {}
    failures = failures.get("failure") if isinstance(failures.get("failure"), list) else []
    if state == "Trusted":
        name = (_dict(manifest.get("signature")) or {}).get("common_name", "?")
        report.add("c2pa", PASS, "Trusted: signed by %s" % name)
    else:
        codes = sorted({str(f.get("code")) for f in failures if isinstance(f, dict)})
        report.add("c2pa", FAIL, "%s: %s" % (state, ", ".join(codes) or "signer not in the trust anchors"))
    manifest["assertions"] = _dict(manifest.get("assertion_store")) or {}
    manifest["signer"] = signer
    manifest["trusted"] = state == "Trusted"
    return manifest


def _signer_certificate_info(reader, label):
    """The signer certificate's serial number (int) and issuer name, as the C2PA reader
    reports them (crJSON certificateInfo), or None."""
    try:
        for m in json.loads(reader.crjson()).get("manifests", []):
            if m.get("label") == label:
                info = m["signature"]["certificateInfo"]
                issuer, subject = info.get("issuer") or {}, info.get("subject") or {}
                if isinstance(issuer, dict) and isinstance(subject, dict):
                    return {"serial_number": int(info["serialNumber"], 16), "issuer": issuer, "subject": subject}
    except (c2pa.C2paError, ValueError, KeyError, TypeError, AttributeError, RuntimeError):
        pass
    return None


def _actions(manifest):
    actions = _dict(manifest["assertions"].get("c2pa.actions.v2")) or _dict(manifest["assertions"].get("c2pa.actions"))
    listed = (actions or {}).get("actions")
    return [a for a in listed if isinstance(a, dict)] if isinstance(listed, list) else []


def _check_decision(report, manifest, seal):
    if manifest is None:
        report.add("policy", SKIP, "no readable C2PA manifest to hold a sealed decision")
        return None
    if seal is None:
        if C2PA_ASSERTION_LABEL in manifest["assertions"]:
            report.add("policy", FAIL, "the %s assertion is not a JSON object" % C2PA_ASSERTION_LABEL)
        else:
            report.add("policy", FAIL, "the manifest has no %s assertion: not sealed by a synthseal device"
                       % C2PA_ASSERTION_LABEL)
        return None
    decision = _dict(seal.get("decision"))
    if decision is None:
        report.add("policy", FAIL, "the %s assertion has no decision object" % C2PA_ASSERTION_LABEL)
        return None
    report.data["device_serial"] = seal.get("device_serial") if isinstance(seal.get("device_serial"), str) else None
    rule = decision.get("rule")
    row = policy.POLICY_TABLE.get(rule) if isinstance(rule, str) else None
    if row is None:
        report.add("policy", FAIL, "unknown policy rule %r" % (rule,))
        return None
    mismatched = [k for k in row if k not in decision or decision[k] != row[k]]
    created = [a for a in _actions(manifest) if a.get("action") == "c2pa.created"]
    dst = created[0].get("digitalSourceType") if created else None
    report.data["source_type"] = dst.rsplit("/", 1)[-1] if isinstance(dst, str) else None
    rederived = _rederive_rule(decision)
    if mismatched:
        report.add("policy", FAIL, "decision differs from the policy table in %s" % ", ".join(mismatched))
    elif rederived is None:
        report.add("policy", FAIL, "the recorded source, scores or threshold are not valid policy inputs "
                   "(threshold must be in (0, 1], scores must name %s)" % ", ".join(policy.CLASS_RULES))
    elif rederived != rule:
        report.add("policy", FAIL, "rule %r does not follow from the recorded source, scores and threshold "
                   "(the policy gives %r)" % (rule, rederived))
    elif dst != policy.digital_source_type_uri(row):
        report.add("policy", FAIL, "c2pa.created digitalSourceType %s does not match the decision (%s)"
                   % (dst, row["dst"]))
    else:
        # The decision holds its table row here: the row's values are the decision's.
        report.add("policy", PASS, "rule %r: Label %s, explicit label %s, %s"
                   % (rule, row["label"] or "none", "drawn" if row["explicit"] else "not drawn", row["dst"]))
    explicit = decision.get("explicit")
    report.data["explicit_label"] = explicit if isinstance(explicit, bool) else None
    return decision


def describe_origin(origin):
    """One short phrase for where a frame came from, as recorded by the agent."""
    if not isinstance(origin, dict):
        return "not recorded"
    if origin.get("kind") == policy.ORIGIN_CAMERA:
        sensor = origin.get("sensor")
        return "camera %s%s" % (origin.get("camera", "?"), " (%s)" % sensor if sensor else "")
    if origin.get("kind") == policy.ORIGIN_INTAKE:
        return "intake from %s (uid %s)" % (origin.get("client", "?"), origin.get("uid", "?"))
    return "unknown origin %r" % origin.get("kind")


def describe_classifier(provenance):
    if isinstance(provenance, dict) and isinstance(provenance.get("model_sha256"), str):
        return "model sha256 %s" % provenance["model_sha256"][:16]
    return {"off": "classifier off", "unavailable": "classifier failed to load"}.get(provenance, "not recorded")


def _check_provenance(report, decision):
    """Where the frame came from and what judged it. A capture must come from the
    device's own camera; one made on a lab bench or without the classifier is flagged."""
    if decision is None:
        report.add("provenance", SKIP, "no sealed decision records where the frame came from")
        return
    origin, classifier, lab = decision.get("origin"), decision.get("classifier"), decision.get("lab")
    report.data.update(origin=describe_origin(origin), classifier=describe_classifier(classifier),
                       lab=lab if isinstance(lab, bool) else None)
    if origin is None:
        report.add("provenance", WARN, "the seal does not record the frame's origin, classifier or lab flag "
                   "(sealed by an older firmware)")
        return
    kind = origin.get("kind") if isinstance(origin, dict) else None
    try:
        policy.check_origin(decision.get("source"), kind)
    except (policy.PolicyError, TypeError) as err:  # TypeError: a source that is not even a string
        report.add("provenance", FAIL, "%s: %s" % (describe_origin(origin), err))
        return
    summary = "%s, %s%s" % (describe_origin(origin), describe_classifier(classifier), ", LAB bench" if lab else "")
    if decision.get("source") == policy.SOURCE_CAPTURE and (lab or not isinstance(classifier, dict)):
        why = []
        if lab:
            why.append("sealed on a lab bench (fake camera allowed)")
        if not isinstance(classifier, dict):
            why.append("the classifier did not run (%s)" % describe_classifier(classifier))
        report.add("provenance", WARN, "real capture, but %s: %s" % (" and ".join(why), summary))
    else:
        report.add("provenance", PASS, summary)


def _rederive_rule(decision):
    """The rule the policy gives for the decision's own inputs (declared source, the
    classifier's scores, threshold or error), or None when the policy refuses them (a
    threshold outside (0, 1] or scores without the policy's classes would let any rule
    pass). Scores recorded without their threshold are refused too: no default applies."""
    has_scores = "scores" in decision
    try:
        return policy.decide(decision.get("source"), decision.get("scores"),
                             decision.get("threshold") if has_scores else policy.DEFAULT_THRESHOLD,
                             decision.get("classifier_error"))["rule"]
    except (policy.PolicyError, TypeError, AttributeError):
        return None


def _check_implicit_label(report, data, seal, decision):
    try:
        packets = jpeg.xmp_packets(data)
        for extended, kind in ((False, "XMP packets"), (True, "extended XMP packets")):
            count = sum(1 for is_extended, _ in packets if is_extended == extended)
            if count > 1:
                raise aigc.LabelError("file carries %d %s; a JPEG carries at most one" % (count, kind))
        texts = [text for text in (read_xmp_label(packet) for _, packet in packets) if text is not None]
        if len(texts) > 1:
            raise aigc.LabelError("XMP carries %d TC260:AIGC labels; GB 45438 allows one" % len(texts))
        fields = aigc.parse_label(texts[0]) if texts else None
    except (aigc.LabelError, jpeg.JpegError) as err:
        report.add("aigc", FAIL, str(err))
        return None
    if fields is not None:
        report.data["label"] = fields["Label"]
    expected = decision.get("label") if decision is not None else None
    if decision is None:
        report.add("aigc", PASS if fields else FAIL,
                   "TC260:AIGC label present, Label %s" % fields["Label"] if fields else "no TC260:AIGC label")
        return fields
    if expected is None:
        if fields is None:
            report.add("aigc", PASS, "no TC260:AIGC label, as the policy says for a real capture")
        else:
            report.add("aigc", FAIL, "file carries a TC260:AIGC label but the sealed decision has none")
        return fields
    if fields is None:
        report.add("aigc", FAIL, "TC260:AIGC label missing (the sealed decision says Label %s)" % expected)
        return None
    sealed = _dict(seal.get("aigc"))
    if fields != sealed:
        changed = [key for key in aigc.FIELDS if sealed is not None and fields.get(key) != sealed.get(key)]
        if changed and set(changed) <= _PROPAGATOR_FIELDS:
            why = " only in %s: a platform filled in the propagator fields after sealing" % ", ".join(changed)
        else:
            why = " in %s" % ", ".join(changed) if changed else ""
        report.add("aigc", FAIL, "TC260:AIGC label differs from the one sealed in the C2PA manifest" + why)
    elif fields["Label"] != expected:
        report.add("aigc", FAIL, "Label %s differs from the decision's %s" % (fields["Label"], expected))
    else:
        report.add("aigc", PASS, "seven fields well-formed, Label %s, ProduceID %s" % (fields["Label"], fields["ProduceID"]))
    return fields


def _check_explicit_label(report, data, seal, decision):
    """The visible label: the text the seal records meets GB 45438, and it is in the
    pixels, where the device draws it, every character at least 5 % of the shortest side
    high."""
    if decision is None:
        report.add("explicit_label", SKIP, "no sealed decision says whether a visible label is required")
        return
    if decision.get("explicit") is not True:
        report.add("explicit_label", PASS, "none required (rule %r draws no visible label)" % (decision.get("rule"),))
        return
    recorded = seal.get("explicit_label")
    if recorded is None:
        report.add("explicit_label", SKIP, "the seal does not record the label's text and corner (sealed by an "
                   "older firmware): look at the image for the visible label")
        return
    recorded = _dict(recorded) or {}
    text, corner = recorded.get("text"), recorded.get("position")
    if not isinstance(text, str) or corner not in explicit_label.CORNERS:
        report.add("explicit_label", FAIL, "the sealed label record is malformed (text %r, corner %r)" % (text, corner))
        return
    report.data["label_text"] = text
    try:
        explicit_label.check_label_text(text)
    except explicit_label.ExplicitLabelError as err:
        report.add("explicit_label", FAIL, "GB 45438: %s" % err)
        return
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("L", image.size)  # luminance only, at full size: about half the decoding
            gray = image.convert("L")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        report.add("explicit_label", FAIL, "the pixels cannot be decoded to look for the label: %s" % err)
        return
    width, height = gray.size
    try:
        box, ink, ink_height = explicit_label.label_ink(text, width, height, corner)
    except explicit_label.ExplicitLabelError as err:
        report.add("explicit_label", FAIL, "no legible label fits: %s" % err)
        return
    plate = np.asarray(gray.crop(box), dtype=np.float32)
    fraction = ink_height / min(width, height)
    if not ink.any() or ink.all():  # no ink or no plate to compare: nothing legible was drawn
        report.add("explicit_label", FAIL, "no legible label fits a %dx%d frame" % (width, height))
        return
    contrast = float(plate[ink].mean() - plate[~ink].mean())
    if contrast < _MIN_INK_CONTRAST:
        report.add("explicit_label", FAIL, "%r is not in the pixels at the %s corner, where the seal says it was "
                   "drawn (its ink stands %.0f levels above the plate; a drawn label stands at least %d)"
                   % (text, corner, contrast, _MIN_INK_CONTRAST))
    elif fraction < explicit_label.MIN_HEIGHT_FRACTION:
        report.add("explicit_label", FAIL, "%r at the %s corner: its shortest character is %.1f %% of the shortest "
                   "side high; GB 45438 asks at least %.0f %%"
                   % (text, corner, 100 * fraction, 100 * explicit_label.MIN_HEIGHT_FRACTION))
    else:
        report.add("explicit_label", PASS, "%r in the pixels at the %s corner, its shortest character %.1f %% of "
                   "the shortest side high" % (text, corner, 100 * fraction))


def _manifest_signer_certificate(data, signer):
    """The C2PA signer's certificate from the file itself: the DER certificate in the
    manifest's APP11 segments (the COSE signature's x5chain) whose serial number and
    issuer are those the C2PA reader validated. None if not found."""
    if signer is None:
        return None
    for marker, start, end in jpeg.segments(data):
        if marker != _APP11:
            continue
        segment = data[start:end]
        at = segment.find(b"\x30\x82")
        while at >= 0:
            length = 4 + int.from_bytes(segment[at + 2:at + 4], "big")
            try:
                cert = x509.load_der_x509_certificate(segment[at:at + length])
                if cert.serial_number == signer["serial_number"] and \
                        _name_fields(cert.issuer) == {k: v for k, v in signer["issuer"].items() if k in ("CN", "O")}:
                    return cert
            except ValueError:
                pass
            at = segment.find(b"\x30\x82", at + 1)
    return None


def _reserved_code1_keys(data, serial, manifest, db):
    """[(certificate, where it came from)] that may have signed ReservedCode1: the C2PA
    signer's certificate when the manifest is Trusted (the same device key signs both),
    then every content-signing chain the pulled log holds for the device `serial`."""
    keys, notes = [], []
    if manifest is not None and manifest["trusted"]:
        cert = _manifest_signer_certificate(data, manifest["signer"])
        if cert is not None and credentials.cert_serial(cert) == serial:
            keys.append((cert, "the certificate in the manifest"))
    if db is not None and isinstance(serial, str):
        for chain in logdb.device_chains(db, serial):  # every key the device has had: a file may predate a rotation
            if not isinstance(chain, str):  # an edited database: a BLOB or a number is no PEM chain
                notes.append("a chain stored for the device in the audit database is not PEM text (%s); skipped"
                             % type(chain).__name__)
                continue
            try:
                keys.append((x509.load_pem_x509_certificates(chain.encode())[0], "the pulled log's chain"))
            except ValueError:
                notes.append("a chain stored for the device in the audit database holds no PEM certificate; skipped")
    return keys, notes


def _check_signer_is_sealing_device(report, data, manifest, seal):
    """A Trusted manifest proves a vendor device signed it; the seal must name that
    device. Otherwise one device's key could seal files in another's name."""
    if manifest is None or not manifest["trusted"] or seal is None:
        return
    cert = _manifest_signer_certificate(data, manifest["signer"])
    signer = credentials.cert_serial(cert) if cert is not None else None
    if signer is None or signer != seal.get("device_serial"):
        for check in report.data["checks"]:
            if check["check"] == "c2pa":
                check.update(status=FAIL, detail="Trusted, but signed by device %s's certificate while the seal "
                             "names device %r: one device's key sealing in another's name"
                             % (signer or "(unknown)", seal.get("device_serial")))


def _check_reserved_code1(report, data, fields, serial, manifest, db):
    """ReservedCode1 against the keys of device `serial` (the one the seal names, or the
    one whose log record the file's pixels were traced to)."""
    if fields is None:
        if report.status("aigc") == PASS:
            report.add("reserved_code1", PASS, "none to check: no TC260:AIGC label, as the policy says; the C2PA "
                       "signature covers the file")
        else:
            report.add("reserved_code1", SKIP, "no well-formed TC260:AIGC label to take it from")
        return
    try:
        keys, notes = _reserved_code1_keys(data, serial, manifest, db)
    except sqlite3.Error as err:
        report.add("reserved_code1", SKIP, "the audit database cannot be read (%s)" % err)
        return
    noted = "".join("; %s" % note for note in notes)
    if not keys:
        report.add("reserved_code1", SKIP, "device certificate unknown: the manifest is not Trusted or does not "
                   "carry it; pull the device's log and give --db" + noted)
        return
    try:
        raw = aigc.decode_reserved_code1(fields["ReservedCode1"])
    except aigc.LabelError as err:
        report.add("reserved_code1", FAIL, str(err))
        return
    message = aigc.label_signing_message(fields["Label"], fields["ContentProducer"], fields["ProduceID"],
                                         jpeg.image_data_digest(data))
    signature = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    for cert, source in keys:
        try:
            cert.public_key().verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, TypeError, AttributeError):  # TypeError/AttributeError: not an EC key
            continue
        report.add("reserved_code1", PASS, "device %s signature over label and pixels holds (key from %s)"
                   % (credentials.cert_serial(cert), source))
        return
    report.add("reserved_code1", FAIL, "device signature does not match the label fields and pixels" + noted)


def _check_log(report, data, seal, db, log_problems):
    """The file's audit record, from a device log that verifies against the vendor root
    (`log_problems(serial)`: its problems, [] when it holds), for the device the seal
    names. A record is used only then: its time decides the revocation check."""
    if db is None:
        report.add("log", SKIP, "no log database given (--db)")
        return None
    try:
        record = logdb.find_record(db, hashlib.sha256(data).hexdigest())
    except sqlite3.Error as err:
        report.add("log", SKIP, "the audit database cannot be read (%s)" % err)
        return None
    if record is None:
        report.add("log", FAIL, "no audit record for this file's SHA-256 in the pulled log")
        return None
    serial = seal.get("device_serial") if seal is not None else None
    if serial is not None and record["device_serial"] != serial:
        report.add("log", FAIL, "the audit record for this file is device %s's record %d, but the seal names device %s"
                   % (record["device_serial"], record["seq"], serial))
        return None
    problems = log_problems(record["device_serial"])
    if problems:
        report.add("log", FAIL, "device %s's pulled log does not verify against the vendor root, so its record %d "
                   "is not used: %s%s" % (record["device_serial"], record["seq"], problems[0],
                                          " (and %d more; run `log verify`)" % (len(problems) - 1)
                                          if len(problems) > 1 else ""))
        return None
    if seal is not None and (record["produce_id"] != seal.get("produce_id") or record["decision"] != seal.get("decision")):
        report.add("log", FAIL, "audit record %d differs from the sealed ProduceID or decision" % record["seq"])
        return None
    report.data["log_seq"] = record["seq"]
    report.add("log", PASS, "device %s record %d" % (record["device_serial"], record["seq"]))
    return record


def sealing_time(manifest, record=None):
    """(when the file was sealed, where that comes from), or (None, why not). Both
    sources are the device's own clock: the audit record's time (hash-chained in the
    pulled log, so it cannot be edited after a pull) is preferred; otherwise the `when`
    of the manifest's c2pa.created action (covered by the C2PA signature). C2PA's own
    signing time exists only with a timestamp authority, which a device does not use."""
    if record is not None:
        when = datetime.datetime.fromtimestamp(record["time_ms"] / 1000.0, datetime.timezone.utc)
        return when, "audit record %d" % record["seq"]
    for action in _actions(manifest):
        if action.get("action") == "c2pa.created" and isinstance(action.get("when"), str):
            try:
                when = datetime.datetime.fromisoformat(action["when"].replace("Z", "+00:00"))
            except ValueError:
                return None, "the c2pa.created time %r is not ISO 8601" % action["when"]
            if when.tzinfo is None:
                return None, "the c2pa.created time has no timezone"
            return when, "the manifest's c2pa.created time"
    return None, "the manifest has no c2pa.created time and no audit record was found"


def _crl_issuers(crl_pem, trust_anchors_pem, db, serial):
    """CA certificates that may sign the CRL: those in the CRL file and the issuing CA
    of the device chain pulled into the log database, each directly issued by an anchor."""
    candidates = []
    try:
        chains = logdb.device_chains(db, serial) if db is not None and isinstance(serial, str) else []
    except sqlite3.Error:
        chains = []  # the CRL file's own issuing CA certificate may still do
    for text in [crl_pem] + chains:
        if isinstance(text, str) and "-----BEGIN CERTIFICATE-----" in text:  # not a BLOB from an edited database
            try:
                candidates += x509.load_pem_x509_certificates(text.encode())
            except ValueError:
                pass
    anchors = x509.load_pem_x509_certificates(trust_anchors_pem.encode())
    issuers = []
    for cert in candidates:
        for anchor in anchors:
            try:
                cert.verify_directly_issued_by(anchor)
            except (ValueError, TypeError, InvalidSignature):
                continue
            issuers.append(cert)
            break
    return issuers


def _name_fields(name):
    fields = {}
    for oid, key in ((x509.NameOID.COMMON_NAME, "CN"), (x509.NameOID.ORGANIZATION_NAME, "O")):
        values = name.get_attributes_for_oid(oid)
        if values:
            fields[key] = values[0].value
    return fields


def _check_revocation(report, manifest, record, trust_anchors_pem, crl_pem, db):
    """Is the signer certificate on the issuing CA's CRL, and if so, was the file sealed
    before the revocation? A file sealed in service stays valid after its device is
    decommissioned; one sealed afterwards (a key used after it should have been erased)
    fails."""
    if manifest is None:
        report.add("revocation", SKIP, "no readable C2PA manifest names a signer certificate")
        return
    if crl_pem is None:
        report.add("revocation", SKIP, "no revocation list given (--crl)")
        return
    signer = manifest.get("signer")
    if signer is None:
        report.add("revocation", FAIL, "the C2PA reader does not name the signer certificate")
        return
    try:
        crl = x509.load_pem_x509_crl(crl_pem.encode() if isinstance(crl_pem, str) else crl_pem)
    except ValueError:
        report.add("revocation", FAIL, "the revocation list is not a PEM X.509 CRL")
        return
    seal = _dict(manifest["assertions"].get(C2PA_ASSERTION_LABEL)) or {}
    issuers = [c for c in _crl_issuers(crl_pem if isinstance(crl_pem, str) else crl_pem.decode(), trust_anchors_pem,
                                       db, seal.get("device_serial"))
               if c.subject == crl.issuer and crl.is_signature_valid(c.public_key())]
    if not issuers:
        report.add("revocation", FAIL, "the CRL's signature cannot be checked against the trust anchor: give the "
                   "file `synthseal-host ca crl --out` writes (the CRL and its issuing CA certificate)")
        return
    if _name_fields(crl.issuer) != {k: v for k, v in signer["issuer"].items() if k in ("CN", "O")}:
        report.add("revocation", SKIP, "the CRL is %s's, not the signer's issuer %s"
                   % (crl.issuer.rfc4514_string(), signer["issuer"]))
        return
    next_update = crl.next_update_utc
    if next_update is None or next_update < datetime.datetime.now(datetime.timezone.utc):
        # An old list cannot say whether the certificate was revoked since: replaying
        # one would hide a revocation.
        report.add("revocation", SKIP, "the CRL of %s is no longer current (next update %s): get a current one "
                   "(`synthseal-host ca crl`)" % (crl.last_update_utc.isoformat(),
                                                   next_update.isoformat() if next_update else "none"))
        return
    entry = crl.get_revoked_certificate_by_serial_number(signer["serial_number"])
    if entry is None:
        report.add("revocation", PASS, "signer certificate %x not revoked (CRL of %s)"
                   % (signer["serial_number"], crl.last_update_utc.isoformat()))
        return
    revoked_at = entry.revocation_date_utc
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
    except x509.ExtensionNotFound:
        reason = "unspecified"
    sealed_at, source = sealing_time(manifest, record)
    if sealed_at is None:
        report.add("revocation", FAIL, "signer certificate revoked on %s (%s), and the sealing time is unknown: %s"
                   % (revoked_at.isoformat(), reason, source))
    elif sealed_at >= revoked_at:
        report.add("revocation", FAIL, "sealed after its certificate was revoked on %s (%s): sealed %s (%s)"
                   % (revoked_at.isoformat(), reason, sealed_at.isoformat(), source))
    elif reason == x509.ReasonFlags.key_compromise.value:
        report.add("revocation", WARN, "sealed %s (%s), before its certificate was revoked on %s, but the key was "
                   "reported compromised: a device-clock time is no evidence then"
                   % (sealed_at.isoformat(), source, revoked_at.isoformat()))
    else:
        report.add("revocation", PASS, "sealed %s (%s), before its certificate was revoked on %s (%s)"
                   % (sealed_at.isoformat(), source, revoked_at.isoformat(), reason))
