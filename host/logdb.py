"""The host's copy of device audit logs, in SQLite.

`pull` streams the records a device has that the database lacks, checks every hash
link as they arrive (including the link to the last record already stored), and
commits verified records in transactions as it goes: an interrupted pull resumes where
it stopped and never stores an unverified record. `check_chain` re-verifies everything
stored, so an edit made to the database afterwards is found and named.
"""

import json
import pathlib
import sqlite3
import string
import time

from ..device import checkpoint as checkpoints
from ..device.core import jpeg, logrecord, merkle

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    serial            TEXT PRIMARY KEY,
    producer          TEXT NOT NULL,
    firmware          TEXT NOT NULL,
    certificate_chain TEXT,
    last_pull_ms      INTEGER,
    head_seq          INTEGER,  -- the log head the device reported at the last complete pull
    head_hash         TEXT
);
CREATE TABLE IF NOT EXISTS records (
    device_serial  TEXT NOT NULL REFERENCES devices(serial),
    seq            INTEGER NOT NULL,
    time_ms        INTEGER NOT NULL,
    event          INTEGER NOT NULL,
    produce_id     TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    decision       TEXT NOT NULL,
    record_hash    TEXT NOT NULL,
    raw            BLOB NOT NULL,
    PRIMARY KEY (device_serial, seq)
);
CREATE INDEX IF NOT EXISTS records_by_content ON records (content_sha256);
-- Every signed tree head a device gave, as it gave it: verified against the identity
-- certificate the session checked from the vendor root (kept beside it), so `log
-- verify` can re-check the stored records against them without trusting this file.
CREATE TABLE IF NOT EXISTS checkpoints (
    serial         TEXT NOT NULL,
    counter        INTEGER NOT NULL,
    size           INTEGER NOT NULL,
    root           TEXT NOT NULL,
    time_ms        INTEGER NOT NULL,  -- the device's clock
    host_time_ms   INTEGER,           -- this host's clock, signed by the device beside its own
    received_ms    INTEGER NOT NULL,
    signed         TEXT NOT NULL,     -- the signed checkpoint, JSON, as received
    identity_chain TEXT NOT NULL,
    PRIMARY KEY (serial, counter, size, root)
);
-- The right edge of the Merkle tree over the stored records (merkle.CompactRange), so
-- a pull checks new records against a signed root without rehashing the whole log.
CREATE TABLE IF NOT EXISTS tree_edges (
    serial TEXT PRIMARY KEY,
    size   INTEGER NOT NULL,
    hashes BLOB NOT NULL
);
-- The compact range (merkle.CompactRange) of the records a device had pruned before
-- this host's first pull from it, as the device served it with its signed head: with
-- it the signed roots are recomputed without those records. Kept only once a pull
-- through it ended at the root the device signed (a pull cut short before that asks
-- for it again).
CREATE TABLE IF NOT EXISTS pruned_prefixes (
    serial TEXT PRIMARY KEY,
    size   INTEGER NOT NULL,
    hashes BLOB NOT NULL
);
-- Every content-signing chain a device has shown, so files sealed before a key
-- rotation still verify; a new chain is added only after the device proved its
-- identity from the vendor root, never in place of an old one.
-- What each seal record says about its file's pixels (device/fingerprint.py, the
-- watermark of device/watermark.py), so a file whose labels were stripped or whose bytes
-- were re-encoded is found again (host/trace.py). Filled at pull from the record's
-- decision; like records_by_content it only finds candidates, which are then read
-- from the record's own bytes.
CREATE TABLE IF NOT EXISTS trace_index (
    device_serial TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    pixel_sha256  TEXT NOT NULL,
    pdq           TEXT NOT NULL,
    watermark     TEXT NOT NULL,
    width         INTEGER NOT NULL,  -- the frame's size: where a resized copy is scaled back to
    height        INTEGER NOT NULL,
    PRIMARY KEY (device_serial, seq)
);
CREATE INDEX IF NOT EXISTS trace_by_pixels ON trace_index (pixel_sha256);
CREATE INDEX IF NOT EXISTS trace_by_watermark ON trace_index (watermark);
CREATE TABLE IF NOT EXISTS device_chains (
    serial        TEXT NOT NULL REFERENCES devices(serial),
    chain         TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    PRIMARY KEY (serial, chain)
);
"""


class ChainError(Exception):
    """The log's hash chain does not hold; the message names the record."""


class LogDbError(Exception):
    """The database file is missing or is not a synthseal audit database."""


def open_db(path):
    db = sqlite3.connect(str(path))
    had_trace_index = _has_table(db, "trace_index")
    db.executescript(SCHEMA)
    if not had_trace_index:
        _backfill_trace_index(db)  # a database made before the index: one pass, one transaction
    # Databases made before the head anchor existed get its columns (NULL until the next pull).
    columns = {row[1] for row in db.execute("PRAGMA table_info(devices)")}
    for column, kind in (("head_seq", "INTEGER"), ("head_hash", "TEXT")):
        if column not in columns:
            db.execute("ALTER TABLE devices ADD COLUMN %s %s" % (column, kind))
    return db


# The columns verify, prove and export read: a file with the right table names but other
# columns is someone else's database, told as such rather than failing mid-query.
_READ_COLUMNS = {"devices": {"serial", "certificate_chain"},
                 "records": {"device_serial", "seq", "time_ms", "event", "produce_id", "content_sha256",
                             "decision", "record_hash", "raw"}}


