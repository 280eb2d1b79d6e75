"""A virtual serial cable: two pseudo-terminal pairs joined by a copying thread.

Both ends are real tty devices (/dev/pts/N), opened with pyserial exactly like
/dev/ttyACM0 on the host and /dev/ttyGS0 on a device. The thread in the middle is
where a test injects link faults (corrupted, dropped or delayed bytes) through
`fault`, a function (direction, bytes) -> bytes; direction is "to_device" or
"to_host".
"""

import os
import select
import threading
import tty


class VirtualSerialLink:
    def __init__(self, fault=None):
        self.fault = fault
        self._host_master, self._host_slave = os.openpty()
        self._device_master, self._device_slave = os.openpty()
        for fd in (self._host_slave, self._device_slave):
            tty.setraw(fd)  # no echo, no line editing: a byte pipe like a real UART
        self.host_port = os.ttyname(self._host_slave)
        self.device_port = os.ttyname(self._device_slave)
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._pump, name="virtual-serial-link", daemon=True)
        self._thread.start()

    def _pump(self):
        peer = {self._host_master: (self._device_master, "to_device"),
                self._device_master: (self._host_master, "to_host")}
        while True:
            ready, _, _ = select.select([self._host_master, self._device_master, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    continue  # the other side has closed its end for now
                target, direction = peer[fd]
                if self.fault is not None:
                    data = self.fault(direction, data)
                if data:
                    os.write(target, data)

    def close(self):
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=2)
        for fd in (self._host_master, self._host_slave, self._device_master, self._device_slave,
                   self._wake_r, self._wake_w):
            os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
