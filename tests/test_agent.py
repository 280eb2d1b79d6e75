"""The device agent as it runs in the field: its own process, one owner of the state,
a socket that local clients (the capture command, a rig) talk through, and repairs
after a crash. Real processes, real Unix sockets, real pseudo-terminals, kill -9."""

import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthseal.device import watermark
from synthseal.device.client import AgentClient, AgentClientError
from synthseal.device.config import SCHEMA, ConfigError, parse_config
from synthseal.device.core import logrecord, policy
from synthseal.device.core.auditlog import AuditLog
from synthseal.device.local_protocol import recv_message, send_message
from synthseal.device.seal import STAGING_DIR_NAME, SealError, Sealer
from synthseal.device.state import DeviceState, StateLockedError
from synthseal.host import logdb
from synthseal.host.client import DeviceClient, SerialTransport
from synthseal.host.simlink import VirtualSerialLink
from synthseal.host.verify import verify_file

from conftest import LAB_CAMERA, RunningAgent, make_device, verified_from_the_file_alone

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "device" / "deploy"


@pytest.fixture
def state_dir(tmp_path, vendor_ca):
    """A provisioned device whose state no process owns yet: the agent takes it."""
    return make_device(tmp_path / "state", vendor_ca, own=False).directory


def device_records(state_dir):
    """Every record in the device's log, read as a non-owner would (never repairs)."""
    log = AuditLog(str(Path(state_dir) / "log" / "audit.log"), writable=False)
    return log.read(log.first_seq, 1 << 30)


def check_output_matches_log(state_dir, out_dir):
    """The invariants the agent keeps: a chain that verifies, exactly one file per seal
    record (with the recorded bytes), no file without a record, no temporary visible.
    Returns the decoded records of seals and repairs (not the enrolment's)."""
    raw = device_records(state_dir)
    assert logrecord.verify_chain(raw) is None
    records = [logrecord.decode_record(r) for r in raw]
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    seals = {r["produce_id"]: r["content_sha256"].hex() for r in records if r["event"] == logrecord.EVENT_SEAL}
    assert len(seals) == sum(1 for r in records if r["event"] == logrecord.EVENT_SEAL), "a ProduceID sealed twice"
    out_dir = Path(out_dir)
    files = {p.name[:-len(".jpg")]: p for p in out_dir.glob("*.jpg")} if out_dir.exists() else {}
    assert set(files) == set(seals), "files without records: %s; records without files: %s" % (
        sorted(set(files) - set(seals)), sorted(set(seals) - set(files)))
    import hashlib
    for produce_id, path in files.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == seals[produce_id], produce_id
    staging = out_dir / STAGING_DIR_NAME
    leftovers = list(staging.glob("*.tmp")) + list(out_dir.glob(".*.tmp"))
    assert leftovers == [], leftovers
    return [r for r in records if r["event"] in (logrecord.EVENT_SEAL, logrecord.EVENT_REPAIR)]


