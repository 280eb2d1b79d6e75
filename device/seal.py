"""The per-frame seal path: explicit label, JPEG, implicit AIGC label, C2PA manifest,
audit record, then emission. Fail closed: if any step fails, no file is emitted and
SealError says why.

Order matters:
1. the watermark (device/watermark.py) goes into the pixels first, then the visible
   label is drawn over it before encoding, so the label looks as it would without it;
   the encoded pixels' digest and perceptual hash (device/fingerprint.py) and the
   watermark's identifier go into the decision, so into the record and the manifest;
2. ReservedCode1 signs the producer fields and the image-data digest (pixels only),
   then the XMP label is inserted;
3. C2PA signs last, so its hard binding covers the pixels and the XMP label;
4. the SHA-256 of the final bytes goes into the audit record, appended durably
   before the file appears under its final name (write order in Sealer).
The agent only seals frames it captured itself (see DESIGN.md §1): there is no entry
point that takes a file from outside.
"""

import base64
import datetime
import hashlib
import io
import json
import os
import secrets
import time
from pathlib import Path

import c2pa
from PIL import Image

from . import __version__, fingerprint, watermark
from .classifier import ClassifierError
from .core import aigc, jpeg, logrecord, policy
from .core.auditlog import LogAdvanced
from .explicit_label import draw_explicit_label

JPEG_QUALITY = 92
C2PA_ASSERTION_LABEL = "org.synthseal.gb45438"  # repeats the GB 45438 fields and the decision
# C2PA 2.x soft binding assertion: declares the watermark, so a reader of the manifest
# knows the pixels carry it and under which algorithm to look it up.
C2PA_SOFT_BINDING_LABEL = "c2pa.soft-binding"


class SealError(Exception):
    pass


class LogAdvancedError(SealError):
    """Another record took the seq these frames were signed for (a prune or a
    configuration record landed meanwhile): nothing was written; sign them again."""


def c2pa_settings(thumbnail=False):
    """Device signing settings. The thumbnail costs several times the rest of the
    signing, and the device re-reading what it just wrote adds nothing: both off."""
    return c2pa.Settings.from_dict({
        "builder": {"thumbnail": {"enabled": thumbnail}},
        "verify": {"verify_after_sign": False},
    })


