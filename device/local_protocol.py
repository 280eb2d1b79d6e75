"""The agent's local socket wire format, shared by the agent and its Python client.
Documented for clients in any language in docs/AGENT.md.

Every message, in both directions:

    u32 header_length (little-endian) | header: UTF-8 JSON object | data

`data` is header["data_length"] bytes (absent means 0): raw pixels or an encoded image
for a submit, nothing otherwise. The agent speaks first with a "hello" header.
"""

import json
import socket
import struct
import time

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
_LENGTH = struct.Struct("<I")


class LocalProtocolError(ValueError):
    """The peer broke the wire format; the connection cannot continue."""


class ConnectionClosed(ConnectionError):
    """The peer closed the connection (possibly in the middle of a message)."""


def send_message(sock, header, data=b""):
    header = dict(header)
    if len(data):
        header["data_length"] = len(data)
    text = json.dumps(header, ensure_ascii=True).encode()  # any string a peer sent encodes
    sock.sendall(_LENGTH.pack(len(text)) + text)
    if len(data):
        sock.sendall(data)


def _recv_exactly(sock, n, deadline=None):
    buffer = bytearray(n)
    view = memoryview(buffer)
    got = 0
    while got < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("the message was not complete within its deadline")
            sock.settimeout(remaining)
        chunk = sock.recv_into(view[got:], n - got)
        if chunk == 0:
            raise ConnectionClosed("the peer closed the connection after %d of %d bytes" % (got, n))
        got += chunk
    return buffer


def recv_message(sock, max_data_bytes=0, transfer_timeout=None, reserve=None):
    """Read one message; return (header dict, data bytes). A header or data larger than
    allowed, or a header that is not a JSON object, raises LocalProtocolError before
    anything large is read or allocated. transfer_timeout: once a message has begun, the
    whole rest of it must arrive within this many seconds (the socket's own timeout
    applies to its first bytes). reserve(n): called with the data length before the data
    is read, to wait for memory or refuse (it raises)."""
    try:
        (length,) = _LENGTH.unpack(_recv_exactly(sock, 4))
    except ConnectionClosed as err:
        if "after 0 of" in str(err):
            raise ConnectionClosed("closed") from None
        raise
    deadline = time.monotonic() + transfer_timeout if transfer_timeout is not None else None
    if length == 0 or length > MAX_HEADER_BYTES:
        raise LocalProtocolError("header of %d bytes; headers are 1 to %d bytes" % (length, MAX_HEADER_BYTES))
    try:
        header = json.loads(bytes(_recv_exactly(sock, length, deadline)).decode("utf-8"))
    except (UnicodeError, ValueError):
        raise LocalProtocolError("header is not UTF-8 JSON") from None
    except RecursionError:
        raise LocalProtocolError("header nests too deeply") from None
    if not isinstance(header, dict):
        raise LocalProtocolError("header is not a JSON object")
    data_length = header.get("data_length", 0)
    if isinstance(data_length, bool) or not isinstance(data_length, int) or data_length < 0:
        raise LocalProtocolError("data_length must be a whole number of bytes")
    if data_length > max_data_bytes:
        raise LocalProtocolError("message carries %d bytes of data; the limit is %d"
                                 % (data_length, max_data_bytes))
    if data_length and reserve is not None:
        reserve(data_length)
    data = _recv_exactly(sock, data_length, deadline) if data_length else b""  # a bytearray: no copy
    return header, data


def peer_credentials(sock):
    """(pid, uid, gid) of the process at the other end of a Unix socket (Linux)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)
