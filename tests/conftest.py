"""Shared fixtures: a real vendor CA, provisioned devices, sealed files, and a device
service on a virtual serial link. Everything is real: keys, certificates, c2pa,
SQLite, pseudo-terminals."""

import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from synthseal.device.camera import FakeCamera
from synthseal.device.launch import AgentProcess, write_config
from synthseal.device.seal import Sealer
from synthseal.device.service import DeviceAnswers, serve
from synthseal.host.client import DeviceClient, SerialTransport
from synthseal.host.lab import LAB_CA_PASSPHRASE as CA_PASSPHRASE, enrolled_device, make_vendor
from synthseal.host.simlink import VirtualSerialLink

SERIAL = "TEST-0001"
PRODUCER = "synthseal-test"
# What the fake camera says of its frames: a lab bench, never evidence.
LAB_CAMERA = FakeCamera(64, 64).origin


@pytest.fixture(scope="session")
def vendor_ca(tmp_path_factory):
    """A real vendor CA (keys encrypted at rest) and an operator credential with both
    roles. Indexes as (CA folder, root PEM) too."""
    return make_vendor(tmp_path_factory.mktemp("vendor") / "ca", "synthseal Test Vendor", CA_PASSPHRASE)


@pytest.fixture(scope="session")
def credential_args(vendor_ca, tmp_path_factory):
    """Command-line options for the host tool: the test operator's credential files
    (key unencrypted, as a test may keep it) and the vendor root."""
    from cryptography.hazmat.primitives import serialization
    folder = tmp_path_factory.mktemp("operator")
    (folder / "operator.pem").write_text(vendor_ca.operator.chain_pem)
    key = folder / "operator-key.pem"
    key.write_bytes(vendor_ca.operator.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    key.chmod(0o600)
    (folder / "root.pem").write_text(vendor_ca.root_pem)
    return ["--operator", str(folder), "--trust-anchor", str(folder / "root.pem")]


def verified_from_the_file_alone(report):
    """What `verify` without --db and --crl can say of a good file: every check the file
    alone allows passed (or warned), and the log and revocation checks were skipped, so
    the result is incomplete, never verified."""
    skipped = {c["check"] for c in report["checks"] if c["status"] == "skip"}
    return report["result"] == "incomplete" and skipped == {"log", "revocation"}


def make_device(directory, vendor_ca, serial=SERIAL, own=True, **settings):
    """A device enrolled over the real protocol (in this process, no cable): keys made
    on the device, certificates from the vendor CA, a signed configuration. own=True:
    this (test) process owns its state, as the agent would; own=False: left for an
    agent process to take."""
    settings.setdefault("producer", PRODUCER)
    state = enrolled_device(directory, vendor_ca, serial, **settings)
    state.test_vendor = vendor_ca  # who enrolled it: RunningService authenticates with its operator
    if not own:
        state.release()
    return state


@pytest.fixture
def device(tmp_path, vendor_ca):
    return make_device(tmp_path / "device", vendor_ca)


@pytest.fixture(scope="module")
def sealed(tmp_path_factory, vendor_ca):
    """One provisioned device and one sealed file per declared source (1280x960)."""
    base = tmp_path_factory.mktemp("sealed")
    state = make_device(base / "device", vendor_ca)
    sealer = Sealer(state, lab=True)
    camera = FakeCamera(1280, 960, seed=7)
    results = {}
    for source in ("rig", "capture", "composite"):
        frame = camera.capture_array()
        result = sealer.seal(frame, source, base / "out", origin=camera.origin)
        result["frame"] = frame
        results[source] = result
    return {"state": state, "results": results, "out": base / "out", "base": base}


class RunningService:
    """The device service on the device end of a virtual link, in a thread. `link`
    takes VirtualSerialLink's options: baudrate, latency, faults."""

    def __init__(self, state, fault=None, vendor=None, **link):
        self.baudrate = link.get("baudrate") or 115200
        self.vendor = getattr(state, "test_vendor", None) or vendor  # the vendor that enrolled it
        self.link = VirtualSerialLink(fault=fault, **link)
        self.stop = threading.Event()
        ready = threading.Event()
        self.answers = DeviceAnswers(state)
        self.thread = threading.Thread(target=serve, args=(state, self.link.device_port),
                                       kwargs={"stop": self.stop, "ready": ready, "answers": self.answers},
                                       daemon=True)
        self.thread.start()
        assert ready.wait(5)
        self._clients = []

    def client(self, give_up_after=30.0, authenticate=True):
        """A host client on the link; authenticated with the test operator (both roles)
        unless authenticate=False."""
        client = DeviceClient(SerialTransport(self.link.host_port, self.baudrate), give_up_after=give_up_after)
        self._clients.append(client)
        if authenticate:
            client.authenticate(self.vendor.operator, self.vendor.root_pem)
        return client

    def close(self):
        for client in self._clients:
            client.transport.close()
        self.stop.set()
        self.thread.join(5)
        self.link.close()


@pytest.fixture
def service_for(vendor_ca):
    running = []

    def start(state, fault=None, **link):
        service = RunningService(state, fault, vendor=vendor_ca, **link)
        running.append(service)
        return service

    yield start
    for service in running:
        service.close()


class RunningAgent(AgentProcess):
    """`synthseal-device run` as its own process, as systemd would start it, with a
    configuration written for the test: lab bench, small fake camera, no classifier, no
    serial port unless asked. The socket lives in a short folder of its own (a Unix
    socket path is limited to 107 bytes)."""

    def __init__(self, state_dir, out_dir, **sections):
        self.socket_dir = Path(tempfile.mkdtemp(prefix="ss-"))
        self.socket = self.socket_dir / "agent.sock"
        self.state_dir, self.out_dir = Path(state_dir), Path(out_dir)
        agent = {"state_dir": str(state_dir), "output_dir": str(out_dir), "socket": str(self.socket), "lab": True}
        agent.update(sections.pop("agent", {}))
        config = {"agent": agent, "camera": {"source": "fake", "width": 320, "height": 240},
                  "classifier": {"model": "none"}, "serial": {"port": ""}}
        for section, values in sections.items():
            config.setdefault(section, {}).update(values)
        write_config(self.socket_dir / "agent.toml", config)
        super().__init__(self.socket_dir / "agent.toml", self.socket_dir / "agent.log")

    def stderr(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, name="test-client", timeout=120):
        from synthseal.device.client import AgentClient
        return AgentClient(self.socket, client=name, timeout=timeout)

    def close(self):
        self.stop()
        shutil.rmtree(self.socket_dir, ignore_errors=True)


@pytest.fixture
def agent_for():
    """agent_for(state_dir, out_dir, **config sections) -> a started RunningAgent."""
    running = []

    def start(state_dir, out_dir, start=True, **sections):
        agent = RunningAgent(state_dir, out_dir, **sections)
        running.append(agent)
        return agent.start() if start else agent

    yield start
    for agent in running:
        agent.close()
