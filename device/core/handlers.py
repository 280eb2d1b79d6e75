"""The device side of the protocol: turn one request payload into its answer: one
payload, or for LOG_STREAM a list of payloads sent one frame each. No I/O here but the
upload staging file; the serial service (device/service.py on CPython, a small loop on
MicroPython) reads frames, calls handle_request and writes the answers.
"""

from . import framing
from . import protocol as p
from . import transfer
from .transfer import RecordTooLargeError


def _fits_one_frame(record_lengths):
    return p.log_batch_fits(framing.MAX_PAYLOAD, record_lengths)


class DeviceEndpoint:
    """`info` is a function returning the device-info dict; `log` an AuditLog;
    `upload_dir` the folder uploads are staged and stored in (None: uploads refused),
    `max_upload` the largest upload in bytes."""

    def __init__(self, info, log, upload_dir=None, max_upload=transfer.MAX_UPLOAD):
        self._info = info
        self._log = log
        self._uploads = transfer.UploadStage(upload_dir, max_upload) if upload_dir else None

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
            if msg_type == p.TYPE_LOG_STREAM:
                return self._log_stream(request_id, body)
            if msg_type in (p.TYPE_UPLOAD_BEGIN, p.TYPE_UPLOAD_DATA, p.TYPE_UPLOAD_END):
                return p.encode_message(msg_type | p.RESPONSE, request_id, self._upload(msg_type, body))
            return self._error(request_id, p.ERR_UNKNOWN_TYPE, "unknown message type 0x%02x" % msg_type)
        except p.ProtocolError as err:
            return self._error(request_id, p.ERR_BAD_REQUEST, str(err))
        except LogRangeError as err:
            return self._error(request_id, p.ERR_LOG_RANGE, str(err))
        except RecordTooLargeError as err:
            return self._error(request_id, p.ERR_INTERNAL, str(err))
        except transfer.UploadError as err:
            return self._error(request_id, p.ERR_UPLOAD, str(err))
        except OSError as err:
            return self._error(request_id, p.ERR_INTERNAL, "storage error: %s" % err)

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


    def _log_stream(self, request_id, body):
        start_seq, end_seq, chunk = p.decode_log_stream_request(body)
        if start_seq < self._log.first_seq:
            raise LogRangeError("records before seq %d are no longer on the device" % self._log.first_seq)
        kind = p.TYPE_LOG_STREAM | p.RESPONSE
        return [p.encode_message(kind, request_id, frame)
                for frame in transfer.stream_frames(self._log, start_seq, end_seq, chunk)]

    def _upload(self, msg_type, body):
        if self._uploads is None:
            raise transfer.UploadError("this device accepts no uploads")
        if msg_type == p.TYPE_UPLOAD_BEGIN:
            size, sha256, name = p.decode_upload_begin(body)
            return p.encode_u32(self._uploads.begin(size, sha256, name))
        if msg_type == p.TYPE_UPLOAD_DATA:
            token, offset, data = p.decode_upload_data(body)
            self._uploads.write(token, offset, data)
            return p.encode_upload_ack(offset, len(data))
        return self._uploads.finish(p.decode_u32(body))


class LogRangeError(Exception):
    pass


def bad_frame_response(err):
    """The answer to a frame that failed COBS/CRC: the host cannot be sure which
    request it was, so request id 0 and a code that tells it to resend."""
    return p.encode_message(p.TYPE_ERROR, 0, p.encode_error(p.ERR_BAD_FRAME, str(err)))


def internal_error_response(err, payload=None):
    """The answer when handling a request failed unexpectedly: the service keeps running.
    The request's id is echoed when it can be read, so the host stops waiting at once."""
    request_id = 0
    if payload is not None and len(payload) >= p.HEADER_LEN:
        request_id = p.decode_message(payload)[1]
    return p.encode_message(p.TYPE_ERROR, request_id,
                            p.encode_error(p.ERR_INTERNAL, ("%s: %s" % (type(err).__name__, err))[:200]))
