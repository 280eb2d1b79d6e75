"""Enrol, configure, rotate and decommission devices over the serial link.

The device makes its keys and answers with CSRs; the host checks them, issues the
certificates from the vendor CA, signs the configuration with the operator's key and
sends it all back; the device checks everything and switches over at once. The host
records each step in its inventory before and after the device acts, so a cable pulled
at any moment leaves a state that a retry of the same command completes.
docs/PROVISIONING.md describes the exchange.
"""

import datetime
import time

from ..device import credentials
from ..device.core import protocol as p
from .client import HostError
from .session import _safe


class Steps:
    """Reports progress as numbered steps (to stderr in the CLI); silent by default."""

    def __init__(self, total, out=None):
        self.total = total
        self.n = 0
        self.out = out

    def __call__(self, text):
        self.n += 1
        if self.out is not None:
            self.out.write("[%d/%d] %s\n" % (self.n, self.total, text))
            self.out.flush()


def _leaf_fp(chain_pem):
    return credentials.fingerprint(credentials.load_pem_chain(chain_pem)[0])


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _authenticate(client, ca, operator, serial, crl_pem, allow_unenrolled=False):
    return client.authenticate(operator, ca.root_pem, expected_serial=serial, crl_pem=crl_pem,
                               allow_unenrolled=allow_unenrolled)


def provision(client, ca, inventory, operator, settings, service_years=None, crl_pem=None, steps=None):
    """Enrol a factory-fresh (or decommissioned) device. `settings`: the configuration
    keys to set (producer required; see credentials.CONFIG_KEYS). Returns a summary."""
    started = time.monotonic()
    steps = steps or Steps(5)
    hello = client.info()
    serial = hello["serial"]
    steps("found device %s, firmware %s, state %s" % (_safe(serial), _safe(hello["firmware"]), hello["state"]))
    known = inventory.device(serial)
    pending = inventory.pending(serial)
    session = _authenticate(client, ca, operator, serial, crl_pem, allow_unenrolled=True)
    steps("authenticated as %s; device %s" % (operator.describe(), "identity verified" if session["verified_identity"]
                                              else "has no identity yet (%s)" % session["state"]))
    if session["state"] == "enrolled":
        identity_fp = _leaf_fp(session["identity_chain"])
        if pending is not None and pending["identity_fingerprint"] == identity_fp:
            # The device took an earlier commit whose answer never came back: finish it.
            inventory.complete_enrolment(serial)
            steps("device had already applied this enrolment; inventory completed")
            return _summary(client, inventory, serial, operator, started, resumed=True)
        if known is not None and known.get("identity_fingerprint") == identity_fp:
            # Enrolled by this inventory already (a retry after the summary was lost, or a
            # second run): nothing to change. Settings change with `configure`.
            steps("device is already enrolled in this inventory with this identity; nothing to do (change "
                  "settings with `configure`, keys with `rotate`)")
            return _summary(client, inventory, serial, operator, started, resumed=True)
        raise HostError("device %s is enrolled with an identity this inventory does not know (%s); refused"
                        % (serial, identity_fp[:16]))
    if known is not None and known.get("state") == "enrolled":
        raise HostError("the inventory has %s enrolled (identity %s) but this device has no identity: it may "
                        "be claiming another device's serial; refused" % (serial, known["identity_fingerprint"][:16]))
    begin = client.call_json(p.TYPE_ENROL_BEGIN, {"mode": "enrol"})
    content_chain, identity_chain = _issue(ca, begin, serial, client.session["session"], service_years)
    steps("device made its keys; CSRs checked; certificates issued")
    version = max(int((known or {}).get("config_version") or 0), int((pending or {}).get("config_version") or 0)) + 1
    document = _signed_config(operator, serial, version, settings)
    inventory.begin_enrolment(serial, identity_chain, content_chain, version, operator.describe())
    result = client.call_json(p.TYPE_ENROL_COMMIT, {
        "mode": "enrol", "content_chain": content_chain, "identity_chain": identity_chain,
        "anchor": ca.root_pem, "config": document.decode()})
    _check_applied(result, identity_chain, serial)
    steps("device checked and applied certificates and configuration version %d (log record %s)"
          % (version, _safe(result.get("seq"))))
    inventory.complete_enrolment(serial)
    steps("inventory updated")
    return _summary(client, inventory, serial, operator, started, steps=steps)


def _issue(ca, begin, serial, challenge, service_years):
    if begin.get("serial") != serial or begin.get("challenge") != challenge:
        raise HostError("device answered ENROL_BEGIN for another serial or session; refused")
    csrs = begin.get("csrs")
    if not isinstance(csrs, dict) or not all(isinstance(csrs.get(k), str) for k in ("content", "identity")):
        raise HostError("device answered ENROL_BEGIN without its two CSRs")
    options = {} if service_years is None else {"service_years": service_years}
    try:
        content = ca.issue_device(csrs.get("content"), serial, credentials.PURPOSE_CONTENT, challenge, **options)
        identity = ca.issue_device(csrs.get("identity"), serial, credentials.PURPOSE_IDENTITY, challenge, **options)
    except credentials.CredentialError as err:
        raise HostError("device CSR refused: %s" % err)
    return content, identity


def _signed_config(operator, serial, version, settings):
    config = credentials.default_config(serial, settings["producer"], version=version,
                                        **{k: v for k, v in settings.items() if k != "producer"})
    return credentials.sign_config(config, operator.key, operator.chain_pem)


