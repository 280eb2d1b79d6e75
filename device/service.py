"""The device's serial service: frames in, answers out.

Runs on the USB gadget port (/dev/ttyGS0) or the UART (/dev/serial0) of a Pi, and on a
pseudo-terminal in the demo and the tests. Every request passes the session guard
(device/session.py): HELLO is public, the rest needs an authenticated operator with
the right role. The protocol is documented in docs/PROTOCOL.md and docs/PROVISIONING.md.
"""

import errno
import threading
import time

import serial

from . import checkpoint, retention
from .core import framing
from .core import protocol as p
from .core.handlers import DeviceEndpoint, bad_frame_response, internal_error_response
from .provisioning import Provisioning
from .session import DeviceGuard


class ServiceError(Exception):
    pass


def open_port(port, baudrate):
    try:
        return serial.Serial(port, baudrate, timeout=0.1, exclusive=True)
    except (serial.SerialException, OSError) as err:
        code = getattr(err, "errno", None)
        if code == errno.EACCES or "Permission denied" in str(err):
            raise ServiceError("cannot open serial port %s: permission denied; add the agent's user to the "
                               "'dialout' group (sudo usermod -aG dialout USER, then log in again) or install "
                               "device/deploy/99-synthseal.rules" % port)
        if code == errno.ENOENT or "No such file" in str(err):
            raise ServiceError("cannot open serial port %s: no such device; is the cable in and the USB gadget "
                               "(or UART) enabled?" % port)
        raise ServiceError("cannot open serial port %s: %s" % (port, err))


class DeviceAnswers:
    """Turns one request payload into its answer payloads: the session guard, then the
    provisioning requests or the core endpoint. `state` must be owned by this process.
    `pause`/`resume` are called around a change of keys or configuration."""

    def __init__(self, state, pause=None, resume=None, clock=time.time):
        self.state = state
        self.clock = clock
        self.log = state.log()
        self.endpoint = DeviceEndpoint(state.info, self.log, upload_dir=str(state.directory / "uploads"))
        self.provisioning = Provisioning(state, self.log, pause=pause, resume=resume)
        self.guard = DeviceGuard(state, self._authorised)

    def _authorised(self, inner, session):
        msg_type, request_id, body = p.decode_message(inner)
        if msg_type == p.TYPE_CHECKPOINT:
            return self._checkpoint(request_id, body)
        if msg_type == p.TYPE_ACK:
            return self._ack(request_id, body)
        answer = self.provisioning.handle(msg_type, request_id, body, session)
        return answer if answer is not None else self.endpoint.handle_request(inner)

    def _checkpoint(self, request_id, body):
        """A fresh signed tree head and the consistency proof from the host's last one."""
        try:
            if not self.state.is_provisioned():
                raise checkpoint.CheckpointError("the device is not enrolled: it has no identity key to sign its "
                                                 "log head; provision it first")
            request = p.decode_json(body)
            if not isinstance(request, dict):
                raise checkpoint.CheckpointError("CHECKPOINT body must be a JSON object")
            answer = checkpoint.answer_request(self.state, self.log, request)
        except (checkpoint.CheckpointError, p.ProtocolError) as err:
            return p.encode_message(p.TYPE_ERROR, request_id, p.encode_error(p.ERR_REFUSED, str(err)))
        return p.encode_message(p.TYPE_CHECKPOINT | p.RESPONSE, request_id, p.encode_json(answer))

    def _ack(self, request_id, body):
        """The collector acknowledges a head it verified: what it covers may be pruned
        once the retention period has passed (device/retention.py)."""
        try:
            now_ms = int(self.clock() * 1000)
            answer = retention.answer_ack(self.state.acks(), self.log, p.decode_json(body), now_ms)
        except (retention.RetentionError, p.ProtocolError) as err:
            return p.encode_message(p.TYPE_ERROR, request_id, p.encode_error(p.ERR_REFUSED, str(err)))
        answer["pruned"] = retention.prune_now(self.state, self.log, now_ms)
        return p.encode_message(p.TYPE_ACK | p.RESPONSE, request_id, p.encode_json(answer))

    def answer(self, payload):
        self.log.refresh()  # a read-only view takes in records the owner appended
        try:
            answer = self.guard.handle(payload, self.endpoint.handle_request)
        except Exception as err:  # one bad request never ends the service
            answer = internal_error_response(err, payload)
        return answer if isinstance(answer, list) else [answer]


def serve(state, port, baudrate=115200, stop=None, ready=None, answers=None):
    """Answer requests on `port` until `stop` (a threading.Event) is set. `answers`: a
    DeviceAnswers (the agent passes its own, with its pause/resume hooks)."""
    stop = stop or threading.Event()
    link = open_port(port, baudrate)
    answers = answers or DeviceAnswers(state)
    reader = framing.FrameReader()
    if ready is not None:
        ready.set()
    try:
        while not stop.is_set():
            data = link.read(link.in_waiting or 1)
            if not data:
                continue
            for payload, error in reader.feed(data):
                out = answers.answer(payload) if payload is not None else [bad_frame_response(error)]
                for one in out:
                    link.write(framing.encode_frame(one))
    finally:
        link.close()