class Sealer:
    """Seals frames for one provisioned device. Build once; seal many frames.

    A seal runs in three steps, so that the agent can overlap them across frames
    (device/pipeline.py) while seal() runs them back to back:
      prepare(): classify, decide, watermark, draw the visible label, encode the JPEG,
                 fingerprint its decoded pixels;
      sign():    ProduceID, implicit label, C2PA, then the bytes to a temporary file in
                 the staging folder, fsynced with its folder;
      commit():  the audit record (the commit point), then the rename into the output
                 folder and an fsync of that folder.
    Write order and recovery: a crash before the record leaves a temporary with no
    record, which the agent discards at start; a crash after it leaves a temporary whose
    bytes hash to the record, which the agent completes (device/reconcile.py). Either
    repair is itself logged.
    """

    def __init__(self, state, classifier=None, classifier_error=None,
                 threshold=policy.DEFAULT_THRESHOLD, label_corner="bottom-left", lab=False):
        """classifier: a device.classifier.Classifier, or None to rely on declared
        sources alone. classifier_error: why a configured classifier could not be
        loaded; every capture is then labelled by the fail-closed rule. lab: a test
        bench (fake camera allowed); every record and manifest then says so."""
        policy.check_threshold(threshold)
        if classifier is not None:
            missing = policy.missing_classes(classifier.labels)
            if missing:
                raise ValueError("classifier labels %s lack the policy's classes %s" % (classifier.labels, missing))
        if not state.owned:
            raise SealError("this process does not own the device state in %s: sealing is the agent's "
                            "(`synthseal-device run`); ask it through its socket" % state.directory)
        self.state = state
        self.classifier = classifier
        self.classifier_error = classifier_error
        self.threshold = threshold
        self.lab = bool(lab)
        self.config = state.config()
        self.chain_pem = state.chain_pem()
        self.log = state.log()
        self.label_corner = label_corner
        self._context = c2pa.Context(settings=c2pa_settings())
        self._signer = c2pa.Signer.from_callback(
            state.keystore.sign_der, c2pa.C2paSigningAlg.ES256, self.chain_pem)

    def _produce_id(self, seq):
        # Unique per content: device serial, log sequence, and 32 random bits so that a
        # sequence number reused after a failed seal still yields a fresh ID.
        return "%s-%08d-%s" % (self.config["serial"], seq, secrets.token_hex(4))

    def classifier_provenance(self):
        """What the record says about the classifier: its model's SHA-256, or why none ran."""
        if self.classifier is not None:
            return {"model_sha256": self.classifier.model_sha256}
        return "unavailable" if self.classifier_error else "off"

    def classify(self, frame, channel_order="RGB"):
        """Return (scores, error): the classifier's verdict, or why there is none."""
        if self.classifier is None:
            return None, self.classifier_error
        try:
            return self.classifier.classify(frame, channel_order), None
        except ClassifierError as err:
            return None, _bounded(str(err))
        except Exception as err:  # the interpreter itself failed: fail closed, keep the frame
            return None, _bounded("classifier failed: %s: %s" % (type(err).__name__, err))

    def seal(self, frame, declared_source, out_dir, channel_order="RGB", origin=None):
        """Seal one HxWx3 uint8 frame; return a dict describing the result.
        channel_order: "RGB", or "BGR" for picamera2 RGB888 buffers as captured.
        origin: where the frame came from (camera.origin for the agent's own camera);
        without one the frame counts as handed in, which can only be declared synthetic."""
        prepared = self.prepare(frame, declared_source, channel_order, origin)
        signed = self.sign(prepared, self.log.next_seq, out_dir)
        return self.commit(signed)

    def prepare(self, frame, declared_source, channel_order="RGB", origin=None):
        """Classify, decide, draw the visible label and encode: everything that needs
        neither the key nor the log."""
        if channel_order not in ("RGB", "BGR"):
            raise SealError("frame not emitted: channel_order %r is not 'RGB' or 'BGR'" % (channel_order,))
        origin = dict(origin) if origin else {"kind": policy.ORIGIN_INTAKE, "client": "api"}
        try:
            policy.check_origin(declared_source, origin.get("kind"))
        except policy.PolicyError as err:
            raise SealError("frame not emitted: %s" % err)
        if origin.get("lab") and not self.lab:
            raise SealError("frame not emitted: it comes from the fake camera, which runs only on a test bench "
                            "(lab = true in the agent configuration)")
        timings = {}
        try:
            t = time.perf_counter()
            scores, classifier_error = None, None
            if declared_source == policy.SOURCE_CAPTURE:  # the only frames the classifier can relabel
                scores, classifier_error = self.classify(frame, channel_order)
            timings["classify_ms"] = _ms_since(t)
            decision = policy.decide(declared_source, scores, self.threshold, classifier_error)
            origin.pop("lab", None)
            decision["origin"] = origin
            decision["classifier"] = self.classifier_provenance()
            decision["lab"] = self.lab

            # The watermark adds the same change to every channel, so it goes in before
            # any channel reordering; embed() returns a copy, the caller's frame stays
            # as captured.
            t = time.perf_counter()
            watermark_id = watermark.new_identifier()
            marked = watermark.embed(frame, watermark_id)
            timings["watermark_ms"] = _ms_since(t)
            if channel_order == "BGR":
                marked = marked[:, :, ::-1]

            t = time.perf_counter()
            image = Image.fromarray(marked)
            timings["jpeg_encode_ms"] = _ms_since(t)  # the conversion is part of encoding, as before

            t = time.perf_counter()
            if decision["explicit"]:
                draw_explicit_label(image, self.config["label_text"], self.label_corner)
            timings["explicit_label_ms"] = _ms_since(t)

            t = time.perf_counter()
            encoded = io.BytesIO()
            image.save(encoded, "JPEG", quality=JPEG_QUALITY)
            timings["jpeg_encode_ms"] += _ms_since(t)

            # The pixels as any reader will decode them: the implicit label and C2PA
            # added later change the file's bytes, never its compressed image data.
            t = time.perf_counter()
            emitted = Image.open(io.BytesIO(encoded.getvalue()))
            pdq_hash, _ = fingerprint.pdq(emitted)
            # wh: the frame size, which the host's watermark detector scales a resized copy
            # back to; text, because c2pa stores a JSON array of small numbers as bytes.
            decision["trace"] = {"px": fingerprint.pixel_sha256(emitted), "pdq": pdq_hash, "wm": watermark_id,
                                 "wh": "%dx%d" % emitted.size}
            timings["fingerprint_ms"] = _ms_since(t)
        except Exception as err:  # fail closed, whatever broke
            raise SealError("frame not emitted: %s: %s" % (type(err).__name__, err)) from err
        return {"jpeg": encoded.getvalue(), "decision": decision, "timings": timings}

    def sign(self, prepared, seq, out_dir):
        """Label and sign a prepared frame as log record `seq`, and write it to a
        temporary file in the staging folder (fsynced, with the folder)."""
        out_dir = Path(out_dir)
        timings = dict(prepared["timings"])
        decision = prepared["decision"]
        tmp = None
        try:
            produce_id = self._produce_id(seq)
            t = time.perf_counter()
            label_fields, data = None, prepared["jpeg"]
            if decision["label"] is not None:
                label_fields, data = self.apply_implicit_label(data, decision["label"], produce_id)
            timings["implicit_label_ms"] = _ms_since(t)

            t = time.perf_counter()
            data = self._sign_c2pa(data, decision, produce_id, label_fields, seq)
            timings["c2pa_sign_ms"] = _ms_since(t)

            t = time.perf_counter()
            digest = hashlib.sha256(data).digest()
            staging = staging_dir(out_dir)
            staging.mkdir(parents=True, exist_ok=True)
            tmp = staging / temporary_name(produce_id)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            fsync_dir(staging)  # the temporary's name is durable before its record is
            timings["hash_write_ms"] = _ms_since(t)
        except Exception as err:  # fail closed, whatever broke
            if tmp is not None and tmp.exists():
                tmp.unlink()
            raise SealError("frame not emitted: %s: %s" % (type(err).__name__, err)) from err
        return {"decision": decision, "seq": seq, "produce_id": produce_id, "label": label_fields,
                "sha256": digest, "tmp": tmp, "final": out_dir / final_name(produce_id), "timings": timings}

    def commit(self, signed):
        """Append the audit record (the commit point), then move the file into place."""
        outcome = self.commit_many([signed])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def commit_many(self, batch):
        """Group commit: append the audit records of signed frames whose seqs follow on
        with one write and one fsync (the commit point), then move each file into
        place. Raises SealError, and removes every temporary, when no record was
        written; otherwise returns per frame its result dict or the SealError that
        kept its file from its place."""
        t = time.perf_counter()
        now_ms = int(time.time() * 1000)
        try:
            self.log.append_many([(now_ms, s["sha256"], logrecord.EVENT_SEAL, s["produce_id"], s["decision"])
                                  for s in batch], expect_seq=batch[0]["seq"])
        except LogAdvanced as err:
            for s in batch:
                s["tmp"].unlink(missing_ok=True)
            raise LogAdvancedError("frame not emitted yet: %s" % err) from err
        except Exception as err:
            for s in batch:
                s["tmp"].unlink(missing_ok=True)  # no record: the file must not appear
            raise SealError("frame not emitted: audit log append failed: %s: %s" % (type(err).__name__, err)) from err
        # From here on the records exist: a failure leaves a temporary for the agent's
        # start-up repair to complete, never a record without its file. Every file is
        # renamed first and each output folder fsynced once for the whole group.
        errors = {}
        for s in batch:
            try:
                os.replace(s["tmp"], s["final"])
            except OSError as err:
                errors[s["seq"]] = err
        for folder in {s["final"].parent for s in batch if s["seq"] not in errors}:
            try:
                fsync_dir(folder)
            except OSError as err:
                errors.update((s["seq"], err) for s in batch if s["final"].parent == folder and s["seq"] not in errors)
        emit_ms = _ms_since(t)
        outcomes = []
        for s in batch:
            if s["seq"] in errors:
                outcomes.append(SealError("sealed and logged as record %d, but the file could not be moved into place "
                                          "(%s); the agent completes it from %s at its next start"
                                          % (s["seq"], errors[s["seq"]], s["tmp"])))
                continue
            timings = s["timings"]
            timings["log_emit_ms"] = emit_ms
            outcomes.append({"path": str(s["final"]), "produce_id": s["produce_id"], "seq": s["seq"],
                             "decision": s["decision"], "sha256": s["sha256"].hex(), "label": s["label"],
                             "timings": timings, "log_group": len(batch)})
        return outcomes

    def apply_implicit_label(self, data, label, produce_id):
        producer = self.config["producer"]
        message = aigc.label_signing_message(label, producer, produce_id, jpeg.image_data_digest(data))
        reserved1 = aigc.encode_reserved_code1(self.state.keystore.sign_raw(message))
        text = aigc.build_label(label, producer, produce_id, reserved1)
        return aigc.parse_label(text), jpeg.insert_xmp(data, aigc.build_xmp(text))

    def _sign_c2pa(self, data, decision, produce_id, label_fields, seq):
        manifest = {
            "claim_generator_info": [{"name": "synthseal-device", "version": __version__}],
            "title": produce_id + ".jpg",
            "format": "image/jpeg",
            "assertions": [
                {"label": "c2pa.actions", "data": {"actions": [{
                    "action": "c2pa.created",
                    # The sealing time on the device's clock, under the signature: what
                    # `verify --crl` compares with a revocation date (no TSA on a device).
                    "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
                    "digitalSourceType": policy.digital_source_type_uri(decision),
                    "softwareAgent": {"name": "synthseal-device", "version": __version__},
                }]}},
                {"label": C2PA_ASSERTION_LABEL, "data": {
                    "aigc": label_fields,
                    "produce_id": produce_id,
                    "device_serial": self.config["serial"],
                    # Art. 19: the service's filing number (备案编号), from the signed configuration.
                    "filing_number": self.config.get("filing_number", ""),
                    "config_version": self.config.get("version"),
                    "log_seq": seq,
                    "decision": decision,
                    # What was drawn and where, so `verify` can check the text against
                    # GB 45438 and find it in the pixels.
                    "explicit_label": {"text": self.config["label_text"], "position": self.label_corner}
                    if decision["explicit"] else None,
                }},
                {"label": C2PA_SOFT_BINDING_LABEL, "data": {
                    "alg": watermark.ALGORITHM,
                    # One block for the whole image (an empty scope); the value is the
                    # watermark's 48-bit identifier, base64 as the assertion requires.
                    "blocks": [{"scope": {}, "value": base64.b64encode(bytes.fromhex(decision["trace"]["wm"])).decode()}],
                }},
            ],
        }
        builder = c2pa.Builder(json.dumps(manifest), context=self._context)
        out = io.BytesIO()
        builder.sign(self._signer, "image/jpeg", io.BytesIO(data), out)
        return out.getvalue()


# Sealed files appear in the output folder under their final name only, by rename from
# a staging folder inside it (same filesystem), so a reader of the output folder never
# sees a partial file.
STAGING_DIR_NAME = ".partial"
_TMP_SUFFIX = ".jpg.tmp"


def staging_dir(out_dir):
    return Path(out_dir) / STAGING_DIR_NAME


def final_name(produce_id):
    return produce_id + ".jpg"


def temporary_name(produce_id):
    return produce_id + _TMP_SUFFIX


def produce_id_of_temporary(name):
    return name[:-len(_TMP_SUFFIX)] if name.endswith(_TMP_SUFFIX) else None


def fsync_dir(path):
    """Make a create, rename or unlink in this folder durable (the file's own fsync does
    not cover its name)."""
    fd = os.open(str(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_MAX_TEXT = 300  # bounded free text in records: every record fits the transport


def _bounded(text):
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT - 3] + "..."


def _ms_since(t):
    return round((time.perf_counter() - t) * 1000.0, 3)