def open_readonly(path):
    """Open an existing audit database for reading; a clear error if it is not one."""
    # A file: URI built from the path, so '?', '#' or '%' in a file name stay part of the
    # name (percent-encoded) instead of becoming URI syntax; mode=ro never creates it.
    uri = "%s?mode=ro" % pathlib.Path(path).absolute().as_uri()
    try:
        db = sqlite3.connect(uri, uri=True)
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        columns = {table: {row[1] for row in db.execute("PRAGMA table_info(%s)" % table)}
                   for table in _READ_COLUMNS if table in tables}
    except sqlite3.Error as err:
        raise LogDbError("cannot open audit database %s (%s); create it with `synthseal-host pull`" % (path, err))
    if any(not wanted <= columns.get(table, set()) for table, wanted in _READ_COLUMNS.items()):
        db.close()
        raise LogDbError("%s is not a synthseal audit database; create one with `synthseal-host pull`" % path)
    return db


def _last_record(db, serial):
    return db.execute("SELECT seq, record_hash FROM records WHERE device_serial=? ORDER BY seq DESC LIMIT 1",
                      (serial,)).fetchone()


def pull(client, db_path, batch=1024, progress=None):
    """Pull new records from a device into the database; return a summary dict.

    The records stream in (client.stream_log) and are verified as they arrive; verified
    records are committed every `batch` records or every second, so an interrupted pull
    loses at most that much work and resumes after the last committed record.
    `progress`, if given, is called with a dict: records, total_records, bytes,
    seconds, rate (bytes/s) and eta (seconds, or None while unknown).

    `client` must hold an authenticated session in which the device proved its
    identity from the vendor root (DeviceClient.authenticate): nothing a device merely
    claims is stored. The device's status is read before the database is touched, so a
    device that does not answer leaves no file behind."""
    started = time.monotonic()
    session = getattr(client, "session", None)
    if not session or not session.get("verified_identity"):
        raise LogDbError("pull needs a session in which the device proved its identity; authenticate first")
    info = client.status()
    serial = info["serial"]
    if serial != session["serial"]:
        raise ChainError("device proved identity %s but its status names %s" % (session["serial"], serial))
    chain = _checked_content_chain(info, session)
    identity_key = _session_identity_key(session)
    db = open_db(db_path)
    try:
        now_ms = int(time.time() * 1000)
        known = device_chains(db, serial)
        new_certificate = chain is not None and bool(known) and chain not in known
        with db:
            db.execute("INSERT INTO devices(serial, producer, firmware, certificate_chain) VALUES(?,?,?,?) "
                       "ON CONFLICT(serial) DO UPDATE SET producer=COALESCE(excluded.producer, devices.producer), "
                       "firmware=excluded.firmware, "
                       "certificate_chain=COALESCE(excluded.certificate_chain, devices.certificate_chain)",
                       (serial, info.get("producer") or "", info["firmware"], chain))
            if chain is not None:
                db.execute("INSERT OR IGNORE INTO device_chains(serial, chain, first_seen_ms) VALUES(?,?,?)",
                           (serial, chain, now_ms))
        # The signed head first: nothing is stored until the device has signed what it
        # holds and proved it extends what this host saw last.
        last_cp = _last_checkpoint(db, serial)
        from .client import HostError
        try:
            answer = client.checkpoint(last_cp["size"] if last_cp else 0, now_ms)
        except HostError as err:
            raise ChainError("device %s gave no signed log head: %s; nothing stored" % (serial, err))
        if "damaged" in answer:
            return _pull_damaged_prefix(db, client, serial, info, answer, identity_key)
        try:
            signed_head = checkpoints.verify_checkpoint(answer, identity_key)
        except checkpoints.CheckpointError as err:
            raise ChainError("device %s: %s; nothing stored" % (serial, err))
        if signed_head["serial"] != serial:
            raise ChainError("device %s signed a checkpoint for %r: refused" % (serial, signed_head["serial"]))
        warnings = _check_against_stored(db, client, serial, signed_head, answer, last_cp)
        last = _last_record(db, serial)
        if last is None:
            # The first pull anchors at the device's first record: at genesis when the
            # device has pruned nothing, else at whatever the first record links to.
            next_seq = info["log"]["first_seq"]
            # prev_seq: the first record served must be the one asked for, whatever it links to.
            prev_hash, prev_seq = (logrecord.GENESIS_HASH if next_seq == 1 else None), next_seq - 1
        else:
            next_seq, prev_hash, prev_seq = last[0] + 1, bytes.fromhex(last[1]), last[0]
            if info["log"]["first_seq"] > next_seq:
                raise ChainError("device %s: records %d..%d are no longer on the device and were never pulled here "
                                 "(a gap); the stored log is kept as it is"
                                 % (serial, next_seq, info["log"]["first_seq"] - 1))
        end_seq = signed_head["size"] + 1  # what the signed head covers, no further
        if last is not None and end_seq <= last[0]:
            raise ChainError("device %s reports %d records but %d are already stored from it: its log was "
                             "rolled back or replaced; the stored log is kept as it is"
                             % (serial, end_seq - 1, last[0]))
        # A compact range the device served for records it pruned before this host's
        # first pull: used for this pull's root check, and kept only if that root matches.
        prefix = None
        edge = _tree_edge(db, serial) if last is not None else (merkle.CompactRange() if next_seq == 1 else None)
        if edge is None:
            # No record before `first` is known here (a first pull after a prune, or one
            # cut short before its root was checked): start from the served prefix.
            first = next_seq if last is None else _first_seq(db, serial)
            prefix = _answer_prefix(answer, first - 1)
            if prefix is not None:
                edge = merkle.CompactRange(prefix.size, prefix.hashes)
                for (raw,) in db.execute("SELECT raw FROM records WHERE device_serial=? ORDER BY seq", (serial,)):
                    edge.append(bytes(raw))
        if edge is None:
            warnings.append("device %s: records before %d were pruned on the device before they were pulled here: "
                            "the stored log is anchored by its hash chain, not by the signed root" % (serial, next_seq))
        total = max(0, end_seq - next_seq)
        pulled = payload = 0
        verified = []
        last_commit = time.monotonic()

        def commit():
            with db:
                for raw in verified:
                    _insert(db, serial, raw)
                    if edge is not None:
                        edge.append(raw)
                if edge is not None:
                    _save_tree_edge(db, serial, edge)
            del verified[:]

        try:
            for records in client.stream_log(next_seq, end_seq) if total else ():
                if prev_hash is None:
                    prev_hash = logrecord.decode_record(records[0])["prev_hash"]
                failure = logrecord.verify_chain(records, prev_hash, prev_seq)
                good = records if failure is None else records[:max(0, failure[0])]
                verified.extend(good)
                pulled += len(good)
                payload += sum(len(raw) for raw in good)
                if failure is not None:
                    index, seq, reason = failure
                    commit()
                    raise ChainError("device %s, record %s: %s; %d records before it were stored"
                                     % (serial, seq, reason, pulled))
                prev_hash = logrecord.record_hash(records[-1])
                prev_seq = logrecord.decode_record(records[-1])["seq"]
                if len(verified) >= batch or time.monotonic() - last_commit >= 1.0:
                    commit()
                    last_commit = time.monotonic()
                if progress is not None:
                    progress(_progress(pulled, total, payload, time.monotonic() - started))
        finally:
            if verified:
                commit()  # what was verified before a failure is kept: the next pull resumes after it
        head = _last_record(db, serial)
        complete = head is not None and head[0] == signed_head["size"]
        if total and not complete:
            raise ChainError("device %s signed a head of %d records but served records up to %s; %d records it "
                             "served were stored" % (serial, signed_head["size"], head[0] if head else "none", pulled))
        if complete and edge is not None and edge.root().hex() != signed_head["root"]:
            raise ChainError("device %s: the stored records 1..%d%s do not hash to the root the device signed in "
                             "checkpoint %d: the log the device serves is not the one it signed"
                             % (serial, head[0], "" if prefix is None else
                                " (1..%d by the compact range it served)" % prefix.size, signed_head["counter"]))
        with db:
            db.execute("UPDATE devices SET last_pull_ms=? WHERE serial=?", (int(time.time() * 1000), serial))
            if complete:
                # Anchors the stored chain's end: check_chain then finds an edited or
                # deleted newest record, which no later link would otherwise expose.
                db.execute("UPDATE devices SET head_seq=?, head_hash=? WHERE serial=?", (head[0], head[1], serial))
                if prefix is not None and edge is not None:
                    # The root computed through the served prefix matched the signed one.
                    db.execute("INSERT OR REPLACE INTO pruned_prefixes(serial, size, hashes) VALUES(?,?,?)",
                               (serial, prefix.size, b"".join(prefix.hashes)))
                    _save_tree_edge(db, serial, edge)
                _store_checkpoint(db, serial, answer, signed_head, session["identity_chain"], now_ms)
        acked = None
        if complete:
            # Only now, with the records and the signed head committed here, may the
            # device count them as collected (it still keeps them for the retention period).
            try:
                acked = client.ack(signed_head["size"], signed_head["root"])
            except HostError as err:
                warnings.append("device %s did not take the acknowledgement of %d records: %s (it keeps them; "
                                "the next pull acknowledges again)" % (serial, signed_head["size"], err))
        seconds = time.monotonic() - started
        capacity = client.baudrate / 10.0 * seconds  # 8N1: 10 bits on the line per byte
        return {"serial": serial, "pulled": pulled, "stored": _count(db, serial), "new_certificate": new_certificate,
                "checkpoint": {"size": signed_head["size"], "counter": signed_head["counter"],
                               "root": signed_head["root"]}, "warnings": warnings, "acknowledged": acked,
                "head_seq": head[0] if head else None, "payload_bytes": payload, "seconds": round(seconds, 3),
                "baudrate": client.baudrate, "efficiency": round(payload / capacity, 4) if payload else None}
    finally:
        db.close()


