"""The agent's sealing pipeline: frames from the camera and from intake clients go
through three overlapping stages, so the sustained rate approaches the slowest stage
rather than the sum of all of them:

    producers (camera thread, one thread per socket client)
        -> [bounded queue] -> prepare: classify, decide, visible label, JPEG encode
        -> [bounded queue] -> seal:    ProduceID, implicit label, C2PA, temporary file,
                                        audit record, rename into place

One prepare thread and one seal thread. The seal stage is the only code that appends
to the log, so sequence numbers follow the order frames reach it, and a failed frame
never leaves a gap. JPEG encoding, TFLite, the C2PA signer and fsync all release the
GIL, which is what lets the stages overlap on a multi-core Pi.

Back-pressure: submit() waits for room in the first queue up to a timeout and then
raises PipelineBusy, which the client is told about; nothing is ever dropped silently.
"""

import queue
import threading
import time

from .seal import SealError


class PipelineBusy(Exception):
    """The queue stayed full for the whole wait: the client is told, nothing is dropped."""


class PipelineStopped(Exception):
    pass


class Job:
    """One frame on its way through the pipeline; the producer waits on it."""

    def __init__(self, frame, declared_source, origin, channel_order):
        self.frame = frame
        self.declared_source = declared_source
        self.origin = origin
        self.channel_order = channel_order
        self.prepared = None
        self.enqueued = time.monotonic()
        self.done = threading.Event()
        self.result = None
        self.error = None

    def finish(self, result=None, error=None):
        self.frame = None  # the pixels are no longer needed: free them now
        self.result, self.error = result, error
        self.done.set()

    def wait(self, timeout=None):
        """The seal result dict; raises SealError with the reason the frame was not emitted."""
        if not self.done.wait(timeout):
            raise SealError("frame not sealed within %s s" % timeout)
        if self.error is not None:
            raise SealError(self.error)
        return self.result


_STOP = object()


class SealPipeline:
    def __init__(self, sealer, out_dir, depth=4, on_sealed=None):
        self.sealer = sealer
        self.out_dir = out_dir
        self.depth = depth
        self._on_sealed = on_sealed
        self._incoming = queue.Queue(maxsize=depth)
        self._prepared = queue.Queue(maxsize=max(1, depth // 2))
        self._stopping = False
        self.stats = {"sealed": 0, "failed": 0, "busy": 0, "last_error": None}
        self._stats_lock = threading.Lock()
        self._threads = [threading.Thread(target=self._prepare_loop, name="seal-prepare", daemon=True),
                         threading.Thread(target=self._seal_loop, name="seal-commit", daemon=True)]
        for thread in self._threads:
            thread.start()

    def queue_depth(self):
        return self._incoming.qsize() + self._prepared.qsize()

    def submit(self, frame, declared_source, origin, channel_order="RGB", timeout=10.0):
        """Queue one frame; return its Job. Waits up to `timeout` s for room, then
        raises PipelineBusy (the caller says so to its client)."""
        if self._stopping:
            raise PipelineStopped("the agent is stopping")
        job = Job(frame, declared_source, origin, channel_order)
        try:
            self._incoming.put(job, timeout=timeout)
        except queue.Full:
            with self._stats_lock:
                self.stats["busy"] += 1
            raise PipelineBusy("the agent's queue of %d frames stayed full for %.0f s; "
                               "send frames more slowly or retry" % (self.depth, timeout)) from None
        return job

    def _prepare_loop(self):
        while True:
            job = self._incoming.get()
            if job is _STOP:
                self._prepared.put(_STOP)
                return
            try:
                job.prepared = self.sealer.prepare(job.frame, job.declared_source, job.channel_order, job.origin)
            except Exception as err:  # one bad frame never stops the stage
                self._fail(job, err)
                continue
            job.frame = None
            self._prepared.put(job)

    def _seal_loop(self):
        while True:
            job = self._prepared.get()
            if job is _STOP:
                return
            try:
                signed = self.sealer.sign(job.prepared, self.sealer.log.next_seq, self.out_dir)
                result = self.sealer.commit(signed)
            except Exception as err:
                self._fail(job, err)
                continue
            job.prepared = None
            result["latency_ms"] = round((time.monotonic() - job.enqueued) * 1000.0, 3)
            with self._stats_lock:
                self.stats["sealed"] += 1
            if self._on_sealed is not None:
                self._on_sealed(result)
            job.finish(result=result)

    def _fail(self, job, err):
        reason = str(err) if isinstance(err, SealError) else "frame not emitted: %s: %s" % (type(err).__name__, err)
        with self._stats_lock:
            self.stats["failed"] += 1
            self.stats["last_error"] = reason
        job.finish(error=reason)

    def stop(self, timeout=30.0):
        """Seal what is queued, then stop the stages."""
        self._stopping = True
        self._incoming.put(_STOP)
        for thread in self._threads:
            thread.join(timeout)
