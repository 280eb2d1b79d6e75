"""The agent's configuration: one TOML file, every key documented here and in
device/deploy/agent.example.toml, validated at start with a one-line error that names
the key and what is allowed. Nothing is written or opened before it passes.
"""

import os
import tomllib
from pathlib import Path


DEFAULT_CONFIG_PATH = os.environ.get("SYNTHSEAL_CONFIG", "/etc/synthseal/agent.toml")
SHIPPED = "shipped"  # classifier.model / classifier.labels: the model in the package


class ConfigError(ValueError):
    """A bad configuration: the message names the file, the key and what is allowed."""


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _string(value):
    return isinstance(value, str)


def _path(value):
    return isinstance(value, str) and value != "" and "\0" not in value


def _one_of(*choices):
    def check(value):
        return value in choices
    check.allowed = "one of " + ", ".join(repr(c) for c in choices)
    return check


# section -> key -> (default, check, what is allowed, what it is for)
SCHEMA = {
    "agent": {
        "state_dir": ("/var/lib/synthseal", _path, "a path",
                      "keystore, certificates, audit log and lock; owned by the agent alone"),
        "output_dir": ("/var/lib/synthseal/out", _path, "a path",
                       "sealed files appear here, complete, under their final names"),
        "socket": ("/run/synthseal/agent.sock", _path, "a path",
                   "the local socket for captures, status and rig intake (mode 0660)"),
        "socket_group": ("", _string, "a group name, or \"\" for the agent's own group",
                         "group allowed to use the socket (e.g. the rig's user group)"),
        "lab": (False, lambda v: isinstance(v, bool), "true or false",
                "test bench: allows the fake camera; every record and manifest says lab"),
        "queue_depth": (4, _positive_int, "a positive integer",
                        "frames waiting to be sealed before clients are held back"),
        "prepare_workers": (2, _positive_int, "a positive integer",
                            "threads that classify, label and encode frames side by side (the slowest stage)"),
        "busy_timeout_s": (10, _positive_int, "a positive integer (seconds)",
                           "how long a client waits for room in a full queue before 'busy'"),
        "idle_timeout_s": (60, _positive_int, "a positive integer (seconds)",
                           "a client silent this long between requests is disconnected"),
        "message_timeout_s": (30, _positive_int, "a positive integer (seconds)",
                              "a request, frame included, must arrive whole within this long once begun"),
        "max_clients": (8, _positive_int, "a positive integer",
                        "concurrent socket connections (one more may always ask for status)"),
        "max_frame_bytes": (64 << 20, _positive_int, "a positive integer (bytes)",
                            "largest frame a client may submit, raw or decoded (4056x3040 RGBX is 47 MiB)"),
        "intake_memory_bytes": (128 << 20, _positive_int, "a positive integer (bytes)",
                                "submitted frame bytes held at once over all clients; more wait, then get 'busy'"),
        "min_free_bytes": (256 << 20, _positive_int, "a positive integer (bytes)",
                           "free space the state and output folders keep: below it nothing is sealed (fail "
                           "closed) until a collector pulls and old records are pruned; no record is dropped"),
    },
    "camera": {
        "source": ("picamera2", _one_of("picamera2", "fake", "none"), None,
                   "the agent's own camera; 'none' on a rig computer that only takes intake"),
        "width": (4056, _positive_int, "a positive integer", "frame width"),
        "height": (3040, _positive_int, "a positive integer", "frame height"),
        "fake_seed": (0, lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer",
                      "fake camera: scene seed"),
        "fake_sensor_noise": (3.0, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0,
                              "a number >= 0", "fake camera: noise sigma; 0 gives clean renders"),
        "fake_frame_pool": (0, lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 16,
                            "an integer from 0 to 16", "fake camera: cycle this many pre-made frames (0: "
                            "make each frame; benchmarks use a pool so they time the agent, not the fake sensor)"),
    },
    "classifier": {
        "model": (SHIPPED, _path, "'shipped', 'none' or a path to an int8 .tflite file",
                  "the scene classifier run on every declared capture"),
        "labels": (SHIPPED, _path, "'shipped' or a path", "the model's class names, one per line"),
        "threads": (1, _positive_int, "a positive integer",
                    "interpreter threads (1: a second thread waits for a core on a loaded device)"),
    },
    "serial": {
        "port": ("/dev/ttyGS0", _string, "a device path, or \"\" to serve no port",
                 "the port the host tool pulls the log over (USB gadget or UART)"),
        "baud": (115200, _positive_int, "a positive integer", "UART baud rate"),
    },
}