def _session_identity_key(session):
    """The public key of the identity certificate the session verified from the vendor root."""
    from ..device import credentials
    try:
        return credentials.load_pem_chain(session.get("identity_chain") or "")[0].public_key()
    except (IndexError, ValueError, credentials.CredentialError):
        raise LogDbError("the session holds no device identity certificate; authenticate first")


def _pull_damaged_prefix(db, client, serial, info, answer, identity_key):
    """The device's log is damaged in the middle and it will sign no new head. What it
    still serves, the verified prefix, is pulled and checked by its hash chain (and, where
    it reaches, against the last head the device did sign), stored, and reported; nothing
    is acknowledged, so the device keeps everything. Ends with a ChainError naming the
    damage: the log is not whole."""
    from .client import shown
    end_seq = answer["first_seq"] + answer["verified_count"]
    last = _last_record(db, serial)
    if last is None:
        next_seq = answer["first_seq"]
        prev_hash, prev_seq = (logrecord.GENESIS_HASH if next_seq == 1 else None), None
    else:
        next_seq, prev_hash, prev_seq = last[0] + 1, bytes.fromhex(last[1]), last[0]
    pulled = 0
    for records in client.stream_log(next_seq, end_seq) if end_seq > next_seq else ():
        if prev_hash is None:
            prev_hash = logrecord.decode_record(records[0])["prev_hash"]
        failure = logrecord.verify_chain(records, prev_hash, prev_seq)
        good = records if failure is None else records[:max(0, failure[0])]
        with db:
            for raw in good:
                _insert(db, serial, raw)
        pulled += len(good)
        if failure is not None:
            break
        prev_hash = logrecord.record_hash(records[-1])
        prev_seq = logrecord.decode_record(records[-1])["seq"]
    signed = answer.get("last_signed")
    note = "no head was ever signed"
    if signed:
        try:
            head = checkpoints.verify_checkpoint(signed, identity_key)
            note = "its last signed head (checkpoint %d) covers %d records" % (head["counter"], head["size"])
        except checkpoints.CheckpointError as err:
            note = "its last signed head does not verify (%s)" % err
    with db:
        db.execute("UPDATE devices SET last_pull_ms=? WHERE serial=?", (int(time.time() * 1000), serial))
    raise ChainError("device %s reports its audit log damaged at record %d (%s); the %d records before it that it "
                     "still serves were pulled and stored here, checked by their hash chain; %s; nothing was "
                     "acknowledged, so the device keeps every record: keep the device and this database"
                     % (serial, answer["damaged_seq"], shown(answer["damaged"], 300), pulled, note))