def _render(width=320, height=240, seed=0):
    rng = np.random.default_rng(seed)
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:] = rng.integers(0, 255, size=3, dtype=np.uint8)
    frame[height // 4:height // 2, width // 4:width // 2] = rng.integers(0, 255, size=3, dtype=np.uint8)
    return frame


def _encoded(frame, fmt):
    import io
    out = io.BytesIO()
    Image.fromarray(frame).save(out, fmt)
    return out.getvalue()


# ------------------------------------------------------------------ intake is synthetic only


def test_every_declared_source_sent_through_the_socket_comes_out_synthetic(state_dir, tmp_path, agent_for,
                                                                           vendor_ca):
    agent = agent_for(state_dir, tmp_path / "out", classifier={"model": "shipped"})
    frame = _render(seed=3)
    padded = np.zeros((240, 320 * 3 + 64), np.uint8)  # rows padded, as GPU read-backs are
    padded[:, :320 * 3] = frame[..., ::-1].reshape(240, -1)
    results = []
    with agent.client("unity-rig-7") as rig:
        for source in policy.INTAKE_SOURCES:
            results.append(rig.submit_frame(frame, source=source))
            results.append(rig.submit_frame(np.ascontiguousarray(frame[..., ::-1]), source=source, channel_order="BGR"))
            results.append(rig.submit_frame(np.dstack([frame, np.full((240, 320), 7, np.uint8)]), source=source))
            results.append(rig.submit_frame(padded.tobytes(), source=source, width=320, height=240,
                                            pixel_format="BGR888", stride=320 * 3 + 64))
            results.append(rig.submit_image(_encoded(frame, "PNG"), "png", source=source))
            results.append(rig.submit_image(_encoded(frame, "JPEG"), "jpeg", source=source))
        # However a client declares it, a frame handed in is never a real capture.
        for forged in ("capture", "capture-synthetic", None, 1):
            with pytest.raises(AgentClientError) as refused:
                rig.request({"type": "submit", "encoding": "raw", "pixel_format": "RGB888", "width": 320,
                             "height": 240, "source": forged, "client": "x",
                             "origin": {"kind": "camera", "camera": "picamera2"}}, frame.tobytes())
            assert refused.value.code == "bad_frame" and "synthetic only" in str(refused.value)
    assert len(results) == 12
    for result in results:
        assert result["label"] == "1" and result["explicit"] is True
        assert result["dst"] in ("trainedAlgorithmicMedia", "compositeSynthetic")
        assert result["origin"]["kind"] == "intake" and result["origin"]["client"] == "unity-rig-7"
        assert result["origin"]["uid"] == os.getuid()
        assert result["scores"] is None  # a declared synthetic row cannot be changed by a verdict
    # Raw RGB, BGR, RGBX and padded BGR rows are the same picture once sealed: equal but
    # for each seal's own watermark (+-AMPLITUDE, a random identifier per seal) and the
    # JPEG rounding of it; a channel mix-up differs by far more.
    decoded = [np.asarray(Image.open(r["file"]).convert("RGB")).astype(int) for r in results[:4]]
    assert all(np.abs(d - decoded[0]).mean() <= 2 * watermark.AMPLITUDE for d in decoded[1:])
    assert np.abs(decoded[0][..., ::-1] - decoded[0]).mean() > 4 * watermark.AMPLITUDE
    report = verify_file(results[0]["file"], vendor_ca[1])
    assert verified_from_the_file_alone(report), report["checks"]
    provenance = next(c for c in report["checks"] if c["check"] == "provenance")
    assert provenance["status"] == "pass" and "intake from unity-rig-7" in provenance["detail"]
    records = check_output_matches_log(state_dir, tmp_path / "out")
    assert all(r["decision"]["origin"]["kind"] == "intake" and r["decision"]["label"] == "1" for r in records)


def test_the_sealer_refuses_to_make_a_capture_from_anything_but_its_camera(device, tmp_path):
    sealer = Sealer(device, lab=True)
    frame = _render()
    for origin in (None, {"kind": "intake", "client": "x"}, {"kind": "scanner"}):
        with pytest.raises(SealError, match="not emitted"):
            sealer.seal(frame, "capture", tmp_path / "out", origin=origin)
    production = Sealer(device)  # not a lab bench: the fake camera's frames are refused
    with pytest.raises(SealError, match="lab = true"):
        production.seal(frame, "capture", tmp_path / "out", origin=LAB_CAMERA)
    assert device.log().next_seq == 2  # the enrolment record alone


def test_verify_flags_a_capture_made_on_a_lab_bench_or_without_the_classifier(device, vendor_ca, tmp_path):
    result = Sealer(device, lab=True).seal(_render(), "capture", tmp_path / "out", origin=LAB_CAMERA)
    report = verify_file(result["path"], vendor_ca[1])
    assert verified_from_the_file_alone(report) and report["lab"] is True and report["classifier"] == "classifier off"
    assert report["origin"].startswith("camera fake")
    (check,) = [c for c in report["checks"] if c["check"] == "provenance"]
    assert check["status"] == "warn" and "lab bench" in check["detail"] and "did not run" in check["detail"]


# ------------------------------------------------------------------ one writer


def test_a_second_agent_or_a_direct_write_is_refused_naming_the_agents_pid(state_dir, tmp_path, agent_for,
                                                                          vendor_ca):
    agent = agent_for(state_dir, tmp_path / "out")
    with agent.client() as client:
        client.capture(2)
    log_before = (state_dir / "log" / "audit.log").read_bytes()
    second = RunningAgent(state_dir, tmp_path / "out2")
    try:
        second.start(wait=False)
        assert second.process.wait(60) == 2
        lines = second.stderr().strip().splitlines()
        assert len(lines) == 1 and "PID %d" % agent.process.pid in lines[0], lines
    finally:
        second.close()
    # The CLI's writing command, and this process acting as a writer.
    result = subprocess.run([sys.executable, "-m", "synthseal.device.cli", "--state", str(state_dir), "init",
                             "--serial", "TEST-0002"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "PID %d" % agent.process.pid in result.stderr
    with pytest.raises(StateLockedError, match="PID %d" % agent.process.pid):
        DeviceState(state_dir).own()
    with pytest.raises(SealError, match="does not own"):
        Sealer(DeviceState(state_dir))
    assert (state_dir / "log" / "audit.log").read_bytes() == log_before
    # Reading beside the agent is fine and changes nothing.
    info = subprocess.run([sys.executable, "-m", "synthseal.device.cli", "--state", str(state_dir), "info"],
                          capture_output=True, text=True, timeout=60)
    assert info.returncode == 0 and json.loads(info.stdout)["log"]["next_seq"] == 4  # enrolment + 2
    assert (state_dir / "log" / "audit.log").read_bytes() == log_before
    check_output_matches_log(state_dir, tmp_path / "out")


def _snapshot(directory):
    return sorted((str(p.relative_to(directory)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in Path(directory).rglob("*"))


def _run_agent_expecting_refusal(config_path):
    result = subprocess.run([sys.executable, "-m", "synthseal.device.cli", "run", "--config", str(config_path)],
                            capture_output=True, text=True, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_the_fake_camera_is_refused_without_lab(state_dir, tmp_path):
    agent = RunningAgent(state_dir, tmp_path / "out", agent={"lab": False})
    try:
        before = _snapshot(state_dir)
        line = _run_agent_expecting_refusal(agent.config_path)
        assert "camera.source = 'fake' needs agent.lab = true" in line
        assert _snapshot(state_dir) == before and not (tmp_path / "out").exists() and not agent.socket.exists()
    finally:
        agent.close()


@pytest.mark.parametrize("text, named", [
    ("[agent]\nstate_dir = 5\n", "agent.state_dir"),
    ("[camera]\nwidth = \"big\"\n", "camera.width"),
    ("[camera]\nsorce = \"fake\"\n", "camera.sorce"),
    ("[cameras]\nsource = \"fake\"\n", "[cameras]"),
    ("[classifier]\nthreads = 0\n", "classifier.threads"),
    ("[classifier]\nmodel = \"/no/such/model.tflite\"\n", "classifier.model"),
    ("[agent]\nqueue_depth = 0\n", "agent.queue_depth"),
    ("[agent]\nlab = \"yes\"\n", "agent.lab"),
    ("[label]\ncorner = \"top-left\"\n", "[label]"),  # the signed device configuration says where
    ("[agent\nlab = true\n", "not valid TOML"),
])
def test_a_bad_configuration_is_one_line_naming_the_key_and_changes_nothing(state_dir, tmp_path, text, named):
    config = tmp_path / "agent.toml"
    config.write_text(text)
    before = _snapshot(state_dir)
    line = _run_agent_expecting_refusal(config)
    assert named in line and str(config) in line
    assert _snapshot(state_dir) == before


def test_a_missing_configuration_file_is_one_line(tmp_path):
    line = _run_agent_expecting_refusal(tmp_path / "absent.toml")
    assert "no such configuration file" in line and "agent.example.toml" in line


def test_a_label_text_without_the_gb45438_elements_is_refused_at_start(state_dir, tmp_path):
    # Someone with the device's storage edits the signed configuration in place.
    path = state_dir / "enrolment" / "config.json"
    document = json.loads(path.read_text())
    document["config"]["label_text"] = "."
    path.write_text(json.dumps(document))
    agent = RunningAgent(state_dir, tmp_path / "out")
    try:
        assert "label text" in _run_agent_expecting_refusal(agent.config_path)
    finally:
        agent.close()


def test_the_shipped_example_configuration_documents_every_key_and_parses():
    from synthseal.device.config import example_text
    text = (DEPLOY / "agent.example.toml").read_text()
    assert text == example_text(), "regenerate device/deploy/agent.example.toml from the schema"
    import tomllib
    raw = tomllib.loads(text)
    assert {(s, k) for s in raw for k in raw[s]} == {(s, k) for s in SCHEMA for k in SCHEMA[s]}
    config = parse_config(raw, "agent.example.toml")
    assert config.agent_lab is False and config.camera_source == "picamera2"
    with pytest.raises(ConfigError, match="lab"):
        parse_config(dict(raw, camera=dict(raw["camera"], source="fake")))


def test_systemd_analyze_accepts_the_shipped_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing: `make setup` installs Debian's systemd package"
    unit = tmp_path / "synthseal-agent.service"
    # The unit names the install path of the README; point it at this checkout's script.
    executable = Path(sys.executable).parent / "synthseal-device"
    unit.write_text((DEPLOY / "synthseal-agent.service").read_text()
                    .replace("/opt/synthseal/bin/synthseal-device", str(executable)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "synthseal-agent.service" not in result.stderr, result.stderr


# ------------------------------------------------------------------ hostile clients


def _raw_connection(agent):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(str(agent.socket))
    hello, _ = recv_message(sock)
    assert hello["type"] == "hello"
    return sock


def _hold_every_client_slot(agent, count, tries=100):
    """`count` open connections, each holding one of the agent's client slots. A connection
    the test closed a moment ago keeps its slot until the agent has seen the close; then
    one of these is served as status-only (or refused), so they are closed and opened
    again."""
    for _ in range(tries):
        held, full_slots = [], True
        for _ in range(count):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(30)
            sock.connect(str(agent.socket))
            held.append(sock)
            hello, _ = recv_message(sock)
            full_slots = full_slots and hello["type"] == "hello" and not hello["status_only"]
        if full_slots:
            return held
        for sock in held:
            sock.close()
        time.sleep(0.1)
    raise AssertionError(f"the agent never freed {count} client slots")


def _submit_raw(agent, header, data):
    with _raw_connection(agent) as sock:
        send_message(sock, header, data)
        answer, _ = recv_message(sock)
    return answer


def test_bad_frames_get_a_clear_error_and_the_agent_keeps_running(state_dir, tmp_path, agent_for):
    agent = agent_for(state_dir, tmp_path / "out", agent={"max_frame_bytes": 1 << 20, "max_clients": 4})
    frame = _render()
    base = {"type": "submit", "encoding": "raw", "pixel_format": "RGB888", "width": 320, "height": 240,
            "source": "rig", "client": "hostile"}
    cases = [
        (dict(base, width=321), frame.tobytes(), "bad_frame", "bytes"),              # wrong size
        (dict(base, pixel_format="RGB161616"), frame.tobytes(), "bad_frame", "pixel_format"),  # wrong dtype
        (base, frame.tobytes()[:-1000], "bad_frame", "truncated"),                  # truncated frame
        (dict(base, width=10 ** 6), frame.tobytes(), "bad_frame", "width"),
        (dict(base, stride=3), frame.tobytes(), "bad_frame", "stride"),
        (dict(base, encoding="png"), b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "bad_frame", "png"),
        (dict(base, encoding="jpeg"), _encoded(frame, "JPEG")[:400], "bad_frame", "jpeg"),
        (dict(base, client="bad name"), frame.tobytes(), "bad_frame", "client"),
        (dict(base, type="sign_this_file"), b"", "bad_request", "unknown request"),
    ]
    for header, data, code, hint in cases:
        answer = _submit_raw(agent, header, data)
        assert answer["ok"] is False and answer["error"]["code"] == code, (header, answer)
        assert hint in answer["error"]["message"], answer
    # An oversized message is refused before it is read, and the connection closed.
    with _raw_connection(agent) as sock:
        oversized = json.dumps(dict(base, data_length=(1 << 20) + 1)).encode()
        sock.sendall(struct.pack("<I", len(oversized)) + oversized)
        answer, _ = recv_message(sock)
        assert answer["error"]["code"] == "bad_message" and "limit" in answer["error"]["message"]
        assert sock.recv(1) == b""
    # Not JSON, and a header length beyond the limit.
    for garbage in (struct.pack("<I", 5) + b"{{{{{", struct.pack("<I", 1 << 30)):
        with _raw_connection(agent) as sock:
            sock.sendall(garbage)
            answer, _ = recv_message(sock)
            assert answer["error"]["code"] == "bad_message"
    # A client that disconnects in the middle of its frame.
    with _raw_connection(agent) as sock:
        header = json.dumps(dict(base, data_length=len(frame.tobytes()))).encode()
        sock.sendall(struct.pack("<I", len(header)) + header + frame.tobytes()[:5000])
    # A flood of connections beyond max_clients: one more may still ask for status (an
    # operator can always see what is going on); anything else is told busy, not ignored.
    held = _hold_every_client_slot(agent, 4)
    try:
        overflow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        overflow.settimeout(30)
        overflow.connect(str(agent.socket))
        hello, _ = recv_message(overflow)
        assert hello["type"] == "hello" and hello["status_only"] is True
        extra = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        extra.settimeout(30)
        extra.connect(str(agent.socket))
        answer, _ = recv_message(extra)
        assert answer["type"] == "error" and answer["error"]["code"] == "busy"
        extra.close()
        send_message(overflow, {"type": "submit", "id": 1})
        answer, _ = recv_message(overflow)
        assert answer["ok"] is False and answer["error"]["code"] == "busy"
        overflow.close()
        for _ in range(50):  # the overflow slot comes back once the agent has seen that close
            status = subprocess.run([sys.executable, "-m", "synthseal.device.cli", "status", "--socket", str(agent.socket)],
                                    capture_output=True, text=True, timeout=60)
            if "busy" not in status.stderr:
                break
            time.sleep(0.1)
        assert status.returncode == 0 and "queue: 0 of" in status.stdout, status.stderr
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    with agent.client() as client:
        status = client.status()
        assert status["sealed"] == 0 and status["log"]["next_seq"] == 2  # the enrolment record alone
        result = client.submit_frame(frame, source="rig")  # and it still seals
    assert result["seq"] == 2 and agent.process.poll() is None
    check_output_matches_log(state_dir, tmp_path / "out")


def test_a_missing_serial_port_is_reported_and_the_agent_keeps_serving(state_dir, tmp_path, agent_for):
    agent = agent_for(state_dir, tmp_path / "out", serial={"port": str(tmp_path / "ttyGS9")})
    deadline = time.monotonic() + 10
    with agent.client() as client:
        while client.status()["serial_port"]["state"] != "waiting" and time.monotonic() < deadline:
            time.sleep(0.1)
        port = client.status()["serial_port"]
        assert port["state"] == "waiting" and "no such device" in port["error"]
        assert client.capture(1)["results"][0]["ok"]


# ------------------------------------------------------------------ back-pressure


class _SlowSealer:
    """Stands in for the Sealer inside the real pipeline: its prepare step waits for a
    gate, so the test decides when the queue drains."""

    def __init__(self):
        self.gate = threading.Event()
        self.log = type("Log", (), {"next_seq": 1})()

    def prepare(self, frame, source, channel_order, origin):
        self.gate.wait(30)
        return {"n": frame}

    def sign(self, prepared, seq, out_dir):
        return prepared

    def commit_many(self, batch):
        return [{"path": "", "produce_id": "", "seq": signed["n"], "decision": {}, "sha256": "", "label": None,
                 "timings": {}, "log_group": len(batch)} for signed in batch]


def test_a_full_queue_holds_clients_back_then_says_busy_and_drops_nothing():
    from synthseal.device.pipeline import PipelineBusy, SealPipeline
    sealer = _SlowSealer()
    pipeline = SealPipeline(sealer, "unused", depth=2, prepare_workers=1)
    try:
        jobs = [pipeline.submit(n, "rig", {}, timeout=5) for n in range(3)]  # 1 in prepare, 2 queued
        started = time.monotonic()
        with pytest.raises(PipelineBusy, match="full"):
            pipeline.submit(99, "rig", {}, timeout=0.3)
        assert time.monotonic() - started >= 0.3  # it waited before saying busy
        assert pipeline.stats["busy"] == 1
        sealer.gate.set()
        assert [job.wait(10)["seq"] for job in jobs] == [0, 1, 2]  # every accepted frame, in order
    finally:
        sealer.gate.set()
        pipeline.stop()


class _JitterySealer(_SlowSealer):
    """Prepare steps of random length, so parallel workers finish out of order."""

    def prepare(self, frame, source, channel_order, origin):
        time.sleep(random.Random(frame).uniform(0, 0.02))
        return {"n": frame}


class _GroupingSealer(_SlowSealer):
    """Its first signature waits for a gate, so later frames are ready meanwhile."""

    def __init__(self):
        super().__init__()
        self.gate.set()
        self.sign_gate = threading.Event()
        self.signing_first = threading.Event()
        self.groups = []

    def prepare(self, frame, source, channel_order, origin):
        if frame != 0:
            self.signing_first.wait(30)  # so frame 0 is taken alone, and the rest meanwhile
        return {"n": frame}

    def sign(self, prepared, seq, out_dir):
        if prepared["n"] == 0:
            self.signing_first.set()
            self.sign_gate.wait(30)
        return dict(prepared, seq=seq)

    def commit_many(self, batch):
        self.groups.append([s["n"] for s in batch])
        assert [s["seq"] for s in batch] == list(range(batch[0]["seq"], batch[0]["seq"] + len(batch)))
        return _SlowSealer.commit_many(self, batch)


def test_frames_ready_together_share_one_log_commit_and_keep_their_order():
    from synthseal.device.pipeline import SealPipeline
    sealer = _GroupingSealer()
    pipeline = SealPipeline(sealer, "unused", depth=8, prepare_workers=2)
    try:
        jobs = [pipeline.submit(n, "rig", {}, timeout=5) for n in range(5)]
        deadline = time.monotonic() + 10
        while len(pipeline._ready) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)  # frames 1..4 prepared while frame 0 is being signed
        sealer.sign_gate.set()
        assert [job.wait(10)["seq"] for job in jobs] == [0, 1, 2, 3, 4]
        assert sealer.groups == [[0], [1, 2, 3, 4]]
    finally:
        sealer.sign_gate.set()
        pipeline.stop()


def test_parallel_prepare_workers_still_seal_in_arrival_order():
    from synthseal.device.pipeline import SealPipeline
    pipeline = SealPipeline(_JitterySealer(), "unused", depth=4, prepare_workers=3)
    try:
        jobs = [pipeline.submit(n, "rig", {}, timeout=5) for n in range(40)]
        assert [job.wait(10)["seq"] for job in jobs] == list(range(40))
        order = []
        pipeline._on_sealed = lambda result: order.append(result["seq"])
        more = [pipeline.submit(n, "rig", {}, timeout=5) for n in range(40, 60)]
        for job in more:
            job.wait(10)
        assert order == list(range(40, 60))
    finally:
        pipeline.stop()


# ------------------------------------------------------------------ start-up repair


def test_start_up_repair_completes_discards_and_quarantines_and_logs_each(device, tmp_path):
    from synthseal.device.reconcile import reconcile
    out = tmp_path / "out"
    sealer = Sealer(device, lab=True)
    log = device.log()

    def signed_frame(seed):
        return sealer.sign(sealer.prepare(_render(seed=seed), "rig"), log.next_seq, out)

    committed = signed_frame(1)  # record appended, then the power went before the rename
    log.append(1, committed["sha256"], logrecord.EVENT_SEAL, committed["produce_id"], committed["decision"])
    altered = signed_frame(2)  # record appended, but the temporary's bytes changed since
    log.append(2, altered["sha256"], logrecord.EVENT_SEAL, altered["produce_id"], altered["decision"])
    altered["tmp"].write_bytes(b"not what was sealed")
    uncommitted = signed_frame(3)  # never reached the log
    repairs = reconcile(log, out, device.directory / "quarantine")
    assert sorted(r["repair"] for r in repairs) == ["completed", "discarded-uncommitted", "quarantined"]
    assert (out / (committed["produce_id"] + ".jpg")).exists()
    assert not uncommitted["tmp"].exists() and not (out / (uncommitted["produce_id"] + ".jpg")).exists()
    assert (device.directory / "quarantine" / altered["tmp"].name).read_bytes() == b"not what was sealed"
    logged = [logrecord.decode_record(r) for r in log.read(2, 100)]  # after the enrolment record
    assert [r["event"] for r in logged] == [logrecord.EVENT_SEAL] * 2 + [logrecord.EVENT_REPAIR] * 3
    assert sorted(r["decision"]["repair"] for r in logged[2:]) == sorted(r["repair"] for r in repairs)
    assert reconcile(log, out, device.directory / "quarantine") == []  # nothing left to repair


# ------------------------------------------------------------------ stress and crash


STRESS_SECONDS = 30


def test_stress_concurrent_rigs_captures_and_serial_pulls(state_dir, tmp_path, agent_for, vendor_ca):
    """Several rig clients, capture requests and repeated serial pulls at once for 30 s;
    then nothing lost or duplicated, one file per seal record, and the host's pulled log
    equals the device's."""
    db = tmp_path / "audit.sqlite"
    with VirtualSerialLink() as link:
        agent = agent_for(state_dir, tmp_path / "out", serial={"port": link.device_port},
                          agent={"queue_depth": 3, "busy_timeout_s": 30})
        stop = threading.Event()
        sealed, errors, pulls = [], [], []

        def rig(n):
            frame = _render(seed=n)
            try:
                with agent.client("rig-%d" % n) as client:
                    while not stop.is_set():
                        sealed.append(client.submit_frame(frame, source=("rig", "composite")[n % 2]))
            except Exception as err:  # any failure is a test failure, reported below
                errors.append("rig %d: %r" % (n, err))

        def camera():
            try:
                with agent.client("capture-cli") as client:
                    while not stop.is_set():
                        for outcome in client.capture(2)["results"]:
                            assert outcome["ok"], outcome
                            sealed.append(outcome["result"])
            except Exception as err:
                errors.append("camera: %r" % err)

        def puller():
            try:
                while not stop.is_set():
                    host = DeviceClient(SerialTransport(link.host_port), give_up_after=30.0)
                    host.authenticate(vendor_ca.operator, vendor_ca.root_pem)
                    try:
                        pulls.append(logdb.pull(host, db)["pulled"])
                    finally:
                        host.transport.close()
            except Exception as err:
                errors.append("pull: %r" % err)

        threads = [threading.Thread(target=rig, args=(n,)) for n in range(3)]
        threads += [threading.Thread(target=camera), threading.Thread(target=puller)]
        for thread in threads:
            thread.start()
        time.sleep(STRESS_SECONDS)
        stop.set()
        for thread in threads:
            thread.join(120)
        assert errors == []
        host = DeviceClient(SerialTransport(link.host_port), give_up_after=30.0)
        host.authenticate(vendor_ca.operator, vendor_ca.root_pem)
        pulls.append(logdb.pull(host, db)["pulled"])
        host.transport.close()
    records = check_output_matches_log(state_dir, tmp_path / "out")
    assert len(pulls) >= 3 and sum(pulls) == len(records) + 1  # and the enrolment record
    assert sorted(r["seq"] for r in sealed) == [r["seq"] for r in records]  # every client result is a record
    assert {r["decision"]["origin"]["kind"] for r in records} == {"intake", "camera"}
    import sqlite3
    stored = [bytes(row[0]) for row in sqlite3.connect(db).execute("SELECT raw FROM records ORDER BY seq")]
    assert stored == device_records(state_dir)
    assert logdb.check_chain(db) == []


CRASH_SEALS = 100
CRASH_KILLS = 25
CRASH_BUDGET_S = 240


def test_kill_9_at_random_points_never_loses_a_file_or_leaves_a_temporary(state_dir, tmp_path):
    """kill -9 of the agent while rig clients and captures keep it busy, over at least
    100 seals; after every restart the output folder and the log agree, and every
    repair the agent made is itself in the log."""
    out = tmp_path / "out"
    agent = RunningAgent(state_dir, out, agent={"queue_depth": 3})
    rng = random.Random(20261125)
    kills = found_temporaries = 0
    started = time.monotonic()
    try:
        while True:
            agent.start()
            if kills:
                records = check_output_matches_log(state_dir, out)
                repairs = [r for r in records if r["event"] == logrecord.EVENT_REPAIR]
                assert len(repairs) == found_temporaries, (len(repairs), found_temporaries)
            seals = sum(1 for r in device_records(state_dir)
                        if logrecord.decode_record(r)["event"] == logrecord.EVENT_SEAL)
            if (seals >= CRASH_SEALS and kills >= CRASH_KILLS) or time.monotonic() - started > CRASH_BUDGET_S:
                break
            stop = threading.Event()

            def load(n):
                try:
                    with agent.client("crash-%d" % n, timeout=30) as client:
                        while not stop.is_set():
                            if n == 0:
                                client.capture(1)
                            else:
                                client.submit_frame(_render(seed=n), source="rig")
                except Exception:
                    pass  # the agent was killed under it: expected

            threads = [threading.Thread(target=load, args=(n,), daemon=True) for n in range(3)]
            for thread in threads:
                thread.start()
            time.sleep(rng.uniform(0.02, 0.3))
            agent.kill()
            kills += 1
            stop.set()
            for thread in threads:
                thread.join(30)
            staging = out / STAGING_DIR_NAME
            found_temporaries += len(list(staging.glob("*.jpg.tmp")))
        print("crash test: %d kills, %d seals, %d temporaries repaired" % (kills, seals, found_temporaries))
        assert seals >= CRASH_SEALS, "only %d seals in %d s" % (seals, CRASH_BUDGET_S)
        assert kills >= CRASH_KILLS
        assert found_temporaries > 0, "no kill landed inside a seal: the test proved nothing"
        # A clean stop (SIGTERM) leaves the same agreement.
        agent.stop()
        check_output_matches_log(state_dir, out)
    finally:
        agent.close()


# ------------------------------------------------------------------ found by attacking the agent


def test_a_small_image_that_decodes_to_gigabytes_is_refused_from_its_header(state_dir, tmp_path, agent_for):
    import io
    bomb = io.BytesIO()
    Image.new("L", (16384, 10900)).save(bomb, "PNG", compress_level=9)  # ~170 KB, 535 MB as RGB
    agent = agent_for(state_dir, tmp_path / "out")
    with agent.client() as client:
        with pytest.raises(AgentClientError) as refused:
            client.submit_image(bomb.getvalue(), "png")
        assert refused.value.code == "bad_frame" and "max_frame_bytes" in str(refused.value)
        assert client.status()["sealed"] == 0
    with open("/proc/%d/status" % agent.process.pid) as f:
        peak_kb = int(next(line for line in f if line.startswith("VmHWM")).split()[1])
    assert peak_kb < 400_000, "the agent reached %d kB" % peak_kb


def test_submitted_frames_are_held_within_a_memory_budget(state_dir, tmp_path, agent_for):
    agent = agent_for(state_dir, tmp_path / "out", agent={"intake_memory_bytes": 300_000, "busy_timeout_s": 1})
    with agent.client() as client:
        assert client.submit_frame(_render(), source="rig")["label"] == "1"  # 230,400 bytes fit
        with pytest.raises(AgentClientError) as refused:
            client.submit_frame(_render(400, 300), source="rig")  # 360,000 bytes never fit
        assert refused.value.code == "too_large"


def test_a_client_that_drips_its_frame_is_cut_off_at_the_message_deadline(state_dir, tmp_path, agent_for):
    agent = agent_for(state_dir, tmp_path / "out", agent={"message_timeout_s": 2})
    frame = _render()
    with _raw_connection(agent) as sock:
        header = json.dumps({"type": "submit", "encoding": "raw", "pixel_format": "RGB888", "width": 320,
                             "height": 240, "source": "rig", "client": "drip",
                             "data_length": len(frame.tobytes())}).encode()
        sock.sendall(struct.pack("<I", len(header)) + header)
        started = time.monotonic()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for offset in range(0, 230_400, 100):
                sock.sendall(frame.tobytes()[offset:offset + 100])
                time.sleep(0.5)
        assert time.monotonic() - started < 10
    with agent.client() as client:
        assert client.status()["sealed"] == 0
    check_output_matches_log(state_dir, tmp_path / "out")


def test_an_agent_of_another_state_cannot_take_the_socket_or_the_output_folder(state_dir, tmp_path, agent_for,
                                                                               vendor_ca):
    first = agent_for(state_dir, tmp_path / "out")
    other_state = make_device(tmp_path / "other", vendor_ca, serial="TEST-0002", own=False).directory
    for overrides, expected in (({"socket": str(first.socket)}, "in use by a running agent (PID %d)" % first.pid),
                                ({}, "output folder")):
        second = RunningAgent(other_state, tmp_path / "out", agent=overrides)
        try:
            before = _snapshot(other_state)
            second.start(wait=False)
            assert second.process.wait(60) == 2
            assert expected in second.stderr(), second.stderr()
            assert _snapshot(other_state) == before or expected == "output folder"
        finally:
            second.close()
    with first.client() as client:  # the first agent still serves, at its socket
        assert client.capture(1)["results"][0]["ok"]
    check_output_matches_log(state_dir, tmp_path / "out")


def test_deleting_the_pid_file_does_not_let_a_second_writer_in(state_dir, tmp_path, agent_for):
    agent = agent_for(state_dir, tmp_path / "out")
    (state_dir / "agent.pid").unlink()
    with pytest.raises(StateLockedError):
        DeviceState(state_dir).own()


def test_a_torn_log_tail_is_kept_and_logged_and_its_orphaned_file_quarantined(state_dir, tmp_path):
    """A storage that lost the log's last write (after fsync): the record is cut as a torn
    tail, and the file it vouched for must not stand in the output folder without it."""
    out = tmp_path / "out"
    agent = RunningAgent(state_dir, out)
    try:
        agent.start()
        with agent.client() as client:
            client.capture(3)
        agent.stop()
        log_path = state_dir / "log" / "audit.log"
        data = log_path.read_bytes()
        log_path.write_bytes(data[:-5])
        agent.start()
        assert "torn log tail" in agent.stderr()
        records = check_output_matches_log(state_dir, out)
        repairs = [r["decision"] for r in records if r["event"] == logrecord.EVENT_REPAIR]
        assert [r["repair"] for r in repairs] == ["torn-log-tail-cut", "quarantined-unrecorded"]
        kept = state_dir / "log" / repairs[0]["kept_as"]
        assert data[:-5].endswith(kept.read_bytes()) and len(kept.read_bytes()) == repairs[0]["bytes"]
        assert (state_dir / "quarantine" / repairs[1]["file"]).exists()
        with agent.client() as client:
            assert client.capture(1)["results"][0]["ok"]  # and the sequence goes on without reuse
        check_output_matches_log(state_dir, out)
    finally:
        agent.close()


@pytest.mark.parametrize("agent_overrides, named", [
    ({"output_dir": "/proc/synthseal-out"}, "agent.output_dir"),
    ({"socket_group": "no-such-group-here"}, "agent.socket_group"),
    ({"socket": "/proc/synthseal/agent.sock"}, "agent.socket"),
])
def test_folder_and_socket_settings_are_checked_before_the_state_is_touched(state_dir, tmp_path, agent_overrides,
                                                                             named):
    good = RunningAgent(state_dir, tmp_path / "out")
    bad = RunningAgent(state_dir, tmp_path / "out", agent=agent_overrides)
    try:
        good.start()
        with good.client() as client:
            client.capture(1)
        good.stop()
        log_path = state_dir / "log" / "audit.log"
        log_path.write_bytes(log_path.read_bytes() + b"\x07\x00")  # a torn tail the agent would cut
        before = _snapshot(state_dir)
        line = _run_agent_expecting_refusal(bad.config_path)
        assert named in line and str(bad.config_path) in line
        assert _snapshot(state_dir) == before
    finally:
        good.close()
        bad.close()


def test_the_output_folder_must_not_hold_the_state(vendor_ca, tmp_path):
    state = make_device(tmp_path / "published" / "state", vendor_ca, own=False).directory
    agent = RunningAgent(state, tmp_path / "published")
    try:
        assert "agent.output_dir" in _run_agent_expecting_refusal(agent.config_path)
    finally:
        agent.close()


def test_odd_headers_get_an_answer_not_a_dropped_connection(state_dir, tmp_path, agent_for):
    agent = agent_for(state_dir, tmp_path / "out")
    with _raw_connection(agent) as sock:
        deep = b"[" * 30000 + b"]" * 30000
        sock.sendall(struct.pack("<I", len(deep)) + deep)
        answer, _ = recv_message(sock)
        assert answer["error"]["code"] == "bad_message"
    with _raw_connection(agent) as sock:
        odd = b'{"type": "status", "id": "\\ud800"}'
        sock.sendall(struct.pack("<I", len(odd)) + odd)
        answer, _ = recv_message(sock)
        assert answer["ok"] is True and "status" in answer
    assert agent.process.poll() is None


def test_a_log_shorter_than_its_signed_head_stops_sealing_and_adds_nothing(state_dir, tmp_path):
    """A rolled-back or lost log is reported at start, never recreated or repaired over:
    sealing stays stopped, the log stays as found, for a host to pull and report."""
    out = tmp_path / "out"
    agent = RunningAgent(state_dir, out)
    try:
        agent.start()
        with agent.client() as client:
            client.capture(3)
        agent.stop()
        agent.start()  # signs a head of 4 records at boot
        agent.stop()
        log_path = state_dir / "log" / "audit.log"
        records = AuditLog(str(log_path), writable=False).read(1, 10)
        log_path.write_bytes(b"".join(struct.pack("<I", len(r)) + r + struct.pack("<I", __import__("binascii").crc32(r))
                                      for r in records[:2]))
        before = log_path.read_bytes()
        agent.start()
        assert "holds 2 records but the device signed a head of 4" in agent.stderr()
        with agent.client() as client:
            assert client.status()["log_problem"].startswith("the audit log holds 2 records")
            with pytest.raises(AgentClientError, match="sealing is stopped: the audit log holds 2 records"):
                client.capture(1)
        assert log_path.read_bytes() == before
    finally:
        agent.close()


def test_damage_in_the_middle_stops_sealing_and_the_verified_prefix_can_be_pulled(state_dir, tmp_path, vendor_ca):
    out = tmp_path / "out"
    agent = RunningAgent(state_dir, out)
    try:
        agent.start()
        with agent.client() as client:
            client.capture(4)
        agent.stop()
        log_path = state_dir / "log" / "audit.log"
        data = bytearray(log_path.read_bytes())
        ends = []
        at = 0
        while at < len(data):
            at += 8 + struct.unpack("<I", data[at:at + 4])[0]
            ends.append(at)
        data[ends[1] + 40] ^= 0x10  # inside record 3 of 5
        log_path.write_bytes(bytes(data))
        agent.start()
        assert "damaged at byte %d (record 3)" % ends[1] in agent.stderr()
        with agent.client() as client:
            with pytest.raises(AgentClientError, match="sealing is stopped"):
                client.capture(1)
        state = DeviceState(state_dir)
        assert state.log().count == 2 and log_path.read_bytes() == bytes(data)  # nothing cut
    finally:
        agent.close()
    # The verified prefix is pulled over the serial link; the host says where the damage is.
    with VirtualSerialLink() as link:
        agent = RunningAgent(state_dir, out, serial={"port": link.device_port})
        try:
            agent.start()
            host = DeviceClient(SerialTransport(link.host_port), give_up_after=30.0)
            host.authenticate(vendor_ca.operator, vendor_ca.root_pem)
            db = tmp_path / "audit.sqlite"
            with pytest.raises(logdb.ChainError, match="damaged at record 3.*the 2 records before it") as err:
                logdb.pull(host, db)
            assert "nothing was acknowledged" in str(err.value)
            host.transport.close()
            import sqlite3
            stored = [bytes(r[0]) for r in sqlite3.connect(db).execute("SELECT raw FROM records ORDER BY seq")]
            assert stored == DeviceState(state_dir).log().read(1, 2)
            assert not (state_dir / "log" / "ack.json").exists()
        finally:
            agent.close()


def test_a_full_storage_stops_sealing_and_says_so_without_dropping_a_record(state_dir, tmp_path):
    """Fail closed: below the free-space floor nothing is sealed, by the camera or a rig;
    the log keeps every record and status says why."""
    agent = RunningAgent(state_dir, tmp_path / "out", agent={"min_free_bytes": 1 << 62})
    try:
        agent.start()
        before = (state_dir / "log" / "audit.log").read_bytes()
        with agent.client() as client:
            status = client.status()
            assert status["storage"]["full"] is True
            for request in (lambda: client.capture(1), lambda: client.submit_frame(_render(), source="rig")):
                with pytest.raises(AgentClientError) as refused:
                    request()
                assert refused.value.code == "storage_full" and "no record was dropped" in str(refused.value)
        assert (state_dir / "log" / "audit.log").read_bytes() == before
        assert list((tmp_path / "out").glob("*.jpg")) == []
        shown = subprocess.run([sys.executable, "-m", "synthseal.device.cli", "status", "--socket", str(agent.socket)],
                               capture_output=True, text=True, timeout=60)
        assert "FULL: nothing is sealed" in shown.stdout
    finally:
        agent.close()
