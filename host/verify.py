"""Verify a file: Content Credentials, the GB 45438 labels, the device signature in
ReservedCode1, and the audit log. One report per file, every check in it, rather
than an exception at the first problem.

A report is a dict:
    file, ok, label, explicit_label, c2pa_state, log_seq, origin, classifier, lab, sealed_at,
    checks: [{"check": name, "status": "pass" | "fail" | "warn" | "skip", "detail": text}]
`ok` is true when no check failed and the C2PA state is Trusted. "warn" marks what holds
cryptographically but a person must weigh: a capture sealed on a lab bench or with the
classifier off.
"""

import datetime
import hashlib
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import c2pa
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ..device.core import aigc, jpeg, policy
from ..device.seal import C2PA_ASSERTION_LABEL

from . import logdb

# ElementTree's name for TC260:AIGC, as an element or as an attribute.
_XMP_NAME = "{%s}%s" % (aigc.XMP_NAMESPACE, aigc.XMP_PROPERTY)


class _Report:
    def __init__(self, path):
        self.data = {"file": str(path), "ok": False, "label": None, "explicit_label": None,
                     "c2pa_state": None, "log_seq": None, "origin": None, "classifier": None, "lab": None,
                     "sealed_at": None, "checks": []}

    def add(self, check, status, detail):
        self.data["checks"].append({"check": check, "status": status, "detail": detail})

    def finish(self):
        d = self.data
        d["ok"] = d["c2pa_state"] == "Trusted" and all(c["status"] != "fail" for c in d["checks"])
        return d


def c2pa_reader_context(trust_anchors_pem):
    return c2pa.Context(settings=c2pa.Settings.from_dict({
        "trust": {"trust_anchors": trust_anchors_pem},
        "verify": {"verify_trust": True, "remote_manifest_fetch": False},
    }))


def read_xmp_label(packet):
    """Return the TC260:AIGC text from an XMP packet (element or attribute form), or None."""
    try:
        root = ET.fromstring(packet.decode("utf-8").strip().split("?>", 1)[1].rsplit("<?xpacket", 1)[0])
    except (ET.ParseError, UnicodeError, IndexError):
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


def verify_file(path, trust_anchors_pem, db_path=None, crl=None):
    """Verify one file. crl: the issuing CA's revocation list as PEM text (what
    `synthseal-host ca crl --out` writes: the CRL and the issuing CA certificate that
    signed it); without it the revocation check is skipped."""
    report = _Report(path)
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        report.add("file", "fail", "cannot read: %s" % err.strerror)
        return report.finish()
    try:
        list(jpeg.segments(data))
    except jpeg.JpegError as err:
        report.add("file", "fail", "%s; synthseal seals JPEG images" % err)
        return report.finish()
    report.add("file", "pass", "JPEG, %d bytes" % len(data))

    manifest = _check_c2pa(report, data, trust_anchors_pem)
    seal = (manifest or {}).get("assertions", {}).get(C2PA_ASSERTION_LABEL)
    decision = _check_decision(report, manifest, seal)
    _check_provenance(report, decision)
    fields = _check_implicit_label(report, data, seal, decision)
    db = logdb.open_readonly(db_path) if db_path else None
    try:
        _check_reserved_code1(report, data, fields, seal, db)
        record = _check_log(report, data, seal, db)
        if manifest is not None:
            sealed_at = sealing_time(manifest, record)[0]
            report.data["sealed_at"] = sealed_at.isoformat() if sealed_at else None
            _check_revocation(report, manifest, record, trust_anchors_pem, crl, db)
    finally:
        if db is not None:
            db.close()
    return report.finish()


def _check_c2pa(report, data, trust_anchors_pem):
    try:
        reader = c2pa.Reader("image/jpeg", io.BytesIO(data), context=c2pa_reader_context(trust_anchors_pem))
    except c2pa.C2paError as err:
        text = str(err)
        if "ManifestNotFound" in type(err).__name__ or "not found" in text.lower() or "JumbfNotFound" in text:
            report.add("c2pa", "fail", "no Content Credentials (C2PA manifest) in the file")
        else:
            report.add("c2pa", "fail", "C2PA manifest unreadable: %s" % text.splitlines()[0])
        return None
    state = reader.get_validation_state()
    report.data["c2pa_state"] = state
    results = reader.get_validation_results() or {}
    failures = (results.get("activeManifest") or {}).get("failure", [])
    detailed = json.loads(reader.detailed_json())
    manifest = detailed["manifests"][detailed["active_manifest"]]
    if state == "Trusted":
        report.add("c2pa", "pass", "Trusted: signed by %s" % manifest.get("signature", {}).get("common_name", "?"))
    else:
        reasons = ", ".join(sorted({f["code"] for f in failures})) or "signer not in the trust anchors"
        report.add("c2pa", "fail", "%s: %s" % (state, reasons))
    manifest["assertions"] = manifest.get("assertion_store", {})
    manifest["signer"] = _signer_certificate_info(reader, detailed["active_manifest"])
    return manifest


