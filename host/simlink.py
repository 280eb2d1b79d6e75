"""A virtual serial cable: two pseudo-terminal pairs joined by a line model.

Both ends are real tty devices (/dev/pts/N), opened with pyserial exactly like
/dev/ttyACM0 on the host and /dev/ttyGS0 on a device. A pty moves bytes as fast as
the kernel can, so the thread in the middle models the wire:

- `baudrate`: each byte takes 10 bit times on the line (8N1: start, 8 data, stop), in
  each direction independently (full duplex). None: as fast as the ptys go.
- `latency`: seconds added to every byte's delivery (cable, USB, adapter FIFOs).
- `faults`: a `LinkFaults`, injected reproducibly from its seed: bit errors, dropped
  bytes, noise bursts and disconnects. Fault positions are counted in bytes of each
  direction's stream, not in wall-clock time, so a seed gives the same damage to the
  same bytes on a loaded machine as on an idle one.
- `fault`: a function (direction, bytes) -> bytes applied first, where a test wants a
  specific, hand-written fault; direction is "to_device" or "to_host".

The sender feels the line: the model reads only a few milliseconds ahead of the wire,
so a writer faster than the baud rate blocks once the pty's buffer is full, as on a
real UART. `stats` counts what was carried and what was injected.
"""

import errno
import math
import os
import random
import select
import threading
import time
import tty
from collections import deque

TO_DEVICE = "to_device"
TO_HOST = "to_host"
BITS_PER_BYTE = 10  # 8N1 on the wire
_OVERRUN_LIMIT = 1 << 20  # bytes a receiver that never reads may leave queued; more are lost


class LinkFaults:
    """What goes wrong on the wire, reproducibly from `seed`.

    bit_error_rate  probability that a data bit is flipped (each direction)
    drop_rate       probability that a byte is lost (each direction)
    burst_rate      probability, per byte, that a noise burst starts there; a burst
                    replaces `burst_bytes` (lo, hi) bytes with random ones
    disconnects     [(at_byte, seconds), ...]: the cable goes dead for `seconds` once
                    `at_byte` bytes have been sent towards the host (or towards the
                    device, with a third element "to_device"); nothing passes either
                    way meanwhile
    """

    def __init__(self, bit_error_rate=0.0, drop_rate=0.0, burst_rate=0.0, burst_bytes=(4, 64),
                 disconnects=(), seed=0):
        self.bit_error_rate = bit_error_rate
        self.drop_rate = drop_rate
        self.burst_rate = burst_rate
        self.burst_bytes = burst_bytes
        self.disconnects = sorted(tuple(d) if len(d) == 3 else (d[0], d[1], TO_HOST) for d in disconnects)
        self.seed = seed

    def __repr__(self):
        return ("LinkFaults(bit_error_rate=%g, drop_rate=%g, burst_rate=%g, disconnects=%r, seed=%r)"
                % (self.bit_error_rate, self.drop_rate, self.burst_rate, self.disconnects, self.seed))


def _gap(rng, rate):
    """Units until the next event of a Bernoulli process with this rate (geometric)."""
    if rate <= 0:
        return float("inf")
    if rate >= 1:
        return 0
    return int(math.log(1.0 - rng.random()) / math.log(1.0 - rate))


