"""The host end of the link: a transport that moves frames, and a client that speaks
the protocol over it.

Single requests (HELLO, the upload's begin and end) are resent until answered. Bulk
transfers stream: the client keeps a window of data on the line, finds damaged or
missing frames from the self-describing frames around them, asks again for exactly
those, and rides out disconnects. Every wait is derived from the baud rate and the
frame size (device/core/transfer.py); the only overall limit is `give_up_after`
seconds without progress. See docs/PROTOCOL.md ("Streaming").
"""

import errno
import glob
import hashlib
import json
import os
import time

import serial
import serial.tools.list_ports

from ..device.core import framing, logrecord
from ..device.core import protocol as p
from ..device.core import transfer

DEFAULT_GIVE_UP_AFTER = 300.0  # seconds without progress before a transfer stops
# The longest a request waits for a device that stays silent before sending again: a
# device busy on a slow card (an fsync of several hundred ms) is heard, and a device that
# is gone is asked about every few seconds, not four times a second.
MAX_TURNAROUND_SECONDS = 4.0
# USB IDs a synthseal device enumerates with, as VID:PID: the Linux serial gadget
# (g_serial: 0525:a4a7 in CDC ACM mode, 0525:a4a6 otherwise; NetChip IDs the kernel's
# drivers/usb/gadget/legacy/serial.c assigns) and a configfs gadget with the Linux
# Foundation's "Multifunction Composite Gadget" IDs (1d6b:0104) that Pi set-up scripts use.
GADGET_USB_IDS = ((0x0525, 0xA4A7), (0x0525, 0xA4A6), (0x1D6B, 0x0104))


class HostError(Exception):
    """A failure the user can act on; the message is one line that says what to do."""


