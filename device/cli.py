"""synthseal-device: the agent on the camera or rig computer."""

import argparse
import json
import os
import sys

from . import __version__
from .config import DEFAULT_CONFIG_PATH

DEFAULT_STATE = os.environ.get("SYNTHSEAL_STATE", "/var/lib/synthseal")
DEFAULT_SOCKET = os.environ.get("SYNTHSEAL_SOCKET", "/run/synthseal/agent.sock")


def _state(args):
    from .state import DeviceState
    return DeviceState(args.state)


def cmd_init(args):
    _state(args).init(args.serial)
    print("device %s initialised in %s (factory state). Start the agent, then enrol it from the host with "
          "`synthseal-host provision`: its keys are made on the device then." % (args.serial, args.state))


def cmd_info(args):
    """Reads the state without owning it: works beside a running agent."""
    print(json.dumps(_state(args).status_info(), indent=2))


def cmd_run(args):
    from .agent import Agent
    from .config import load_config
    if args.state != DEFAULT_STATE:
        raise ValueError("run takes its state folder from the configuration (agent.state_dir), not --state")
    config = load_config(args.config)
    config.override_classifier(args.model, args.labels)
    agent = Agent(config)
    agent.start()
    agent.wait()


def _client(args, name="synthseal-device-cli"):
    from .client import AgentClient
    return AgentClient(args.socket, client=name)


def cmd_status(args):
    with _client(args) as agent:
        status = agent.status()
    if args.json:
        print(json.dumps(status, indent=2))
        return
    log = status["log"]
    print("agent pid %d, up %.0f s, device %s (%s)%s" % (status["pid"], status["uptime_s"], status["serial"],
                                                        status["state"], ", LAB MODE" if status["lab"] else ""))
    print("log: records %d..%d, head %s" % (log["first_seq"], log["next_seq"] - 1, log["head_hash"][:16]))
    print("camera: %s; classifier: %s" % (status["camera"], _classifier_text(status["classifier"])))
    print("queue: %d of %d; sealed %d, failed %d, busy refusals %d" % (
        status["queue_depth"], status["queue_capacity"], status["sealed"], status["failed"], status["busy"]))
    port = status["serial_port"]
    print("serial: %s %s%s" % (port["port"] or "off", port["state"], (" (%s)" % port["error"]) if port["error"] else ""))
    storage = status.get("storage")
    if storage:
        print("storage: %d MB free, %d MB kept%s" % (storage["free_bytes"] >> 20, storage["min_free_bytes"] >> 20,
                                                   " -- FULL: nothing is sealed" if storage["full"] else ""))
    if status["last_error"]:
        print("last error: %s" % status["last_error"])


def _classifier_text(provenance):
    if isinstance(provenance, dict):
        return "model sha256 %s" % provenance["model_sha256"][:16]
    return str(provenance)


def cmd_capture(args):
    from .core.policy import DECLARED_SOURCES
    if args.source not in DECLARED_SOURCES:
        raise ValueError("unknown source %r; use one of %s" % (args.source, ", ".join(DECLARED_SOURCES)))
    with _client(args) as agent:
        answer = agent.capture(args.frames, args.source)
    failed = False
    for outcome in answer["results"]:
        if not outcome["ok"]:
            failed = True
            print("error: %s" % outcome["error"]["message"], file=sys.stderr)
            continue
        r = outcome["result"]
        verdict = ""
        if r.get("scores"):
            best = max(r["scores"], key=r["scores"].get)
            verdict = "  classifier: %s %.2f" % (best, r["scores"][best])
        print("%s  seq %d  declared %-9s -> rule %-20s Label %s  %s%s%s" % (
            r["file"], r["seq"], args.source, r["rule"], r["label"] or "-", r["dst"], verdict,
            "  [lab]" if r["lab"] else ""))
    if answer.get("error"):
        print("error: %s" % answer["error"]["message"], file=sys.stderr)
        failed = True
    return 1 if failed else 0


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

    p = sub.add_parser("init", help="factory step: give the device its serial (keys are made at enrolment, "
                                    "over the serial link)")
    p.add_argument("--serial", required=True, help="device serial number (printable ASCII, no spaces, up to 64)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("info", help="print identity, enrolment state, configuration version and log head")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("run", help="the agent: own the device state and serve captures, rig intake and the serial port")
    p.add_argument("--config", default=DEFAULT_CONFIG_PATH,
                   help="agent configuration, TOML (default: %(default)s, or $SYNTHSEAL_CONFIG); "
                        "every key is documented in device/deploy/agent.example.toml")
    p.add_argument("--model", help="int8 TFLite classifier, 'shipped' or 'none' (overrides classifier.model)")
    p.add_argument("--labels", help="the model's class names, one per line (overrides classifier.labels)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="ask the running agent for its state, log head, queue and last error")
    p.add_argument("--socket", default=DEFAULT_SOCKET, help="agent socket (default: %(default)s, or $SYNTHSEAL_SOCKET)")
    p.add_argument("--json", action="store_true", help="print the full status as JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("capture", help="ask the running agent to capture frames with its camera and seal them")
    p.add_argument("--socket", default=DEFAULT_SOCKET, help="agent socket (default: %(default)s, or $SYNTHSEAL_SOCKET)")
    p.add_argument("--source", default="capture",
                   help="what the camera's frames are: capture, composite or rig (default: %(default)s)")
    p.add_argument("--frames", type=_positive_int, default=1, help="number of frames, up to 100 (default: %(default)s)")
    p.set_defaults(func=cmd_capture)
    return parser


def main(argv=None):
    from .agent import AgentError
    from .camera import CameraError
    from .client import AgentClientError
    from .config import ConfigError
    from .core.auditlog import AuditLogError
    from .explicit_label import ExplicitLabelError
    from .keystore import KeystoreError
    from .seal import SealError
    from .service import ServiceError
    from .state import DeviceStateError
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (AgentError, AgentClientError, CameraError, ConfigError, AuditLogError, ExplicitLabelError,
            KeystoreError, SealError, ServiceError, DeviceStateError, ValueError) as err:
        print("error: %s" % err, file=sys.stderr)
        return 2
    except OSError as err:
        print("error: %s%s" % (err.strerror or err, (": %s" % err.filename) if err.filename else ""), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
