"""The streaming transport through the link simulator: whatever the line does (bit
errors, dropped bytes, noise bursts, disconnects) one `pull` ends with exactly the
device's records, chain verified; uploads arrive whole or not at all; the sizes and
waits follow the baud rate.

Line-rate figures are measured by `make bench`, not here. The pulls of 10,000 records
at 9600 / 38400 / 115200 baud take 4 to 20 minutes of real line time each and are
marked `long` (`make test-long`); the suite pulls smaller logs at the same rates."""

import hashlib
import itertools
import os
import sqlite3
import threading
import time

import pytest
import serial
from hypothesis import HealthCheck, given, settings, strategies as st

from synthseal.device.core import framing, logrecord, protocol as p, transfer
from synthseal.host import logdb
from synthseal.host.client import DeviceClient, HostError, SerialTransport, find_device_port, port_error
from synthseal.host.simlink import LinkFaults, VirtualSerialLink
from tests.conftest import RunningService, make_device

# What a capture's decision looks like in the log: a record of about 223 bytes.
CAPTURE_DECISION = {"source": "capture", "rule": "capture", "label": None, "explicit": False,
                    "dst": "digitalCapture", "art17": None, "th": 0.5}


ENROLMENT = 1  # an enrolled device's log starts with its enrolment record


def _fill_log(state, n, pads=None):
    log = state.log()
    for i in range(n):
        decision = dict(CAPTURE_DECISION)
        if pads is not None:
            decision["pad"] = "x" * pads[i % len(pads)]
        log.append(1700000000000 + i, hashlib.sha256(b"%d" % i).digest(), logrecord.EVENT_SEAL,
                   "TEST-0001-%08d-ab12" % (i + 1), decision)
    return log


def _stored(db):
    return [bytes(r[0]) for r in sqlite3.connect(db).execute("SELECT raw FROM records ORDER BY seq")]


def _pull_and_check(state, db, **link):
    service = RunningService(state, **link)
    try:
        summary = logdb.pull(service.client(give_up_after=60), db)
        stats = service.link.stats
    finally:
        service.close()
    log = state.log()
    assert _stored(db) == log.read(1, log.count), "stored records differ from the device's"
    assert logdb.check_chain(db) == []
    assert summary["head_seq"] == log.next_seq - 1
    return summary, stats


def test_an_ordinary_capture_record_is_about_223_bytes(device):
    log = _fill_log(device, 1)
    assert 215 <= len(log.read(log.next_seq - 1, 1)[0]) <= 230


# -- the simulator ----------------------------------------------------------------------

def _carry(link, data):
    host = serial.Serial(link.host_port, timeout=0.05)
    dev = serial.Serial(link.device_port, timeout=0.05)
    try:
        started = time.monotonic()
        dev.write(data)
        got = bytearray()
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 0.5:
            chunk = host.read(65536)
            if chunk:
                got += chunk
                quiet_since = time.monotonic()
        return bytes(got), quiet_since - started
    finally:
        host.close()
        dev.close()


def test_simulator_holds_the_baud_rate_at_ten_bits_per_byte():
    data = os.urandom(9600)
    with VirtualSerialLink(baudrate=96000, latency=0.002) as link:
        got, seconds = _carry(link, data)
    assert got == data
    assert seconds >= 0.97 * len(data) * 10 / 96000  # never faster than the line


def test_simulator_faults_are_reproducible_from_the_seed():
    data = os.urandom(20000)
    faults = dict(bit_error_rate=1e-4, drop_rate=1e-4, burst_rate=3e-4, seed=42)
    results = []
    for _ in range(2):
        with VirtualSerialLink(baudrate=1000000, faults=LinkFaults(**faults)) as link:
            results.append((_carry(link, data)[0], link.stats["to_host"]))
    assert results[0] == results[1]
    got, stats = results[0]
    assert got != data and stats["bit_errors"] > 0 and stats["dropped"] > 0 and stats["bursts"] > 0
    assert len(got) == len(data) - stats["dropped"]


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=19999), max_size=40))
def test_fault_damage_does_not_depend_on_how_the_stream_is_split(cuts):
    # The pump reads whatever the pty holds, so chunk sizes vary from run to run; a seed
    # must still give the same damage at the same stream positions.
    from synthseal.host.simlink import _Direction
    data = bytes(range(256)) * 79
    faults = LinkFaults(bit_error_rate=1e-4, drop_rate=1e-4, burst_rate=3e-4, seed=7)

    def run(bounds):
        d = _Direction("to_host", None, None, faults, 1)
        edges = [0] + sorted(set(bounds)) + [len(data)]
        return b"".join(d.damage(data[a:b]) for a, b in zip(edges, edges[1:])), d.stats

    assert run(cuts) == run([])