def _last_checkpoint(db, serial):
    """The newest signed head stored for the device (the largest counter), or None."""
    row = db.execute("SELECT signed FROM checkpoints WHERE serial=? ORDER BY counter DESC, size DESC LIMIT 1",
                     (serial,)).fetchone()
    return json.loads(row[0])["checkpoint"] if row else None


def _check_against_stored(db, client, serial, head, answer, last):
    """A new signed head against every head stored before: a shorter log is a rollback,
    another root for a size already signed or a failed consistency proof a fork. Raises
    ChainError naming the records; returns warnings that stop nothing."""
    warnings = []
    for size, root, counter in db.execute("SELECT size, root, counter FROM checkpoints WHERE serial=? AND size=?",
                                          (serial, head["size"])):
        if root != head["root"]:
            raise ChainError("device %s: fork: it signed two different logs of %d records (checkpoints %d and %d); "
                             "%s; the stored log is kept as it is"
                             % (serial, size, counter, head["counter"],
                                _difference(db, client, serial, size)))
    if last is None:
        return warnings
    if head["size"] < last["size"]:
        raise ChainError("device %s signs a log of %d records but signed %d before (checkpoint %d): its log was "
                         "rolled back or replaced; records %d..%d are missing on the device; the stored log is "
                         "kept as it is" % (serial, head["size"], last["size"], last["counter"], head["size"] + 1,
                                            last["size"]))
    try:
        proof = [bytes.fromhex(h) for h in answer["consistency"]]
    except (TypeError, ValueError):
        proof = None
    if answer.get("old_size") != last["size"] or proof is None or not merkle.verify_consistency(
            last["size"], head["size"], bytes.fromhex(last["root"]), bytes.fromhex(head["root"]), proof):
        raise ChainError("device %s: fork: its log of %d records does not extend the %d records it signed before "
                         "(checkpoint %d); %s; the stored log is kept as it is"
                         % (serial, head["size"], last["size"], last["counter"],
                            _difference(db, client, serial, last["size"])))
    if head["counter"] <= last["counter"]:
        warnings.append("device %s: checkpoint counter went from %d back to %d: its checkpoint history was reset "
                        "or replaced (its log still extends what it signed before)"
                        % (serial, last["counter"], head["counter"]))
    return warnings


def _difference(db, client, serial, upto):
    """Name the first record where the device's log and the stored one part."""
    stored = {seq: bytes(raw) for seq, raw in db.execute(
        "SELECT seq, raw FROM records WHERE device_serial=? AND seq<=? ORDER BY seq", (serial, upto))}
    if not stored:
        return "no records of it are stored here to compare"
    try:
        for records in client.stream_log(min(stored), max(stored) + 1):
            for raw in records:
                seq = logrecord.decode_record(raw)["seq"]
                if seq in stored and stored[seq] != raw:
                    return "the device's record %d differs from the stored record %d" % (seq, seq)
    except Exception as err:  # the device cannot show them: say so, the fork stands
        return "its records could not be compared (%s)" % err
    return "the stored records match the device's up to record %d; the device's head differs after it" % max(stored)