def shown(text, limit=300):
    """A device's words as the host shows them: never obeyed by the terminal (control,
    format and other unprintable characters become visible escapes; Chinese text such as
    a filing number stays readable), and bounded."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in str(text))[:limit]


def port_error(port, err):
    """One line for a port that cannot be opened, saying what to do about it."""
    text = str(err)
    code = getattr(err, "errno", None)
    if code == errno.ENOENT or "No such file" in text:
        return HostError("serial port %s does not exist; connect the device or list ports with "
                         "`synthseal-host ports`" % port)
    if code == errno.EACCES or "Permission denied" in text:
        return HostError("no permission to open serial port %s; join the `dialout` group "
                         "(sudo usermod -aG dialout $USER, then log in again)" % port)
    if code == errno.EBUSY or "lock" in text.lower() or "busy" in text.lower():
        return HostError("serial port %s is busy: another program has it open; close it and retry" % port)
    return HostError("cannot open serial port %s: %s" % (port, text))


class SerialTransport:
    """Frames over a serial port (a real cable, a USB gadget, or a pty).

    A port that fails under way (a USB adapter or gadget re-enumerating when the cable
    is wiggled) is closed and opened again by its name every half second; meanwhile
    frames sent are lost, as on a dead cable, and the client's waits and retries carry
    the transfer over the gap."""

    REOPEN_INTERVAL = 0.5

    def __init__(self, port, baudrate=115200):
        self.port = port
        self.baudrate = baudrate
        if not os.path.exists(port):
            raise port_error(port, OSError(errno.ENOENT, "No such file"))
        self._serial = self._open()
        self._reader = framing.FrameReader()
        self._pending = []
        self._lost_at = 0.0
        self.reopened = 0        # how often the port came back after failing
        self.last_rx = 0.0       # when bytes last arrived
        self.last_tx = 0.0       # when the last write returned (it blocks while the line is full)
        self.bytes_in = 0
        self.bytes_out = 0

    def _open(self):
        try:
            return serial.Serial(self.port, self.baudrate, timeout=0.05, exclusive=True)
        except (serial.SerialException, OSError) as err:
            raise port_error(self.port, getattr(err, "__cause__", None) or err)

    def _port_lost(self):
        try:
            self._serial.close()
        except (serial.SerialException, OSError):
            pass
        self._serial = None
        self._lost_at = time.monotonic()

    def _port_ready(self):
        if self._serial is not None:
            return True
        if time.monotonic() - self._lost_at < self.REOPEN_INTERVAL:
            return False
        try:
            self._serial = self._open()
        except HostError:
            self._lost_at = time.monotonic()
            return False
        self._reader = framing.FrameReader()  # a frame cut by the failure is gone
        self.reopened += 1
        return True

    def send(self, payload):
        frame = framing.encode_frame(payload)
        self.bytes_out += len(frame)
        if self._port_ready():
            try:
                self._serial.write(frame)
            except (serial.SerialException, OSError):
                self._port_lost()
        self.last_tx = time.monotonic()

    def receive(self, deadline):
        """Return (payload, None) or (None, FrameError) for the next frame, or None at
        the deadline."""
        while not self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if not self._port_ready():
                time.sleep(min(remaining, 0.05))
                continue
            try:
                self._serial.timeout = min(remaining, 0.05)
                data = self._serial.read(self._serial.in_waiting or 1)
            except (serial.SerialException, OSError, TypeError):
                self._port_lost()
                continue
            if data:
                self.last_rx = time.monotonic()
                self.bytes_in += len(data)
                self._pending.extend(self._reader.feed(data))
        return self._pending.pop(0)

    def close(self):
        if self._serial is not None:
            self._serial.close()


def list_ports():
    return [(info.device, info.description or "", info.hwid or "") for info in serial.tools.list_ports.comports()]


HELLO_ANSWER_BYTES = 4096  # device info with a certificate chain of two certificates, with room


def find_device_port(baudrate=115200, candidates=None, probe_seconds=None):
    """The port a synthseal device answers on: the one USB gadget with our IDs, else
    the first candidate that answers HELLO. Raises HostError naming what was tried.
    The probe waits long enough for a HELLO answer (it carries the certificate chain)
    to cross the line twice at this baud rate."""
    if probe_seconds is None:
        probe_seconds = max(2.0, transfer.TURNAROUND_SECONDS + 2 * transfer.line_seconds(
            transfer.wire_bytes(HELLO_ANSWER_BYTES), baudrate))
    if candidates is None:
        infos = serial.tools.list_ports.comports()
        gadgets = [i.device for i in infos if (i.vid, i.pid) in GADGET_USB_IDS]
        if len(gadgets) == 1:
            return gadgets[0]
        candidates = gadgets or sorted(set([i.device for i in infos] + glob.glob("/dev/ttyACM*")
                                           + glob.glob("/dev/ttyUSB*")))
    problems = []
    for port in candidates:
        try:
            transport = SerialTransport(port, baudrate)
        except HostError as err:
            problems.append(str(err).split(";")[0])
            continue
        try:
            DeviceClient(transport, give_up_after=probe_seconds).info()
            return port
        except HostError:
            problems.append("%s: no synthseal answer" % port)
        finally:
            transport.close()
    if not candidates:
        raise HostError("no serial ports found; connect the device's cable (USB or UART adapter) and retry")
    raise HostError("no synthseal device found (%s); check the cable or name the port with --port"
                    % "; ".join(problems))


def check_hello(info):
    """The HELLO answer (public: who the device is, its state) as the host relies on it."""
    ok = (isinstance(info, dict) and all(isinstance(info.get(k), str) for k in ("serial", "firmware", "state"))
          and isinstance(info.get("identity_chain") or "", str) and isinstance(info.get("producer") or "", str))
    if not ok:
        raise HostError("device info lacks or garbles its serial, firmware or state; is the device's agent up to date?")
    return info


def check_info(info):
    """The STATUS answer (HELLO's fields, the log head, the content chain) as the host
    relies on it; a HostError naming what is wrong."""
    check_hello(info)
    try:
        log = info["log"]
        ok = (isinstance(log["first_seq"], int) and isinstance(log["next_seq"], int)
              and 1 <= log["first_seq"] <= log["next_seq"] <= 0xFFFFFFFF
              and isinstance(log["head_hash"], str) and len(bytes.fromhex(log["head_hash"])) == 32
              and isinstance(info.get("certificate_chain") or "", str))
    except (TypeError, KeyError, ValueError):
        ok = False
    if not ok:
        raise HostError("device status lacks or garbles its log head; is the device's agent up to date?")
    return info


class LinkEstimate:
    """Bit error rate seen in one direction, from damaged frames per bits carried. A
    prior of 64 KiB of clean bytes keeps one early error from shrinking frames to the
    minimum."""

    PRIOR_BYTES = 65536

    def __init__(self):
        self.damaged = 0
        self.bytes = 0

    def bit_error_rate(self):
        return self.damaged / (8.0 * (self.bytes + self.PRIOR_BYTES))


class DeviceClient:
    def __init__(self, transport, give_up_after=DEFAULT_GIVE_UP_AFTER, baudrate=None):
        self.transport = transport
        self.give_up_after = give_up_after
        self.baudrate = baudrate or getattr(transport, "baudrate", None) or 115200
        self.downlink = LinkEstimate()  # device -> host
        self.uplink = LinkEstimate()    # host -> device
        self._next_id = int.from_bytes(os.urandom(2), "little") or 1
        self._turnaround = transfer.TURNAROUND_SECONDS  # what request() learnt of the device; see there
        self.session = None  # set by authenticate()

    # -- sizes and times derived from the line -----------------------------------

    def _line(self, n_bytes):
        return transfer.line_seconds(n_bytes, self.baudrate)

    def chunk_down(self):
        return transfer.chunk_size(self.baudrate, self.downlink.bit_error_rate())

    def chunk_up(self):
        return transfer.chunk_size(self.baudrate, self.uplink.bit_error_rate())

    def _window(self, chunk):
        """Bytes kept on the line: enough to cover a turnaround at this rate, and
        at least four frames so one lost frame never empties the line."""
        rate = self.baudrate / transfer.BITS_PER_BYTE
        return int(max(4 * transfer.wire_bytes(chunk), rate * 2 * transfer.TURNAROUND_SECONDS))

    def _id(self):
        request_id = self._next_id
        self._next_id = (self._next_id % 0xFFFF) + 1
        return request_id

    def _give_up(self, since, problem):
        raise HostError("device on %s did not answer for %.0f s (%s); check the cable and that the agent runs "
                        "`synthseal-device serve`" % (getattr(self.transport, "port", "the link"),
                                                      time.monotonic() - since, problem))

    def _note_frame(self, payload, error):
        if error is not None:
            self.downlink.damaged += 1
        else:
            self.downlink.bytes += transfer.wire_bytes(len(payload))

    # -- one request, one answer ---------------------------------------------------

    def request(self, msg_type, body=b""):
        """Send one request; return the answer body. Resends on a damaged frame in
        either direction or silence, until `give_up_after` seconds have passed.

        Every copy sent gets its own id, and only the answer to the newest copy is
        taken: the device handles copies in order, and some requests set state (a
        handshake's nonce), so only the newest answer matches what the device now
        holds. The turnaround waited for before sending again is learnt, and kept from
        one request to the next: it doubles (up to MAX_TURNAROUND_SECONDS) when an older
        copy is answered late, or when a wait ends with nothing at all heard, so a
        device slower than the turnaround is heard after a few copies instead of being
        asked again faster than it answers; it drops back to TURNAROUND_SECONDS when a
        damaged frame shows a live, noisy line, where the next copy is what gets
        through. A BAD_FRAME error carries no request id, so it may be left over from
        junk on the line long before: it resends at once only when it comes at least the
        request's own time on the line after the copy went out (as the device's answer
        to a damaged copy does) and at least half a turnaround; an earlier one is noted
        and the host waits for the answer or for silence. A burst of junk then costs a
        resend every eighth of a second at most, not one per junk frame, while a large
        request damaged on a noisy line is sent again as soon as the device says so."""
        started = time.monotonic()
        last_problem = "no answer"
        request_wire = transfer.wire_bytes(p.HEADER_LEN + len(body))
        copies_sent = set()
        while True:
            if time.monotonic() - started >= self.give_up_after:
                self._give_up(started, last_problem)
            request_id = self._id()
            copies_sent.add(request_id)
            self.transport.send(p.encode_message(msg_type, request_id, body))
            self.uplink.bytes += request_wire
            sent = time.monotonic()
            # Silence after the request's own time on the line and a turnaround means
            # it or its answer was lost; a frame of the largest size may follow.
            quiet = self._turnaround + self._line(request_wire + 64)
            limit = sent + quiet + self._line(request_wire + transfer.wire_bytes(framing.MAX_PAYLOAD))
            limit = min(limit, started + self.give_up_after)
            heard = False
            while True:
                deadline = min(limit, max(sent, getattr(self.transport, "last_rx", 0.0)) + quiet)
                item = self.transport.receive(deadline)
                if item is None:
                    now = time.monotonic()
                    # bytes that came meanwhile (a long answer on a slow line) extend the wait
                    if now >= min(limit, max(sent, getattr(self.transport, "last_rx", 0.0)) + quiet):
                        last_problem = "no answer within %.1f s" % (now - sent)
                        if not heard:
                            self._turnaround = min(2 * self._turnaround, MAX_TURNAROUND_SECONDS)
                        break
                    continue
                heard = True
                payload, error = item
                self._note_frame(payload, error)
                if error is not None:
                    last_problem = "damaged frame from the device (%s)" % error
                    self._turnaround = transfer.TURNAROUND_SECONDS
                    continue  # the answer may still follow; silence ends the wait
                try:
                    r_type, r_id, r_body = p.decode_message(payload)
                except p.ProtocolError as err:
                    last_problem = str(err)
                    continue
                if r_type == p.TYPE_ERROR:
                    code, message = p.decode_error(r_body)
                    if code == p.ERR_BAD_FRAME:
                        self.uplink.damaged += 1
                        last_problem = "the device received a damaged frame"
                        self._turnaround = transfer.TURNAROUND_SECONDS
                        if time.monotonic() - sent >= max(transfer.TURNAROUND_SECONDS / 2, self._line(request_wire)):
                            break
                        continue  # too soon to be about this copy: maybe left from junk
                    if r_id == request_id:
                        raise HostError("device refused the request: %s" % shown(message))
                    continue
                if r_id != request_id:
                    if r_id in copies_sent and self._turnaround < MAX_TURNAROUND_SECONDS:
                        # This call's older copy answered only now: wait longer, this copy too.
                        self._turnaround = min(2 * self._turnaround, MAX_TURNAROUND_SECONDS)
                        quiet = self._turnaround + self._line(request_wire + 64)
                        limit = min(max(limit, sent + quiet + self._line(
                            request_wire + transfer.wire_bytes(framing.MAX_PAYLOAD))), started + self.give_up_after)
                    continue  # a late answer to an earlier copy or request
                if r_type != msg_type | p.RESPONSE:
                    raise HostError("device answered with unexpected message type 0x%02x" % r_type)
                return r_body

    def info(self):
        """HELLO: who the device is and its state; needs no session."""
        try:
            info = p.decode_json(self.request(p.TYPE_HELLO))
        except p.ProtocolError as err:
            raise HostError("device info does not parse: %s" % err)
        return check_hello(info)

    def authenticate(self, operator, anchors_pem, expected_serial=None, crl_pem=None, allow_unenrolled=False):
        """Prove `operator` to the device and check the device's identity against the
        vendor root(s) in anchors_pem; from then on every request is MAC-protected.
        See host/session.py."""
        from .session import authenticate
        self.session = authenticate(self, operator, anchors_pem, expected_serial, crl_pem, allow_unenrolled)
        return self.session

    def status(self):
        """STATUS (needs a session): HELLO's fields, the log head and the content chain."""
        try:
            info = p.decode_json(self.request(p.TYPE_STATUS))
        except p.ProtocolError as err:
            raise HostError("device status does not parse: %s" % err)
        return check_info(info)

    def checkpoint(self, old_size, host_time_ms):
        """CHECKPOINT (needs a collector session): the device signs its log's tree head
        now, with our clock beside its own, and proves it extends the head of old_size
        records (docs/PROTOCOL.md). Checked by the caller (host/logdb.py)."""
        answer = self.call_json(p.TYPE_CHECKPOINT, {"old_size": old_size, "host_time_ms": host_time_ms})
        if "damaged" in answer:
            if not (isinstance(answer.get("damaged_seq"), int) and isinstance(answer.get("verified_count"), int)
                    and isinstance(answer.get("first_seq"), int)):
                raise HostError("device reports a damaged log but garbles where")
            return answer  # no new signed head: the caller pulls the verified prefix and reports
        if not isinstance(answer.get("consistency"), list):
            raise HostError("device checkpoint answer is not a signed head with a proof")
        return answer

    def ack(self, size, root_hex):
        """ACK (collector): tell the device that this host verified and stored its signed
        head of `size` records with root `root_hex`; returns the size it keeps acknowledged."""
        answer = self.call_json(p.TYPE_ACK, {"size": size, "root": root_hex})
        if not isinstance(answer, dict) or not isinstance(answer.get("acked_size"), int):
            raise HostError("device ACK answer does not name the acknowledged size")
        return answer["acked_size"]

    def call_json(self, msg_type, obj):
        """One request with a JSON body whose answer is JSON (the provisioning requests)."""
        body = obj if isinstance(obj, (bytes, bytearray)) else json.dumps(obj).encode()
        try:
            answer = p.decode_json(self.request(msg_type, bytes(body)))
        except p.ProtocolError as err:
            raise HostError("device answer does not parse: %s" % err)
        if not isinstance(answer, dict):
            raise HostError("device answer is not a JSON object")
        return answer

    def read_log(self, start_seq, max_records=1024):
        """One LOG_READ round trip (version 1 of the protocol; pulls stream instead)."""
        try:
            first_seq, records = p.decode_log_batch(self.request(p.TYPE_LOG_READ, p.encode_log_read(start_seq, max_records)))
        except p.ProtocolError as err:
            raise HostError("log batch does not parse: %s" % err)
        if records and first_seq != start_seq:
            raise HostError("device answered from seq %d when asked for %d" % (first_seq, start_seq))
        return records

    # -- streaming -----------------------------------------------------------------

    def stream_log(self, start_seq, end_seq):
        """Yield the records start_seq..end_seq-1 in order, as lists of consecutive
        records, streaming with selective repeat (see _LogStream)."""
        return _LogStream(self, start_seq, end_seq).run()

    def upload(self, data, name, progress=None):
        """Store `data` on the device as `name` (its upload folder), streaming with
        selective repeat; the device checks the SHA-256 before it keeps the file.
        Returns the digest. `progress(sent_bytes, total_bytes)` is called as acks come."""
        return _Upload(self, bytes(data), name, progress).run()


class _Live:
    """One request on the line: what it asked for and how far its answer has come."""
    __slots__ = ("request_id", "start", "end", "cursor", "sent_at")

    def __init__(self, request_id, start, end, sent_at):
        self.request_id, self.start, self.end, self.cursor, self.sent_at = request_id, start, end, start, sent_at


class _Stream:
    """What streaming in either direction shares: the requests on the line in the order
    sent, and the rules that declare some of them lost.

    The device answers requests in the order it receives them and the line keeps
    order, so an answer to request X proves that every live request sent before X was
    lost (the request or its answer): those are asked again at once, without waiting
    for a timeout. Silence on the line for a turnaround plus a frame's time, or no
    whole frame for `silence_timeout`, means everything live was lost (a disconnect, a
    lost last request): then one small probe at a time until the line answers."""

    def __init__(self, client):
        self.client = client
        self.live = []
        self.probing = False
        self.last_good = time.monotonic()
        self.last_progress = time.monotonic()
        self.problem = "no answer"
        self.largest_frame = 0  # the largest payload the peer may send in one frame

    def lost(self, request):
        raise NotImplementedError

    def answered(self, request_id):
        """The live request with this id (those before it are lost), or None."""
        for i, request in enumerate(self.live):
            if request.request_id == request_id:
                for earlier in self.live[:i]:
                    self.lost(earlier)
                del self.live[:i]
                return request
        return None

    def finish(self, request):
        self.live.remove(request)
        self.lost(request)

    def check_timeouts(self, chunk):
        if not self.live:
            return
        now = time.monotonic()
        client = self.client
        # While a write blocked (the line was full) nothing could be read: waits
        # count from when it returned.
        head = max(self.live[0].sent_at, getattr(client.transport, "last_tx", 0.0))
        quiet = transfer.TURNAROUND_SECONDS + client._line(transfer.wire_bytes(chunk))
        last_rx = max(head, getattr(client.transport, "last_rx", 0.0))
        # A frame may be larger than the chunk (a record is never split), so "no whole
        # frame" waits for the largest one that can come.
        largest = max(chunk, self.largest_frame)
        if now - last_rx > quiet or now - max(head, self.last_good) > transfer.silence_timeout(client.baudrate, largest):
            self.problem = "no answer within %.1f s" % (now - max(head, self.last_good))
            for request in self.live:
                self.lost(request)
            self.live = []
            self.probing = True

    def check_give_up(self):
        if time.monotonic() - self.last_progress > self.client.give_up_after:
            self.client._give_up(self.last_progress, self.problem)

    def take_error(self, request_id, body, what):
        """An ERROR answer: a damaged request is counted (it is asked again like any
        loss); a refusal of a live request ends the transfer with the device's reason."""
        code, message = p.decode_error(body)
        if code == p.ERR_BAD_FRAME:
            self.client.uplink.damaged += 1
            self.problem = "the device received a damaged frame"
        elif any(r.request_id == request_id for r in self.live):
            raise HostError("device refused %s: %s" % (what, shown(message)))

    def good_frame(self):
        self.last_good = time.monotonic()
        self.probing = False


class _LogStream(_Stream):
    def __init__(self, client, start_seq, end_seq):
        _Stream.__init__(self, client)
        self.start_seq, self.end_seq = start_seq, end_seq
        self.received = {}
        self.holes = set()         # seqs asked for, lost, not yet asked again
        self.frontier = start_seq  # first seq never asked for
        self.avg_record = 256.0    # wire bytes per record, learnt as records come
        self.next_seq = start_seq  # the first record not yet handed over
        self.largest_frame = logrecord.MAX_RECORD_LEN + 64  # one whole record, the largest the device makes

    MAX_AHEAD = 8192  # records received or asked for beyond the first one missing

    def lost(self, request):
        for seq in range(request.cursor, request.end):
            if seq not in self.received:
                self.holes.add(seq)

    def _in_flight(self):
        return sum(r.end - r.cursor for r in self.live) * self.avg_record

    def _next_range(self, max_records):
        if self.holes:
            first = min(self.holes)
            end = first
            while end in self.holes and end - first < max_records:
                self.holes.discard(end)
                end += 1
            return first, end
        # Behind a hole that keeps failing, run ahead only so far: what waits for it
        # is held in memory.
        if self.frontier < self.end_seq and self.frontier - self.next_seq < self.MAX_AHEAD:
            first = self.frontier
            self.frontier = min(self.end_seq, first + max_records)
            return first, self.frontier
        return None

    def _fill(self, chunk):
        client = self.client
        window = transfer.wire_bytes(chunk) if self.probing else client._window(chunk)
        if self.probing and self.live:
            return
        while self._in_flight() < window:
            budget = min(window / 2.0, transfer.MAX_STREAM_BYTES * 0.9, transfer.MAX_STREAM_FRAMES * chunk * 0.9)
            if self.probing:
                budget = chunk
            span = self._next_range(max(1, int(budget / self.avg_record)))
            if span is None:
                return
            request_id = client._id()
            client.transport.send(p.encode_message(p.TYPE_LOG_STREAM, request_id,
                                                   p.encode_log_stream_request(span[0], span[1], chunk)))
            client.uplink.bytes += transfer.wire_bytes(p.HEADER_LEN + 10)
            self.live.append(_Live(request_id, span[0], span[1], time.monotonic()))
            if self.probing:
                return

    def _take(self, payload):
        try:
            r_type, r_id, r_body = p.decode_message(payload)
        except p.ProtocolError as err:
            self.problem = str(err)
            return
        if r_type == p.TYPE_ERROR:
            self.take_error(r_id, r_body, "the log transfer")
            return
        if r_type != p.TYPE_LOG_STREAM | p.RESPONSE:
            return  # a late answer to something else
        try:
            flags, first, records = p.decode_log_stream_frame(r_body)
        except p.ProtocolError as err:
            self.problem = "log stream frame does not parse: %s" % err
            return
        request = self.answered(r_id)
        self.last_good = time.monotonic()
        if request is not None:
            # Only an answer to a live request ends probing: stale answers still queued at
            # the device must drain before the window is refilled, or they pile up.
            self.probing = False
        for i, record in enumerate(records):
            seq = first + i
            # Only records asked for and not yet handed over count: a device that sends
            # what nobody asked for can neither grow memory nor fake progress.
            if self.next_seq <= seq < min(self.end_seq, self.frontier) and seq not in self.received:
                self.received[seq] = record
                self.holes.discard(seq)
                self.last_progress = time.monotonic()
                self.avg_record += (len(record) + 3 - self.avg_record) * 0.05
        if request is None:
            return  # an answer to a request already taken as lost: its records still count
        if not records and first < self.end_seq and flags & p.STREAM_LAST and first >= request.cursor:
            raise HostError("device log ends before seq %d, which it reported having; run the pull again" % first)
        for seq in range(request.cursor, min(first, request.end)):
            if seq not in self.received:
                self.holes.add(seq)
        request.cursor = max(request.cursor, first + len(records))
        if flags & p.STREAM_LAST or request.cursor >= request.end:
            self.finish(request)

    def run(self):
        client = self.client
        self.last_progress = time.monotonic()
        while self.next_seq < self.end_seq:
            if self.next_seq in self.received:
                batch = []
                while self.next_seq in self.received:
                    batch.append(self.received.pop(self.next_seq))
                    self.next_seq += 1
                yield batch
                continue
            chunk = client.chunk_down()
            self._fill(chunk)
            item = client.transport.receive(time.monotonic() + 0.02)
            if item is not None:
                payload, error = item
                client._note_frame(payload, error)
                if error is not None:
                    self.problem = "damaged frames from the device (%s)" % error
                else:
                    self._take(payload)
            self.check_timeouts(chunk)
            self.check_give_up()


class _Upload(_Stream):
    def __init__(self, client, data, name, progress):
        _Stream.__init__(self, client)
        self.data, self.name, self.progress = data, name, progress
        self.todo = [[0, len(data)]]  # byte ranges neither acked nor on the line
        self.acked = 0

    def lost(self, request):
        if request.cursor < request.end:
            self.todo.append([request.cursor, request.end])

    def _fill(self, chunk):
        client = self.client
        window = transfer.wire_bytes(chunk) if self.probing else client._window(chunk)
        if self.probing and self.live:
            return
        while self.todo and sum(r.end - r.cursor for r in self.live) < window:
            self.todo.sort()
            span = self.todo[0]
            n = min(span[1] - span[0], chunk - p.HEADER_LEN - p.UPLOAD_DATA_HEAD_LEN)
            start = span[0]
            span[0] += n
            if span[0] >= span[1]:
                self.todo.pop(0)
            request_id = client._id()
            payload = p.encode_message(p.TYPE_UPLOAD_DATA, request_id,
                                       p.encode_upload_data(self.token, start, self.data[start:start + n]))
            client.transport.send(payload)
            client.uplink.bytes += transfer.wire_bytes(len(payload))
            self.live.append(_Live(request_id, start, start + n, time.monotonic()))
            if self.probing:
                return

    def _take(self, payload):
        try:
            r_type, r_id, r_body = p.decode_message(payload)
        except p.ProtocolError:
            return
        if r_type == p.TYPE_ERROR:
            self.take_error(r_id, r_body, "the upload")
            return
        if r_type != p.TYPE_UPLOAD_DATA | p.RESPONSE:
            return
        self.good_frame()
        request = self.answered(r_id)
        if request is None:
            return  # a late ack for bytes sent again since: they are counted once below
        self.live.remove(request)
        self.acked += request.end - request.start
        request.cursor = request.end
        self.last_progress = time.monotonic()
        if self.progress is not None:
            self.progress(self.acked, len(self.data))

    def run(self):
        client = self.client
        digest = hashlib.sha256(self.data).digest()
        self.token = p.decode_u32(client.request(p.TYPE_UPLOAD_BEGIN,
                                                 p.encode_upload_begin(len(self.data), digest, self.name)))
        self.last_progress = time.monotonic()
        while self.todo or self.live:
            chunk = client.chunk_up()
            self._fill(chunk)
            item = client.transport.receive(time.monotonic() + 0.02)
            if item is not None:
                payload, error = item
                client._note_frame(payload, error)
                if error is None:
                    self._take(payload)
            self.check_timeouts(chunk)
            self.check_give_up()
        stored = client.request(p.TYPE_UPLOAD_END, p.encode_u32(self.token))
        if stored != digest:
            raise HostError("device stored the upload with SHA-256 %s, not %s" % (stored.hex(), digest.hex()))
        return digest