def test_a_disconnect_loses_what_is_sent_while_it_lasts():
    with VirtualSerialLink(baudrate=1000000, faults=LinkFaults(disconnects=[(1000, 0.3)])) as link:
        got, _ = _carry(link, os.urandom(3000))
        assert link.disconnect_count == 1 and len(got) < 3000
        assert link.stats["to_host"]["lost_disconnected"] > 0


# -- sizes and waits from one definition ---------------------------------------------

def test_chunk_shrinks_with_the_error_rate_and_the_baud_rate():
    clean = transfer.chunk_size(115200, 0.0)
    assert clean == transfer.MAX_CHUNK
    sizes = [transfer.chunk_size(1000000, ber) for ber in (0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-2)]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == transfer.MIN_CHUNK
    assert 400 <= transfer.chunk_size(1000000, 1e-5) <= 500
    # At 9600 baud no frame spends more than MAX_FRAME_SECONDS on the line.
    assert transfer.line_seconds(transfer.chunk_size(9600, 0.0), 9600) <= transfer.MAX_FRAME_SECONDS


def test_waits_follow_the_line_not_a_fixed_three_seconds():
    slow, fast = (transfer.silence_timeout(baud, transfer.chunk_size(baud, 0)) for baud in (9600, 1000000))
    frame_at_9600 = transfer.line_seconds(transfer.wire_bytes(transfer.chunk_size(9600, 0)), 9600)
    assert slow > 2 * frame_at_9600 and fast < 0.5


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(min_value=0, max_value=1900), min_size=1, max_size=40),
       st.integers(min_value=0, max_value=20000))
def test_every_stream_frame_fits_its_chunk_and_the_frames_cover_the_range(tmp_path_factory, pads, chunk):
    from synthseal.device.core.auditlog import AuditLog
    log = AuditLog(str(tmp_path_factory.mktemp("log") / "audit.log"))
    for i, pad in enumerate(pads):
        log.append(i, bytes(32), 1, "P", {"pad": "x" * pad})
    frames = transfer.stream_frames(log, 1, log.next_seq, chunk)
    seq = 1
    for i, body in enumerate(frames):
        flags, first, records = p.decode_log_stream_frame(body)
        payload = p.HEADER_LEN + len(body)
        assert payload <= max(transfer.MIN_CHUNK, min(chunk, 16384)) or len(records) == 1
        assert first == seq and bool(flags & p.STREAM_LAST) == (i == len(frames) - 1)
        seq += len(records)
    assert seq == log.next_seq or len(frames) == transfer.MAX_STREAM_FRAMES \
        or sum(len(b) for b in frames) >= transfer.MAX_STREAM_BYTES


# -- pulls through a faulty line ------------------------------------------------------

@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(min_value=1, max_value=120),
       pads=st.lists(st.integers(min_value=0, max_value=1500), min_size=1, max_size=8),
       seed=st.integers(min_value=0, max_value=2**32),
       ber=st.sampled_from([0.0, 1e-6, 1e-5, 3e-5, 1e-4]),
       drop=st.sampled_from([0.0, 1e-5, 1e-4]),
       burst=st.sampled_from([0.0, 1e-5, 3e-5]),
       cuts=st.lists(st.tuples(st.floats(min_value=0.0, max_value=1.0), st.floats(min_value=0.05, max_value=1.0)),
                     max_size=3))
def test_one_pull_gets_exactly_the_devices_records_whatever_the_line_does(
        vendor_ca, tmp_path_factory, n, pads, seed, ber, drop, burst, cuts):
    base = tmp_path_factory.mktemp("prop")
    state = make_device(base / "device", vendor_ca)
    log = _fill_log(state, n, pads)
    size = sum(len(r) for r in log.read(1, n + ENROLMENT)) + 2000  # the records and the HELLO answer
    faults = LinkFaults(bit_error_rate=ber, drop_rate=drop, burst_rate=burst, seed=seed,
                        disconnects=[(int(at * size), seconds) for at, seconds in cuts])
    summary, stats = _pull_and_check(state, base / "audit.sqlite", baudrate=1000000, latency=0.002, faults=faults)
    assert summary["pulled"] == n + ENROLMENT


