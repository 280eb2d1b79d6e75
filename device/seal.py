"""The per-frame seal path: explicit label, JPEG, implicit AIGC label, C2PA manifest,
audit record, then emission. Fail closed: if any step fails, no file is emitted and
SealError says why.

Order matters:
1. the visible label is drawn into the pixels before encoding;
2. ReservedCode1 signs the producer fields and the image-data digest (pixels only),
   then the XMP label is inserted;
3. C2PA signs last, so its hard binding covers the pixels and the XMP label;
4. the SHA-256 of the final bytes goes into the audit record, appended durably
   before the file appears under its final name.
The agent only seals frames it captured itself (see DESIGN.md §1): there is no entry
point that takes a file from outside.
"""

import hashlib
import io
import json
import os
import secrets
import time
from pathlib import Path

import c2pa
from PIL import Image

from . import __version__
from .classifier import ClassifierError
from .core import aigc, jpeg, logrecord, policy
from .explicit_label import draw_explicit_label

JPEG_QUALITY = 92
C2PA_ASSERTION_LABEL = "org.synthseal.gb45438"  # repeats the GB 45438 fields and the decision


class SealError(Exception):
    pass


def c2pa_settings(thumbnail=False):
    """Device signing settings. The thumbnail costs several times the rest of the
    signing, and the device re-reading what it just wrote adds nothing: both off."""
    return c2pa.Settings.from_dict({
        "builder": {"thumbnail": {"enabled": thumbnail}},
        "verify": {"verify_after_sign": False},
    })


class Sealer:
    """Seals frames for one provisioned device. Build once; seal many frames."""

    def __init__(self, state, classifier=None, classifier_error=None,
                 threshold=policy.DEFAULT_THRESHOLD, label_corner="bottom-left"):
        """classifier: a device.classifier.Classifier, or None to rely on declared
        sources alone. classifier_error: why a configured classifier could not be
        loaded; every capture is then labelled by the fail-closed rule."""
        policy.check_threshold(threshold)
        if classifier is not None:
            missing = policy.missing_classes(classifier.labels)
            if missing:
                raise ValueError("classifier labels %s lack the policy's classes %s" % (classifier.labels, missing))
        self.state = state
        self.classifier = classifier
        self.classifier_error = classifier_error
        self.threshold = threshold
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

    def classify(self, frame, channel_order="RGB"):
        """Return (scores, error): the classifier's verdict, or why there is none."""
        if self.classifier is None:
            return None, self.classifier_error
        try:
            return self.classifier.classify(frame, channel_order), None
        except ClassifierError as err:
            return None, str(err)
        except Exception as err:  # the interpreter itself failed: fail closed, keep the frame
            return None, "classifier failed: %s: %s" % (type(err).__name__, err)

    def seal(self, frame, declared_source, out_dir, channel_order="RGB"):
        """Seal one captured HxWx3 uint8 frame; return a dict describing the result.
        channel_order: "RGB", or "BGR" for picamera2 RGB888 buffers as captured."""
        if channel_order not in ("RGB", "BGR"):
            raise SealError("frame not emitted: channel_order %r is not 'RGB' or 'BGR'" % (channel_order,))
        out_dir = Path(out_dir)
        timings = {}
        tmp = None
        try:
            t = time.perf_counter()
            scores, classifier_error = self.classify(frame, channel_order)
            timings["classify_ms"] = _ms_since(t)
            decision = policy.decide(declared_source, scores, self.threshold, classifier_error)
            if channel_order == "BGR":
                frame = frame[:, :, ::-1]
            seq = self.log.next_seq
            produce_id = self._produce_id(seq)

            t = time.perf_counter()
            image = Image.fromarray(frame)  # a copy: the caller's frame stays as captured
            timings["jpeg_encode_ms"] = _ms_since(t)

            t = time.perf_counter()
            if decision["explicit"]:
                draw_explicit_label(image, self.config["label_text"], self.label_corner)
            timings["explicit_label_ms"] = _ms_since(t)

            t = time.perf_counter()
            encoded = io.BytesIO()
            image.save(encoded, "JPEG", quality=JPEG_QUALITY)
            data = encoded.getvalue()
            timings["jpeg_encode_ms"] += _ms_since(t)

            t = time.perf_counter()
            label_fields = None
            if decision["label"] is not None:
                label_fields, data = self.apply_implicit_label(data, decision["label"], produce_id)
            timings["implicit_label_ms"] = _ms_since(t)

            t = time.perf_counter()
            data = self._sign_c2pa(data, decision, produce_id, label_fields, seq)
            timings["c2pa_sign_ms"] = _ms_since(t)

            t = time.perf_counter()
            digest = hashlib.sha256(data).digest()
            out_dir.mkdir(parents=True, exist_ok=True)
            final = out_dir / (produce_id + ".jpg")
            tmp = out_dir / ("." + produce_id + ".tmp")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            record_seq, _ = self.log.append(int(time.time() * 1000), digest, logrecord.EVENT_SEAL,
                                            produce_id, decision)
            if record_seq != seq:
                raise SealError("audit log advanced during sealing (another writer?)")
            os.replace(tmp, final)
            tmp = None
            timings["hash_log_emit_ms"] = _ms_since(t)
        except SealError:
            raise
        except Exception as err:  # fail closed, whatever broke
            raise SealError("frame not emitted: %s: %s" % (type(err).__name__, err)) from err
        finally:
            if tmp is not None and tmp.exists():
                tmp.unlink()
        return {"path": str(final), "produce_id": produce_id, "seq": seq, "decision": decision,
                "sha256": digest.hex(), "label": label_fields, "timings": timings}

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
                    "digitalSourceType": policy.digital_source_type_uri(decision),
                    "softwareAgent": {"name": "synthseal-device", "version": __version__},
                }]}},
                {"label": C2PA_ASSERTION_LABEL, "data": {
                    "aigc": label_fields,
                    "produce_id": produce_id,
                    "device_serial": self.config["serial"],
                    "log_seq": seq,
                    "decision": decision,
                }},
            ],
        }
        builder = c2pa.Builder(json.dumps(manifest), context=self._context)
        out = io.BytesIO()
        builder.sign(self._signer, "image/jpeg", io.BytesIO(data), out)
        return out.getvalue()


def _ms_since(t):
    return round((time.perf_counter() - t) * 1000.0, 3)
