"""The device agent (`synthseal-device run`): one long-running process per device, and
the only owner of its state: keystore, audit log, camera, serial port, output folder.

Start-up order (each step only after the one before it succeeded):
  1. configuration validated (device/config.py), label text checked;
  2. the state lock taken: a second agent, or any command that would write the state,
     is refused with this agent's PID;
  3. the audit log opened (a torn tail from a power cut is cut only here, under the lock);
  4. the output folder reconciled with the log (device/reconcile.py), repairs logged;
  5. the classifier loaded, the sealing pipeline started (device/pipeline.py);
  6. the camera opened, the serial service started, the local socket opened;
  7. "ready" (and READY=1 to systemd when it started us with Type=notify).

Local clients talk to it over a Unix socket (docs/AGENT.md): status, capture requests
for its own camera, and intake of frames from a rig, which are sealed as synthetic only.
"""

import errno
import grp
import os
import queue
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from . import __version__, checkpoint, retention
from .config import SHIPPED
from .core import logrecord, policy
from .intake import IntakeError, client_name, decode_frame, declared_source, decoded_bytes
from .local_protocol import (PROTOCOL_VERSION, ConnectionClosed, LocalProtocolError, peer_credentials,
                             recv_message, send_message)
from .pipeline import PipelineBusy, PipelineStopped, SealPipeline
from .reconcile import reconcile
from .seal import SealError, Sealer, staging_dir
from .service import DeviceAnswers
from .state import DeviceState, DeviceStateError, DirectoryLock

MAX_CAPTURE_FRAMES = 100
OVERFLOW_TIMEOUT_S = 5     # the extra connection taken when all slots are in use: status only
SERIAL_RETRY_S = 5
CHECKPOINT_INTERVAL_S = 600  # a signed head at least this often while records are added


class AgentError(Exception):
    """The agent cannot start; the message says why and what to do."""


