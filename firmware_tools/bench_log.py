"""`make bench`, section `log`: the audit log's costs, each against a reference in the
same run.

- durable appends per second: AuditLog.append (one fsync per record) and append_many
  (group commit, several records per fsync), against the same records into SQLite in
  WAL mode with synchronous=FULL, one transaction per record and one per group;
- host verification: records per second for `log verify` (logdb.verify_log: bytes,
  columns, chain, checkpoint signatures, Merkle roots) on a pulled log;
- inclusion proofs at 1 M records: the tree built from synthetic leaves, audit path
  size in bytes, proof and verification time.
"""

import hashlib
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from ..device.core import logrecord, merkle
from ..device.core.auditlog import AuditLog
from ..device.service import DeviceAnswers
from ..host import logdb
from ..host.client import DeviceClient
from ..host.lab import enrolled_device, make_vendor
from ..host.simlink import LoopbackTransport

GROUP = 64


def _items(n, start=0):
    decision = {"rule": "capture", "label": "0", "origin": {"kind": "camera", "model": "imx477"}, "pad": "x" * 200}
    return [(1700000000000 + i, hashlib.sha256(b"%d" % i).digest(), logrecord.EVENT_SEAL, "BENCH-1-%08d" % (i + 1),
             decision) for i in range(start, start + n)]


def _rate(n, seconds):
    return round(n / seconds, 1) if seconds > 0 else None


def bench_appends(records, folder):
    items = _items(records)
    single = AuditLog(str(folder / "single.log"))
    t = time.perf_counter()
    for item in items:
        single.append(*item)
    single_s = time.perf_counter() - t
    grouped = AuditLog(str(folder / "grouped.log"))
    t = time.perf_counter()
    for at in range(0, records, GROUP):
        grouped.append_many(items[at:at + GROUP])
    grouped_s = time.perf_counter() - t
    assert grouped.read(1, records) == single.read(1, records)  # the same bytes either way

    raws = single.read(1, records)

    def sqlite_run(path, group):
        db = sqlite3.connect(str(path), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE records (seq INTEGER PRIMARY KEY, raw BLOB NOT NULL)")
        t = time.perf_counter()
        for at in range(0, records, group):
            db.execute("BEGIN")
            db.executemany("INSERT INTO records VALUES (?, ?)", [(at + i + 1, raw) for i, raw in
                                                                enumerate(raws[at:at + group])])
            db.execute("COMMIT")
        seconds = time.perf_counter() - t
        db.close()
        return seconds

    sqlite_single_s = sqlite_run(folder / "single.sqlite", 1)
    sqlite_grouped_s = sqlite_run(folder / "grouped.sqlite", GROUP)
    return {"records": records, "record_bytes_mean": round(sum(map(len, raws)) / float(records), 1),
            "group_size": GROUP,
            "auditlog_appends_per_s_fsync_each": _rate(records, single_s),
            "auditlog_appends_per_s_group_commit": _rate(records, grouped_s),
            "sqlite_wal_full_inserts_per_s_commit_each": _rate(records, sqlite_single_s),
            "sqlite_wal_full_inserts_per_s_group_commit": _rate(records, sqlite_grouped_s),
            "auditlog_vs_sqlite_fsync_each": round(sqlite_single_s / single_s, 2),
            "auditlog_vs_sqlite_group_commit": round(sqlite_grouped_s / grouped_s, 2)}


def bench_verification(records, folder):
    vendor = make_vendor(folder / "ca", "Bench Vendor")
    state = enrolled_device(folder / "device", vendor, "BENCH-1", producer="bench")
    log = state.log()
    for at in range(0, records, 1024):
        log.append_many(_items(min(1024, records - at), at))
    client = DeviceClient(LoopbackTransport(DeviceAnswers(state).answer), give_up_after=30)
    client.authenticate(vendor.operator, vendor.root_pem)
    db = folder / "audit.sqlite"
    t = time.perf_counter()
    summary = logdb.pull(client, db, batch=4096)
    pull_s = time.perf_counter() - t
    stored = summary["stored"]
    times = []
    for _ in range(3):
        t = time.perf_counter()
        problems = logdb.verify_log(db)
        times.append(time.perf_counter() - t)
        assert problems == [], problems[:3]
    seconds = statistics.median(times)
    return {"records": stored, "verify_records_per_s": _rate(stored, seconds), "verify_seconds_median": round(seconds, 3),
            "pull_loopback_records_per_s": _rate(stored, pull_s)}


def bench_proofs(leaves, samples=200):
    tree = merkle.MerkleTree()
    t = time.perf_counter()
    for i in range(leaves):
        tree.append_leaf_hash(hashlib.sha256(b"leaf %d" % i).digest())
    build_s = time.perf_counter() - t
    root = tree.root()
    step = max(1, leaves // samples)
    indices = list(range(0, leaves, step))[:samples] + [leaves - 1]
    prove, check, sizes = [], [], []
    for index in indices:
        t = time.perf_counter()
        path = tree.inclusion_proof(index)
        prove.append(time.perf_counter() - t)
        t = time.perf_counter()
        ok = merkle.verify_inclusion(index, leaves, tree.leaf(index), path, root)
        check.append(time.perf_counter() - t)
        assert ok
        sizes.append(len(path))
    return {"leaves": leaves, "tree_build_seconds": round(build_s, 3),
            "audit_path_hashes_max": max(sizes), "audit_path_bytes_max": max(sizes) * merkle.HASH_LEN,
            "prove_ms_median": round(statistics.median(prove) * 1000, 4),
            "verify_ms_median": round(statistics.median(check) * 1000, 4)}


def bench_log(records=2000, verify_records=20000, proof_leaves=1 << 20):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "appends").mkdir()
        (tmp / "verify").mkdir()
        report = {"appends": bench_appends(records, tmp / "appends")}
        report["verification"] = bench_verification(verify_records, tmp / "verify")
    report["inclusion_proof"] = bench_proofs(proof_leaves)
    return report