def _signer_certificate_info(reader, label):
    """The signer certificate's serial number (int) and issuer name, as the C2PA reader
    reports them (crJSON certificateInfo), or None."""
    try:
        for m in json.loads(reader.crjson()).get("manifests", []):
            if m.get("label") == label:
                info = m["signature"]["certificateInfo"]
                return {"serial_number": int(info["serialNumber"], 16), "issuer": info.get("issuer") or {},
                        "subject": info.get("subject") or {}}
    except (c2pa.C2paError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def _check_decision(report, manifest, seal):
    if manifest is None:
        return None
    if seal is None:
        report.add("policy", "fail", "the manifest has no %s assertion: not sealed by a synthseal device" % C2PA_ASSERTION_LABEL)
        return None
    decision = seal.get("decision") or {}
    row = policy.POLICY_TABLE.get(decision.get("rule"))
    if row is None:
        report.add("policy", "fail", "unknown policy rule %r" % decision.get("rule"))
        return None
    mismatched = [k for k in row if decision.get(k) != row[k]]
    actions = manifest["assertions"].get("c2pa.actions.v2") or manifest["assertions"].get("c2pa.actions") or {}
    created = [a for a in actions.get("actions", []) if a.get("action") == "c2pa.created"]
    dst = created[0].get("digitalSourceType") if created else None
    rederived = _rederive_rule(decision)
    if mismatched:
        report.add("policy", "fail", "decision differs from the policy table in %s" % ", ".join(mismatched))
    elif rederived is None:
        report.add("policy", "fail", "the recorded source, scores or threshold are not valid policy inputs "
                   "(threshold must be in (0, 1], scores must name %s)" % ", ".join(policy.CLASS_RULES))
    elif rederived != decision["rule"]:
        report.add("policy", "fail", "rule %r does not follow from the recorded source, scores and threshold "
                   "(the policy gives %r)" % (decision["rule"], rederived))
    elif dst != policy.digital_source_type_uri(decision):
        report.add("policy", "fail", "c2pa.created digitalSourceType %s does not match the decision (%s)" % (dst, decision["dst"]))
    else:
        report.add("policy", "pass", "rule %r: Label %s, explicit label %s, %s"
                   % (decision["rule"], decision["label"] or "none", "drawn" if decision["explicit"] else "not drawn",
                      decision["dst"]))
    report.data["explicit_label"] = decision.get("explicit")
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
        return
    origin, classifier, lab = decision.get("origin"), decision.get("classifier"), decision.get("lab")
    report.data.update(origin=describe_origin(origin), classifier=describe_classifier(classifier), lab=lab)
    if origin is None:
        report.add("provenance", "warn", "the seal does not record the frame's origin, classifier or lab flag "
                   "(sealed by an older firmware)")
        return
    kind = origin.get("kind") if isinstance(origin, dict) else None
    try:
        policy.check_origin(decision.get("source"), kind)
    except policy.PolicyError as err:
        report.add("provenance", "fail", "%s: %s" % (describe_origin(origin), err))
        return
    summary = "%s, %s%s" % (describe_origin(origin), describe_classifier(classifier), ", LAB bench" if lab else "")
    if decision.get("source") == policy.SOURCE_CAPTURE and (lab or not isinstance(classifier, dict)):
        why = []
        if lab:
            why.append("sealed on a lab bench (fake camera allowed)")
        if not isinstance(classifier, dict):
            why.append("the classifier did not run (%s)" % describe_classifier(classifier))
        report.add("provenance", "warn", "real capture, but %s: %s" % (" and ".join(why), summary))
    else:
        report.add("provenance", "pass", summary)


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
        packet = jpeg.find_xmp(data)
        text = read_xmp_label(packet) if packet is not None else None
        fields = aigc.parse_label(text) if text is not None else None
    except aigc.LabelError as err:
        report.add("aigc", "fail", str(err))
        return None
    if fields is not None:
        report.data["label"] = fields["Label"]
    if decision is None:
        report.add("aigc", "pass" if fields else "fail",
                   "TC260:AIGC label present, Label %s" % fields["Label"] if fields else "no TC260:AIGC label")
        return fields
    if decision["label"] is None:
        if fields is None:
            report.add("aigc", "pass", "no TC260:AIGC label, as the policy says for a real capture")
        else:
            report.add("aigc", "fail", "file carries a TC260:AIGC label but the sealed decision has none")
        return fields
    if fields is None:
        report.add("aigc", "fail", "TC260:AIGC label missing (the sealed decision says Label %s)" % decision["label"])
        return None
    if fields != seal.get("aigc"):
        report.add("aigc", "fail", "TC260:AIGC label differs from the one sealed in the C2PA manifest")
    elif fields["Label"] != decision["label"]:
        report.add("aigc", "fail", "Label %s differs from the decision's %s" % (fields["Label"], decision["label"]))
    else:
        report.add("aigc", "pass", "seven fields well-formed, Label %s, ProduceID %s" % (fields["Label"], fields["ProduceID"]))
    return fields


def _check_reserved_code1(report, data, fields, seal, db):
    if fields is None:
        return
    serial = (seal or {}).get("device_serial")
    chains = logdb.device_chains(db, serial) if db is not None and serial else []
    if not chains:
        report.add("reserved_code1", "skip", "device certificate unknown: pull the device's log first")
        return
    try:
        raw = aigc.decode_reserved_code1(fields["ReservedCode1"])
    except aigc.LabelError as err:
        report.add("reserved_code1", "fail", str(err))
        return
    message = aigc.label_signing_message(fields["Label"], fields["ContentProducer"], fields["ProduceID"],
                                         jpeg.image_data_digest(data))
    signature = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    for chain in chains:  # every key the device has had: a file may predate a rotation
        leaf = x509.load_pem_x509_certificates(chain.encode())[0]
        try:
            leaf.public_key().verify(signature, message, ec.ECDSA(hashes.SHA256()))
            break
        except InvalidSignature:
            continue
    else:
        report.add("reserved_code1", "fail", "device signature does not match the label fields and pixels")
        return
    report.add("reserved_code1", "pass", "device %s signature over label and pixels holds" % serial)


def _check_log(report, data, seal, db):
    if db is None:
        report.add("log", "skip", "no log database given (--db)")
        return None
    record = logdb.find_record(db, hashlib.sha256(data).hexdigest())
    if record is None:
        report.add("log", "fail", "no audit record for this file's SHA-256 in the pulled log")
        return None
    if seal is not None and (record["produce_id"] != seal.get("produce_id") or record["decision"] != seal.get("decision")):
        report.add("log", "fail", "audit record %d differs from the sealed ProduceID or decision" % record["seq"])
        return None
    report.data["log_seq"] = record["seq"]
    report.add("log", "pass", "device %s record %d" % (record["device_serial"], record["seq"]))
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
    actions = manifest["assertions"].get("c2pa.actions.v2") or manifest["assertions"].get("c2pa.actions") or {}
    for action in actions.get("actions", []):
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
    chains = logdb.device_chains(db, serial) if db is not None and serial else []
    for text in [crl_pem] + chains:
        if text and "-----BEGIN CERTIFICATE-----" in text:
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
    if crl_pem is None:
        report.add("revocation", "skip", "no revocation list given (--crl)")
        return
    signer = manifest.get("signer")
    if signer is None:
        report.add("revocation", "fail", "the C2PA reader does not name the signer certificate")
        return
    try:
        crl = x509.load_pem_x509_crl(crl_pem.encode() if isinstance(crl_pem, str) else crl_pem)
    except ValueError:
        report.add("revocation", "fail", "the revocation list is not a PEM X.509 CRL")
        return
    seal = manifest["assertions"].get(C2PA_ASSERTION_LABEL) or {}
    issuers = [c for c in _crl_issuers(crl_pem if isinstance(crl_pem, str) else crl_pem.decode(), trust_anchors_pem,
                                       db, seal.get("device_serial"))
               if c.subject == crl.issuer and crl.is_signature_valid(c.public_key())]
    if not issuers:
        report.add("revocation", "fail", "the CRL's signature cannot be checked against the trust anchor: give the "
                   "file `synthseal-host ca crl --out` writes (the CRL and its issuing CA certificate)")
        return
    if _name_fields(crl.issuer) != {k: v for k, v in signer["issuer"].items() if k in ("CN", "O")}:
        report.add("revocation", "skip", "the CRL is %s's, not the signer's issuer %s"
                   % (crl.issuer.rfc4514_string(), signer["issuer"]))
        return
    entry = crl.get_revoked_certificate_by_serial_number(signer["serial_number"])
    if entry is None:
        report.add("revocation", "pass", "signer certificate %x not revoked (CRL of %s)"
                   % (signer["serial_number"], crl.last_update_utc.isoformat()))
        return
    revoked_at = entry.revocation_date_utc
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
    except x509.ExtensionNotFound:
        reason = "unspecified"
    sealed_at, source = sealing_time(manifest, record)
    if sealed_at is None:
        report.add("revocation", "fail", "signer certificate revoked on %s (%s), and the sealing time is unknown: %s"
                   % (revoked_at.isoformat(), reason, source))
    elif sealed_at >= revoked_at:
        report.add("revocation", "fail", "sealed after its certificate was revoked on %s (%s): sealed %s (%s)"
                   % (revoked_at.isoformat(), reason, sealed_at.isoformat(), source))
    elif reason == x509.ReasonFlags.key_compromise.value:
        report.add("revocation", "warn", "sealed %s (%s), before its certificate was revoked on %s, but the key was "
                   "reported compromised: a device-clock time is no evidence then"
                   % (sealed_at.isoformat(), source, revoked_at.isoformat()))
    else:
        report.add("revocation", "pass", "sealed %s (%s), before its certificate was revoked on %s (%s)"
                   % (sealed_at.isoformat(), source, revoked_at.isoformat(), reason))