class _ClientError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class Agent:
    def __init__(self, config, log_line=None):
        self.config = config
        self.state = DeviceState(config.agent_state_dir)
        self.out_dir = Path(config.agent_output_dir)
        self._log_line = log_line or (lambda text: print(text, file=sys.stderr, flush=True))
        self.stop_event = threading.Event()
        self.started = time.time()
        self.repairs = []
        self.sealer = None
        self.pipeline = None
        self.camera = None
        self._camera_requests = queue.Queue()
        self._threads = []
        self._listener = None
        self._client_slots = threading.BoundedSemaphore(config.agent_max_clients)
        self._clients = 0
        self._clients_lock = threading.Lock()
        self.serial_status = {"port": config.serial_port or None, "state": "off" if not config.serial_port else "starting",
                              "error": None}
        self.classifier_warning = None
        self.camera_error = None
        self._socket_gid = None
        self._socket_path = None
        self._output_lock = DirectoryLock(self.out_dir, staging_dir(self.out_dir) / "agent.pid", "output folder")
        self._memory = _MemoryBudget(config.agent_intake_memory_bytes)
        self._pipeline_lock = threading.Lock()
        self._classifier = (None, None)
        self.answers = None
        self.serial = None
        self.log_problem = None  # a rollback found at start: sealing stays stopped
        self._checkpointed = None

    # -- start and stop -------------------------------------------------------------
    def start(self):
        try:
            self.serial = self.state.serial()
            if self.state.is_provisioned():
                self.state.config()  # a damaged configuration stops the start, with the reason
        except DeviceStateError as err:
            raise AgentError(str(err))
        self._preflight()
        self.state.own()  # refuses, naming the PID, while another process owns the state
        try:
            self._output_lock.acquire()  # and the output folder: another agent's repairs must never touch ours
            self._start_owned()
        except BaseException:
            self.close()
            raise

    def _preflight(self):
        """Everything about the configuration that can be checked before the state is
        touched: a bad folder or socket setting leaves the log and output as they were."""
        c, where = self.config, self.config.path
        state, out = self.state.directory.resolve(), self.out_dir.resolve()
        private = [state / name for name in ("keys", "certs", "log", "quarantine")]
        if out == state or out in state.parents or any(out == p or p in out.parents for p in private):
            raise AgentError("%s: agent.output_dir %s must not be, contain or lie in the state folder's keys, "
                             "certs, log or quarantine (%s): the output folder is published, the state holds "
                             "the keys" % (where, out, state))
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe = self.out_dir / (".write-probe-%d" % os.getpid())
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise AgentError("%s: agent.output_dir %s is not a writable folder (%s)%s" % (
                where, self.out_dir, err.strerror or err,
                "; under systemd, list it in ReadWritePaths=" if err.errno == errno.EROFS else ""))
        socket_path = Path(c.agent_socket)
        if len(str(socket_path).encode()) > 107:
            raise AgentError("%s: agent.socket %s is longer than a Unix socket path may be (107 bytes)"
                             % (where, socket_path))
        try:
            socket_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise AgentError("%s: agent.socket: cannot create its folder %s (%s)"
                             % (where, socket_path.parent, err.strerror or err))
        if c.agent_socket_group:
            try:
                self._socket_gid = grp.getgrnam(c.agent_socket_group).gr_gid
            except KeyError:
                raise AgentError("%s: agent.socket_group %r: no such group" % (where, c.agent_socket_group))
        self._check_socket_free(socket_path)

    def _check_socket_free(self, path):
        """A socket at the configured path may be a live agent's (of another state): never
        take it over. Only one that does not answer is a dead agent's, and replaced."""
        if path.is_socket():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(2)
            try:
                probe.connect(str(path))
                pid = peer_credentials(probe)[0]
            except OSError:
                return  # nobody listens: a dead agent's socket
            finally:
                probe.close()
            raise AgentError("%s: agent.socket %s is in use by a running agent (PID %d); stop it first, or give "
                             "each agent its own socket" % (self.config.path, path, pid))
        if path.exists() or path.is_symlink():
            raise AgentError("%s: agent.socket %s exists and is not a socket; choose another path"
                             % (self.config.path, path))

    def _start_owned(self):
        log = self.state.log()
        log_end = log.next_seq  # before this start's own repair records
        # Before anything is added or moved: does the log still hold what was signed?
        self.log_problem = getattr(log, "damage", None) and log.damage["message"]
        self.log_problem = self.log_problem or checkpoint.check_log_against_checkpoint(
            log, self.state.checkpoints().last())
        if self.log_problem is None:
            if getattr(log, "torn_tail", None):
                self._keep_torn_tail(log)
            self.repairs += reconcile(log, self.out_dir, self.state.directory / "quarantine",
                                      serial=self.serial, log_end=log_end)
        for repair in self.repairs:
            self._log_line("repaired at start: %s %s" % (repair["repair"], repair["file"]))
        self.state.tidy()  # leftovers of an enrolment change cut off by a power loss
        self.answers = DeviceAnswers(self.state, pause=self._pause_sealing, resume=self._resume_sealing)
        if self.log_problem is None and self.answers.provisioning.recover() is not None:
            self._log_line("repaired at start: logged an enrolment change whose record was lost")
        if self.log_problem is None:
            pruned = retention.prune_now(self.state, self.state.log(), int(time.time() * 1000))
            if pruned:
                self._log_line("pruned %d audit records: acknowledged by a collector and past the retention period"
                               % pruned)
        self._classifier = self._load_classifier()
        self._checkpoint_at_start()
        self._resume_sealing()
        if self.pipeline is None:
            self._log_line("device %s is %s: captures and intake are refused until a host enrols it "
                           "(`synthseal-host provision`)" % (self.serial, self.state.enrolment_state()))
        if self.config.camera_source != "none":
            try:
                self.camera = self._open_camera()
                self._spawn(self._camera_loop, "camera")
            except Exception as err:  # no camera: the log and the serial service keep running
                self.camera_error = "%s: %s" % (type(err).__name__, err)
                self._log_line("warning: camera not available: %s; capture requests are refused, the log "
                               "and the serial port are served" % self.camera_error)
        if self.config.serial_port:
            self._spawn(self._serial_loop, "serial")
        self._listener = self._open_socket()
        self._spawn(self._accept_loop, "socket")
        _notify_systemd("READY=1")
        self._log_line("agent ready: pid %d, state %s, socket %s%s" % (
            os.getpid(), self.state.directory, self.config.agent_socket, ", LAB MODE" if self.config.agent_lab else ""))

    def _checkpoint_at_start(self):
        """The log must hold what the device last signed; then a fresh signed head. A
        rollback stops sealing (fail closed): the log is served as it is, for a host to
        pull and report, and nothing is added to it."""
        log = self.state.log()
        if self.log_problem is not None:
            self._log_line("error: %s; sealing is stopped: pull the log with the host tool and investigate"
                           % self.log_problem)
            return
        if self.state.is_provisioned():
            checkpoint.sign_checkpoint(self.state, log)
            self._checkpointed = log.next_seq
        self._spawn(self._checkpoint_loop, "checkpoint")

    def _checkpoint_loop(self):
        """A signed head every CHECKPOINT_INTERVAL_S while the log grows."""
        while not self.stop_event.wait(CHECKPOINT_INTERVAL_S):
            log = self.state.log()
            if log.next_seq != self._checkpointed and self.state.is_provisioned():
                try:
                    checkpoint.sign_checkpoint(self.state, log)
                    self._checkpointed = log.next_seq
                except (checkpoint.CheckpointError, OSError, DeviceStateError) as err:
                    self._log_line("warning: no checkpoint signed: %s" % err)

    def _pause_sealing(self):
        """Before the keys or the configuration change: seal what is queued, then take
        no more frames until _resume_sealing."""
        with self._pipeline_lock:
            pipeline, self.pipeline, self.sealer = self.pipeline, None, None
        if pipeline is not None:
            pipeline.stop()

    def _resume_sealing(self):
        """Seal with the enrolment in force, if there is one: its keys, certificate and
        signed configuration (producer, label text and position, classifier threshold)."""
        if not self.state.is_provisioned() or self.stop_event.is_set() or self.log_problem is not None:
            return
        config = self.state.config()
        classifier, error = self._classifier
        sealer = Sealer(self.state, classifier, error,
                        threshold=config.get("policy", {}).get("classifier_threshold", policy.DEFAULT_THRESHOLD),
                        label_corner=config.get("label_position", "bottom-left"), lab=self.config.agent_lab)
        pipeline = SealPipeline(sealer, self.out_dir, depth=self.config.agent_queue_depth,
                                prepare_workers=self.config.agent_prepare_workers)
        with self._pipeline_lock:
            self.sealer, self.pipeline = sealer, pipeline

    def _keep_torn_tail(self, log):
        """The log cut a torn tail at open (its bytes were kept first): log the cut."""
        offset, data = log.torn_tail
        kept = self.state.torn_tail_file
        damaged = getattr(log, "torn_reason", None) == "damaged"
        repair = {"repair": "torn-log-tail-cut", "offset": offset, "bytes": len(data), "kept_as": kept.name,
                  "reason": "the last record's bytes changed (CRC or chain link fails); moved aside" if damaged
                  else "an interrupted write left an incomplete last record"}
        log.append(int(time.time() * 1000), b"\x00" * 32, logrecord.EVENT_REPAIR, "", repair)
        self.repairs.append(dict(repair, file=kept.name))
        self._log_line("repaired at start: torn log tail of %d bytes kept as %s" % (len(data), kept))

    def _spawn(self, target, name):
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _load_classifier(self):
        if self.config.classifier_model == "none":
            return None, None
        from .classifier import DEFAULT_LABELS, DEFAULT_MODEL, Classifier, ClassifierError
        model = DEFAULT_MODEL if self.config.classifier_model == SHIPPED else self.config.classifier_model
        labels = DEFAULT_LABELS if self.config.classifier_labels == SHIPPED else self.config.classifier_labels
        try:
            return Classifier(model, labels, num_threads=self.config.classifier_threads,
                              required_labels=tuple(policy.CLASS_RULES)), None
        except ClassifierError as err:
            self.classifier_warning = str(err)
            self._log_line("warning: classifier not loaded: %s; captures will be labelled 'possibly "
                           "AI-generated' (Label 2)" % err)
            return None, str(err)[:300]

    def _open_camera(self):
        from .camera import FakeCamera, Picamera2Source
        c = self.config
        if c.camera_source == "fake":
            return FakeCamera(c.camera_width, c.camera_height, seed=c.camera_fake_seed,
                              sensor_noise=c.camera_fake_sensor_noise, frame_pool=c.camera_fake_frame_pool)
        return Picamera2Source(c.camera_width, c.camera_height)

    def _open_socket(self):
        path = Path(self.config.agent_socket)
        self._check_socket_free(path)  # again: checked before the state was touched, too
        if path.is_socket():
            path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o117)  # created 0660: owner and group only
        try:
            listener.bind(str(path))
        finally:
            os.umask(old_umask)
        if self._socket_gid is not None:
            os.chown(path, -1, self._socket_gid)
        os.chmod(path, 0o660)
        self._socket_path = path
        listener.listen(16)
        listener.settimeout(0.5)
        return listener

    def wait(self):
        """Run until SIGTERM or SIGINT (or stop_event), then stop cleanly."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop_event.set())
        while not self.stop_event.wait(0.5):
            pass
        self.close()

    def close(self):
        self.stop_event.set()
        if self._listener is not None:
            self._listener.close()
            try:
                self._socket_path.unlink()  # ours: we bound it
            except OSError:
                pass
            self._listener = None
        self._pause_sealing()
        for thread in self._threads:
            thread.join(5)
        if self.camera is not None:
            self.camera.close()
        self._output_lock.release()
        self.state.release()

    # -- status ---------------------------------------------------------------------
    def status(self):
        info_state = self.state.enrolment_state()
        first_seq, next_seq, head_hash = self.state.log().head()
        pipeline, sealer = self.pipeline, self.sealer
        stats = dict(pipeline.stats) if pipeline else {}
        return {
            "agent": "synthseal-device", "version": __version__, "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started, 1),
            "serial": self.serial, "state": info_state, "lab": self.config.agent_lab,
            "camera": self.config.camera_source if self.camera is not None else "none",
            "classifier": sealer.classifier_provenance() if sealer else None,
            "classifier_warning": self.classifier_warning,
            "log": {"first_seq": first_seq, "next_seq": next_seq, "head_hash": head_hash.hex()},
            "queue_depth": pipeline.queue_depth() if pipeline else 0,
            "queue_capacity": self.config.agent_queue_depth,
            "sealed": stats.get("sealed", 0), "failed": stats.get("failed", 0), "busy": stats.get("busy", 0),
            "last_error": stats.get("last_error"),
            "serial_port": dict(self.serial_status),
            "clients": self._clients,
            "repairs_at_start": len(self.repairs),
            "log_problem": self.log_problem,
            "output_dir": str(self.out_dir),
            "storage": self.storage(),
        }

    # -- camera -----------------------------------------------------------------------
    def _camera_loop(self):
        """The one thread that uses the camera: capture requests are served in order."""
        while not self.stop_event.is_set():
            try:
                count, source, reply = self._camera_requests.get(timeout=0.5)
            except queue.Empty:
                continue
            jobs, error = [], None
            for _ in range(count):
                pipeline = self.pipeline
                if pipeline is None:
                    error = ("not_provisioned", "the device is not enrolled (or is changing its keys)")
                    break
                try:
                    frame = self.camera.capture_array()
                    jobs.append(pipeline.submit(frame, source, dict(self.camera.origin),
                                                     self.camera.channel_order, timeout=self.config.agent_busy_timeout_s))
                except (PipelineBusy, PipelineStopped) as err:
                    error = ("busy", str(err))
                    break
                except Exception as err:  # a camera fault ends this request, not the agent
                    error = ("camera", "camera failed: %s: %s" % (type(err).__name__, err))
                    break
            reply.put((jobs, error))

    def storage(self):
        """Free space where the log and the sealed files are written, against the floor
        the configuration keeps. Below it the agent seals nothing: a record it cannot
        write, or a log it would have to cut, is worse than a refused frame."""
        free = min(shutil.disk_usage(self.state.directory).free, shutil.disk_usage(self.out_dir).free)
        return {"free_bytes": free, "min_free_bytes": self.config.agent_min_free_bytes,
                "full": free < self.config.agent_min_free_bytes}

    def _check_can_seal(self):
        storage = self.storage()
        if storage["full"]:
            raise _ClientError("storage_full", "storage is full: %d MB free, the agent keeps %d MB; nothing is sealed "
                               "until a collector pulls the log (acknowledged old records can then be pruned) or "
                               "space is freed; no record was dropped" % (storage["free_bytes"] >> 20,
                                                                          storage["min_free_bytes"] >> 20))
        if self.log_problem is not None:
            raise _ClientError("log_rollback", "sealing is stopped: %s; pull the log with the host tool and "
                               "investigate" % self.log_problem)
        if self.pipeline is None:
            raise _ClientError("not_provisioned", "the device is %s: enrol it with `synthseal-host provision`"
                               % self.state.enrolment_state())

    def capture(self, count, source):
        self._check_can_seal()
        if self.camera is None:
            if self.camera_error:
                raise _ClientError("camera", "the camera is not available: %s" % self.camera_error)
            raise _ClientError("no_camera", "this agent has no camera (camera.source = 'none')")
        reply = queue.Queue()
        self._camera_requests.put((count, source, reply))
        jobs, error = reply.get()
        results = [self._job_result(job) for job in jobs]
        return results, error

    @staticmethod
    def _job_result(job):
        try:
            return {"ok": True, "result": _public_result(job.wait())}
        except SealError as err:
            return {"ok": False, "error": {"code": "seal_failed", "message": str(err)}}

    # -- serial -----------------------------------------------------------------------
    def _serial_loop(self):
        from .service import ServiceError, serve
        while not self.stop_event.is_set():
            ready = _Flag(lambda: self.serial_status.update(state="serving", error=None))
            try:
                serve(self.state, self.config.serial_port, self.config.serial_baud, stop=self.stop_event, ready=ready,
                      answers=self.answers)
            except ServiceError as err:
                self.serial_status.update(state="waiting", error=str(err))
            except Exception as err:  # the port vanished mid-session (USB unplugged): reopen
                self.serial_status.update(state="waiting", error="%s: %s" % (type(err).__name__, err))
            self.stop_event.wait(SERIAL_RETRY_S)

    # -- socket -----------------------------------------------------------------------
    def _accept_loop(self):
        overflow = threading.BoundedSemaphore(1)
        while not self.stop_event.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                if self.stop_event.is_set():
                    return
                continue
            if self._client_slots.acquire(blocking=False):
                threading.Thread(target=self._serve_client, args=(conn, self._client_slots), name="client",
                                 daemon=True).start()
            elif overflow.acquire(blocking=False):
                # All slots taken (idle clients, or a flood): one more connection may still
                # ask for status, so an operator can always see what is going on.
                threading.Thread(target=self._serve_client, args=(conn, overflow, True), name="client-overflow",
                                 daemon=True).start()
            else:
                self._refuse(conn, "busy", "the agent already serves %d clients; try again later"
                             % self.config.agent_max_clients)

    @staticmethod
    def _refuse(conn, code, message):
        try:
            conn.settimeout(1)
            send_message(conn, {"type": "error", "ok": False, "error": {"code": code, "message": message}})
        except OSError:
            pass
        conn.close()

    def _serve_client(self, conn, slot, status_only=False):
        with self._clients_lock:
            self._clients += 1
        held = [0]

        def reserve(n):
            self._memory.acquire(n, self.config.agent_busy_timeout_s)
            held[0] = n

        try:
            pid, uid, _gid = peer_credentials(conn)
            conn.settimeout(self.config.agent_message_timeout_s)
            send_message(conn, {"type": "hello", "agent": "synthseal-device", "protocol": PROTOCOL_VERSION,
                                "version": __version__, "serial": self.serial,
                                "max_frame_bytes": self.config.agent_max_frame_bytes,
                                "lab": self.config.agent_lab, "status_only": status_only})
            while not self.stop_event.is_set():
                conn.settimeout(OVERFLOW_TIMEOUT_S if status_only else self.config.agent_idle_timeout_s)
                try:
                    header, data = recv_message(conn, 0 if status_only else self.config.agent_max_frame_bytes,
                                                self.config.agent_message_timeout_s, reserve)
                except (LocalProtocolError, _ClientError) as err:
                    code = err.code if isinstance(err, _ClientError) else "bad_message"
                    if status_only and code == "bad_message":
                        code, err = "busy", "all %d client slots are in use; this connection may only ask for " \
                                            "status" % self.config.agent_max_clients
                    send_message(conn, {"type": "error", "ok": False, "error": {"code": code, "message": str(err)}})
                    return  # the byte stream cannot be trusted after this
                if status_only and header.get("type") != "status":
                    send_message(conn, {"type": "result", "id": _safe_id(header), "ok": False, "error": {
                        "code": "busy", "message": "all %d client slots are in use; try again later"
                                                   % self.config.agent_max_clients}})
                    return
                response = self._handle(header, data, {"pid": pid, "uid": uid})
                data = None
                self._memory.release(held[0])
                held[0] = 0
                send_message(conn, response)
                if status_only:
                    return
        except (ConnectionClosed, ConnectionError, socket.timeout, OSError):
            pass  # the client went away or stalled: nothing half-done remains (see _handle)
        finally:
            self._memory.release(held[0])
            conn.close()
            with self._clients_lock:
                self._clients -= 1
            slot.release()

    def _handle(self, header, data, peer):
        request_id = _safe_id(header)
        kind = header.get("type")
        try:
            if kind == "status":
                body = {"status": self.status()}
            elif kind == "capture":
                body = self._handle_capture(header)
            elif kind == "submit":
                body = self._handle_submit(header, data, peer)
            else:
                raise _ClientError("bad_request", "unknown request type %r; use status, capture or submit" % (kind,))
        except _ClientError as err:
            return {"type": "result", "id": request_id, "ok": False, "error": {"code": err.code, "message": str(err)}}
        except Exception as err:  # never let one request take the agent down
            return {"type": "result", "id": request_id, "ok": False,
                    "error": {"code": "internal", "message": "%s: %s" % (type(err).__name__, err)}}
        response = {"type": "result", "id": request_id, "ok": True}
        response.update(body)
        return response

    def _handle_capture(self, header):
        count = header.get("frames", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CAPTURE_FRAMES:
            raise _ClientError("bad_request", "frames must be a whole number from 1 to %d" % MAX_CAPTURE_FRAMES)
        source = header.get("source", policy.SOURCE_CAPTURE)
        if source not in policy.DECLARED_SOURCES:
            raise _ClientError("bad_request", "source must be one of %s" % ", ".join(policy.DECLARED_SOURCES))
        results, error = self.capture(count, source)
        body = {"results": results}
        if error is not None:
            body["ok"] = False
            body["error"] = {"code": error[0], "message": error[1]}
        if any(not r["ok"] for r in results):
            body["ok"] = False
        return body

    def _handle_submit(self, header, data, peer):
        self._check_can_seal()
        try:
            source = declared_source(header)
            name = client_name(header)
            decoded = decoded_bytes(header, data)
        except IntakeError as err:
            raise _ClientError("bad_frame", str(err))
        if decoded > self.config.agent_max_frame_bytes:
            raise _ClientError("bad_frame", "the image decodes to %d bytes; agent.max_frame_bytes allows %d"
                               % (decoded, self.config.agent_max_frame_bytes))
        self._memory.acquire(decoded, self.config.agent_busy_timeout_s)  # the decoded pixels count too
        try:
            try:
                frame, channel_order = decode_frame(header, data, self.config.agent_max_frame_bytes)
            except IntakeError as err:
                raise _ClientError("bad_frame", str(err))
            origin = {"kind": policy.ORIGIN_INTAKE, "client": name, "uid": peer["uid"], "pid": peer["pid"]}
            pipeline = self.pipeline
            if pipeline is None:
                raise _ClientError("not_provisioned", "the device is not enrolled (or is changing its keys)")
            try:
                job = pipeline.submit(frame, source, origin, channel_order,
                                           timeout=self.config.agent_busy_timeout_s)
            except PipelineBusy as err:
                raise _ClientError("busy", str(err))
            except PipelineStopped as err:
                raise _ClientError("stopping", str(err))
            del frame
            try:
                return {"result": _public_result(job.wait())}
            except SealError as err:
                raise _ClientError("seal_failed", str(err))
        finally:
            self._memory.release(decoded)


def _safe_id(header):
    """The request id to echo: a short string or number, else nothing."""
    value = header.get("id")
    if value is None or isinstance(value, bool) or isinstance(value, (int, float)) and abs(value) < 2 ** 53:
        return value
    if isinstance(value, str) and len(value) <= 64:
        return value
    return None


class _MemoryBudget:
    """Bytes of submitted frames held at once, over all clients: a client waits for room,
    then is told busy, so a flood of large frames cannot exhaust a Pi's memory."""

    def __init__(self, limit):
        self.limit = limit
        self.used = 0
        self._changed = threading.Condition()

    def acquire(self, n, timeout):
        with self._changed:
            if n > self.limit:
                raise _ClientError("too_large", "a frame of %d bytes exceeds agent.intake_memory_bytes (%d)"
                                   % (n, self.limit))
            if not self._changed.wait_for(lambda: self.used + n <= self.limit, timeout):
                raise _ClientError("busy", "the agent holds %d bytes of submitted frames already; retry later"
                                   % self.used)
            self.used += n

    def release(self, n):
        if n:
            with self._changed:
                self.used -= n
                self._changed.notify_all()


def _public_result(result):
    decision = result["decision"]
    return {"file": result["path"], "produce_id": result["produce_id"], "seq": result["seq"],
            "sha256": result["sha256"], "rule": decision["rule"], "label": decision["label"],
            "explicit": decision["explicit"], "dst": decision["dst"], "origin": decision["origin"],
            "classifier": decision["classifier"], "lab": decision["lab"], "scores": decision.get("scores"),
            "latency_ms": result.get("latency_ms")}


class _Flag:
    """Stands in for threading.Event as serve()'s `ready`: runs a callback on set()."""

    def __init__(self, callback):
        self._callback = callback

    def set(self):
        self._callback()


def _notify_systemd(message):
    """sd_notify without a dependency: one datagram to $NOTIFY_SOCKET, if systemd set it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), address)
    except OSError:
        pass
