"""A small Python client for the agent's local socket: what `synthseal-device capture`
and `status` use, and what a Python avatar rig or generator can import to hand its
frames to the agent. Clients in other languages speak docs/AGENT.md directly.

    from synthseal.device.client import AgentClient
    with AgentClient("/run/synthseal/agent.sock", client="unity-rig-1") as agent:
        result = agent.submit_frame(rgb_array, source="rig")      # HxWx3 uint8
        print(result["file"], result["label"])

Frames handed in are sealed as synthetic only (Label 1, the visible label):
source is "rig" (a render or generator output) or "composite".
"""

import itertools
import socket

import numpy as np

from .local_protocol import ConnectionClosed, LocalProtocolError, recv_message, send_message

DEFAULT_SOCKET = "/run/synthseal/agent.sock"


class AgentClientError(Exception):
    """The agent refused or failed a request; `code` says which kind (docs/AGENT.md)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class AgentClient:
    def __init__(self, path=DEFAULT_SOCKET, client="python-client", timeout=120.0):
        self.client = client
        self._ids = itertools.count(1)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(path))
        except FileNotFoundError:
            self._sock.close()
            raise AgentClientError("no_agent", "no agent socket at %s: is the agent running? start it with "
                                               "`synthseal-device run` (or systemctl start synthseal-agent)" % path)
        except PermissionError:
            self._sock.close()
            raise AgentClientError("permission", "no permission to use the agent socket %s: join the group "
                                                 "synthseal (or the one named in agent.socket_group) and log "
                                                 "in again" % path)
        except ConnectionRefusedError:
            self._sock.close()
            raise AgentClientError("no_agent", "the agent socket %s does not answer: the agent is not running"
                                   % path)
        try:
            self.hello = self._receive()
        except AgentClientError:
            self._sock.close()
            raise
        if self.hello.get("type") != "hello":
            self._sock.close()
            raise AgentClientError("bad_message", "the socket at %s is not a synthseal agent" % path)

    def close(self):
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _receive(self):
        try:
            header, _ = recv_message(self._sock, 0)
        except (ConnectionClosed, ConnectionError):
            raise AgentClientError("disconnected", "the agent closed the connection") from None
        except socket.timeout:
            raise AgentClientError("timeout", "the agent did not answer in time") from None
        except LocalProtocolError as err:
            raise AgentClientError("bad_message", str(err)) from None
        if header.get("type") == "error":
            error = header.get("error") or {}
            raise AgentClientError(error.get("code", "error"), error.get("message", "refused"))
        return header

    def _send(self, header, data=b""):
        try:
            send_message(self._sock, header, data)
        except (BrokenPipeError, ConnectionError) as err:
            # The agent may have refused the request from its header (too large, busy) and
            # closed before taking the data: its answer says why.
            try:
                self._sock.settimeout(2)
                self._receive()
            except AgentClientError as refusal:
                if refusal.code != "disconnected":
                    raise
            raise AgentClientError("disconnected", "the agent closed the connection: %s" % err) from None

    def request(self, header, data=b""):
        """Send one request; return the agent's result header (raises AgentClientError
        when the agent says ok = false)."""
        header = dict(header, id=next(self._ids))
        self._send(header, data)
        answer = self._receive()
        if not answer.get("ok"):
            error = answer.get("error") or {}
            raise AgentClientError(error.get("code", "error"), error.get("message", "request failed"))
        return answer

    def status(self):
        return self.request({"type": "status"})["status"]

    def capture(self, frames=1, source="capture"):
        """Ask the agent to capture and seal frames from its own camera. Returns the list
        of per-frame outcomes ({"ok": True, "result": {...}} or {"ok": False, "error": ...});
        raises AgentClientError if the request as a whole failed before any frame."""
        header = dict(type="capture", frames=frames, source=source, id=next(self._ids))
        self._send(header)
        answer = self._receive()
        if "results" not in answer:
            error = answer.get("error") or {}
            raise AgentClientError(error.get("code", "error"), error.get("message", "capture failed"))
        return answer

    def submit_frame(self, frame, source="rig", channel_order="RGB", stride=None, width=None, height=None,
                     pixel_format=None):
        """Hand one raw frame to the agent to seal as synthetic. `frame`: an HxWx3 (or
        HxWx4, the fourth byte ignored) uint8 numpy array, or raw bytes with width,
        height, pixel_format (RGB888, BGR888, RGBX8888, BGRX8888) and stride."""
        if isinstance(frame, np.ndarray):
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] not in (3, 4):
                raise ValueError("frame must be an HxWx3 or HxWx4 uint8 array, got %s %s" % (frame.dtype, frame.shape))
            height, width, depth = frame.shape
            pixel_format = {3: "%s888", 4: "%sX8888"}[depth] % channel_order
            data = memoryview(np.ascontiguousarray(frame)).cast("B")  # sent as it lies in memory: no copy
            stride = width * depth
        else:
            data = memoryview(frame).cast("B")
        header = {"type": "submit", "encoding": "raw", "source": source, "client": self.client,
                  "width": width, "height": height, "pixel_format": pixel_format}
        if stride is not None:
            header["stride"] = stride
        return self.request(header, data)["result"]

    def submit_image(self, data, encoding="png", source="rig"):
        """Hand one encoded image (PNG or JPEG bytes) to the agent to seal as synthetic."""
        header = {"type": "submit", "encoding": encoding, "source": source, "client": self.client}
        return self.request(header, bytes(data))["result"]
