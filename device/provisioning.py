"""The device's side of enrolment, configuration, rotation and decommissioning.

Each request arrives in an authenticated session (device/session.py) with the
provisioner role, and each change is applied all at once or not at all
(DeviceState.switch_enrolment) and then written to the audit log. The protocol and the
host's side are in docs/PROVISIONING.md and host/provision.py.

- ENROL_BEGIN {"mode": "enrol" | "rotate"}: the device makes its content-signing and
  identity keys and answers with CSRs that carry the session's id as challenge.
- ENROL_COMMIT {"mode", "content_chain", "identity_chain", "anchor", "config"}: the
  device checks that both certificates are for its pending keys and its serial and
  chain to the anchor, that the configuration is signed by a provisioner and newer
  than any it applied, then switches to the new enrolment. A retry of a commit that
  already took effect is answered as such, so a host that lost the answer can finish.
- CONFIGURE <signed configuration>: the same checks for a configuration alone.
- DECOMMISSION {"reason"}: the device logs it, then erases its keys.
"""

import datetime
import hashlib
import json
import time

from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from . import credentials
from .core import logrecord
from .core import protocol as p
from .state import DeviceStateError

EVENT_FOR_MODE = {"enrol": logrecord.EVENT_ENROL, "rotate": logrecord.EVENT_ROTATE}
MAX_REASON = 200
NO_CONTENT = b"\x00" * 32  # these records are about the device, not about a file


class Refused(Exception):
    """A well-formed, authorised request the device's state does not allow."""