class _Direction:
    """One way of the cable: the injected faults and the bytes on the wire."""

    def __init__(self, name, source, target, faults, index):
        self.name = name
        self.source = source
        self.target = target
        self.faults = faults
        # One random stream per kind of fault, so the damage depends only on the position
        # in the byte stream, never on how the pump happened to split it into reads.
        self.bit_rng, self.drop_rng, self.burst_rng = (
            random.Random("%r/%d/%s" % (faults.seed, index, kind)) for kind in ("bit", "drop", "burst"))
        self.position = 0          # bytes read from the sender so far
        self.next_bit_error = _gap(self.bit_rng, faults.bit_error_rate)
        self.next_drop = _gap(self.drop_rng, faults.drop_rate)
        self.next_burst = _gap(self.burst_rng, faults.burst_rate)
        self.burst_left = 0
        self.wire = deque()        # (due time, bytes) in order
        self.wire_bytes = 0
        self.line_free = 0.0       # when the line has sent everything scheduled so far
        self.out = bytearray()     # due bytes the receiver's pty has not taken yet
        self.stats = {"bytes": 0, "bit_errors": 0, "dropped": 0, "bursts": 0, "lost_disconnected": 0,
                      "overrun": 0}

    def damage(self, data):
        """Apply bit errors, bursts and drops to the next len(data) bytes of the stream."""
        faults = self.faults
        start, n = self.position, len(data)
        self.position += n
        self.stats["bytes"] += n
        if faults.bit_error_rate <= 0 and faults.drop_rate <= 0 and faults.burst_rate <= 0:
            return data
        buf = bytearray(data)
        bits_end = (start + n) * 8
        while self.next_bit_error < bits_end:
            bit = self.next_bit_error - start * 8
            buf[bit // 8] ^= 1 << (bit % 8)
            self.stats["bit_errors"] += 1
            self.next_bit_error += 1 + _gap(self.bit_rng, faults.bit_error_rate)
        i = 0
        while i < n:
            if self.burst_left:
                take = min(self.burst_left, n - i)
                buf[i:i + take] = bytes(self.burst_rng.getrandbits(8) for _ in range(take))
                self.burst_left -= take
                i += take
                continue
            if self.next_burst >= start + n:
                break
            i = max(i, self.next_burst - start)
            self.burst_left = self.burst_rng.randint(*faults.burst_bytes)
            self.stats["bursts"] += 1
            self.next_burst += 1 + _gap(self.burst_rng, faults.burst_rate)
        if self.next_drop < start + n:
            keep = bytearray()
            last = 0
            while self.next_drop < start + n:
                at = self.next_drop - start
                keep += buf[last:at]
                last = at + 1
                self.stats["dropped"] += 1
                self.next_drop += 1 + _gap(self.drop_rng, faults.drop_rate)
            keep += buf[last:]
            buf = keep
        return bytes(buf)


class VirtualSerialLink:
    def __init__(self, fault=None, baudrate=None, latency=0.0, faults=None):
        self.fault = fault
        self.baudrate = baudrate
        self.latency = latency
        self.faults = faults or LinkFaults()
        self._host_master, self._host_slave = os.openpty()
        self._device_master, self._device_slave = os.openpty()
        for fd in (self._host_slave, self._device_slave):
            tty.setraw(fd)  # no echo, no line editing: a byte pipe like a real UART
        for fd in (self._host_master, self._device_master):
            os.set_blocking(fd, False)
        self.host_port = os.ttyname(self._host_slave)
        self.device_port = os.ttyname(self._device_slave)
        self._directions = [
            _Direction(TO_DEVICE, self._host_master, self._device_master, self.faults, 0),
            _Direction(TO_HOST, self._device_master, self._host_master, self.faults, 1),
        ]
        self._pending_disconnects = list(self.faults.disconnects)
        self._down_until = 0.0
        self.disconnect_count = 0
        # Read ahead of the wire only this much, so a fast writer blocks like on a UART,
        # yet a late wake-up of this thread does not leave the line idle.
        self._read_ahead = 4096 if baudrate is None else max(256, int(baudrate / BITS_PER_BYTE * 0.02))
        # Bytes per scheduling slice: about a millisecond of line time.
        self._slice = 4096 if baudrate is None else max(1, int(baudrate / BITS_PER_BYTE / 1000))
        self._lock = threading.RLock()
        self._wake_r, self._wake_w = os.pipe()
        self._closing = False
        self._thread = threading.Thread(target=self._pump, name="virtual-serial-link", daemon=True)
        self._thread.start()

    @property
    def stats(self):
        return {d.name: dict(d.stats) for d in self._directions}

    def disconnect(self, seconds):
        """Pull the cable for `seconds`: bytes on the wire and sent meanwhile are lost."""
        with self._lock:
            self._down_until = max(self._down_until, time.monotonic() + seconds)
            self.disconnect_count += 1
            for d in self._directions:
                d.stats["lost_disconnected"] += d.wire_bytes
                d.wire.clear()
                d.wire_bytes = 0
        os.write(self._wake_w, b"w")

    def _enqueue(self, d, data, now):
        if self.fault is not None:
            data = self.fault(d.name, data)
        for cut in list(self._pending_disconnects):
            if cut[2] == d.name and d.position + len(data) >= cut[0]:
                self._pending_disconnects.remove(cut)
                self.disconnect(cut[1])
        data = d.damage(data)
        if now < self._down_until:
            d.stats["lost_disconnected"] += len(data)
            return
        if self.baudrate is None:
            d.wire.append((now + self.latency, data))
            d.wire_bytes += len(data)
            return
        byte_time = BITS_PER_BYTE / float(self.baudrate)
        for i in range(0, len(data), self._slice):
            piece = data[i:i + self._slice]
            d.line_free = max(d.line_free, now) + len(piece) * byte_time
            d.wire.append((d.line_free + self.latency, piece))
            d.wire_bytes += len(piece)

    def _deliver(self, d, now):
        while d.wire and d.wire[0][0] <= now:
            _, piece = d.wire.popleft()
            d.wire_bytes -= len(piece)
            d.out += piece
        if len(d.out) > _OVERRUN_LIMIT:  # nobody reads this end: a UART overruns
            d.stats["overrun"] += len(d.out) - _OVERRUN_LIMIT
            del d.out[:len(d.out) - _OVERRUN_LIMIT]
        if d.out:
            try:
                written = os.write(d.target, bytes(d.out[:65536]))
                del d.out[:written]
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EIO):
                    raise

    def _pump(self):
        while not self._closing:
            now = time.monotonic()
            readers, writers, wake_at = [self._wake_r], [], None
            for d in self._directions:
                if d.wire_bytes < self._read_ahead:
                    readers.append(d.source)
                if d.out:
                    writers.append(d.target)
                if d.wire:
                    wake_at = d.wire[0][0] if wake_at is None else min(wake_at, d.wire[0][0])
            if self._down_until > now:
                wake_at = self._down_until if wake_at is None else min(wake_at, self._down_until)
            timeout = None if wake_at is None else max(0.0, wake_at - now)
            if writers and (timeout is None or timeout > 0.005):
                timeout = 0.005  # a full receiver pty drains in its own time
            ready, _, _ = select.select(readers, [], [], timeout)
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            now = time.monotonic()
            with self._lock:
                for d in self._directions:
                    if d.source in ready:
                        try:
                            data = os.read(d.source, max(1, self._read_ahead - d.wire_bytes))
                        except OSError:
                            data = b""  # the other side has closed its end for now
                        if data:
                            self._enqueue(d, data, now)
                    self._deliver(d, now)

    def close(self):
        self._closing = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=2)
        for fd in (self._host_master, self._host_slave, self._device_master, self._device_slave,
                   self._wake_r, self._wake_w):
            os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LoopbackTransport:
    """A transport with no cable at all: each payload sent is answered at once by
    `answer(payload) -> list of payloads` (a device's DeviceAnswers in this process).
    For provisioning devices in tests, benchmarks and the demo's set-up, where the
    link itself is not what is being exercised. `cut_after(n)` makes the link go dead
    after n more requests (answers to the nth included or not, per `keep_answer`), to
    test what an interrupted exchange leaves behind."""

    baudrate = 1000000
    port = "loopback"

    def __init__(self, answer):
        self._answer = answer
        self._queue = deque()
        self.last_rx = self.last_tx = 0.0
        self.sent = []       # every payload sent, in order (a transcript for tests)
        self.received = []   # every payload answered
        self._cut_at = None
        self._keep_answer = True

    def cut_after(self, requests, keep_answer=True):
        self._cut_at = len(self.sent) + requests
        self._keep_answer = keep_answer

    def send(self, payload):
        payload = bytes(payload)
        self.last_tx = time.monotonic()
        if self._cut_at is not None and len(self.sent) >= self._cut_at:
            return  # the cable is out: the request never arrives
        self.sent.append(payload)
        answers = self._answer(payload)
        if self._cut_at is not None and len(self.sent) >= self._cut_at and not self._keep_answer:
            return  # the device acted, but its answer is lost
        self.received.extend(answers)
        self._queue.extend((a, None) for a in answers)

    def receive(self, deadline):
        if self._queue:
            self.last_rx = time.monotonic()
            return self._queue.popleft()
        remaining = deadline - time.monotonic()
        if remaining > 0:
            time.sleep(min(remaining, 0.005))
        return None

    def close(self):
        pass