def test_three_disconnects_noise_and_drops_in_one_pull(device, tmp_path):
    _fill_log(device, 300)
    faults = LinkFaults(bit_error_rate=1e-4, drop_rate=2e-5, burst_rate=2e-5, seed=7,
                        disconnects=[(10000, 1.0), (30000, 0.5), (50000, 1.5)])
    summary, stats = _pull_and_check(device, tmp_path / "a.sqlite", baudrate=460800, latency=0.002, faults=faults)
    assert summary["pulled"] == 300 + ENROLMENT
    assert stats["to_host"]["lost_disconnected"] > 0 and stats["to_host"]["bit_errors"] > 0


def test_a_pull_resumes_from_the_last_stored_record(device, tmp_path):
    db = tmp_path / "a.sqlite"
    _fill_log(device, 50)
    _pull_and_check(device, db, baudrate=1000000)
    _fill_log(device, 30)
    summary, _ = _pull_and_check(device, db, baudrate=1000000, faults=LinkFaults(bit_error_rate=1e-4, seed=3))
    assert summary["pulled"] == 30 and summary["stored"] == 80 + ENROLMENT


@pytest.mark.parametrize("baud,records", [(9600, 25), (38400, 120), (115200, 400)])
def test_ordinary_captures_pull_at_slow_and_common_baud_rates(device, tmp_path, baud, records):
    _fill_log(device, records)
    summary, _ = _pull_and_check(device, tmp_path / "a.sqlite", baudrate=baud, latency=0.002,
                                 faults=LinkFaults(bit_error_rate=1e-5, seed=baud))
    assert summary["pulled"] == records + ENROLMENT


@pytest.mark.long
@pytest.mark.parametrize("baud,records", [(9600, 2000), (38400, 10000), (115200, 10000)])
def test_ten_thousand_ordinary_captures_pull_at_each_baud_rate(device, tmp_path, baud, records):
    from synthseal.device.core import auditlog
    durable, auditlog._fsync = auditlog._fsync, None  # filling the log fast; durability is tested elsewhere
    try:
        _fill_log(device, records)
    finally:
        auditlog._fsync = durable
    summary, _ = _pull_and_check(device, tmp_path / "a.sqlite", baudrate=baud, latency=0.002,
                                 faults=LinkFaults(bit_error_rate=1e-5, seed=baud))
    assert summary["pulled"] == records + ENROLMENT


def test_a_device_that_goes_silent_mid_pull_is_given_up_on_after_the_set_time(device, tmp_path):
    _fill_log(device, 200)
    db = tmp_path / "a.sqlite"
    # The line dies for good after 20 kB towards the host: past the handshake, mid-log.
    service = RunningService(device, baudrate=115200, faults=LinkFaults(disconnects=[(20000, 3600)]))
    try:
        started = time.monotonic()
        with pytest.raises(HostError, match="did not answer for"):
            logdb.pull(service.client(give_up_after=1.5), db)
        assert time.monotonic() - started < 10
    finally:
        service.close()
    stored = _stored(db)
    assert stored == device.log().read(1, len(stored))  # what arrived before is kept, verified


def test_progress_reports_records_bytes_rate_and_eta(device, tmp_path):
    _fill_log(device, 120)
    seen = []
    service = RunningService(device, baudrate=1000000)
    try:
        logdb.pull(service.client(), tmp_path / "a.sqlite", progress=seen.append)
    finally:
        service.close()
    assert seen[-1]["records"] == seen[-1]["total_records"] == 120 + ENROLMENT
    assert seen[-1]["bytes"] == sum(len(r) for r in device.log().read(1, 120 + ENROLMENT))
    assert all(s["rate"] >= 0 for s in seen) and seen[-1]["eta"] == 0


# -- uploads --------------------------------------------------------------------------

def test_an_upload_arrives_whole_through_noise_and_a_disconnect(device):
    data = os.urandom(150000)
    faults = LinkFaults(bit_error_rate=5e-5, drop_rate=1e-5, seed=11, disconnects=[(50000, 0.7, "to_device")])
    service = RunningService(device, baudrate=1000000, latency=0.002, faults=faults)
    try:
        digest = service.client().upload(data, "firmware.bin")
        assert service.link.disconnect_count == 1 and service.link.stats["to_device"]["bit_errors"] > 0
    finally:
        service.close()
    assert digest == hashlib.sha256(data).digest()
    assert (device.directory / "uploads" / "firmware.bin").read_bytes() == data
    assert not (device.directory / "uploads" / ".upload.part").exists()