class Provisioning:
    """`state` is the owned DeviceState, `log` its shared log. `pause()` is called
    before the keys or the configuration change (the agent finishes the frames in hand
    and stops sealing), `resume()` after (it seals again with what is now in force)."""

    def __init__(self, state, log, pause=None, resume=None, clock=time.time):
        self.state = state
        self.log = log
        self.pause = pause or (lambda: None)
        self.resume = resume or (lambda: None)
        self.clock = clock

    def handle(self, msg_type, request_id, body, session):
        """Answer one provisioning request, or None if msg_type is not one of ours."""
        handlers = {p.TYPE_STATUS: self._status, p.TYPE_ENROL_BEGIN: self._enrol_begin,
                    p.TYPE_ENROL_COMMIT: self._enrol_commit, p.TYPE_CONFIGURE: self._configure,
                    p.TYPE_DECOMMISSION: self._decommission}
        handler = handlers.get(msg_type)
        if handler is None:
            return None
        try:
            answer = handler(body, session)
        except (Refused, credentials.CredentialError, DeviceStateError) as err:
            return p.encode_message(p.TYPE_ERROR, request_id, p.encode_error(p.ERR_REFUSED, str(err)))
        except p.ProtocolError as err:
            return p.encode_message(p.TYPE_ERROR, request_id, p.encode_error(p.ERR_BAD_REQUEST, str(err)))
        return p.encode_message(msg_type | p.RESPONSE, request_id, p.encode_json(answer))

    def _now(self):
        return datetime.datetime.fromtimestamp(self.clock(), datetime.timezone.utc)

    def _log(self, event, decision):
        seq, _ = self.log.append(int(self.clock() * 1000), NO_CONTENT, event, "", decision)
        return seq

    def _apply(self, files, new_keys, event, decision):
        """Switch to the new enrolment and log it, with sealing paused meanwhile. The
        marker file says the change reached the log; recover() finishes one that did not."""
        self.pause()
        try:
            self.state.switch_enrolment(files, new_keys=new_keys)
            seq = self._log(event, decision)
            self.state.mark_logged(seq)
        finally:
            self.resume()
        return seq

    def recover(self):
        """At start: an enrolment or configuration switched in whose log record was
        cut off by a power loss gets its record now (marked as recovered)."""
        record = self.state.pending_decommission()
        if record is not None:
            seq = self._log(logrecord.EVENT_DECOMMISSION, dict(record, recovered=True))
            self.state.mark_decommission_logged(seq)
            return seq
        if not self.state.is_provisioned() or self.state.logged_seq() is not None:
            return None
        config = self.state.config()
        seq = self._log(logrecord.EVENT_CONFIG, {
            "action": "recovered", "reason": "an enrolment change took effect but its record was lost at power-off",
            "content_cert": credentials.fingerprint(credentials.load_pem_chain(self.state.chain_pem())[0]),
            "identity_cert": self._identity_fingerprint(), "config_version": config["version"]})
        self.state.mark_logged(seq)
        return seq

    # -- requests -------------------------------------------------------------------
    def _status(self, body, session):
        return self.state.status_info()

    def _enrol_begin(self, body, session):
        req = _json(body, "ENROL_BEGIN")
        mode = req.get("mode")
        self._check_mode(mode)
        organization = _organization(session.anchors[0])
        csrs = self.state.begin_enrolment(session.id, organization)
        return {"serial": self.state.serial(), "mode": mode, "challenge": session.id, "csrs": csrs}

    def _check_mode(self, mode):
        state = self.state.enrolment_state()
        if mode == "enrol":
            if state == "enrolled":
                raise Refused("the device is already enrolled (identity %s); decommission it first, or rotate its "
                              "keys" % self._identity_fingerprint()[:16])
        elif mode == "rotate":
            if state != "enrolled":
                raise Refused("the device is %s: there are no keys to rotate; enrol it" % state)
        else:
            raise p.ProtocolError("mode must be 'enrol' or 'rotate'")

    def _identity_fingerprint(self):
        chain = self.state.identity_chain_pem()
        return credentials.fingerprint(credentials.load_pem_chain(chain)[0]) if chain else ""

    def _enrol_commit(self, body, session):
        req = _json(body, "ENROL_COMMIT")
        mode = req.get("mode")
        for key in ("content_chain", "identity_chain", "anchor"):
            if not isinstance(req.get(key), str):
                raise p.ProtocolError("ENROL_COMMIT lacks %s" % key)
        content = credentials.load_pem_chain(req["content_chain"])
        identity = credentials.load_pem_chain(req["identity_chain"])
        if self.state.is_provisioned() and credentials.fingerprint(identity[0]) == self._identity_fingerprint():
            # The same certificates are already in force: an earlier commit of this very
            # enrolment whose answer was lost. Nothing to do; say so.
            return self._applied(False, None)
        self._check_mode(mode)
        anchor = self._check_anchor(req["anchor"], session)
        now = self._now()
        serial = self.state.serial()
        pending = self.state.pending_public_keys(session.id)
        if pending is None:
            raise Refused("no keys are waiting for certificates (the device restarted, or ENROL_BEGIN was not "
                          "sent in this session); start the enrolment again")
        for chain, purpose, name in ((content, credentials.PURPOSE_CONTENT, "content"),
                                     (identity, credentials.PURPOSE_IDENTITY, "identity")):
            leaf = credentials.verify_chain(chain, [anchor], purpose, at=now)
            if credentials.public_key_der(leaf) != pending[name]:
                raise Refused("the %s certificate is not for the key this device made for it" % name)
            if credentials.cert_serial(leaf) != serial:
                raise Refused("the %s certificate names serial %r; this device is %r"
                              % (name, credentials.cert_serial(leaf), serial))
        if mode == "rotate" and not req.get("config"):
            document = self.state.signed_config()  # the configuration in force stays
        else:
            document = _document(req.get("config"))
            credentials.verify_config(document, [anchor], serial, self.state.config_version(), at=now)
        first_anchor = self.state.enrolment_state() == "factory"
        files = {"content-chain.pem": req["content_chain"].encode(), "identity-chain.pem": req["identity_chain"].encode(),
                 "anchor.pem": _pem(anchor), "config.json": document}
        seq = self._apply(files, True, EVENT_FOR_MODE[mode], {
            "action": mode, "operator": session.operator["fingerprint"],
            "operator_subject": session.operator["subject"][:200],
            "content_cert": credentials.fingerprint(content[0]), "identity_cert": credentials.fingerprint(identity[0]),
            "anchor": credentials.fingerprint(anchor), "first_anchor": first_anchor,
            "config_version": _version(document)})
        return self._applied(True, seq)

    def _check_anchor(self, pem, session):
        """The anchor must be the one the device trusts, or in the factory state the one
        this session's operator chain was checked against."""
        offered = credentials.load_pem_chain(pem)[0]
        if self.state.enrolment_state() == "factory":
            if session.offered_anchor is None:
                raise Refused("factory device: the session did not offer a trust anchor")
            expected = credentials.load_pem_chain(session.offered_anchor)[0]
        else:
            expected = self.state.anchors()[0]
        if credentials.fingerprint(offered) != credentials.fingerprint(expected):
            raise Refused("the trust anchor %s is not the one this device trusts (%s)"
                          % (credentials.fingerprint(offered)[:16], credentials.fingerprint(expected)[:16]))
        return expected

    def _applied(self, applied, seq):
        config = self.state.config()
        return {"applied": applied, "seq": seq, "state": self.state.enrolment_state(),
                "content_fingerprint": credentials.fingerprint(credentials.load_pem_chain(self.state.chain_pem())[0]),
                "identity_fingerprint": self._identity_fingerprint(), "config_version": config["version"]}

    def _configure(self, body, session):
        if not self.state.is_provisioned():
            raise Refused("the device is %s: enrol it before configuring it" % self.state.enrolment_state())
        document = _document(body)
        if document == self.state.signed_config():
            return self._applied(False, None)  # a retry of a configuration already in force
        anchor = self.state.anchors()[0]
        config = credentials.verify_config(document, [anchor], self.state.serial(), self.state.config_version(),
                                           at=self._now())
        folder = self.state.enrolment_dir
        files = {name: (folder / name).read_bytes() for name in ("content-chain.pem", "identity-chain.pem", "anchor.pem")}
        files["config.json"] = document
        seq = self._apply(files, False, logrecord.EVENT_CONFIG, {
            "action": "configure", "operator": session.operator["fingerprint"], "config_version": config["version"],
            "config_sha256": _sha256(document)})
        return self._applied(True, seq)

    def _decommission(self, body, session):
        req = _json(body, "DECOMMISSION")
        reason = req.get("reason", "")
        if not isinstance(reason, str) or len(reason) > MAX_REASON:
            raise p.ProtocolError("reason must be text of at most %d characters" % MAX_REASON)
        state = self.state.enrolment_state()
        if state != "enrolled":
            return {"applied": False, "state": state, "seq": None}
        record = {"action": "decommission", "operator": session.operator["fingerprint"], "reason": reason,
                  "content_cert": credentials.fingerprint(credentials.load_pem_chain(self.state.chain_pem())[0]),
                  "identity_cert": self._identity_fingerprint()}
        # Keys first, then the record: a power cut between leaves a decommissioned device
        # whose record is written at the next start, never an enrolled one that logged
        # its own end.
        self.pause()
        try:
            self.state.leave_enrolment(record)
            seq = self._log(logrecord.EVENT_DECOMMISSION, record)
            self.state.mark_decommission_logged(seq)
        finally:
            self.resume()
        return {"applied": True, "state": self.state.enrolment_state(), "seq": seq}


def _json(body, what):
    try:
        obj = json.loads(bytes(body).decode())
    except (ValueError, UnicodeError, RecursionError):
        raise p.ProtocolError("%s body is not UTF-8 JSON" % what)
    if not isinstance(obj, dict):
        raise p.ProtocolError("%s body is not a JSON object" % what)
    return obj


def _document(value):
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, (bytes, bytearray)) or not value:
        raise p.ProtocolError("a signed configuration is required")
    return bytes(value)


def _version(document):
    try:
        return json.loads(document)["config"]["version"]
    except (ValueError, KeyError, TypeError):
        return None


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _organization(anchor):
    names = anchor.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return names[0].value if names else "synthseal"