def _tree_edge(db, serial):
    """The right edge of the tree over the stored records (rebuilt from them, after the
    stored pruned prefix if any, when the stored edge is missing or does not end at the
    last stored record); None when the records before the first stored one are unknown."""
    last = _last_record(db, serial)
    size = last[0] if last else 0
    first = _first_seq(db, serial)
    prefix = pruned_prefix(db, serial)
    if first not in (None, 1) and (prefix is None or prefix.size != first - 1):
        return None  # the device pruned records before the first pull here and gave no prefix
    row = db.execute("SELECT size, hashes FROM tree_edges WHERE serial=?", (serial,)).fetchone()
    if row is not None and row[0] == size:
        try:
            return merkle.CompactRange(size, _split_hashes(row[1]))
        except merkle.MerkleError:
            pass
    edge = merkle.CompactRange() if first in (None, 1) else merkle.CompactRange(prefix.size, prefix.hashes)
    for (raw,) in db.execute("SELECT raw FROM records WHERE device_serial=? ORDER BY seq", (serial,)):
        edge.append(bytes(raw))
    return edge


def _first_seq(db, serial):
    return db.execute("SELECT MIN(seq) FROM records WHERE device_serial=?", (serial,)).fetchone()[0]


def _split_hashes(blob):
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise merkle.MerkleError("stored hashes are not a blob")
    data = bytes(blob)
    return [data[i:i + 32] for i in range(0, len(data), 32)]


def pruned_prefix(db, serial):
    """The stored compact range of the records the device pruned before the first pull
    here (merkle.CompactRange), or None."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "pruned_prefixes" not in tables:
        return None
    row = db.execute("SELECT size, hashes FROM pruned_prefixes WHERE serial=?", (serial,)).fetchone()
    if row is None:
        return None
    try:
        return merkle.CompactRange(row[0], _split_hashes(row[1]))
    except merkle.MerkleError:
        return None


def _answer_prefix(answer, size):
    """The compact range of records 1..size from a CHECKPOINT answer, or None. Untrusted
    until the root computed through it equals the signed one."""
    prefix = answer.get("prefix")
    try:
        if prefix["size"] != size:
            return None
        return merkle.CompactRange(size, [bytes.fromhex(h) for h in prefix["hashes"]])
    except (TypeError, KeyError, ValueError, merkle.MerkleError):
        return None


def _save_tree_edge(db, serial, edge):
    db.execute("INSERT INTO tree_edges(serial, size, hashes) VALUES(?,?,?) ON CONFLICT(serial) DO UPDATE SET "
               "size=excluded.size, hashes=excluded.hashes", (serial, edge.size, b"".join(edge.hashes)))


def _store_checkpoint(db, serial, answer, head, identity_chain, now_ms):
    signed = {"checkpoint": head, "signature": answer["signature"]}
    db.execute("INSERT OR IGNORE INTO checkpoints(serial, counter, size, root, time_ms, host_time_ms, received_ms, "
               "signed, identity_chain) VALUES(?,?,?,?,?,?,?,?,?)",
               (serial, head["counter"], head["size"], head["root"], head["time_ms"], head["host_time_ms"], now_ms,
                json.dumps(signed, sort_keys=True), identity_chain))


def _checked_content_chain(info, session):
    """The device's content-signing chain, if it has one, after checking it chains to
    the vendor root the session trusted and names this device's serial."""
    from ..device import credentials
    chain = info.get("certificate_chain")
    if not chain:
        return None
    try:
        leaf = credentials.verify_chain(credentials.load_pem_chain(chain), credentials.load_pem_chain(session["anchors"]),
                                        credentials.PURPOSE_CONTENT)
    except credentials.CredentialError as err:
        raise ChainError("device %s shows a content-signing certificate that does not hold: %s" % (info["serial"], err))
    if credentials.cert_serial(leaf) != info["serial"]:
        raise ChainError("device %s shows a content-signing certificate for %r: refused"
                         % (info["serial"], credentials.cert_serial(leaf)))
    return chain


def _progress(records, total, payload, seconds):
    rate = payload / seconds if seconds > 0 else 0.0
    eta = None
    if records and rate > 0:
        eta = (total - records) * (payload / float(records)) / rate
    return {"records": records, "total_records": total, "bytes": payload, "seconds": seconds,
            "rate": rate, "eta": eta}


def _insert(db, serial, raw):
    rec = logrecord.decode_record(raw)
    db.execute("INSERT INTO records(device_serial, seq, time_ms, event, produce_id, content_sha256, decision, "
               "record_hash, raw) VALUES(?,?,?,?,?,?,?,?,?)",
               (serial, rec["seq"], rec["time_ms"], rec["event"], rec["produce_id"], rec["content_sha256"].hex(),
                json.dumps(rec["decision"], sort_keys=True), logrecord.record_hash(raw).hex(), raw))
    _index_trace(db, serial, rec)


def trace_fields(rec):
    """A seal record's (pixel_sha256, pdq, watermark, width, height), or None for records
    that have none (other events, or seals made before the device recorded them)."""
    trace = rec["decision"].get("trace") if isinstance(rec["decision"], dict) else None
    if rec["event"] != logrecord.EVENT_SEAL or not isinstance(trace, dict):
        return None
    fields = (trace.get("px"), trace.get("pdq"), trace.get("wm"), trace.get("wh"))
    if not all(isinstance(f, str) for f in fields):
        return None
    if len(fields[1]) != 64 or not all(c in string.hexdigits for c in fields[1]):  # a 256-bit PDQ hash, as hex
        return None
    size = fields[3].split("x")
    if len(size) != 2 or not all(v.isdigit() for v in size):
        return None
    return fields[:3] + (int(size[0]), int(size[1]))