def test_upload_stage_refuses_a_wrong_hash_and_keeps_nothing_under_the_name(tmp_path):
    stage = transfer.UploadStage(str(tmp_path / "up"))
    data = b"firmware" * 100
    token = stage.begin(len(data), hashlib.sha256(data).digest(), "fw.bin")
    stage.write(token, 0, data[:400])
    stage.write(token, 400, b"X" * 400)  # damaged bytes
    with pytest.raises(transfer.UploadError, match="SHA-256"):
        stage.finish(token)
    assert not (tmp_path / "up" / "fw.bin").exists()
    stage.write(token, 400, data[400:])  # sent again: now it holds
    assert stage.finish(token) == hashlib.sha256(data).digest()
    assert (tmp_path / "up" / "fw.bin").read_bytes() == data


@pytest.mark.parametrize("name", ["../evil", ".hidden", "a/b", "", "x" * 65, "sp ace"])
def test_upload_names_that_could_escape_the_folder_are_refused(tmp_path, name):
    with pytest.raises(transfer.UploadError):
        transfer.UploadStage(str(tmp_path)).begin(10, bytes(32), name)


def test_upload_data_past_the_end_or_for_another_upload_is_refused(tmp_path):
    stage = transfer.UploadStage(str(tmp_path))
    token = stage.begin(10, b"\x01" * 32, "a.bin")
    with pytest.raises(transfer.UploadError, match="past the end"):
        stage.write(token, 8, b"abc")
    with pytest.raises(transfer.UploadError, match="no upload"):
        stage.write(token ^ 1, 0, b"a")


def test_a_device_without_an_upload_folder_refuses_uploads(device):
    from synthseal.device.core.handlers import DeviceEndpoint
    answer = DeviceEndpoint(lambda: {}, device.log()).handle_request(
        p.encode_message(p.TYPE_UPLOAD_BEGIN, 3, p.encode_upload_begin(4, bytes(32), "a.bin")))
    msg_type, _, body = p.decode_message(answer)
    assert msg_type == p.TYPE_ERROR and p.decode_error(body)[0] == p.ERR_UPLOAD


# -- ports ----------------------------------------------------------------------------

def test_auto_detection_finds_the_port_that_answers_hello(device):
    service = RunningService(device)
    try:
        with VirtualSerialLink() as silent:
            assert find_device_port(candidates=[silent.host_port, service.link.host_port],
                                    probe_seconds=0.5) == service.link.host_port
    finally:
        service.close()


def test_auto_detection_without_a_device_names_what_it_tried(tmp_path):
    with VirtualSerialLink() as silent:
        with pytest.raises(HostError, match="no synthseal device found") as err:
            find_device_port(candidates=[silent.host_port, str(tmp_path / "ttyACM5")], probe_seconds=0.3)
    assert silent.host_port in str(err.value) and "ttyACM5" in str(err.value)


def test_port_problems_say_what_to_do():
    import errno
    assert "dialout" in str(port_error("/dev/ttyACM0", PermissionError(errno.EACCES, "Permission denied")))
    assert "does not exist" in str(port_error("/dev/ttyACM0", FileNotFoundError(errno.ENOENT, "No such file")))
    assert "busy" in str(port_error("/dev/ttyACM0", OSError(errno.EBUSY, "Device or resource busy")))


def test_a_port_without_permission_is_reported_with_the_group_to_join(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root opens any port")
    with VirtualSerialLink() as link:
        os.chmod(link.host_port, 0)
        with pytest.raises(HostError, match="dialout"):
            SerialTransport(link.host_port)


def test_a_port_that_fails_under_way_is_opened_again_and_the_pull_goes_on(device, tmp_path):
    """A USB adapter or gadget that re-enumerates: the host's port fails mid-pull."""
    import threading
    _fill_log(device, 400)
    service = RunningService(device, baudrate=460800)
    try:
        client = service.client(give_up_after=30)
        fd_failed = threading.Event()

        def fail_port_after_a_while():
            time.sleep(0.5)
            # The device node goes away under pyserial: reads find "readiness to read
            # but no data", as pyserial reports a vanished USB serial device.
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, client.transport._serial.fd)
            os.close(null)
            fd_failed.set()

        threading.Thread(target=fail_port_after_a_while, daemon=True).start()
        summary = logdb.pull(client, tmp_path / "a.sqlite")
    finally:
        service.close()
    assert fd_failed.is_set() and client.transport.reopened >= 1
    assert summary["pulled"] == 400 + ENROLMENT
    assert _stored(tmp_path / "a.sqlite") == device.log().read(1, 400 + ENROLMENT)


