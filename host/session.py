"""The host's end of an authenticated session (the handshake is described in
device/session.py, which both ends share).

`authenticate()` proves the operator credential to the device and checks the
device's: its identity certificate must chain to the vendor root the host trusts and
name the serial the device claims (and the one the host expected), and its identity
key must sign this session's transcript. Afterwards every request and answer travels
MAC-protected through `SecureTransport`, which the DeviceClient uses like any other.
"""

import json
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from ..device import credentials
from ..device import session as s
from ..device.core import protocol as p
from .client import HostError, shown

OPERATOR_CHAIN, OPERATOR_KEY = "operator.pem", "operator-key.pem"
PASSPHRASE_ENV = "SYNTHSEAL_OPERATOR_PASSPHRASE"


class Operator:
    """A technician's credential: certificate chain (leaf + issuing CA) and key."""

    def __init__(self, chain_pem, key):
        self.chain_pem = chain_pem if isinstance(chain_pem, str) else chain_pem.decode()
        self.key = key
        self.leaf = credentials.load_pem_chain(self.chain_pem)[0]
        self.fingerprint = credentials.fingerprint(self.leaf)
        self.roles = sorted(credentials.operator_roles(self.leaf))

    @classmethod
    def load(cls, directory, passphrase=None):
        """operator.pem and operator-key.pem from `ca operator`; the key's passphrase
        from the argument or $SYNTHSEAL_OPERATOR_PASSPHRASE."""
        from .ca import CAError, load_operator
        directory = Path(directory)
        if passphrase is None:
            passphrase = os.environ.get(PASSPHRASE_ENV)
        try:
            chain, key = load_operator(directory / OPERATOR_CHAIN, directory / OPERATOR_KEY, passphrase)
        except CAError as err:
            raise HostError(str(err))
        return cls("".join(_pem(c) for c in chain) if not isinstance(chain, str) else chain, key)

    def describe(self):
        return "%s (%s)" % (self.leaf.subject.rfc4514_string(), ", ".join(self.roles))


class SecureTransport:
    """Wraps a transport: requests go out sealed, answers come back opened; anything
    that is not a valid answer of this session is dropped, except plain ERROR frames
    (a damaged frame, or a device that lost the session), which the client must see."""

    def __init__(self, transport, outbound, inbound):
        self._transport = transport
        self._outbound = outbound
        self._inbound = inbound
        self.rejected = 0  # frames that failed their MAC or replayed a counter

    def __getattr__(self, name):  # port, baudrate, last_rx, last_tx, close ...
        return getattr(self._transport, name)

    def send(self, payload):
        _, request_id, _ = p.decode_message(payload)
        self._transport.send(self._outbound.seal(request_id, payload))

    def receive(self, deadline):
        while True:
            item = self._transport.receive(deadline)
            if item is None:
                return None
            payload, error = item
            if error is not None:
                return item
            try:
                r_type, _, body = p.decode_message(payload)
                if r_type == p.TYPE_SECURE | p.RESPONSE:
                    return self._inbound.open(body), None
            except (p.ProtocolError, s.SessionError):
                self.rejected += 1
                continue
            if r_type == p.TYPE_ERROR:
                return item
            self.rejected += 1


def authenticate(client, operator, anchors_pem, expected_serial=None, crl_pem=None, allow_unenrolled=False):
    """Run the handshake on `client` (a DeviceClient) and switch it to the session.
    Returns a dict: serial, state, identity_chain, roles, session, verified_identity.

    A device that is not enrolled has no identity to prove; only `provision` (allow_
    unenrolled) may go on with one, and it offers the vendor root as its first anchor."""
    anchors = credentials.load_pem_chain(anchors_pem)
    if not anchors:
        raise HostError("no trust anchor given")
    ephemeral, host_key = s.new_ephemeral()
    host_nonce = os.urandom(s.NONCE_LEN)
    begin = {"version": s.AUTH_VERSION, "host_nonce": host_nonce.hex(), "host_key": host_key.hex(),
             "operator_chain": operator.chain_pem}
    if allow_unenrolled:
        begin["anchor"] = _pem(anchors[0])
    if crl_pem:
        begin["crl"] = crl_pem
    try:
        answer = s.parse_json(client.request(p.TYPE_AUTH_BEGIN, json.dumps(begin).encode()), "the device's answer")
        device_nonce = s._hex(answer, "device_nonce", s.NONCE_LEN)
        device_key = s._hex(answer, "device_key", 65)
    except s.SessionError as err:
        raise HostError("device answered the handshake with garbage: %s" % err)
    serial, state = answer.get("serial"), answer.get("state")
    if not isinstance(answer.get("identity_chain") or "", str):
        raise HostError("device's handshake answer garbles its identity chain")
    if not isinstance(serial, str) or state not in ("factory", "enrolled", "decommissioned"):
        raise HostError("device's handshake answer lacks its serial or state")
    if expected_serial is not None and serial != expected_serial:
        raise HostError("device says it is %r, not the expected %r" % (_safe(serial), expected_serial))
    t = s.transcript(host_nonce, host_key, device_nonce, device_key, serial, operator.fingerprint)
    verified = False
    if state == "enrolled" or answer.get("identity_chain"):
        _check_device(answer, anchors, serial, t)
        verified = True
    elif not allow_unenrolled:
        raise HostError("device %s is %s: it has no identity to prove; enrol it with `synthseal-host provision`"
                        % (_safe(serial), state))
    signature = s.sign(operator.key, b"host", t)
    try:
        proved = s.parse_json(client.request(p.TYPE_AUTH_PROVE, json.dumps({"signature": signature.hex()}).encode()),
                              "the device's answer")
    except s.SessionError as err:
        raise HostError("device answered the handshake with garbage: %s" % err)
    try:
        to_device, to_host = s.derive_keys(ephemeral, device_key, t)
    except s.SessionError as err:
        raise HostError("device answered the handshake with garbage: %s" % err)
    client.transport = SecureTransport(client.transport, s.Direction(to_device), s.Direction(to_host))
    return {"serial": serial, "state": state, "identity_chain": answer.get("identity_chain"),
            "roles": proved.get("roles"), "session": s.session_id(t), "verified_identity": verified,
            "anchors": "".join(_pem(a) for a in anchors)}


def _check_device(answer, anchors, serial, t):
    try:
        chain = credentials.load_pem_chain(answer.get("identity_chain") or "")
        leaf = credentials.verify_chain(chain, anchors, credentials.PURPOSE_IDENTITY)
    except credentials.CredentialError as err:
        raise HostError("device %s does not prove an identity from this vendor: %s" % (_safe(serial), err))
    if credentials.cert_serial(leaf) != serial:
        raise HostError("device claims serial %r but its identity certificate is for %r: refused"
                        % (_safe(serial), _safe(credentials.cert_serial(leaf))))
    try:
        signature = answer.get("signature")
        if not isinstance(signature, str):
            raise s.SessionError("the device sent no signature")
        s.check_signature(leaf.public_key(), bytes.fromhex(signature), b"device", t, "the device")
    except (s.SessionError, ValueError) as err:
        raise HostError("device %s holds a certificate it cannot sign for: %s" % (_safe(serial), err))


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _safe(text):
    return shown(text, 80)