def _index_trace(db, serial, rec):
    fields = trace_fields(rec)
    if fields:
        db.execute("INSERT OR REPLACE INTO trace_index(device_serial, seq, pixel_sha256, pdq, watermark, width, height) "
                   "VALUES(?,?,?,?,?,?,?)", (serial, rec["seq"]) + fields)


def _backfill_trace_index(db):
    with db:
        for serial, raw in db.execute("SELECT device_serial, raw FROM records WHERE event=?",
                                      (logrecord.EVENT_SEAL,)).fetchall():
            try:
                _index_trace(db, serial, logrecord.decode_record(bytes(raw)))
            except logrecord.RecordError:
                continue  # `log verify` names it; the index only skips it


def _has_table(db, name):
    return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


def _count(db, serial):
    return db.execute("SELECT COUNT(*) FROM records WHERE device_serial=?", (serial,)).fetchone()[0]


def check_chain(db_path, serial=None, anchors=None):
    """`log-check`: the same re-verification as `log verify` (verify_log)."""
    return verify_log(db_path, serial, anchors)


def verify_log(db_path, serial=None, anchors=None):
    """Re-verify stored logs offline, trusting nothing the database says about itself.
    Returns a list of problems (empty when all hold), each naming the device and the
    record or checkpoint.

    Per device: every record parses, matches the hash and the decoded columns stored
    beside it, and links to the one before; the chain reaches the head the device
    reported at the last complete pull; every stored signed checkpoint still carries
    its device signature (identity certificate stored beside it, checked against
    `anchors` -- the vendor root PEM -- when given), its columns are the signed ones,
    and the stored records 1..size hash (RFC 9162) to the root it signs; no stored
    record lies beyond the newest signed head."""
    db = open_readonly(db_path)
    problems = []
    try:
        known = [r[0] for r in db.execute("SELECT serial FROM devices ORDER BY serial")]
        if serial is not None and serial not in known:
            return ["device %s: no such device in %s (devices: %s); nothing was verified"
                    % (serial, db_path, ", ".join(known) or "none")]
        for dev in [serial] if serial else known:
            rows = db.execute("SELECT seq, produce_id, content_sha256, decision, record_hash, raw, time_ms, event FROM records "
                              "WHERE device_serial=? ORDER BY seq", (dev,)).fetchall()
            problems.extend(_check_records(dev, rows))
            problems.extend(_check_head(db, dev, rows))
            problems.extend(_check_signed_heads(db, dev, rows, anchors))
    finally:
        db.close()
    return problems


def _check_records(dev, rows):
    """Each record against its stored columns, and the hash chain through them."""
    problems = []
    if not rows:
        return problems
    raws = [bytes(r[5]) for r in rows]
    for seq, produce_id, content, decision, stored_hash, raw, time_ms, event in rows:
        raw = bytes(raw)
        try:
            rec = logrecord.decode_record(raw)
        except logrecord.RecordError as err:
            problems.append("device %s, record %d: does not parse: %s" % (dev, seq, err))
            continue
        if logrecord.record_hash(raw).hex() != stored_hash:
            problems.append("device %s, record %d: its bytes no longer match the hash recorded at pull" % (dev, seq))
        # Every column a host tool reads (find_record: event, time; verify: the decision)
        # must say what the record's bytes say.
        if (rec["seq"], rec["produce_id"], rec["content_sha256"].hex(), json.dumps(rec["decision"], sort_keys=True),
                rec["time_ms"], rec["event"]) != (seq, produce_id, content, decision, time_ms, event):
            problems.append("device %s, record %d: its columns differ from the signed-off record bytes" % (dev, seq))
    try:
        anchor = logrecord.GENESIS_HASH if rows[0][0] == 1 else logrecord.decode_record(raws[0])["prev_hash"]
    except logrecord.RecordError:
        return problems  # already reported above
    failure = logrecord.verify_chain(raws, anchor)
    if failure is not None:
        problems.append("device %s, record %s: %s" % (dev, failure[1], failure[2]))
    return problems