def _check_applied(result, identity_chain, serial):
    if result.get("identity_fingerprint") != _leaf_fp(identity_chain):
        raise HostError("device %s reports identity %s after the commit, not the certificate just issued"
                        % (serial, _safe(result.get("identity_fingerprint"))))


def _summary(client, inventory, serial, operator, started, resumed=False, steps=None):
    status = client.status()
    row = inventory.device(serial) or {}
    return {"serial": serial, "firmware": _safe(status["firmware"]), "state": _safe(status["state"]),
            "identity_fingerprint": row.get("identity_fingerprint"), "content_fingerprint": row.get("content_fingerprint"),
            "config_version": status.get("config_version"), "log_head_seq": status["log"]["next_seq"] - 1,
            "operator": operator.describe(), "at": _now().isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - started, 2), "resumed": resumed}


def rotate(client, ca, inventory, operator, service_years=None, crl_pem=None, steps=None):
    """New keys and certificates for an enrolled device; files sealed before keep
    verifying with the old certificate, which stays unrevoked."""
    started = time.monotonic()
    steps = steps or Steps(3)
    serial = client.info()["serial"]
    session = _authenticate(client, ca, operator, serial, crl_pem)
    known = inventory.device(serial)
    identity_fp = _leaf_fp(session["identity_chain"])
    pending = inventory.pending(serial)
    if pending is not None and pending["identity_fingerprint"] == identity_fp:
        inventory.complete_enrolment(serial)
        steps("device had already applied this rotation; inventory completed")
        return _summary(client, inventory, serial, operator, started, resumed=True)
    if known is None or known.get("identity_fingerprint") != identity_fp:
        raise HostError("device %s is not in this inventory with identity %s; refused" % (serial, identity_fp[:16]))
    steps("authenticated device %s" % serial)
    begin = client.call_json(p.TYPE_ENROL_BEGIN, {"mode": "rotate"})
    content_chain, identity_chain = _issue(ca, begin, serial, client.session["session"], service_years)
    steps("new keys made on the device; certificates issued")
    inventory.begin_enrolment(serial, identity_chain, content_chain, known["config_version"], operator.describe(),
                              purpose="rotate")
    result = client.call_json(p.TYPE_ENROL_COMMIT, {"mode": "rotate", "content_chain": content_chain,
                                                    "identity_chain": identity_chain, "anchor": ca.root_pem})
    _check_applied(result, identity_chain, serial)
    steps("device switched to its new keys (log record %s)" % _safe(result.get("seq")))
    inventory.complete_enrolment(serial)
    return _summary(client, inventory, serial, operator, started, steps=steps)


def configure(client, ca, inventory, operator, settings, crl_pem=None):
    """Push a new signed configuration: the one in force with `settings` changed."""
    serial = client.info()["serial"]
    _authenticate(client, ca, operator, serial, crl_pem)
    status = client.status()
    current = dict(status.get("config") or {})
    if not current:
        raise HostError("device %s reports no configuration; provision it first" % serial)
    current.update(settings)
    version = int(current.pop("version")) + 1
    current.pop("serial", None)
    producer = current.pop("producer")
    config = credentials.default_config(serial, producer, version=version, **current)
    document = credentials.sign_config(config, operator.key, operator.chain_pem)
    result = client.call_json(p.TYPE_CONFIGURE, document)
    if result.get("config_version") != version:
        raise HostError("device reports configuration version %s, not %d" % (_safe(result.get("config_version")), version))
    inventory.record_config(serial, version, operator.describe())
    return {"serial": serial, "config_version": version, "seq": result.get("seq"), "config": config}


def decommission(client, ca, inventory, operator, reason, crl_pem=None, finish=False):
    """The device erases its keys and logs the act; its certificates are revoked from
    now on (files sealed before stay valid; later ones are reported as sealed after
    revocation) and the CA's CRL is rewritten.

    If the device erased its keys but the answer was lost, it can no longer prove who
    it is: `finish=True` (the technician vouches for the device in hand) completes the
    inventory and the CRL."""
    hello = client.info()
    serial = hello["serial"]
    known = inventory.device(serial)
    if hello["state"] != "enrolled":
        if known is None or known.get("state") != "enrolled":
            raise HostError("device %s is %s and not enrolled in this inventory: nothing to decommission"
                            % (_safe(serial), _safe(hello["state"])))
        if not finish:
            raise HostError("device %s has already erased its keys (it is %s) but this inventory still has it "
                            "enrolled: the answer was lost. It cannot prove who it is any more; if this is the "
                            "device, run again with --finish" % (_safe(serial), _safe(hello["state"])))
        result = {"state": hello["state"], "seq": None}
    else:
        _authenticate(client, ca, operator, serial, crl_pem)
        result = client.call_json(p.TYPE_DECOMMISSION, {"reason": reason})
    # A CRL dates revocations to the whole second. The device erased its keys by now, so
    # the next whole second keeps every file it sealed before on the right side.
    at = (_now() + datetime.timedelta(seconds=1)).replace(microsecond=0)
    revoked = inventory.decommission(serial, at, operator.describe())
    by_fp = {c["fingerprint"]: c for c in inventory.certificates(serial)}
    for fp in revoked:
        ca.revoke(credentials.load_pem_chain(by_fp[fp]["pem"])[0], at, "cessationOfOperation")
    ca.crl_pem()  # the CA folder's crl.pem now lists them
    return {"serial": serial, "state": result.get("state"), "seq": result.get("seq"), "revoked": revoked,
            "at": at.isoformat(timespec="seconds")}
