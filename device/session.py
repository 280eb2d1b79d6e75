"""Authenticated sessions on the serial link: who may ask the device for what.

A host proves an operator credential (a certificate from the vendor CA carrying one
or more roles, and its key); an enrolled device proves its identity certificate and
key. Both sign one transcript that holds a fresh nonce from each side and both sides'
ephemeral ECDH keys, so a recorded exchange is worthless in a later session. The ECDH
secret gives two MAC keys, one per direction; every request after the handshake, and
every answer to it, travels in a SECURE message with a strictly increasing counter and
an HMAC-SHA256 tag, so nothing can be injected, replayed or moved between sessions.
The link is not encrypted: what crosses it (log records, certificates, CSRs) is not
secret, and no private key ever does.

    host                                   device
    AUTH_BEGIN  host nonce, host ECDH key,
                operator chain [, anchor, CRL] ->
                                       <-  device nonce, device ECDH key, serial,
                                           identity chain, sig_device(T)   (enrolled)
    AUTH_PROVE  sig_operator(T)        ->
                                       <-  roles
    SECURE(counter, request, mac)      ->
                                       <-  SECURE(counter, answer, mac) ...

    T = SHA-256("synthseal-auth/1" 0x00 | host nonce | host key | device nonce |
                device key | serial 0x00 | SHA-256 of the operator certificate)

Roles (docs/PROVISIONING.md): unauthenticated hosts get HELLO only; reading the log
and its head needs `collector`; enrolment, configuration, rotation, decommissioning and
uploads need `provisioner`.

This module is used by both ends (device/service.py, host/session.py) so the
transcript, the key derivation and the MAC are defined once.
"""

import datetime
import hashlib
import hmac
import json
import os
import struct
import threading
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import credentials
from .core import protocol as p

AUTH_VERSION = 1
NONCE_LEN = 32
SESSION_IDLE_SECONDS = 900  # a session nobody used for this long is forgotten
MAX_AUTH_BODY = 12000

# What each request needs. Anything not listed needs a session with one of its roles.
PUBLIC_TYPES = (p.TYPE_HELLO,)
ROLES_FOR_TYPE = {
    p.TYPE_STATUS: (credentials.ROLE_COLLECTOR, credentials.ROLE_PROVISIONER),
    p.TYPE_LOG_READ: (credentials.ROLE_COLLECTOR,),
    p.TYPE_LOG_STREAM: (credentials.ROLE_COLLECTOR,),
    p.TYPE_CHECKPOINT: (credentials.ROLE_COLLECTOR,),
    p.TYPE_ACK: (credentials.ROLE_COLLECTOR,),
    p.TYPE_ENROL_BEGIN: (credentials.ROLE_PROVISIONER,),
    p.TYPE_ENROL_COMMIT: (credentials.ROLE_PROVISIONER,),
    p.TYPE_CONFIGURE: (credentials.ROLE_PROVISIONER,),
    p.TYPE_DECOMMISSION: (credentials.ROLE_PROVISIONER,),
    p.TYPE_UPLOAD_BEGIN: (credentials.ROLE_PROVISIONER,),
    p.TYPE_UPLOAD_DATA: (credentials.ROLE_PROVISIONER,),
    p.TYPE_UPLOAD_END: (credentials.ROLE_PROVISIONER,),
}
TYPE_NAMES = {
    p.TYPE_STATUS: "STATUS", p.TYPE_LOG_READ: "LOG_READ", p.TYPE_LOG_STREAM: "LOG_STREAM",
    p.TYPE_CHECKPOINT: "CHECKPOINT", p.TYPE_ACK: "ACK",
    p.TYPE_ENROL_BEGIN: "ENROL_BEGIN", p.TYPE_ENROL_COMMIT: "ENROL_COMMIT", p.TYPE_CONFIGURE: "CONFIGURE",
    p.TYPE_DECOMMISSION: "DECOMMISSION", p.TYPE_UPLOAD_BEGIN: "UPLOAD_BEGIN", p.TYPE_UPLOAD_DATA: "UPLOAD_DATA",
    p.TYPE_UPLOAD_END: "UPLOAD_END",
}


class SessionError(Exception):
    """An authentication step that does not hold; the message says which."""


# -- shared by both ends ------------------------------------------------------------------