def stored_checkpoints(db, serial):
    """The signed heads stored for a device, smallest first: (columns dict, signed dict,
    identity chain PEM); a row whose signed text does not parse has signed None."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "checkpoints" not in tables:
        return []
    out = []
    for counter, size, root, time_ms, host_time_ms, received_ms, signed, chain in db.execute(
            "SELECT counter, size, root, time_ms, host_time_ms, received_ms, signed, identity_chain FROM checkpoints "
            "WHERE serial=? ORDER BY size, counter", (serial,)):
        try:
            parsed = json.loads(signed)
        except (TypeError, ValueError):
            parsed = None
        out.append(({"counter": counter, "size": size, "root": root, "time_ms": time_ms,
                     "host_time_ms": host_time_ms, "received_ms": received_ms}, parsed, chain))
    return out


def checkpoint_signer(chain_pem, serial, anchors=None, at_ms=None):
    """The public key that signs a device's checkpoints: the leaf of its identity chain,
    checked against the vendor root `anchors` when given. Raises CredentialError."""
    import datetime
    from ..device import credentials
    chain = credentials.load_pem_chain(chain_pem or "")
    if not chain:
        raise credentials.CredentialError("no identity certificate")
    if anchors is not None:
        at = None if at_ms is None else datetime.datetime.fromtimestamp(at_ms / 1000.0, datetime.timezone.utc)
        credentials.verify_chain(chain, credentials.load_pem_chain(anchors), credentials.PURPOSE_IDENTITY, at)
    if credentials.cert_serial(chain[0]) != serial:
        raise credentials.CredentialError("the identity certificate names device %r" % credentials.cert_serial(chain[0]))
    return chain[0].public_key()


def _check_signed_heads(db, dev, rows, anchors):
    """The stored checkpoints against their signatures and the stored records."""
    from ..device import credentials
    heads = stored_checkpoints(db, dev)
    last_seq = rows[-1][0] if rows else 0
    if not heads:
        if rows:
            return ["device %s, records %d..%d: no signed tree head is stored for them, so nothing ties them to "
                    "the device's signature; pull again to anchor them" % (dev, rows[0][0], last_seq)]
        return []
    problems = []
    good = []
    received = []  # (received here, counter, body) of each valid head
    for columns, signed, chain in heads:
        name = "device %s, checkpoint %d (size %d)" % (dev, columns["counter"], columns["size"])
        try:
            body, _ = checkpoints.parse_signed(signed)
        except checkpoints.CheckpointError as err:
            problems.append("%s: the stored signed checkpoint does not parse: %s" % (name, err))
            continue
        if body["serial"] != dev or any(body[k] != columns[k] for k in ("counter", "size", "root", "time_ms",
                                                                          "host_time_ms")):
            problems.append("%s: its columns differ from the checkpoint the device signed" % name)
        try:
            key = checkpoint_signer(chain, dev, anchors, columns["received_ms"])
            checkpoints.verify_checkpoint(signed, key)
        except (credentials.CredentialError, ValueError) as err:
            problems.append("%s: its identity certificate does not hold: %s" % (name, err))
            continue
        except checkpoints.CheckpointError as err:
            problems.append("%s: %s" % (name, err))
            continue
        good.append(body)
        received.append((columns["received_ms"], body["counter"], body))
    # Recompute the RFC 9162 root of the stored records at every signed size: from
    # record 1, or from the compact range the device served for records it had pruned
    # before the first pull here.
    first_seq = rows[0][0] if rows else 1
    tree = merkle.CompactRange()
    if first_seq != 1:
        prefix = pruned_prefix(db, dev)
        if prefix is None or prefix.size != first_seq - 1:
            problems.append("device %s: records 1..%d are not stored here (pruned on the device before the first "
                            "pull, or deleted here) and no compact range of them is: the signed roots cannot be "
                            "recomputed; records %d..%d rest on their hash chain alone"
                            % (dev, first_seq - 1, first_seq, last_seq))
            return problems
        tree = merkle.CompactRange(prefix.size, prefix.hashes)
        # Records a host never had are legitimately absent only if the device no longer
        # held them when it signed the first head stored here (version 1 heads carry no
        # first_seq: taken as 1). Otherwise this host pulled them, and they were deleted
        # here, whatever compact range now stands in for them.
        if received:
            _, counter, first_head = min(received, key=lambda r: (r[0], r[1]))
            held_from = first_head.get("first_seq", 1)
            if held_from < first_seq:
                problems.append("device %s: records %d..%d are not stored here, but the device still held records "
                                "from %d when it signed checkpoint %d, the first stored here: they were deleted "
                                "from this database" % (dev, held_from, first_seq - 1, held_from, counter))
    at = tree.size
    for body in sorted(good, key=lambda b: b["size"]):
        if body["size"] > last_seq:
            problems.append("device %s, checkpoint %d: the device signed %d records but only records up to %d are "
                            "stored here: records %d..%d are missing" % (dev, body["counter"], body["size"], last_seq,
                                                                        last_seq + 1, body["size"]))
            continue
        if body["size"] < first_seq - 1:
            problems.append("device %s, checkpoint %d: it signs records 1..%d, but this database holds none before "
                            "record %d: records were deleted here" % (dev, body["counter"], body["size"], first_seq))
            continue
        while at < body["size"]:
            index = at - first_seq + 1
            if index >= len(rows) or rows[index][0] != at + 1:
                break  # a missing seq: the root below differs, and the chain check named it
            tree.append(bytes(rows[index][5]))
            at += 1
        if at != body["size"] or tree.root().hex() != body["root"]:
            problems.append("device %s, checkpoint %d: the stored records %d..%d%s do not hash to the root the "
                            "device signed: a record among them was edited, removed or inserted here"
                            % (dev, body["counter"], first_seq, body["size"],
                               "" if first_seq == 1 else " (after the compact range of records 1..%d)" % (first_seq - 1)))
    covered = max([b["size"] for b in good] or [0])
    if last_seq > covered:
        problems.append("device %s, records %d..%d: not covered by any valid signed tree head stored here "
                        "(an interrupted pull, or a head removed); pull again to anchor them"
                        % (dev, covered + 1, last_seq))
    return problems


def _check_head(db, serial, rows):
    """The stored chain must still reach the head the device reported at the last pull."""
    if "head_seq" not in {row[1] for row in db.execute("PRAGMA table_info(devices)")}:
        return []  # made before the head anchor; the next pull adds it
    head_seq, head_hash = db.execute("SELECT head_seq, head_hash FROM devices WHERE serial=?", (serial,)).fetchone()
    if head_seq is None:
        return []
    by_seq = {row[0]: bytes(row[5]) for row in rows}
    if head_seq not in by_seq:
        return ["device %s, record %d: missing; the device reported it as its log head at the last pull"
                % (serial, head_seq)]
    if logrecord.record_hash(by_seq[head_seq]).hex() != head_hash:
        return ["device %s, record %d: does not match the log head the device reported at the last pull"
                % (serial, head_seq)]
    return []


def find_record(db, content_sha256_hex):
    """Return the stored record for a file's SHA-256, or None."""
    # The columns only find candidates; what is returned is decoded from the record's
    # own bytes, so an edited column can neither hide a seal nor change its time.
    for serial, raw in db.execute("SELECT device_serial, raw FROM records WHERE content_sha256=?",
                                  (content_sha256_hex,)):
        if not isinstance(raw, bytes):  # NULL, text or a number in an edited database: no record
            continue
        try:
            rec = logrecord.decode_record(raw)
        except logrecord.RecordError:
            continue
        if rec["event"] == logrecord.EVENT_SEAL and rec["content_sha256"].hex() == content_sha256_hex:
            return {"device_serial": serial, "seq": rec["seq"], "produce_id": rec["produce_id"],
                    "decision": rec["decision"], "time_ms": rec["time_ms"]}
    return None


