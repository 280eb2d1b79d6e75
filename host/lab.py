"""A vendor CA and devices enrolled in this process: for the demo's first step, the
tests and the benchmarks. Enrolment runs the real protocol (session handshake, keys
made by the device, CSRs, certificates, signed configuration) over a LoopbackTransport
instead of a cable; the code on both ends is the code that runs in the field."""

from pathlib import Path

from cryptography.hazmat.primitives import serialization

from ..device import credentials
from ..device.service import DeviceAnswers
from . import ca as ca_module
from .client import DeviceClient
from .inventory import Inventory
from .provision import provision
from .session import Operator
from .simlink import LoopbackTransport

LAB_CA_PASSPHRASE = "lab vendor CA: never use for real devices"


class Vendor(tuple):
    """(CA folder, root PEM), plus .ca (the loaded VendorCA), .operator (an Operator
    with both roles) and .root_pem."""

    def __new__(cls, directory, vendor_ca, operator):
        self = tuple.__new__(cls, (Path(directory), vendor_ca.root_pem))
        self.directory = Path(directory)
        self.ca = vendor_ca
        self.root_pem = vendor_ca.root_pem
        self.operator = operator
        return self


def make_vendor(directory, organization, passphrase=LAB_CA_PASSPHRASE, roles=credentials.ROLES):
    """Create a vendor CA in `directory` and an operator credential with `roles`."""
    ca_module.create_vendor_ca(directory, organization, passphrase)
    vendor_ca = ca_module.load_ca(directory, passphrase)
    return Vendor(directory, vendor_ca, make_operator(vendor_ca, "lab technician", roles))


def make_operator(vendor_ca, name, roles, days=30):
    chain_pem, key_pem = vendor_ca.issue_operator(name, list(roles), days=days)
    key = serialization.load_pem_private_key(key_pem.encode() if isinstance(key_pem, str) else key_pem, None)
    return Operator(chain_pem, key)


def provision_local(state, vendor, settings, inventory_path=None):
    """Enrol the device whose state this process owns (taking the lock if needed) with
    `vendor`'s CA and operator. Returns the provisioning summary."""
    if not state.owned:
        state.own()
    answers = DeviceAnswers(state)
    client = DeviceClient(LoopbackTransport(answers.answer), give_up_after=10)
    path = inventory_path or state.directory.parent / (".inventory-%s.sqlite" % state.directory.name)
    with Inventory(path) as inventory:
        return provision(client, vendor.ca, inventory, vendor.operator, settings)


def enrolled_device(directory, vendor, serial, **settings):
    """A device state initialised at `directory` with `serial` and enrolled by
    `vendor` (settings: configuration keys; producer defaults to "lab"). The calling
    process owns the state afterwards."""
    from ..device.state import DeviceState
    state = DeviceState(directory)
    state.init(serial)
    settings.setdefault("producer", "lab")
    provision_local(state, vendor, settings)
    return state
