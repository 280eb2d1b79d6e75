"""The agent's sealing pipeline: frames from the camera and from intake clients go
through three overlapping stages, so the sustained rate approaches the slowest stage
rather than the sum of all of them:

    producers (camera thread, one thread per socket client)
        -> [bounded queue] -> prepare (N workers): classify, decide, watermark, visible label,
                                  JPEG, pixel fingerprint
        -> [reorder, bounded] -> seal (1 thread): ProduceID, implicit label, C2PA,
                                  temporary file, audit record, rename into place

The seal stage takes every frame that is ready in order (up to GROUP_LIMIT) and appends
their records with one write and one fsync (group commit): under a burst the log's
fsync is paid once per group, not once per frame.

Prepare is the slowest stage (the JPEG encode of a 12-megapixel frame, and the decode
that fingerprints its pixels for tracing), so it runs on
several workers; each frame carries a ticket taken when it was queued, and the seal
stage takes frames strictly in ticket order, so the log's order is the order frames
arrived. The seal stage is the only code that appends to the log: a failed frame never
leaves a gap in the sequence. JPEG encoding, TFLite, the C2PA signer and fsync release
the GIL, which is what lets the stages overlap on a multi-core Pi.

Back-pressure: submit() waits for room in the first queue up to a timeout and then
raises PipelineBusy, which the client is told about; nothing is ever dropped silently.
"""

import queue
import threading
import time

