"""The device's serial service: frames in, DeviceEndpoint, frames out.

Runs on the USB gadget port (/dev/ttyGS0) or the UART (/dev/serial0) of a Pi, and on a
pseudo-terminal in the demo and the tests. Read-only requests in this version; the
protocol is documented in docs/PROTOCOL.md.
"""

import errno
import threading

import serial

from .core import framing
from .core.handlers import DeviceEndpoint, bad_frame_response, internal_error_response


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


def serve(state, port, baudrate=115200, stop=None, ready=None):
    """Answer requests on `port` until `stop` (a threading.Event) is set."""
    stop = stop or threading.Event()
    link = open_port(port, baudrate)
    log = state.log()
    endpoint = DeviceEndpoint(state.info, log, upload_dir=str(state.directory / "uploads"))
    reader = framing.FrameReader()
    if ready is not None:
        ready.set()
    try:
        while not stop.is_set():
            data = link.read(link.in_waiting or 1)
            if not data:
                continue
            for payload, error in reader.feed(data):
                if payload is not None:
                    log.refresh()  # a read-only view takes in records the owner appended
                    try:
                        answer = endpoint.handle_request(payload)
                    except Exception as err:  # one bad request never ends the service
                        answer = internal_error_response(err)
                else:
                    answer = bad_frame_response(error)
                for one in answer if isinstance(answer, list) else [answer]:
                    link.write(framing.encode_frame(one))
    finally:
        link.close()
