"""The host's inventory of provisioned devices, in one SQLite file.

    devices       one row per serial: state, the identity and content certificates in
                  force, configuration version, who provisioned it and when
    pending       an enrolment or rotation the host has started but not yet seen complete
                  (what it is about to send), so a cut cable leaves a record to retry from
    certificates  every device certificate ever recorded, by SHA-256 fingerprint, with
                  its revocation time and reason once revoked
    events        the append-only history (time, serial, operator, action, detail);
                  triggers refuse UPDATE and DELETE on it

Every write is one transaction (BEGIN IMMEDIATE ... COMMIT): a refusal or a crash leaves
the file as it was. Times are UTC, ISO 8601.
"""

import datetime
import json
import sqlite3
from pathlib import Path

from ..device import credentials

SCHEMA_VERSION = 1
PURPOSE_ENROL = "enrol"
PURPOSE_ROTATE = "rotate"
STATE_ENROLLED = "enrolled"
STATE_DECOMMISSIONED = "decommissioned"
DECOMMISSION_REASON = "cessationOfOperation"  # RFC 5280 §5.3.1

_SCHEMA = """
CREATE TABLE devices (
    serial               TEXT PRIMARY KEY,
    state                TEXT NOT NULL,
    identity_fingerprint TEXT NOT NULL,
    content_fingerprint  TEXT NOT NULL,
    identity_chain       TEXT NOT NULL,
    content_chain        TEXT NOT NULL,
    config_version       INTEGER NOT NULL,
    provisioned_by       TEXT NOT NULL,
    provisioned_at       TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);
CREATE TABLE pending (
    serial               TEXT PRIMARY KEY,
    purpose              TEXT NOT NULL,
    identity_fingerprint TEXT NOT NULL,
    content_fingerprint  TEXT NOT NULL,
    identity_chain       TEXT NOT NULL,
    content_chain        TEXT NOT NULL,
    config_version       INTEGER NOT NULL,
    operator             TEXT NOT NULL,
    started_at           TEXT NOT NULL
);
CREATE TABLE certificates (
    fingerprint TEXT PRIMARY KEY,
    serial      TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    pem         TEXT NOT NULL,
    not_before  TEXT NOT NULL,
    not_after   TEXT NOT NULL,
    issued_at   TEXT NOT NULL,
    revoked_at  TEXT,
    reason      TEXT
);
CREATE INDEX certificates_by_serial ON certificates (serial);
CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    time     TEXT NOT NULL,
    serial   TEXT NOT NULL,
    operator TEXT NOT NULL,
    action   TEXT NOT NULL,
    detail   TEXT NOT NULL
);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the inventory history is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the inventory history is append-only'); END;
"""
_TABLES = {"devices", "pending", "certificates", "events"}


class InventoryError(Exception):
    pass


def _iso(when):
    if when is None:
        when = datetime.datetime.now(datetime.timezone.utc)
    if when.tzinfo is None:
        raise InventoryError("times must carry a timezone (e.g. datetime.timezone.utc)")
    return when.astimezone(datetime.timezone.utc).isoformat(timespec="microseconds")


def _leaf(chain_pem, serial, purpose):
    """The leaf of a device chain, checked to name `serial` (the inventory never files one
    device's certificate under another's serial)."""
    try:
        leaf = credentials.load_pem_chain(chain_pem)[0]
    except credentials.CredentialError as err:
        raise InventoryError("%s chain: %s" % (purpose, err)) from None
    named = credentials.cert_serial(leaf)
    if named != serial:
        raise InventoryError("the %s certificate names device %r, not %r" % (purpose, named, serial))
    return leaf