from .seal import LogAdvancedError, SealError


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
        self.ticket = None
        self.prepare_error = None
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
    def __init__(self, sealer, out_dir, depth=4, prepare_workers=2, on_sealed=None):
        self.sealer = sealer
        self.out_dir = out_dir
        self.depth = depth
        self._on_sealed = on_sealed
        self._incoming = queue.Queue(maxsize=depth)
        # Prepared frames waiting for their turn at the seal stage, by ticket; bounded so
        # that fast workers cannot run ahead of the seal stage without limit.
        self._ready = {}
        self._ready_limit = max(depth, prepare_workers)
        self._ready_changed = threading.Condition()
        self._issued = 0  # tickets handed out so far
        self._ticket_lock = threading.Lock()
        self._next_to_seal = 0
        self._stopping = False
        self.stats = {"sealed": 0, "failed": 0, "busy": 0, "last_error": None}
        self._stats_lock = threading.Lock()
        self._workers = [threading.Thread(target=self._prepare_loop, name="seal-prepare-%d" % n, daemon=True)
                         for n in range(prepare_workers)]
        self._sealer_thread = threading.Thread(target=self._seal_loop, name="seal-commit", daemon=True)
        for thread in self._workers + [self._sealer_thread]:
            thread.start()

    def queue_depth(self):
        with self._ready_changed:
            return self._incoming.qsize() + len(self._ready)

    def submit(self, frame, declared_source, origin, channel_order="RGB", timeout=10.0):
        """Queue one frame; return its Job. Waits up to `timeout` s for room, then
        raises PipelineBusy (the caller says so to its client)."""
        job = Job(frame, declared_source, origin, channel_order)
        # The ticket is taken and the job queued under one lock, so tickets reach the
        # queue in order; a frame refused as busy leaves an empty slot for its ticket.
        with self._ticket_lock:
            if self._stopping:  # checked under the lock that stop() takes: no job slips in after it
                raise PipelineStopped("the agent is stopping")
            job.ticket = self._issued
            self._issued += 1
            try:
                self._incoming.put(job, timeout=timeout)
                refused = False
            except queue.Full:
                refused = True
                with self._ready_changed:
                    self._ready[job.ticket] = None
                    self._ready_changed.notify_all()
        if refused:
            with self._stats_lock:
                self.stats["busy"] += 1
            raise PipelineBusy("the agent's queue of %d frames stayed full for %.0f s; "
                               "send frames more slowly or retry" % (self.depth, timeout)) from None
        return job

    def _prepare_loop(self):
        while True:
            job = self._incoming.get()
            if job is _STOP:
                return
            try:
                job.prepared = self.sealer.prepare(job.frame, job.declared_source, job.channel_order, job.origin)
            except Exception as err:  # one bad frame never stops the stage
                job.prepare_error = err
            job.frame = None
            with self._ready_changed:
                # Wait while the reorder buffer is full, unless this is the frame the seal
                # stage waits for (else a full buffer of later frames would deadlock).
                while len(self._ready) >= self._ready_limit and job.ticket != self._next_to_seal:
                    self._ready_changed.wait()
                self._ready[job.ticket] = job
                self._ready_changed.notify_all()

    # At most this many frames share one log write and fsync (group commit).
    GROUP_LIMIT = 8

    def _take_ready(self):
        """Wait for the next frame in ticket order, then take it and every frame right
        after it that is already prepared (at most GROUP_LIMIT): a burst of frames is
        committed together, and a lone frame waits for nobody. [] once stopped."""
        with self._ready_changed:
            while self._next_to_seal not in self._ready:
                if self._stopping and self._next_to_seal >= self._issued:
                    return []
                self._ready_changed.wait(0.2)
            jobs = []
            while self._next_to_seal in self._ready and len(jobs) < self.GROUP_LIMIT:
                jobs.append(self._ready.pop(self._next_to_seal))
                self._next_to_seal += 1
            self._ready_changed.notify_all()
        return jobs

    # A group whose seqs another record took meanwhile is signed again, this often.
    RESIGN_TRIES = 3

    def _seal_loop(self):
        while True:
            jobs = self._take_ready()
            if not jobs:
                return
            pending = []
            for job in jobs:
                if job is None:  # a frame refused as busy
                    continue
                if job.prepare_error is not None:
                    self._fail(job, job.prepare_error)
                    continue
                pending.append(job)
            for attempt in range(self.RESIGN_TRIES):
                pending = self._seal_group(pending, last_try=attempt == self.RESIGN_TRIES - 1)
                if not pending:
                    break

    def _seal_group(self, jobs, last_try):
        """Sign the frames with seqs that follow on from the log's next one and commit
        them together. Returns the frames to sign again (another record took their
        seqs; nothing of theirs was written), else []."""
        signed = []  # (job, signed frame): a frame that fails to sign takes no seq
        for job in jobs:
            try:
                signed.append((job, self.sealer.sign(job.prepared, self.sealer.log.next_seq + len(signed),
                                                     self.out_dir)))
            except Exception as err:
                self._fail(job, err)
        if not signed:
            return []
        try:
            outcomes = self.sealer.commit_many([s for _, s in signed])
        except LogAdvancedError as err:
            if not last_try:
                return [job for job, _ in signed]
            for job, _ in signed:
                self._fail(job, err)
            return []
        except Exception as err:  # no record was written: none of these frames appears
            for job, _ in signed:
                self._fail(job, err)
            return []
        for (job, _), outcome in zip(signed, outcomes):
            job.prepared = None
            if isinstance(outcome, Exception):
                self._fail(job, outcome)
                continue
            outcome["latency_ms"] = round((time.monotonic() - job.enqueued) * 1000.0, 3)
            with self._stats_lock:
                self.stats["sealed"] += 1
            if self._on_sealed is not None:
                self._on_sealed(outcome)
            job.finish(result=outcome)
        return []

    def _fail(self, job, err):
        reason = str(err) if isinstance(err, SealError) else "frame not emitted: %s: %s" % (type(err).__name__, err)
        with self._stats_lock:
            self.stats["failed"] += 1
            self.stats["last_error"] = reason
        job.finish(error=reason)

    def stop(self, timeout=30.0):
        """Seal what is queued, then stop the stages."""
        with self._ticket_lock:
            self._stopping = True
        for _ in self._workers:
            self._incoming.put(_STOP)
        for thread in self._workers + [self._sealer_thread]:
            thread.join(timeout)