class AgentConfig:
    """Validated settings: config.section_key, e.g. config.camera_source."""

    def __init__(self, values, path):
        self.path = path
        for (section, key), value in values.items():
            setattr(self, "%s_%s" % (section, key), value)

    def override_classifier(self, model=None, labels=None):
        """`run --model/--labels`: the command line wins over the file, checked the same way."""
        for key, value in (("model", model), ("labels", labels)):
            if value is not None:
                setattr(self, "classifier_" + key, value)
        _check_classifier_files(self, "--model/--labels")

    def as_dict(self):
        return {"%s.%s" % (s, k): getattr(self, "%s_%s" % (s, k)) for s in SCHEMA for k in SCHEMA[s]}


def load_config(path=DEFAULT_CONFIG_PATH):
    path = str(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("%s: no such configuration file; start from device/deploy/agent.example.toml "
                          "(or pass --config PATH)" % path) from None
    except PermissionError:
        raise ConfigError("%s: not readable by this user" % path) from None
    except IsADirectoryError:
        raise ConfigError("%s: is a folder, not a configuration file" % path) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("%s: not valid TOML: %s" % (path, err)) from None
    return parse_config(raw, path)


def parse_config(raw, path="agent.toml"):
    values = {}
    for section, entries in raw.items():
        if section not in SCHEMA:
            raise ConfigError("%s: unknown section [%s]; sections are %s"
                              % (path, section, ", ".join("[%s]" % s for s in SCHEMA)))
        if not isinstance(entries, dict):
            raise ConfigError("%s: %s must be a [%s] table" % (path, section, section))
        for key in entries:
            if key not in SCHEMA[section]:
                raise ConfigError("%s: unknown key %s.%s; [%s] takes %s"
                                  % (path, section, key, section, ", ".join(SCHEMA[section])))
    for section, keys in SCHEMA.items():
        for key, (default, check, allowed, _doc) in keys.items():
            value = raw.get(section, {}).get(key, default)
            if not check(value):
                raise ConfigError("%s: %s.%s = %r is not allowed; use %s"
                                  % (path, section, key, value, allowed or check.allowed))
            values[(section, key)] = value
    config = AgentConfig(values, path)
    _check_together(config)
    return config


def _check_together(config):
    path = config.path
    if config.camera_source == "fake" and not config.agent_lab:
        raise ConfigError("%s: camera.source = 'fake' needs agent.lab = true: the fake camera is for test "
                          "benches only, and every record it makes says lab" % path)
    _check_classifier_files(config, path)


def _check_classifier_files(config, where):
    for key in ("model", "labels"):
        value = getattr(config, "classifier_" + key)
        if value not in (SHIPPED, "none") and not Path(value).is_file():
            raise ConfigError("%s: classifier.%s = %r: no such file; use 'shipped'%s or a path to an existing file"
                              % (where, key, value, ", 'none'" if key == "model" else ""))


def documented_keys():
    """Every key with its default and purpose: the source of the example file's comments."""
    for section, keys in SCHEMA.items():
        for key, (default, check, allowed, doc) in keys.items():
            yield section, key, default, allowed or check.allowed, doc


def example_text():
    """device/deploy/agent.example.toml, generated from SCHEMA so the two never drift
    (tests/test_agent.py checks the shipped file against this)."""
    lines = ["# synthseal agent configuration (TOML): /etc/synthseal/agent.toml by default.",
             "# Every key is optional; the value shown is the default. The agent checks this file at",
             "# start and refuses to run, with one line naming the key, if anything is wrong.",
             "# Regenerate: python -c 'from synthseal.device.config import example_text; print(example_text(), end=\"\")'",
             ""]
    current = None
    for section, key, default, allowed, doc in documented_keys():
        if section != current:
            lines.append("[%s]" % section)
            current = section
        if isinstance(default, bool):
            value = "true" if default else "false"
        elif isinstance(default, str):
            value = '"%s"' % default
        else:
            value = repr(default)
        lines += ["# %s%s. Allowed: %s." % (doc[0].upper(), doc[1:], allowed), "%s = %s" % (key, value), ""]
    return "\n".join(lines)
