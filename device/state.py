"""The device's state directory: identity, keys, certificate chain and audit log.

    <state>/config.json        serial, producer code, label text (written by `init`)
    <state>/keys/              the keystore (content key, mode 0600)
    <state>/certs/chain.pem    content-signing certificate + issuing CA (no root)
    <state>/log/audit.log      the append-only audit log
    <state>/agent.pid          the PID of the one process that writes all of the above,
                               which holds an flock on the state folder itself

One writer: every command that writes the state takes the lock first (`owner()`), and
refuses with the running owner's PID when it cannot. Anything else opens the log
read-only, which never creates, cuts or repairs it.
"""

import contextlib
import errno
import fcntl
import json
import os
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import __version__
from .core import aigc, auditlog
from .explicit_label import DEFAULT_TEXT, check_label_text
from .keystore import FileKeystore


class DeviceStateError(Exception):
    pass


class StateLockedError(DeviceStateError):
    def __init__(self, directory, pid, what="device state"):
        self.pid = pid
        who = "a running agent (PID %s)" % pid if pid else "another synthseal process"
        super().__init__("the %s in %s is owned by %s; talk to it through its socket "
                         "(`synthseal-device status`, `capture`) or stop it first" % (what, directory, who))


class DirectoryLock:
    """An exclusive, non-blocking flock on a folder itself (its inode, which cannot be
    deleted while it holds files), so removing a lock file cannot let a second writer in.
    The holder's PID goes into pid_file for the refusal message. The kernel drops the
    lock when the holder dies (kill -9 included): there is never a stale lock."""

    def __init__(self, directory, pid_file, what="device state"):
        self.directory = Path(directory)
        self.path = Path(pid_file)
        self.what = what
        self._fd = None

    def acquire(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(self.directory), os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateLockedError(self.directory, self.holder_pid(), self.what) from None
            raise
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(self.path, b"%d\n" % os.getpid())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def holder_pid(self):
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    @property
    def held(self):
        return self._fd is not None

    def release(self):
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def StateLock(directory):
    """The lock on a device state folder (see DirectoryLock)."""
    return DirectoryLock(directory, Path(directory) / "agent.pid", "device state")


class SharedLog:
    """The owner's audit log, shared by the agent's threads (the sealing pipeline
    appends, the serial service reads): every operation under one lock, so a reader
    never sees a record count and a head hash from two different moments."""

    def __init__(self, log):
        self._log = log
        self._lock = threading.Lock()
        self.path = log.path

    def append(self, *args):
        with self._lock:
            return self._log.append(*args)

    def read(self, *args, **kwargs):
        with self._lock:
            return self._log.read(*args, **kwargs)

    def head(self):
        """(first_seq, next_seq, head_hash) at one moment."""
        with self._lock:
            return self._log.first_seq, self._log.next_seq, self._log.head_hash

    @property
    def first_seq(self):
        return self.head()[0]

    @property
    def next_seq(self):
        return self.head()[1]

    @property
    def head_hash(self):
        return self.head()[2]

    @property
    def count(self):
        first, next_seq, _ = self.head()
        return next_seq - first

    @property
    def torn_tail(self):
        return self._log.torn_tail

    def refresh(self):
        """The owner is the only writer: there is nothing from elsewhere to take in."""


def _atomic_write(path, data):
    tmp = path.with_name("." + path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(str(path.parent), os.O_RDONLY | os.O_DIRECTORY)  # the rename itself is durable
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DeviceState:
    def __init__(self, directory):
        self.directory = Path(directory)
        self.keystore = FileKeystore(self.directory / "keys")
        self.config_path = self.directory / "config.json"
        self.chain_path = self.directory / "certs" / "chain.pem"
        self.log_path = self.directory / "log" / "audit.log"
        self._log = None
        self._lock = StateLock(self.directory)

    # -- ownership ----------------------------------------------------------------
    def own(self):
        """Take the state lock for this process (raises StateLockedError naming the
        owner). Until released, this process is the only writer of the state."""
        self._lock.acquire()
        return self

    def release(self):
        self._lock.release()

    @property
    def owned(self):
        return self._lock.held

    def _keep_torn_tail(self, offset, data):
        """Before the log cuts a torn tail, its bytes go to log/torn-tail-*.bin, durably."""
        self.torn_tail_file = self.log_path.parent / ("torn-tail-at-%d-%d.bin" % (offset, time.time_ns()))
        _atomic_write(self.torn_tail_file, data)

    def _writer(self):
        """A context in which this process may write the state: the lock it already
        holds, or the lock taken for the duration (refused while an agent runs)."""
        if self.owned:
            return contextlib.nullcontext()
        return StateLock(self.directory)

    def owner_pid(self):
        """The PID of the process holding the state lock, or None if nobody holds it."""
        probe = StateLock(self.directory)
        if not self.directory.exists():
            return None
        try:
            probe.acquire()
        except StateLockedError as err:
            return err.pid or -1
        probe.release()
        return None

    # -- provisioning -------------------------------------------------------------
    def init(self, serial, producer, label_text=DEFAULT_TEXT):
        """Create identity and content key; return the CSR (PEM) for the vendor CA."""
        if self.config_path.exists():
            raise DeviceStateError("device state already initialised in %s" % self.directory)
        for name, value in (("serial", serial), ("producer", producer)):
            try:
                aigc.check_value(name, value)
            except aigc.LabelError as err:
                raise DeviceStateError("%s; use printable ASCII without spaces" % err)
        check_label_text(label_text)
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._writer():
            if self.config_path.exists():
                raise DeviceStateError("device state already initialised in %s" % self.directory)
            self.keystore.generate()
            config = {"serial": serial, "producer": producer, "label_text": label_text}
            _atomic_write(self.config_path, json.dumps(config, ensure_ascii=False, indent=1).encode())
        return self.csr_pem()

    def csr_pem(self):
        config = self.config()
        csr = self.keystore.csr("synthseal device " + config["serial"], config["producer"])
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    def install_chain(self, chain_pem):
        """Install the content-signing chain after checking it belongs to our key."""
        try:
            certs = x509.load_pem_x509_certificates(chain_pem.encode())
        except ValueError:
            raise DeviceStateError("the certificate chain is not PEM")
        leaf = certs[0]
        ours = self.keystore.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        theirs = leaf.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if ours != theirs:
            raise DeviceStateError("the certificate is for another key, not this device's content key")
        if any(c.subject == c.issuer for c in certs):
            raise DeviceStateError("the chain must not include the self-signed root (validators hold it)")
        with self._writer():
            self.chain_path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(self.chain_path, chain_pem.encode())

    # -- reading ------------------------------------------------------------------
    def config(self):
        try:
            return json.loads(self.config_path.read_text())
        except FileNotFoundError:
            raise DeviceStateError("no device state in %s; run `synthseal-device init` first" % self.directory)

    def chain_pem(self):
        try:
            return self.chain_path.read_text()
        except FileNotFoundError:
            raise DeviceStateError("device has no content-signing certificate; provision it first")

    def is_provisioned(self):
        return self.config_path.exists() and self.chain_path.exists()

    def log(self):
        """The owner gets the writable, shared log; anyone else a read-only view that
        never creates, cuts or repairs the file."""
        if self._log is None:
            if self.owned:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self._log = SharedLog(auditlog.AuditLog(str(self.log_path), keep_torn_tail=self._keep_torn_tail))
            elif self.log_path.exists():
                return auditlog.AuditLog(str(self.log_path), writable=False)
            else:
                return _EmptyLog()
        return self._log

    def info(self):
        """What HELLO answers: identity, state, log head and the certificate chain, so
        the host can check ReservedCode1 signatures of this device's files."""
        config = self.config()
        log = self.log()
        first_seq, next_seq, head_hash = log.head() if hasattr(log, "head") else (
            log.first_seq, log.next_seq, log.head_hash)
        return {
            "serial": config["serial"],
            "producer": config["producer"],
            "firmware": __version__,
            "state": "provisioned" if self.is_provisioned() else "awaiting-certificate",
            "log": {"first_seq": first_seq, "next_seq": next_seq, "head_hash": head_hash.hex()},
            "certificate_chain": self.chain_pem() if self.chain_path.exists() else None,
        }


class _EmptyLog:
    """A log that does not exist yet, seen by a reader: no records, genesis head."""
    first_seq = 1
    next_seq = 1
    count = 0
    head_hash = auditlog.logrecord.GENESIS_HASH

    def read(self, start_seq, max_count, fits=None):
        return []