def new_ephemeral():
    """(private key, public point as 65 uncompressed bytes) for one handshake."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key, key.public_key().public_bytes(serialization.Encoding.X962,
                                              serialization.PublicFormat.UncompressedPoint)


def transcript(host_nonce, host_key, device_nonce, device_key, serial, operator_fingerprint):
    h = hashlib.sha256(b"synthseal-auth/1\x00")
    for part in (host_nonce, host_key, device_nonce, device_key, serial.encode() + b"\x00",
                 bytes.fromhex(operator_fingerprint)):
        h.update(part)
    return h.digest()


def session_id(t):
    """The name both ends give the session (and the CSR challenge): 16 bytes of T, hex."""
    return t[:16].hex()


def derive_keys(own_ephemeral, peer_point, t):
    """(host-to-device key, device-to-host key) from the ECDH secret, bound to T."""
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes(peer_point))
    except ValueError:
        raise SessionError("the peer's ECDH key is not a P-256 point")
    shared = own_ephemeral.exchange(ec.ECDH(), peer)
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=t, info=b"synthseal session keys v1").derive(shared)
    return okm[:32], okm[32:]


def _tag(key, counter, inner):
    return hmac.new(key, struct.pack("<I", counter) + inner, hashlib.sha256).digest()[:p.SECURE_TAG_LEN]


class Direction:
    """One direction of a session: seals outgoing messages, opens incoming ones."""

    def __init__(self, key):
        self._key = key
        self.counter = 0  # last counter sent, or last accepted

    def seal(self, request_id, inner, response=False):
        self.counter += 1
        body = p.encode_secure(self.counter, inner, _tag(self._key, self.counter, inner))
        return p.encode_message(p.TYPE_SECURE | (p.RESPONSE if response else 0), request_id, body)

    def open(self, body):
        """The inner message of a SECURE body, or SessionError (bad MAC, replay)."""
        counter, inner, tag = p.decode_secure(body)
        if not hmac.compare_digest(tag, _tag(self._key, counter, inner)):
            raise SessionError("message fails its MAC: not from this session")
        if counter <= self.counter:
            raise SessionError("message counter %d was already used: a replay" % counter)
        self.counter = counter
        return inner


def sign(private_key, label, t):
    return private_key.sign(label + t, ec.ECDSA(hashes.SHA256()))


def check_signature(public_key, signature, label, t, whose):
    try:
        public_key.verify(bytes(signature), label + t, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, TypeError):
        raise SessionError("%s's signature over this session does not verify" % whose)


def _hex(obj, name, length=None):
    value = obj.get(name)
    try:
        data = bytes.fromhex(value)
    except (TypeError, ValueError):
        raise SessionError("%s is missing or not hex" % name)
    if length is not None and len(data) != length:
        raise SessionError("%s must be %d bytes" % (name, length))
    return data


def parse_json(body, what):
    if len(body) > MAX_AUTH_BODY:
        raise SessionError("%s is too large" % what)
    try:
        obj = json.loads(bytes(body).decode())
    except (ValueError, UnicodeError, RecursionError):
        raise SessionError("%s is not UTF-8 JSON" % what)
    if not isinstance(obj, dict):
        raise SessionError("%s is not a JSON object" % what)
    return obj


# -- the device's end ----------------------------------------------------------------------

class _Session:
    def __init__(self, keys, roles, operator, anchors, offered_anchor, sid):
        self.inbound = Direction(keys[0])
        self.outbound = Direction(keys[1])
        self.roles = roles
        self.operator = operator          # {"fingerprint", "subject"} of the operator certificate
        self.anchors = anchors            # what the operator chain was checked against
        self.offered_anchor = offered_anchor  # PEM of a first anchor (factory state only), else None
        self.id = sid
        self.last_used = time.monotonic()


class DeviceGuard:
    """Stands between the serial link and the device's handlers. `identity` is the
    device's state (device/state.py: serial(), anchors(), sign_identity(),
    identity_chain_pem(), enrolment_state(), offer_crl(), is_revoked()); `handle(payload,
    session)` answers an authorised request (one payload or a list)."""

    def __init__(self, identity, handle, clock=time.time):
        self._identity = identity
        self._handle = handle
        self._clock = clock
        self._pending = None
        self._proved = None  # (signature, answer) of the last AUTH_PROVE that made a session
        self._session = None
        self._lock = threading.Lock()
        self.refused = 0  # authentication failures, for the status report

    def handle(self, payload, public_handle):
        """Answer one request payload. `public_handle` answers what needs no session
        (HELLO, and requests that do not parse: it reports them)."""
        try:
            msg_type, request_id, body = p.decode_message(payload)
        except p.ProtocolError:
            return public_handle(payload)
        if msg_type in PUBLIC_TYPES:
            return public_handle(payload)
        with self._lock:
            try:
                if msg_type == p.TYPE_AUTH_BEGIN:
                    return self._begin(request_id, body)
                if msg_type == p.TYPE_AUTH_PROVE:
                    return self._prove(request_id, body)
                if msg_type == p.TYPE_SECURE:
                    return self._secure(request_id, body)
            except (SessionError, credentials.CredentialError, p.ProtocolError) as err:
                self.refused += 1
                return _error(request_id, p.ERR_AUTH, str(err))
        if msg_type in ROLES_FOR_TYPE:
            self.refused += 1
            return _error(request_id, p.ERR_AUTH, "%s needs an authenticated session with the %s role; run the "
                          "host tool with operator credentials" % (TYPE_NAMES[msg_type],
                                                                   " or ".join(ROLES_FOR_TYPE[msg_type])))
        return public_handle(payload)

    @property
    def session(self):
        return self._session

    def _begin(self, request_id, body):
        req = parse_json(body, "AUTH_BEGIN")
        self._pending = self._proved = None
        if req.get("version") != AUTH_VERSION:
            raise SessionError("authentication version %r is not supported (this device speaks %d)"
                               % (req.get("version"), AUTH_VERSION))
        host_nonce = _hex(req, "host_nonce", NONCE_LEN)
        host_key = _hex(req, "host_key", 65)
        chain = credentials.load_pem_chain(req.get("operator_chain") or "")
        anchors, offered = self._identity.anchors(), None
        if not anchors:
            # Factory state: the first trust anchor is taken from the host, for enrolment
            # only; it is pinned (and logged) when the enrolment commits.
            offered = req.get("anchor")
            if not isinstance(offered, str):
                raise SessionError("this device is in its factory state and has no trust anchor yet: offer the "
                                   "vendor root (provision does)")
            anchors = credentials.load_pem_chain(offered)[:1]
        now = _utc(self._clock())
        leaf = credentials.verify_chain(chain, anchors, credentials.PURPOSE_OPERATOR, at=now)
        # Revocation is checked against the CRL the device already holds before a newer
        # one is taken from this host, and again after: a revoked operator cannot bring
        # a CRL that forgets it.
        for crl in (None, req.get("crl")):
            if isinstance(crl, str):
                self._identity.offer_crl(crl, chain, now)
            if self._identity.is_revoked(leaf):
                raise SessionError("the operator certificate %s is revoked" % credentials.fingerprint(leaf)[:16])
        roles = sorted(credentials.operator_roles(leaf) & set(credentials.ROLES))
        if not roles:
            raise SessionError("the operator certificate carries no role")
        serial = self._identity.serial()
        ephemeral, device_key = new_ephemeral()
        device_nonce = os.urandom(NONCE_LEN)
        operator_fp = credentials.fingerprint(leaf)
        t = transcript(host_nonce, host_key, device_nonce, device_key, serial, operator_fp)
        identity_chain = self._identity.identity_chain_pem()
        signature = self._identity.sign_identity(b"device", t) if identity_chain else None
        self._pending = {"t": t, "ephemeral": ephemeral, "host_key": host_key, "leaf": leaf, "roles": roles,
                         "anchors": anchors, "offered": offered}
        answer = {"version": AUTH_VERSION, "device_nonce": device_nonce.hex(), "device_key": device_key.hex(),
                  "serial": serial, "state": self._identity.enrolment_state(), "identity_chain": identity_chain,
                  "signature": signature.hex() if signature else None}
        return p.encode_message(p.TYPE_AUTH_BEGIN | p.RESPONSE, request_id, p.encode_json(answer))

    def _prove(self, request_id, body):
        req = parse_json(body, "AUTH_PROVE")
        signature = _hex(req, "signature")
        pending, self._pending = self._pending, None  # one try per AUTH_BEGIN
        if pending is None:
            proved = self._proved
            if proved is not None and hmac.compare_digest(proved[0], signature):
                # The same proof again: its answer was lost on the line. Same answer, and
                # the session stays as it is (a replay of it gains nothing).
                return p.encode_message(p.TYPE_AUTH_PROVE | p.RESPONSE, request_id, proved[1])
            raise SessionError("AUTH_PROVE without an AUTH_BEGIN before it: start the handshake again")
        check_signature(pending["leaf"].public_key(), signature, b"host", pending["t"], "the operator")
        keys = derive_keys(pending["ephemeral"], pending["host_key"], pending["t"])
        leaf = pending["leaf"]
        operator = {"fingerprint": credentials.fingerprint(leaf), "subject": leaf.subject.rfc4514_string()}
        self._session = _Session(keys, pending["roles"], operator, pending["anchors"], pending["offered"],
                                 session_id(pending["t"]))
        answer = p.encode_json({"roles": pending["roles"], "session": self._session.id})
        self._proved = (signature, answer)
        return p.encode_message(p.TYPE_AUTH_PROVE | p.RESPONSE, request_id, answer)

    def _secure(self, request_id, body):
        session = self._session
        if session is None or time.monotonic() - session.last_used > SESSION_IDLE_SECONDS:
            self._session = None
            raise SessionError("no authenticated session (it expired or the device restarted): authenticate again")
        inner = session.inbound.open(body)
        session.last_used = time.monotonic()
        inner_type, inner_id, _ = p.decode_message(inner)
        allowed = ROLES_FOR_TYPE.get(inner_type)
        if allowed is not None and not set(allowed) & set(session.roles):
            answers = _error(inner_id, p.ERR_AUTH, "%s needs the %s role; this operator has %s" % (
                TYPE_NAMES[inner_type], " or ".join(allowed), ", ".join(session.roles)))
        else:
            answers = self._handle(inner, session)
        return [session.outbound.seal(request_id, one, response=True)
                for one in (answers if isinstance(answers, list) else [answers])]


def _error(request_id, code, message):
    return p.encode_message(p.TYPE_ERROR, request_id, p.encode_error(code, message))


def _utc(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