def test_frames_shrink_on_a_noisy_line_and_stay_large_on_a_clean_one(device, tmp_path):
    _fill_log(device, 300)
    chunks = {}
    for name, ber in (("clean", 0.0), ("noisy", 1e-4)):
        service = RunningService(device, baudrate=1000000, faults=LinkFaults(bit_error_rate=ber, seed=5))
        try:
            client = service.client()
            logdb.pull(client, tmp_path / ("%s.sqlite" % name))
            chunks[name] = client.chunk_down()
        finally:
            service.close()
    assert chunks["clean"] == transfer.MAX_CHUNK
    assert chunks["noisy"] < 1024


# ------------------------------------------------------------------ a device that lies


class _LyingDevice:
    """The device end of a simulated link, run by the test: it answers HELLO with
    `info` and every LOG_STREAM with frames `stream(request_id)` makes, forever."""

    def __init__(self, info, stream):
        import serial as pyserial
        self.link = VirtualSerialLink()
        self.port = pyserial.Serial(self.link.device_port, timeout=0.02)
        self.info, self.stream, self.stop = info, stream, threading.Event()
        self.request_id = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        reader = framing.FrameReader()
        while not self.stop.is_set():
            for payload, error in reader.feed(self.port.read(self.port.in_waiting or 1)):
                if payload is None:
                    continue
                msg_type, request_id, _ = p.decode_message(payload)
                if msg_type == p.TYPE_HELLO:
                    self.port.write(framing.encode_frame(
                        p.encode_message(p.TYPE_HELLO | p.RESPONSE, request_id, p.encode_json(self.info))))
                elif msg_type == p.TYPE_LOG_STREAM:
                    self.request_id = request_id
            if self.request_id is not None:
                for body in self.stream(self.request_id):
                    self.port.write(framing.encode_frame(p.encode_message(p.TYPE_LOG_STREAM | p.RESPONSE,
                                                                          self.request_id, body)))

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.port.close()
        self.link.close()


def _lying_info(next_seq):
    return {"serial": "LIAR-1", "producer": "x", "firmware": "0", "state": "provisioned",
            "log": {"first_seq": 1, "next_seq": next_seq, "head_hash": "00" * 32}}


def test_a_device_streaming_records_nobody_asked_for_is_given_up_on_in_time(tmp_path):
    """It claims a huge log and pushes frames for far-away seqs forever: that is neither
    progress nor something to keep in memory."""
    unasked = itertools.count(10 ** 6, 2)
    device = _LyingDevice(_lying_info(0xFFFFFFF0),
                          lambda request_id: [p.encode_log_stream_frame(0, next(unasked), [b"z" * 1500] * 2)])
    try:
        # The stream itself (a pull first makes the device prove its identity, which this
        # one cannot; here it is what a device that passed does afterwards).
        client = DeviceClient(SerialTransport(device.link.host_port), give_up_after=2.0)
        started = time.monotonic()
        with pytest.raises(HostError):
            for _ in client.stream_log(1, 0xFFFFFFF0):
                pass
        assert time.monotonic() - started < 20
        client.transport.close()
    finally:
        device.close()


def test_a_device_whose_log_went_backwards_is_refused_and_the_stored_log_kept(service_for, device, tmp_path):
    import shutil
    import sqlite3
    from synthseal.device.camera import FakeCamera
    from synthseal.device.seal import Sealer
    from synthseal.device.state import DeviceState
    sealer = Sealer(device, lab=True)
    sealer.seal(FakeCamera(64, 64).capture_array(), "rig", tmp_path / "out")
    backup = tmp_path / "backup"
    shutil.copytree(device.directory, backup, symlinks=True)  # the state as it was: 2 records
    for _ in range(3):
        sealer.seal(FakeCamera(64, 64).capture_array(), "rig", tmp_path / "out")
    db = tmp_path / "audit.sqlite"
    logdb.pull(service_for(device).client(), db)
    # The genuine device, keys and all, with its storage put back to the earlier copy.
    rolled_back = DeviceState(backup).own()
    rolled_back.test_vendor = device.test_vendor
    with pytest.raises(logdb.ChainError, match="rolled back or replaced"):
        logdb.pull(service_for(rolled_back).client(), db)
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM records").fetchone()[0] == 5


