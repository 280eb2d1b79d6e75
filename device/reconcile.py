"""Start-up repair of the output folder against the audit log, run by the agent under
the state lock before it takes any new frame.

The seal write order (device/seal.py) is: temporary file in the staging folder (fsynced
with its folder) -> audit record (the commit point) -> rename into the output folder
(fsynced). A crash or power cut can therefore leave only temporaries:
- a temporary whose ProduceID has a seal record and whose bytes hash to that record:
  the seal committed, the rename did not happen; the file is completed;
- a temporary with a record but other bytes: kept as evidence in <state>/quarantine/;
- a temporary without a record: the seal never committed; it is removed.
Every repair is itself appended to the log as a `repair` record, so the log says what
the agent did to its own output.

A sealed file whose record is gone (a storage that lost the log's last write although
it was fsynced, then cut as a torn tail) is named with a sequence number at or past the
log's end; it is moved to quarantine too, so no file stands in the output folder
without its record and no sequence number is ever used twice. Recovery never guesses and never deletes a file that
a record vouches for.
"""

import hashlib
import os
import re
import shutil
import time
from pathlib import Path

from .core import logrecord
from .seal import fsync_dir, final_name, produce_id_of_temporary, staging_dir

_ZERO_HASH = b"\x00" * 32
_READ_BATCH = 1000


def find_temporaries(out_dir):
    """Temporaries in the staging folder, and hidden ones an older layout left in the
    output folder itself."""
    out_dir = Path(out_dir)
    found = []
    staging = staging_dir(out_dir)
    if staging.is_dir():
        found += [p for p in staging.iterdir() if p.is_file() and produce_id_of_temporary(p.name)]
    if out_dir.is_dir():
        found += [p for p in out_dir.iterdir() if p.is_file() and p.name.startswith(".") and p.name.endswith(".tmp")]
    return sorted(found)


def _seal_records_by_produce_id(log):
    index = {}
    seq = log.first_seq
    while seq < log.next_seq:
        batch = log.read(seq, _READ_BATCH)
        if not batch:
            break
        for data in batch:
            record = logrecord.decode_record(data)
            if record["event"] == logrecord.EVENT_SEAL:
                index[record["produce_id"]] = (record["seq"], record["content_sha256"])
        seq += len(batch)
    return index


def _produce_id_of(path):
    produce_id = produce_id_of_temporary(path.name)
    if produce_id is None and path.name.startswith(".") and path.name.endswith(".tmp"):
        produce_id = path.name[1:-len(".tmp")]  # the older hidden-temporary layout
    return produce_id


def _sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


_SEALED_NAME = re.compile(r"^(?P<serial>.+)-(?P<seq>[0-9]{8})-[0-9a-f]{8}\.jpg$")


def find_unrecorded_files(out_dir, serial, next_seq):
    """Sealed files of this device numbered at or past the log's end: their records are gone."""
    found = []
    for path in Path(out_dir).glob("*.jpg"):
        match = _SEALED_NAME.match(path.name)
        if match and match.group("serial") == serial and int(match.group("seq")) >= next_seq:
            found.append(path)
    return sorted(found)


def _quarantine(path, quarantine_dir):
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    kept = quarantine_dir / path.name
    shutil.move(str(path), str(kept))
    fsync_dir(quarantine_dir)
    return kept


def reconcile(log, out_dir, quarantine_dir, serial=None, log_end=None):
    """Repair the output folder; return the list of repairs (each also logged).
    log_end: the next sequence number as the log stood when opened, before any repair
    record of this start (default: now)."""
    out_dir = Path(out_dir)
    repairs = []
    if serial is not None:
        for path in find_unrecorded_files(out_dir, serial, log.next_seq if log_end is None else log_end):
            digest = _sha256_of(path)
            _quarantine(path, quarantine_dir)
            fsync_dir(out_dir)
            repair = {"repair": "quarantined-unrecorded", "file": path.name, "sha256": digest.hex(),
                      "reason": "a sealed file numbered past the log's end: its record was lost; kept as evidence"}
            log.append(int(time.time() * 1000), _ZERO_HASH, logrecord.EVENT_REPAIR, path.name[:-4][:255], repair)
            repairs.append(repair)
    temporaries = find_temporaries(out_dir)
    if not temporaries:
        return repairs
    index = _seal_records_by_produce_id(log)
    for path in temporaries:
        produce_id = _produce_id_of(path) or ""
        try:
            digest = _sha256_of(path)
        except FileNotFoundError:
            continue  # gone since the listing: nothing to repair
        record = index.get(produce_id)
        final = out_dir / final_name(produce_id)
        if record is None:
            path.unlink()
            repair = {"repair": "discarded-uncommitted", "file": path.name, "sha256": digest.hex(),
                      "reason": "no seal record: the seal never committed, so the file was never emitted"}
        elif record[1] == digest:
            if final.exists() and _sha256_of(final) == digest:
                path.unlink()  # the rename was durable, the staging entry was not
                repair = {"repair": "removed-duplicate-temporary", "file": final.name, "seal_seq": record[0]}
            else:
                os.replace(path, final)
                fsync_dir(final.parent)
                repair = {"repair": "completed", "file": final.name, "seal_seq": record[0],
                          "reason": "the seal committed but the file was still a temporary"}
        else:
            _quarantine(path, quarantine_dir)
            repair = {"repair": "quarantined", "file": path.name, "seal_seq": record[0], "sha256": digest.hex(),
                      "reason": "the temporary's bytes do not hash to its seal record; kept as evidence"}
        fsync_dir(path.parent)
        log.append(int(time.time() * 1000), _ZERO_HASH, logrecord.EVENT_REPAIR, produce_id[:255], repair)
        repairs.append(repair)
    return repairs