def trace_candidates(db, pixel_sha256=None, watermark=None, skipped=None):
    """Seal records whose trace fields match (all of them when neither is given), each
    as find_record returns it plus "trace": {"px", "pdq", "wm", "wh"}. Read from the records'
    own bytes, so an edited index row finds nothing it should not. A database opened
    read-only before it had the index is scanned instead. A row whose stored bytes are
    not a record (NULL, text, a number: an edited database) is skipped, its reason
    appended to `skipped` when a list is given."""
    skipped = [] if skipped is None else skipped
    if _has_table(db, "trace_index"):
        where, args = [], []
        for column, value in (("pixel_sha256", pixel_sha256), ("watermark", watermark)):
            if value is not None:
                where.append("t.%s=?" % column)
                args.append(value)
        rows = db.execute("SELECT r.device_serial, r.seq, r.raw FROM trace_index t JOIN records r "
                          "ON r.device_serial=t.device_serial AND r.seq=t.seq"
                          + (" WHERE " + " AND ".join(where) if where else ""), args)
    else:
        rows = db.execute("SELECT device_serial, seq, raw FROM records WHERE event=?", (logrecord.EVENT_SEAL,))
    found = []
    for serial, seq, raw in rows:
        if not isinstance(raw, bytes):
            skipped.append("stored record %s/%s skipped: its bytes are %s, not a BLOB"
                           % (serial, seq, "NULL" if raw is None else type(raw).__name__))
            continue
        try:
            rec = logrecord.decode_record(raw)
        except logrecord.RecordError as err:
            skipped.append("stored record %s/%s skipped: %s" % (serial, seq, err))
            continue
        fields = trace_fields(rec)
        if not fields or (pixel_sha256 is not None and fields[0] != pixel_sha256) \
                or (watermark is not None and fields[2] != watermark):
            continue
        found.append({"device_serial": serial, "seq": rec["seq"], "produce_id": rec["produce_id"],
                      "decision": rec["decision"], "time_ms": rec["time_ms"],
                      "trace": {"px": fields[0], "pdq": fields[1], "wm": fields[2], "wh": "%dx%d" % fields[3:]}})
    return found


def traced_frame_sizes(db, skipped=None):
    """The distinct frame sizes of the indexed seal records, most common first. A size
    that no sealed frame can have (not two positive integers, or more pixels than
    jpeg.MAX_PIXELS: an edited row) is left out, its reason appended to `skipped` when a
    list is given: the watermark detector scales the file to these sizes."""
    skipped = [] if skipped is None else skipped
    if not _has_table(db, "trace_index"):
        rows = sorted({tuple(int(v) for v in c["trace"]["wh"].split("x")) for c in trace_candidates(db)})
    else:
        rows = [tuple(row) for row in db.execute("SELECT width, height FROM trace_index GROUP BY width, height "
                                                 "ORDER BY COUNT(*) DESC")]
    sizes = []
    for width, height in rows:
        if jpeg.size_allowed((width, height)):
            sizes.append((width, height))
        else:
            skipped.append("recorded frame size %r x %r left out: not a frame synthseal seals"
                           % (width, height))
    return sizes


def device_chains(db, serial):
    """Every content-signing chain seen for the device, newest first."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    chains = []
    if "device_chains" in tables:
        chains = [row[0] for row in db.execute("SELECT chain FROM device_chains WHERE serial=? "
                                               "ORDER BY first_seen_ms DESC", (serial,))]
    row = db.execute("SELECT certificate_chain FROM devices WHERE serial=?", (serial,)).fetchone()
    if row and row[0] and row[0] not in chains:
        chains.insert(0, row[0])
    return chains
