"""`synthseal-host log export`: a pulled log written out for auditors, JSON Lines or CSV.

Per device, first its newest signed tree head (the signed checkpoint as the device
signed it, and the identity certificate chain that checks its signature), then every
record 1..size with its decoded fields and its bytes in base64, so an auditor can
recompute the chain and the Merkle root from the export alone (docs/FORMATS.md). The
stored log is re-verified (logdb.verify_log) first: a log that does not hold is not
exported.
"""

import base64
import csv
import datetime
import json

from ..device.core import logrecord
from . import logdb

FORMATS = ("jsonl", "csv")
CSV_COLUMNS = ("kind", "serial", "seq", "time_ms", "time_utc", "event", "produce_id", "content_sha256", "prev_hash",
               "record_hash", "decision", "raw_base64", "signed_checkpoint", "identity_chain")


class ExportError(Exception):
    pass


def _utc(ms):
    return datetime.datetime.fromtimestamp(ms / 1000.0, datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def rows(db_path, serial=None, anchors=None):
    """Yield the export's rows as dicts: a "tree_head" row, then "record" rows, per device."""
    problems = logdb.verify_log(db_path, serial, anchors)
    if problems:
        raise ExportError("the stored log does not verify (%d problems, the first: %s); run `synthseal-host log "
                          "verify`; nothing exported" % (len(problems), problems[0]))
    db = logdb.open_readonly(db_path)
    try:
        serials = [serial] if serial else [r[0] for r in db.execute("SELECT serial FROM devices ORDER BY serial")]
        for dev in serials:
            heads = [h for h in logdb.stored_checkpoints(db, dev) if h[1] is not None]
            if not heads:
                continue
            columns, signed, chain = max(heads, key=lambda h: (h[0]["size"], h[0]["counter"]))
            body = signed["checkpoint"]
            yield {"kind": "tree_head", "serial": dev, "seq": body["size"], "time_ms": body["time_ms"],
                   "time_utc": _utc(body["time_ms"]), "record_hash": body["root"],
                   "signed_checkpoint": signed, "identity_chain": chain}
            for seq, raw in db.execute("SELECT seq, raw FROM records WHERE device_serial=? AND seq<=? ORDER BY seq",
                                       (dev, body["size"])):
                raw = bytes(raw)
                rec = logrecord.decode_record(raw)
                yield {"kind": "record", "serial": dev, "seq": seq, "time_ms": rec["time_ms"],
                       "time_utc": _utc(rec["time_ms"]),
                       "event": logrecord.EVENT_NAMES.get(rec["event"], str(rec["event"])),
                       "produce_id": rec["produce_id"], "content_sha256": rec["content_sha256"].hex(),
                       "prev_hash": rec["prev_hash"].hex(), "record_hash": logrecord.record_hash(raw).hex(),
                       "decision": rec["decision"], "raw_base64": base64.b64encode(raw).decode("ascii")}
    finally:
        db.close()


def export(db_path, fmt, out, serial=None, anchors=None):
    """Write the export; return (records, tree heads) written. Nothing is written when
    the log does not verify."""
    if fmt not in FORMATS:
        raise ExportError("unknown export format %r; use one of %s" % (fmt, ", ".join(FORMATS)))
    everything = list(rows(db_path, serial, anchors))  # verified and read before the file is opened
    with open(out, "w", newline="") as f:
        if fmt == "jsonl":
            for row in everything:
                f.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
        else:
            writer = csv.DictWriter(f, CSV_COLUMNS)
            writer.writeheader()
            for row in everything:
                row = dict(row)
                for key in ("decision", "signed_checkpoint"):
                    if key in row:
                        row[key] = json.dumps(row[key], sort_keys=True, ensure_ascii=False)
                writer.writerow(row)
    heads = sum(1 for row in everything if row["kind"] == "tree_head")
    return len(everything) - heads, heads
