"""The device side of the protocol: turn one request payload into one response
payload. No I/O here; the serial service (device/service.py on CPython, a small loop
on MicroPython) reads frames, calls handle_request and writes the answer.
"""

from . import framing
from . import protocol as p


def _fits_one_frame(record_lengths):
    return p.log_batch_fits(framing.MAX_PAYLOAD, record_lengths)


class DeviceEndpoint:
    """`info` is a function returning the device-info dict; `log` an AuditLog."""

    def __init__(self, info, log):
        self._info = info
        self._log = log

    def handle_request(self, payload):
        try:
            msg_type, request_id, body = p.decode_message(payload)
        except p.ProtocolError as err:
            return p.encode_message(p.TYPE_ERROR, 0, p.encode_error(p.ERR_BAD_REQUEST, str(err)))
        try:
            if msg_type == p.TYPE_HELLO:
                return p.encode_message(p.TYPE_HELLO | p.RESPONSE, request_id, p.encode_json(self._info()))
            if msg_type == p.TYPE_LOG_READ:
                start_seq, max_records = p.decode_log_read(body)
                return p.encode_message(p.TYPE_LOG_READ | p.RESPONSE, request_id, self._log_batch(start_seq, max_records))
            return self._error(request_id, p.ERR_UNKNOWN_TYPE, "unknown message type 0x%02x" % msg_type)
        except p.ProtocolError as err:
            return self._error(request_id, p.ERR_BAD_REQUEST, str(err))
        except LogRangeError as err:
            return self._error(request_id, p.ERR_LOG_RANGE, str(err))
        except RecordTooLargeError as err:
            return self._error(request_id, p.ERR_INTERNAL, str(err))

    def _error(self, request_id, code, message):
        return p.encode_message(p.TYPE_ERROR, request_id, p.encode_error(code, message))

    def _log_batch(self, start_seq, max_records):
        log = self._log
        if start_seq < log.first_seq:
            raise LogRangeError("records before seq %d are no longer on the device" % log.first_seq)
        if start_seq >= log.next_seq or max_records == 0:
            return p.encode_log_batch(start_seq, [])
        records = log.read(start_seq, max_records, _fits_one_frame)
        if not records:
            raise RecordTooLargeError("record %d does not fit one frame of %d bytes"
                                      % (start_seq, framing.MAX_PAYLOAD))
        return p.encode_log_batch(start_seq, records)


class LogRangeError(Exception):
    pass


class RecordTooLargeError(Exception):
    pass


def bad_frame_response(err):
    """The answer to a frame that failed COBS/CRC: the host cannot be sure which
    request it was, so request id 0 and a code that tells it to resend."""
    return p.encode_message(p.TYPE_ERROR, 0, p.encode_error(p.ERR_BAD_FRAME, str(err)))


def internal_error_response(err):
    """The answer when handling a request failed unexpectedly: the service keeps running."""
    return p.encode_message(p.TYPE_ERROR, 0, p.encode_error(p.ERR_INTERNAL, ("%s: %s" % (type(err).__name__, err))[:200]))
