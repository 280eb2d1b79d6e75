"""synthseal-device: the agent on the camera or rig computer."""

import argparse
import json
import os
import sys

from . import __version__
from .classifier import DEFAULT_LABELS, DEFAULT_MODEL
from .core.policy import DEFAULT_THRESHOLD

DEFAULT_STATE = os.environ.get("SYNTHSEAL_STATE", "/var/lib/synthseal")
DEFAULT_OUT = os.environ.get("SYNTHSEAL_OUT", "/var/lib/synthseal/out")


def _state(args):
    from .state import DeviceState
    return DeviceState(args.state)


def cmd_init(args):
    csr = _state(args).init(args.serial, args.producer, args.label_text)
    if args.csr_out:
        with open(args.csr_out, "w") as f:
            f.write(csr)
        print("content key generated in %s; certificate request written to %s" % (args.state, args.csr_out))
    else:
        sys.stdout.write(csr)


def cmd_install_cert(args):
    with open(args.chain) as f:
        _state(args).install_chain(f.read())
    print("content-signing certificate installed; the device is provisioned")


def cmd_info(args):
    print(json.dumps(_state(args).info(), indent=2))


def cmd_capture(args):
    from .camera import FakeCamera, Picamera2Source
    from .core.policy import DECLARED_SOURCES
    from .seal import Sealer
    sources = args.source.split(",")
    for source in sources:
        if source not in DECLARED_SOURCES:
            raise ValueError("unknown source %r; use one of %s" % (source, ", ".join(DECLARED_SOURCES)))
    sealer = Sealer(_state(args), *_load_classifier(args), threshold=args.threshold)
    if args.camera == "fake":
        camera = FakeCamera(args.width, args.height, seed=args.seed, sensor_noise=args.sensor_noise)
    else:
        camera = Picamera2Source(args.width, args.height)
    try:
        for n in range(args.frames):
            source = sources[n % len(sources)]
            result = sealer.seal(camera.capture_array(), source, args.out, camera.channel_order)
            decision = result["decision"]
            verdict = ""
            if "scores" in decision:
                best = max(decision["scores"], key=decision["scores"].get)
                verdict = "  classifier: %s %.2f" % (best, decision["scores"][best])
            print("%s  seq %d  declared %-9s -> rule %-18s Label %s  %s%s" % (
                result["path"], result["seq"], source, decision["rule"], decision["label"] or "-", decision["dst"],
                verdict))
    finally:
        camera.close()


def _load_classifier(args):
    """(classifier, None), or (None, reason) when a configured model cannot be loaded:
    the agent still runs, and labels every capture by the fail-closed rule."""
    if args.model == "none":
        return None, None
    from .classifier import Classifier, ClassifierError
    from .core.policy import CLASS_RULES
    try:
        return Classifier(args.model, args.labels, num_threads=args.threads, required_labels=tuple(CLASS_RULES)), None
    except ClassifierError as err:
        print("warning: classifier not loaded: %s; captures will be labelled 'possibly AI-generated' (Label 2)"
              % err, file=sys.stderr)
        return None, str(err)


def cmd_serve(args):
    from .service import serve

    class Announce:
        """Says "serving" once the port is open, so a bad port gets a one-line error."""
        def set(self):
            print("serving on %s (Ctrl-C to stop)" % args.port, file=sys.stderr)

    try:
        serve(_state(args), args.port, args.baud, ready=Announce())
    except KeyboardInterrupt:
        pass


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("%r is not a positive whole number" % text)
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="synthseal-device",
        description="Label, sign and log content at the source (GB 45438-2025 labels, C2PA credentials, "
                    "tamper-evident audit log), and serve the log to the host tool over serial.")
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--state", default=DEFAULT_STATE,
                        help="device state directory: keys, certificate, log (default: %(default)s, or $SYNTHSEAL_STATE)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="create the device identity and content key; print the certificate request")
    p.add_argument("--serial", required=True, help="device serial number (printable ASCII, no spaces)")
    p.add_argument("--producer", required=True, help="GB 45438 ContentProducer: the provider's name or code")
    p.add_argument("--label-text", default="AI生成", help='visible label text (default: %(default)s)')
    p.add_argument("--csr-out", help="write the CSR here instead of standard output")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("install-cert", help="install the content-signing chain issued for this device")
    p.add_argument("chain", help="PEM file: device certificate then issuing CA (no root)")
    p.set_defaults(func=cmd_install_cert)

    p = sub.add_parser("info", help="print identity, state and log head")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("capture", help="capture frames and seal each one")
    p.add_argument("--out", default=DEFAULT_OUT, help="output folder for sealed files (default: %(default)s)")
    p.add_argument("--source", default="capture",
                   help="declared source: capture, rig or composite; a comma list cycles per frame (default: %(default)s)")
    p.add_argument("--frames", type=_positive_int, default=1, help="number of frames (default: %(default)s)")
    p.add_argument("--camera", choices=("fake", "picamera2"), default="picamera2",
                   help="frame source (default: %(default)s; fake gives deterministic test scenes)")
    p.add_argument("--width", type=_positive_int, default=4056, help="frame width (default: %(default)s, Pi HQ camera)")
    p.add_argument("--height", type=_positive_int, default=3040, help="frame height (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="fake camera: scene seed (default: %(default)s)")
    p.add_argument("--sensor-noise", type=float, default=3.0,
                   help="fake camera: noise sigma; 0 gives clean renders, as from a capture card (default: %(default)s)")
    p.add_argument("--model", default=str(DEFAULT_MODEL),
                   help="int8 TFLite classifier checked on every frame, or 'none' (default: the shipped model)")
    p.add_argument("--labels", default=str(DEFAULT_LABELS), help="the model's class names, one per line")
    p.add_argument("--threads", type=_positive_int, default=2, help="classifier threads (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help="score at which an undeclared capture is labelled suspected (default: %(default)s)")
    p.set_defaults(func=cmd_capture)

    p = sub.add_parser("serve", help="answer the host tool on a serial port")
    p.add_argument("--port", default="/dev/ttyGS0", help="serial device (default: %(default)s, the USB gadget port)")
    p.add_argument("--baud", type=_positive_int, default=115200, help="baud rate for a UART (default: %(default)s)")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv=None):
    from .camera import CameraError
    from .core.auditlog import AuditLogError
    from .explicit_label import ExplicitLabelError
    from .keystore import KeystoreError
    from .seal import SealError
    from .service import ServiceError
    from .state import DeviceStateError
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CameraError, AuditLogError, ExplicitLabelError, KeystoreError, SealError, ServiceError,
            DeviceStateError, ValueError, OSError) as err:
        print("error: %s" % err, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
