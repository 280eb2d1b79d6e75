"""The host end of the link: a transport that moves frames, and a client that speaks
the protocol over it (request ids, retries on damaged frames, timeouts)."""

import os
import time

import serial
import serial.tools.list_ports

from ..device.core import framing
from ..device.core import protocol as p


class HostError(Exception):
    """A failure the user can act on; the message is one line that says what to do."""


class SerialTransport:
    """Frames over a serial port (a real cable, a USB gadget, or a pty)."""

    def __init__(self, port, baudrate=115200):
        self.port = port
        if not os.path.exists(port):
            raise HostError("serial port %s does not exist; list ports with `synthseal-host ports`" % port)
        try:
            self._serial = serial.Serial(port, baudrate, timeout=0.05, exclusive=True)
        except (serial.SerialException, OSError) as err:
            if "lock" in str(err).lower() or "busy" in str(err).lower():
                raise HostError("serial port %s is busy: another program has it open; close it and retry" % port)
            raise HostError("cannot open serial port %s: %s" % (port, err))
        self._reader = framing.FrameReader()
        self._pending = []

    def send(self, payload):
        self._serial.write(framing.encode_frame(payload))

    def receive(self, deadline):
        """Return (payload, None) or (None, FrameError) for the next frame, or None at
        the deadline."""
        while not self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._serial.timeout = min(remaining, 0.1)
            data = self._serial.read(self._serial.in_waiting or 1)
            if data:
                self._pending.extend(self._reader.feed(data))
        return self._pending.pop(0)

    def close(self):
        self._serial.close()


def list_ports():
    return [(info.device, info.description or "", info.hwid or "") for info in serial.tools.list_ports.comports()]


class DeviceClient:
    def __init__(self, transport, timeout=3.0, attempts=3):
        self.transport = transport
        self.timeout = timeout
        self.attempts = attempts
        self._next_id = int.from_bytes(os.urandom(2), "little") or 1

    def request(self, msg_type, body=b""):
        """Send one request; return the response body. Resends on a damaged frame in
        either direction or a timeout, up to `attempts` times."""
        last_problem = "no answer"
        for _ in range(self.attempts):
            request_id = self._next_id
            self._next_id = (self._next_id % 0xFFFF) + 1
            self.transport.send(p.encode_message(msg_type, request_id, body))
            deadline = time.monotonic() + self.timeout
            while True:
                item = self.transport.receive(deadline)
                if item is None:
                    last_problem = "no answer within %.1f s" % self.timeout
                    break
                payload, error = item
                if error is not None:
                    last_problem = "damaged frame from the device (%s)" % error
                    break
                try:
                    r_type, r_id, r_body = p.decode_message(payload)
                except p.ProtocolError as err:
                    last_problem = str(err)
                    break
                if r_type == p.TYPE_ERROR:
                    code, message = p.decode_error(r_body)
                    if code == p.ERR_BAD_FRAME:
                        last_problem = "the device received a damaged frame"
                        break
                    if r_id == request_id:
                        raise HostError("device refused the request: %s" % message)
                    continue
                if r_id != request_id:
                    continue  # a late answer to an earlier attempt
                if r_type != msg_type | p.RESPONSE:
                    raise HostError("device answered with unexpected message type 0x%02x" % r_type)
                return r_body
        raise HostError("device on %s did not answer (%s); check the cable and that the agent runs "
                        "(`synthseal-device status` on the device shows its serial port)" % (getattr(self.transport, "port", "the link"), last_problem))

    def info(self):
        try:
            return p.decode_json(self.request(p.TYPE_HELLO))
        except p.ProtocolError as err:
            raise HostError("device info does not parse: %s" % err)

    def read_log(self, start_seq, max_records=1024):
        try:
            first_seq, records = p.decode_log_batch(self.request(p.TYPE_LOG_READ, p.encode_log_read(start_seq, max_records)))
        except p.ProtocolError as err:
            raise HostError("log batch does not parse: %s" % err)
        if records and first_seq != start_seq:
            raise HostError("device answered from seq %d when asked for %d" % (first_seq, start_seq))
        return records
