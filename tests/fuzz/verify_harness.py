"""One fuzz input through `verify`: a file's bytes, however made (a sealed file with bits
flipped or cut, a hostile XMP label, a manifest signed by a real device key around
hostile assertions), verified as a whole report. Shared by the hypothesis tests in the
suite (tests/test_fuzz_verify.py) and the atheris target (tests/fuzz/fuzz_verify.py).

The contract: verify returns a report for anything, the report matches the published
schema, every output format writes it as UTF-8, and the verifier's last guard (the
`verifier` check, "unexpected error") never fires: every problem a file can have is
named by the check it breaks."""

import io
import json
import tempfile
from pathlib import Path

import c2pa
from jsonschema import Draft202012Validator
from PIL import Image

from synthseal.device.camera import FakeCamera
from synthseal.device.core import aigc, jpeg
from synthseal.device.seal import C2PA_ASSERTION_LABEL, Sealer
from synthseal.host.lab import enrolled_device, make_vendor
from synthseal.host.verify import Verifier
from synthseal.host.verify_report import SCHEMA_PATH, WRITERS

_SCHEMA = json.loads(SCHEMA_PATH.read_text())
REPORT_VALIDATOR = Draft202012Validator({"$ref": "#/$defs/report", "$defs": _SCHEMA["$defs"]})


class Bench:
    """A vendor CA, an enrolled device, two sealed files (a rig frame with both labels,
    a real capture without) and a plain JPEG, in `directory`; a Verifier for them."""

    def __init__(self, directory):
        directory = Path(directory)
        vendor = make_vendor(directory / "ca", "Fuzz Vendor")
        self.sealer = Sealer(enrolled_device(directory / "device", vendor, "FUZZ-0001", producer="fuzz"), lab=True)
        camera = FakeCamera(320, 240, seed=11)
        self.seeds = [Path(self.sealer.seal(camera.capture_array(), source, directory / "out",
                                            origin=camera.origin)["path"]).read_bytes()
                      for source in ("rig", "capture")]
        plain = io.BytesIO()
        Image.fromarray(camera.capture_array()).save(plain, "JPEG", quality=80)
        self.plain = plain.getvalue()
        self.verifier = Verifier(vendor.root_pem)
        self.path = directory / "input.jpg"

    def with_xmp_label(self, text):
        """The plain JPEG with `text` as its TC260:AIGC label."""
        return jpeg.insert_xmp(self.plain, aigc.build_xmp(text))

    def signed(self, assertions):
        """The plain JPEG under a manifest with these assertions, signed by the device."""
        manifest = {"claim_generator_info": [{"name": "fuzz", "version": "1"}], "title": "fuzz.jpg",
                    "format": "image/jpeg", "assertions": assertions}
        out = io.BytesIO()
        c2pa.Builder(json.dumps(manifest), context=self.sealer._context).sign(
            self.sealer._signer, "image/jpeg", io.BytesIO(self.plain), out)
        return out.getvalue()

    def seal_assertion(self, data):
        return {"label": C2PA_ASSERTION_LABEL, "data": data}


def one_input(bench, data):
    """Verify `data` as a file; return the report after checking the contract."""
    bench.path.write_bytes(data)
    report = bench.verifier.verify(bench.path)
    REPORT_VALIDATOR.validate(report)
    unexpected = [c["detail"] for c in report["checks"] if c["check"] == "verifier"]
    assert not unexpected, unexpected
    for write in WRITERS.values():
        out = io.StringIO()
        write([report], out)
        out.getvalue().encode("utf-8")
    return report


def flip_bits(seed, positions):
    data = bytearray(seed)
    for position in positions:
        data[position % len(data)] ^= 1 << (position // len(data) % 8)
    return bytes(data)


def make_bench():
    return Bench(tempfile.mkdtemp(prefix="synthseal-fuzz-verify-"))
