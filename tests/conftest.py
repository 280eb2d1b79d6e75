"""Shared fixtures: a real vendor CA, provisioned devices, sealed files, and a device
service on a virtual serial link. Everything is real: keys, certificates, c2pa,
SQLite, pseudo-terminals."""

import threading
from pathlib import Path

import pytest

from synthseal.device.camera import FakeCamera
from synthseal.device.seal import Sealer
from synthseal.device.service import serve
from synthseal.device.state import DeviceState
from synthseal.host import ca
from synthseal.host.client import DeviceClient, SerialTransport
from synthseal.host.simlink import VirtualSerialLink

SERIAL = "TEST-0001"
PRODUCER = "synthseal-test"


@pytest.fixture(scope="session")
def vendor_ca(tmp_path_factory):
    directory = tmp_path_factory.mktemp("vendor-ca")
    root = ca.create_vendor_ca(directory, "synthseal Test Vendor")
    return directory, root.read_text()


def make_device(directory, vendor_ca, serial=SERIAL):
    state = DeviceState(directory)
    csr = state.init(serial, PRODUCER)
    state.install_chain(ca.issue_content_certificate(vendor_ca[0], csr, serial))
    return state


@pytest.fixture
def device(tmp_path, vendor_ca):
    return make_device(tmp_path / "device", vendor_ca)


@pytest.fixture(scope="module")
def sealed(tmp_path_factory, vendor_ca):
    """One provisioned device and one sealed file per declared source (1280x960)."""
    base = tmp_path_factory.mktemp("sealed")
    state = make_device(base / "device", vendor_ca)
    sealer = Sealer(state)
    camera = FakeCamera(1280, 960, seed=7)
    results = {}
    for source in ("rig", "capture", "composite"):
        frame = camera.capture_array()
        result = sealer.seal(frame, source, base / "out")
        result["frame"] = frame
        results[source] = result
    return {"state": state, "results": results, "out": base / "out", "base": base}


class RunningService:
    """The device service on the device end of a virtual link, in a thread. `link`
    takes VirtualSerialLink's options: baudrate, latency, faults."""

    def __init__(self, state, fault=None, **link):
        self.baudrate = link.get("baudrate") or 115200
        self.link = VirtualSerialLink(fault=fault, **link)
        self.stop = threading.Event()
        ready = threading.Event()
        self.thread = threading.Thread(target=serve, args=(state, self.link.device_port),
                                       kwargs={"stop": self.stop, "ready": ready}, daemon=True)
        self.thread.start()
        assert ready.wait(5)
        self._clients = []

    def client(self, give_up_after=30.0):
        client = DeviceClient(SerialTransport(self.link.host_port, self.baudrate), give_up_after=give_up_after)
        self._clients.append(client)
        return client

    def close(self):
        for client in self._clients:
            client.transport.close()
        self.stop.set()
        self.thread.join(5)
        self.link.close()


@pytest.fixture
def service_for():
    running = []

    def start(state, fault=None, **link):
        service = RunningService(state, fault, **link)
        running.append(service)
        return service

    yield start
    for service in running:
        service.close()
