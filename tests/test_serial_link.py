"""The device service and the host over real pseudo-terminals: info, incremental and
verified pulls, link faults, tampering, and bad ports."""

import os
import sqlite3
import threading

import pytest
import serial

from synthseal.device.camera import FakeCamera
from synthseal.device.seal import Sealer
from synthseal.host import logdb
from synthseal.host.client import DeviceClient, HostError, SerialTransport
from synthseal.host.simlink import VirtualSerialLink
from tests.test_auditlog import rewrite_record


def _seal(state, n, source="rig"):
    sealer = Sealer(state, lab=True)
    camera = FakeCamera(320, 240)
    return [sealer.seal(camera.capture_array(), source, state.directory / "out", origin=camera.origin) for _ in range(n)]


def test_info_reports_identity_state_and_log_head(device, service_for):
    _seal(device, 2)
    service = service_for(device)
    anonymous = service.client(authenticate=False)
    hello = anonymous.info()  # public: who and in what state, no log
    anonymous.transport.close()
    assert hello["serial"] == "TEST-0001" and hello["state"] == "enrolled" and "log" not in hello
    info = service.client().status()
    assert info["serial"] == "TEST-0001" and info["state"] == "enrolled"
    assert info["log"]["next_seq"] == 4  # the enrolment and two seals
    assert info["log"]["head_hash"] == device.log().head_hash.hex()
    assert "BEGIN CERTIFICATE" in info["certificate_chain"]


def test_pull_stores_verified_records_and_resumes_incrementally(device, service_for, tmp_path):
    db = tmp_path / "audit.sqlite"
    _seal(device, 3)
    service = service_for(device)
    client = service.client()
    assert logdb.pull(client, db)["pulled"] == 4  # the enrolment record and three seals
    _seal(device, 2, "capture")  # sealed while the service keeps running
    summary = logdb.pull(client, db)
    assert summary["pulled"] == 2 and summary["stored"] == 6
    assert logdb.pull(client, db)["pulled"] == 0
    assert logdb.check_chain(db) == []
    rows = sqlite3.connect(db).execute("SELECT seq, content_sha256 FROM records ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6]


def test_pull_over_many_batches(device, service_for, tmp_path):
    log = device.log()
    for i in range(300):
        log.append(i, bytes(32), 1, "TEST-0001-%08d" % (i + 1), {"rule": "capture", "pad": "x" * 100})
    summary = logdb.pull(service_for(device).client(), tmp_path / "a.sqlite", batch=64)
    assert summary["stored"] == 301


def test_a_record_edited_on_the_device_stops_the_pull_and_is_named(device, service_for, tmp_path):
    _seal(device, 5)
    rewrite_record(device.log_path, 3, lambda body: body.replace(b'"rig"', b'"cap"', 1))
    device._log = None  # the forged file is what the service loads
    db = tmp_path / "audit.sqlite"
    with pytest.raises(logdb.ChainError, match="record 3"):
        logdb.pull(service_for(device).client(), db)
    stored = sqlite3.connect(db).execute("SELECT MAX(seq) FROM records").fetchone()[0]
    assert stored == 2  # the records before the break are kept, nothing after


def test_a_record_edited_in_the_database_is_named_by_the_chain_check(device, service_for, tmp_path):
    _seal(device, 5)
    db = tmp_path / "audit.sqlite"
    logdb.pull(service_for(device).client(), db)
    con = sqlite3.connect(db)
    raw = con.execute("SELECT raw FROM records WHERE seq=4").fetchone()[0]
    con.execute("UPDATE records SET raw=? WHERE seq=4", (raw.replace(b'"rig"', b'"cap"', 1),))
    con.commit()
    problems = logdb.check_chain(db)
    assert problems and all("record 4" in p or "do not hash to the root the device signed" in p for p in problems)
    # A careful forger also rewrites the stored hash: the next record's link still names it.
    from synthseal.device.core import logrecord
    new_raw = con.execute("SELECT raw FROM records WHERE seq=4").fetchone()[0]
    con.execute("UPDATE records SET record_hash=? WHERE seq=4", (logrecord.record_hash(new_raw).hex(),))
    con.commit()
    problems = logdb.check_chain(db)
    assert any("record 4" in p for p in problems)


def test_damaged_frames_in_both_directions_are_resent(device, service_for, tmp_path):
    _seal(device, 3)
    damaged = {"to_device": 0, "to_host": 0}

    def flip_first_frame_each_way(direction, data):
        if damaged[direction] == 0 and len(data) > 4:
            damaged[direction] += 1
            data = bytes([data[0] ^ 0x40]) + data[1:]
        return data

    client = service_for(device, fault=flip_first_frame_each_way).client()
    assert logdb.pull(client, tmp_path / "audit.sqlite")["stored"] == 4
    assert damaged == {"to_device": 1, "to_host": 1}


def test_a_silent_device_gives_a_clear_error_and_writes_nothing(tmp_path, vendor_ca):
    db = tmp_path / "audit.sqlite"
    with VirtualSerialLink() as link:
        client = DeviceClient(SerialTransport(link.host_port), give_up_after=0.6)
        with pytest.raises(HostError, match="did not answer"):
            client.authenticate(vendor_ca.operator, vendor_ca.root_pem)
        with pytest.raises(logdb.LogDbError, match="authenticate first"):
            logdb.pull(client, db)
        client.transport.close()
    assert not db.exists()


def test_a_missing_port_is_named(tmp_path):
    with pytest.raises(HostError, match="does not exist"):
        SerialTransport(str(tmp_path / "ttyACM9"))


def test_a_busy_port_is_reported_as_busy():
    with VirtualSerialLink() as link:
        holder = serial.Serial(link.host_port, exclusive=True)
        try:
            with pytest.raises(HostError, match="busy"):
                SerialTransport(link.host_port)
        finally:
            holder.close()


def test_an_unknown_request_gets_an_error_not_silence(device, service_for):
    client = service_for(device).client()
    with pytest.raises(HostError, match="unknown message type"):
        client.request(0x55)