def test_a_device_serving_well_chained_records_under_other_numbers_is_refused(service_for, device, tmp_path):
    """A device with its genuine identity renumbers its records (seq + 5) and chains them
    again from genesis: the first pull asks for record 1, gets record 6, and stores nothing."""
    from synthseal.device.camera import FakeCamera
    from synthseal.device.seal import Sealer
    sealer = Sealer(device, lab=True)
    for _ in range(3):
        sealer.seal(FakeCamera(64, 64).capture_array(), "rig", tmp_path / "out")
    service = service_for(device, baudrate=1000000)
    honest = service.answers._authorised

    def renumbered(inner, session):
        msg_type, request_id, body = p.decode_message(inner)
        if msg_type != p.TYPE_LOG_STREAM:
            return honest(inner, session)
        start, end, _ = p.decode_log_stream_request(body)
        records, prev = [], logrecord.GENESIS_HASH
        for raw in device.log().read(1, device.log().count):
            r = logrecord.decode_record(raw)
            records.append(logrecord.encode_record(r["seq"] + 5, r["time_ms"], prev, r["content_sha256"], r["event"],
                                                   r["produce_id"], r["decision"]))
            prev = logrecord.record_hash(records[-1])
        return [p.encode_message(p.TYPE_LOG_STREAM | p.RESPONSE, request_id,
                                 p.encode_log_stream_frame(p.STREAM_LAST, start, records[start - 1:end - 1]))]

    service.answers.guard._handle = renumbered
    db = tmp_path / "audit.sqlite"
    with pytest.raises(logdb.ChainError, match="sequence jumps from 0 to 6"):
        logdb.pull(service.client(), db)
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM records").fetchone() == (0,)


class _ScriptedLine:
    """A transport whose device answers each request after `busy` seconds of work, one
    request at a time in arrival order (a device slow to fsync), and may put `junk`
    BAD_FRAME errors ahead of its first answer (what junk on the line earlier left)."""

    baudrate = 115200
    port = "scripted"

    def __init__(self, answer, busy=0.0, junk=0):
        from synthseal.device.core.handlers import bad_frame_response
        self._answer, self._busy = answer, busy
        self._queue = [(0.0, bad_frame_response(ValueError("CRC mismatch")))] * junk
        self._free_at = 0.0
        self.sent = []
        self.last_rx = self.last_tx = 0.0

    def send(self, payload):
        self.sent.append(bytes(payload))
        self.last_tx = now = time.monotonic()
        self._free_at = max(self._free_at, now) + self._busy
        self._queue.extend((self._free_at, a) for a in self._answer(bytes(payload)))

    def receive(self, deadline):
        while True:
            now = time.monotonic()
            if self._queue and self._queue[0][0] <= now:
                self.last_rx = now
                return self._queue.pop(0)[1], None
            wake = min(deadline, self._queue[0][0]) if self._queue else deadline
            if now >= deadline:
                return None
            time.sleep(max(0.0, min(wake - now, 0.05)))


def test_junk_left_on_the_line_costs_one_resend_not_one_per_junk_frame(device):
    from synthseal.device.service import DeviceAnswers
    line = _ScriptedLine(DeviceAnswers(device).answer, junk=200)
    assert DeviceClient(line, give_up_after=20).info()["serial"] == "TEST-0001"
    assert len(line.sent) <= 2  # each of the 200 errors used to send the request again


def test_a_device_slower_than_the_turnaround_is_heard(device):
    from synthseal.device.service import DeviceAnswers
    line = _ScriptedLine(DeviceAnswers(device).answer, busy=1.2)
    client = DeviceClient(line, give_up_after=20)
    started = time.monotonic()
    assert client.info()["serial"] == "TEST-0001"
    # Silence and each late answer to an older copy double the wait: a handful of
    # copies, then the answer (a fixed 0.25 s turnaround sent a copy every 0.3 s and
    # never took one).
    assert len(line.sent) <= 8 and time.monotonic() - started < 20
    # What was learnt is kept: the next request waits for the slow device at once.
    time.sleep(max(0.0, line._free_at - time.monotonic()))
    line._queue.clear()  # the older copies' answers, come and gone
    sent = len(line.sent)
    assert client.info()["serial"] == "TEST-0001" and len(line.sent) == sent + 1