class Inventory:
    def __init__(self, path, create=True):
        """Open (create=True: or create) the inventory in `path`."""
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise InventoryError("no inventory at %s; `provision` creates it" % self.path)
        try:
            self._db = sqlite3.connect(str(self.path), isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA foreign_keys = ON")
            self._setup()
        except sqlite3.DatabaseError as err:
            raise InventoryError("%s is not a synthseal inventory database (%s)" % (self.path, err)) from None

    def _setup(self):
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                      "AND name NOT LIKE 'sqlite_%'")}
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if not tables:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";\n"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute("PRAGMA user_version = %d" % SCHEMA_VERSION)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        elif tables != _TABLES or version != SCHEMA_VERSION:
            raise InventoryError("%s is not a synthseal inventory database (tables %s, version %d)"
                                 % (self.path, ", ".join(sorted(tables)), version))

    def close(self):
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- one transaction per write ------------------------------------------------------
    def _write(self, fn, *args):
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(*args)
            self._db.execute("COMMIT")
            return result
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _event(self, time, serial, operator, action, detail):
        self._db.execute("INSERT INTO events (time, serial, operator, action, detail) VALUES (?, ?, ?, ?, ?)",
                         (time, serial, operator, action, json.dumps(detail, sort_keys=True)))

    def _row(self, table, serial):
        row = self._db.execute("SELECT * FROM %s WHERE serial = ?" % table, (serial,)).fetchone()
        return dict(row) if row is not None else None

    # -- enrolment ----------------------------------------------------------------------
    def begin_enrolment(self, serial, identity_chain_pem, content_chain_pem, config_version, operator,
                        purpose=PURPOSE_ENROL, at=None):
        """Record what the host is about to send to the device. An enrolled device
        refuses a new identity unless it was decommissioned first (purpose "enrol"); a
        rotation needs an enrolled device."""
        if purpose not in (PURPOSE_ENROL, PURPOSE_ROTATE):
            raise InventoryError("purpose must be %s or %s" % (PURPOSE_ENROL, PURPOSE_ROTATE))
        if isinstance(config_version, bool) or not isinstance(config_version, int) or config_version < 1:
            raise InventoryError("configuration version must be an integer >= 1")
        identity = _leaf(identity_chain_pem, serial, credentials.PURPOSE_IDENTITY)
        content = _leaf(content_chain_pem, serial, credentials.PURPOSE_CONTENT)
        identity_fp, content_fp = credentials.fingerprint(identity), credentials.fingerprint(content)
        if identity_fp == content_fp or credentials.public_key_der(identity) == credentials.public_key_der(content):
            raise InventoryError("the identity and content certificates must be for two different keys")
        now = _iso(at)

        def write():
            device = self._row("devices", serial)
            if purpose == PURPOSE_ENROL and device and device["state"] == STATE_ENROLLED \
                    and device["identity_fingerprint"] != identity_fp:
                raise InventoryError("device %s is already enrolled with another identity (%s); decommission it "
                                     "first" % (serial, device["identity_fingerprint"][:16]))
            if purpose == PURPOSE_ROTATE and (device is None or device["state"] != STATE_ENROLLED):
                raise InventoryError("device %s is not enrolled: nothing to rotate" % serial)
            for fp in (identity_fp, content_fp):
                row = self._db.execute("SELECT serial FROM certificates WHERE fingerprint = ?", (fp,)).fetchone()
                if row is not None and row[0] != serial:
                    raise InventoryError("certificate %s is already recorded for device %s" % (fp[:16], row[0]))
            restarted = self._row("pending", serial) is not None
            self._db.execute("INSERT OR REPLACE INTO pending (serial, purpose, identity_fingerprint, content_fingerprint, "
                             "identity_chain, content_chain, config_version, operator, started_at) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (serial, purpose, identity_fp, content_fp, identity_chain_pem, content_chain_pem,
                              config_version, operator, now))
            self._event(now, serial, operator, purpose + "-begin",
                        {"identity": identity_fp, "content": content_fp, "config_version": config_version,
                         "restarted": restarted})
        self._write(write)

    def pending(self, serial):
        return self._row("pending", serial)

    def complete_enrolment(self, serial, at=None):
        """The device confirmed: the pending enrolment becomes the device's row, and its
        certificates go into the certificates table."""
        now = _iso(at)

        def write():
            pending = self._row("pending", serial)
            if pending is None:
                raise InventoryError("no enrolment of %s is pending" % serial)
            previous = self._row("devices", serial)
            for purpose in (credentials.PURPOSE_IDENTITY, credentials.PURPOSE_CONTENT):
                chain = pending[purpose + "_chain"]
                leaf = credentials.load_pem_chain(chain)[0]
                self._db.execute("INSERT OR IGNORE INTO certificates (fingerprint, serial, purpose, pem, not_before, "
                                 "not_after, issued_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 (pending[purpose + "_fingerprint"], serial, purpose, chain,
                                  _iso(leaf.not_valid_before_utc), _iso(leaf.not_valid_after_utc), now))
            rotated = pending["purpose"] == PURPOSE_ROTATE and previous is not None
            provisioned_by = previous["provisioned_by"] if rotated else pending["operator"]
            provisioned_at = previous["provisioned_at"] if rotated else now
            self._db.execute("INSERT OR REPLACE INTO devices (serial, state, identity_fingerprint, content_fingerprint, "
                             "identity_chain, content_chain, config_version, provisioned_by, provisioned_at, updated_at) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (serial, STATE_ENROLLED, pending["identity_fingerprint"], pending["content_fingerprint"],
                              pending["identity_chain"], pending["content_chain"], pending["config_version"],
                              provisioned_by, provisioned_at, now))
            self._db.execute("DELETE FROM pending WHERE serial = ?", (serial,))
            detail = {"identity": pending["identity_fingerprint"], "content": pending["content_fingerprint"],
                      "config_version": pending["config_version"]}
            if rotated:
                detail["previous"] = {"identity": previous["identity_fingerprint"],
                                      "content": previous["content_fingerprint"]}
            self._event(now, serial, pending["operator"], pending["purpose"], detail)
        self._write(write)

    def abandon_enrolment(self, serial, operator, reason, at=None):
        """Forget a pending enrolment the device never completed (logged)."""
        now = _iso(at)

        def write():
            if self._row("pending", serial) is None:
                raise InventoryError("no enrolment of %s is pending" % serial)
            self._db.execute("DELETE FROM pending WHERE serial = ?", (serial,))
            self._event(now, serial, operator, "enrol-abandoned", {"reason": reason})
        self._write(write)

    # -- reading ------------------------------------------------------------------------
    def device(self, serial):
        return self._row("devices", serial)

    def devices(self):
        return [dict(row) for row in self._db.execute("SELECT * FROM devices ORDER BY serial")]

    def certificates(self, serial):
        return [dict(row) for row in self._db.execute(
            "SELECT * FROM certificates WHERE serial = ? ORDER BY issued_at, purpose", (serial,))]

    def revocation(self, fingerprint):
        """(revoked_at, reason) for a revoked certificate, None if it is not revoked or unknown."""
        row = self._db.execute("SELECT revoked_at, reason FROM certificates WHERE fingerprint = ?",
                               (fingerprint,)).fetchone()
        if row is None or row["revoked_at"] is None:
            return None
        return datetime.datetime.fromisoformat(row["revoked_at"]), row["reason"]

    def events(self, serial):
        return [dict(row, detail=json.loads(row["detail"])) for row in self._db.execute(
            "SELECT time, serial, operator, action, detail FROM events WHERE serial = ? ORDER BY id", (serial,))]

    # -- changes to an enrolled device ----------------------------------------------------
    def _enrolled(self, serial):
        device = self._row("devices", serial)
        if device is None:
            raise InventoryError("device %s is not in the inventory" % serial)
        if device["state"] != STATE_ENROLLED:
            raise InventoryError("device %s is %s" % (serial, device["state"]))
        return device

    def record_config(self, serial, version, operator, at=None):
        """The device applied configuration `version`: it must be above the stored one."""
        now = _iso(at)
        if isinstance(version, bool) or not isinstance(version, int):
            raise InventoryError("configuration version must be an integer")

        def write():
            device = self._enrolled(serial)
            if version <= device["config_version"]:
                raise InventoryError("configuration version %d is not above %s's current version %d"
                                     % (version, serial, device["config_version"]))
            self._db.execute("UPDATE devices SET config_version = ?, updated_at = ? WHERE serial = ?",
                             (version, now, serial))
            self._event(now, serial, operator, "configure", {"from": device["config_version"], "to": version})
        self._write(write)

    def revoke_certificate(self, fingerprint, at, reason, operator):
        """Mark one certificate revoked (e.g. the old ones after a rotation)."""
        when = _iso(at)

        def write():
            row = self._db.execute("SELECT serial, revoked_at FROM certificates WHERE fingerprint = ?",
                                   (fingerprint,)).fetchone()
            if row is None:
                raise InventoryError("no certificate %s in the inventory" % fingerprint[:16])
            if row["revoked_at"] is not None:
                raise InventoryError("certificate %s was already revoked on %s" % (fingerprint[:16], row["revoked_at"]))
            self._db.execute("UPDATE certificates SET revoked_at = ?, reason = ? WHERE fingerprint = ?",
                             (when, reason, fingerprint))
            self._event(when, row["serial"], operator, "revoke", {"fingerprint": fingerprint, "reason": reason})
        self._write(write)

    def decommission(self, serial, at, operator):
        """The device erased its keys: state decommissioned, every certificate of it not
        yet revoked is revoked at `at`. Returns the fingerprints revoked now."""
        when = _iso(at)

        def write():
            self._enrolled(serial)
            revoked = [row[0] for row in self._db.execute(
                "SELECT fingerprint FROM certificates WHERE serial = ? AND revoked_at IS NULL ORDER BY fingerprint",
                (serial,))]
            self._db.execute("UPDATE certificates SET revoked_at = ?, reason = ? WHERE serial = ? AND revoked_at IS NULL",
                             (when, DECOMMISSION_REASON, serial))
            self._db.execute("UPDATE devices SET state = ?, updated_at = ? WHERE serial = ?",
                             (STATE_DECOMMISSIONED, when, serial))
            self._db.execute("DELETE FROM pending WHERE serial = ?", (serial,))
            self._event(when, serial, operator, "decommission", {"revoked": revoked})
            return revoked
        return self._write(write)
