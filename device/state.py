"""The device's state directory: identity, keys, certificates, configuration, audit log.

    <state>/factory.json          the serial, written once at the factory (`init`)
    <state>/enrolment -> enrolment-<n>/   the active enrolment, switched atomically:
        keys/content-key.pem      content-signing key (mode 0600, born on the device)
        keys/identity-key.pem     identity key: authenticates the device, signs checkpoints
        content-chain.pem         content-signing certificate + issuing CA (no root)
        identity-chain.pem        identity certificate + issuing CA
        anchor.pem                the vendor root the device trusts
        config.json               the signed configuration document in force
    <state>/pending/              keys made by ENROL_BEGIN, waiting for their certificates
    <state>/trust/                what outlives an enrolment: the pinned anchor and the
                                  highest configuration version (after decommissioning),
                                  the newest CRL seen
    <state>/log/audit.log         the append-only audit log
    <state>/log/checkpoints.jsonl its signed tree heads (device/checkpoint.py)
    <state>/log/ack.json          the largest log size a collector acknowledged (device/retention.py)
    <state>/agent.pid             the PID of the one process that writes all of the above,
                                  which holds an flock on the state folder itself

States: `factory` (serial only; the first trust anchor is accepted from an enrolling
host), `enrolled` (keys, certificates, configuration), `decommissioned` (keys erased,
anchor and configuration version kept, so it can be enrolled again by the same vendor
and an old configuration can never come back).

Every change is made in a new folder and switched in by one rename of the `enrolment`
link, so a power cut leaves the device as it was before the command or as after it,
never between; leftovers of an interrupted change are erased at the next start.

One writer: every command that writes the state takes the lock first (`own()`), and
refuses with the running owner's PID when it cannot. Anything else opens the log
read-only, which never creates, cuts or repairs it.
"""

import contextlib
import datetime
import errno
import fcntl
import json
import os
import shutil
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from . import __version__, credentials, keystore
from .core import aigc, auditlog, merkle
from .durable import atomic_write, fsync_dir
from .keystore import FileKeystore, KeystoreError


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
            atomic_write(self.path, b"%d\n" % os.getpid())
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

    def prune(self, count):
        with self._lock:
            return self._log.prune(count)

    def append_many(self, items, expect_seq=None):
        with self._lock:  # the seq check and the write under one lock
            return self._log.append_many(items, expect_seq)

    def read(self, *args, **kwargs):
        with self._lock:
            return self._log.read(*args, **kwargs)

    def head(self):
        """(first_seq, next_seq, head_hash) at one moment."""
        with self._lock:
            return self._log.first_seq, self._log.next_seq, self._log.head_hash

    def tree_head(self):
        """(size, root) of the log's Merkle tree at one moment."""
        with self._lock:
            return self._log.tree_head()

    def root(self, size):
        with self._lock:
            return self._log.root(size)

    def consistency_proof(self, old_size, size):
        with self._lock:
            return self._log.consistency_proof(old_size, size)

    def inclusion_proof(self, seq, size):
        with self._lock:
            return self._log.inclusion_proof(seq, size)

    def pruned_prefix(self):
        with self._lock:
            return self._log.pruned_prefix()

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

    @property
    def torn_reason(self):
        return self._log.torn_reason

    @property
    def damage(self):
        return self._log.damage

    def refresh(self):
        """The owner is the only writer: there is nothing from elsewhere to take in."""


class DeviceState:
    ENROLMENT = "enrolment"

    def __init__(self, directory):
        self.directory = Path(directory)
        self.factory_path = self.directory / "factory.json"
        self.trust_dir = self.directory / "trust"
        self.pending_dir = self.directory / "pending"
        self.log_path = self.directory / "log" / "audit.log"
        self.checkpoints_path = self.directory / "log" / "checkpoints.jsonl"
        self._checkpoints = None
        self._log = None
        self._lock = StateLock(self.directory)
        self._identity_key = None

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
        atomic_write(self.torn_tail_file, data)

    def _writer(self):
        """A context in which this process may write the state: the lock it already
        holds, or the lock taken for the duration (refused while an agent runs)."""
        if self.owned:
            return contextlib.nullcontext()
        return StateLock(self.directory)

    def _require_owner(self):
        if not self.owned:
            raise DeviceStateError("only the agent that owns the device state changes its enrolment")

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

    # -- factory ------------------------------------------------------------------
    def init(self, serial):
        """The factory step: give the device its serial. Keys are made later, on the
        device, when a host enrols it over the serial link."""
        try:
            aigc.check_value("serial", serial)
        except aigc.LabelError as err:
            raise DeviceStateError("%s; use printable ASCII without spaces" % err)
        if not 0 < len(serial) <= 64:
            raise DeviceStateError("the serial must be 1 to 64 characters")
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._writer():
            if self.factory_path.exists():
                raise DeviceStateError("device state already initialised in %s (serial %s)"
                                       % (self.directory, self.serial()))
            atomic_write(self.factory_path, json.dumps({"serial": serial}).encode())

    def serial(self):
        try:
            return json.loads(self.factory_path.read_text())["serial"]
        except FileNotFoundError:
            raise DeviceStateError("no device state in %s; run `synthseal-device init --serial ...` at the "
                                   "factory first" % self.directory)

    # -- the active enrolment -------------------------------------------------------
    @property
    def enrolment_dir(self):
        """The active enrolment folder, or None."""
        link = self.directory / self.ENROLMENT
        if not link.is_symlink():
            return None
        target = self.directory / os.readlink(link)
        return target if target.is_dir() else None

    def _enrolled_file(self, name):
        folder = self.enrolment_dir
        if folder is None:
            raise DeviceStateError("the device is not enrolled; provision it with `synthseal-host provision`")
        return folder / name

    def enrolment_state(self):
        if self.enrolment_dir is not None:
            return "enrolled"
        return "decommissioned" if (self.trust_dir / "anchor.pem").exists() else "factory"

    def is_provisioned(self):
        return self.enrolment_state() == "enrolled"

    @property
    def keystore(self):
        """The content-signing key of the active enrolment."""
        return FileKeystore(self._enrolled_file("keys"), keystore.CONTENT)

    def identity_keystore(self):
        return FileKeystore(self._enrolled_file("keys"), keystore.IDENTITY)

    def chain_pem(self):
        """The content-signing chain (leaf + issuing CA)."""
        return self._enrolled_file("content-chain.pem").read_text()

    def identity_chain_pem(self):
        """The identity chain, or None before enrolment."""
        folder = self.enrolment_dir
        return (folder / "identity-chain.pem").read_text() if folder is not None else None

    def sign_identity(self, label, t):
        """Sign a session transcript with the identity key (never exported)."""
        from .session import sign
        if self._identity_key is None or self._identity_key[0] != self.enrolment_dir:
            store = self.identity_keystore()
            self._identity_key = (self.enrolment_dir, store._private_key())
        return sign(self._identity_key[1], label, t)

    def anchors(self):
        """The vendor roots this device trusts: none in the factory state."""
        folder = self.enrolment_dir
        path = folder / "anchor.pem" if folder is not None else self.trust_dir / "anchor.pem"
        try:
            return credentials.load_pem_chain(path.read_bytes())
        except FileNotFoundError:
            return []

    def signed_config(self):
        """The signed configuration document in force (bytes)."""
        return self._enrolled_file("config.json").read_bytes()

    def config(self):
        """The configuration in force. Its signature was checked when it was applied;
        its content is checked again at every load, so a file edited on the device's
        storage cannot make the agent draw a label GB 45438 does not accept."""
        try:
            config = json.loads(self.signed_config())["config"]
            credentials.check_config(config)
        except FileNotFoundError:
            raise DeviceStateError("the enrolment has no configuration")
        except (ValueError, KeyError, TypeError, credentials.CredentialError) as err:
            raise DeviceStateError("the device configuration in %s is damaged or invalid (%s); push a signed one "
                                   "with `synthseal-host configure`" % (self.enrolment_dir, err))
        if config["serial"] != self.serial():
            raise DeviceStateError("the device configuration names serial %r, not this device's" % config["serial"])
        return config

    def config_version(self):
        """The highest configuration version ever applied: a new one must exceed it."""
        versions = [0]
        try:
            versions.append(int((self.trust_dir / "config-version").read_text()))
        except (FileNotFoundError, ValueError):
            pass
        if self.enrolment_dir is not None:
            versions.append(int(self.config()["version"]))
        return max(versions)

    # -- revocation ---------------------------------------------------------------
    # A CRL dated further ahead than this is refused: it would shadow every genuine
    # newer one (the device keeps the newest it has seen).
    CRL_CLOCK_SKEW = datetime.timedelta(minutes=10)

    def offer_crl(self, pem, chain, now):
        """Keep a CRL from a host if it is signed by the issuing CA on the operator's
        validated path (directly issued by the device's pinned anchor), is not dated in
        the future, and is newer (higher CRL number) than the one kept. A device with no
        pinned anchor (factory state) keeps none."""
        anchors = self.anchors()
        if not anchors:
            return
        try:
            crl = x509.load_pem_x509_crl(pem.encode() if isinstance(pem, str) else pem)
        except ValueError:
            raise credentials.CredentialError("the offered CRL is not PEM")
        issuers = [c for c in chain[1:] if any(_issued_by(c, a) for a in anchors) and _issued_by(chain[0], c)]
        if not any(crl.issuer == c.subject and crl.is_signature_valid(c.public_key()) for c in issuers):
            raise credentials.CredentialError("the offered CRL is not signed by the vendor's issuing CA")
        if crl.last_update_utc > now + self.CRL_CLOCK_SKEW:
            raise credentials.CredentialError("the offered CRL is dated in the future (%s)" % crl.last_update_utc)
        current = self._crl()
        if current is not None and _crl_number(current) >= _crl_number(crl):
            return
        with self._writer():
            self.trust_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.trust_dir / "crl.pem", crl.public_bytes(serialization.Encoding.PEM))

    def _crl(self):
        try:
            return x509.load_pem_x509_crl((self.trust_dir / "crl.pem").read_bytes())
        except (FileNotFoundError, ValueError):
            return None

    def is_revoked(self, cert):
        crl = self._crl()
        return crl is not None and crl.issuer == cert.issuer and \
            crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None

    # -- enrolment changes (the agent's serial service calls these) ----------------
    def begin_enrolment(self, challenge, organization):
        """Make fresh content and identity keys in pending/ (any earlier pending keys
        are erased: they were never certified) and return their CSRs."""
        self._require_owner()
        self.discard_pending()
        self.pending_dir.mkdir(parents=True)
        atomic_write(self.pending_dir / "session", challenge.encode())
        serial = self.serial()
        csrs = {}
        for name in (keystore.CONTENT, keystore.IDENTITY):
            store = FileKeystore(self.pending_dir / "keys", name)
            store.generate()
            csrs[name] = store.csr(serial, organization, challenge).decode()
        fsync_dir(self.pending_dir / "keys")
        return csrs

    def pending_public_keys(self, session_id):
        """The public keys ENROL_BEGIN made in this session, or None."""
        try:
            if (self.pending_dir / "session").read_text() != session_id:
                return None
        except FileNotFoundError:
            return None
        try:
            return {name: credentials.public_key_der(FileKeystore(self.pending_dir / "keys", name).public_key())
                    for name in (keystore.CONTENT, keystore.IDENTITY)}
        except (KeystoreError, OSError, ValueError):
            return None

    def discard_pending(self):
        if self.pending_dir.exists():
            for name in (keystore.CONTENT, keystore.IDENTITY):
                FileKeystore(self.pending_dir / "keys", name).erase()
            shutil.rmtree(self.pending_dir)

    def switch_enrolment(self, files, new_keys):
        """Make a new enrolment folder from `files` (name -> bytes) and the keys
        (pending/ when new_keys, else the active ones), then switch it in with one
        rename. The previous enrolment's keys are erased when they were replaced."""
        self._require_owner()
        old = self.enrolment_dir
        number = 1 + max([int(d.name.rsplit("-", 1)[1]) for d in self.directory.glob("enrolment-*")
                          if d.name.rsplit("-", 1)[1].isdigit()] or [0])
        folder = self.directory / ("enrolment-%d" % number)
        staging = self.directory / (".enrolment-%d.tmp" % number)
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        for name, data in files.items():
            atomic_write(staging / name, data)
        if new_keys:
            os.rename(self.pending_dir / "keys", staging / "keys")
        else:
            (staging / "keys").mkdir()
            for name in (keystore.CONTENT, keystore.IDENTITY):
                source = FileKeystore(old / "keys", name).key_path
                os.link(source, FileKeystore(staging / "keys", name).key_path)
            fsync_dir(staging / "keys")
        fsync_dir(staging)
        os.rename(staging, folder)
        _point_link(self.directory / self.ENROLMENT, folder.name)
        # From here the new enrolment is in force; the rest only tidies.
        self._sync_trust()
        if self.pending_dir.exists():
            shutil.rmtree(self.pending_dir)
        if old is not None and old != folder:
            self._remove_enrolment(old, erase_keys=new_keys)
        self._identity_key = None

    def mark_logged(self, seq):
        """Note in the active enrolment that its change is in the audit log (record seq)."""
        atomic_write(self._enrolled_file("logged"), b"%d\n" % seq)

    def logged_seq(self):
        try:
            return int(self._enrolled_file("logged").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _sync_trust(self):
        """What must outlive the enrolment folder, kept beside it from the first
        enrolment on: the pinned anchor and the highest configuration version. A lost or
        damaged enrolment folder then leaves a device only its vendor can enrol again,
        never a factory-fresh one."""
        folder = self.enrolment_dir
        if folder is None:
            return
        self.trust_dir.mkdir(parents=True, exist_ok=True)
        anchor = (folder / "anchor.pem").read_bytes()
        path = self.trust_dir / "anchor.pem"
        if not path.exists() or path.read_bytes() != anchor:
            atomic_write(path, anchor)
        version = self.config_version()
        try:
            kept = int((self.trust_dir / "config-version").read_text())
        except (FileNotFoundError, ValueError):
            kept = -1
        if version > kept:
            atomic_write(self.trust_dir / "config-version", str(version).encode())

    DECOMMISSION_FILE = "decommission.json"

    def leave_enrolment(self, record):
        """Decommission: the enrolment goes with one unlink of its link, then its keys
        are erased. `record` (what the audit log is to say) is kept first in trust/, so
        a power cut between the unlink and the log record is completed at the next
        start (pending_decommission)."""
        self._require_owner()
        old = self.enrolment_dir
        if old is None:
            raise DeviceStateError("the device is not enrolled")
        self._sync_trust()
        atomic_write(self.trust_dir / self.DECOMMISSION_FILE, json.dumps({"record": record, "seq": None}).encode())
        os.unlink(self.directory / self.ENROLMENT)
        fsync_dir(self.directory)
        self._remove_enrolment(old, erase_keys=True)
        self._identity_key = None

    def pending_decommission(self):
        """The decommission record still to be logged, or None."""
        try:
            kept = json.loads((self.trust_dir / self.DECOMMISSION_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return kept["record"] if kept.get("seq") is None and self.enrolment_state() != "enrolled" else None

    def mark_decommission_logged(self, seq):
        path = self.trust_dir / self.DECOMMISSION_FILE
        kept = json.loads(path.read_text())
        atomic_write(path, json.dumps(dict(kept, seq=seq)).encode())

    def _remove_enrolment(self, folder, erase_keys):
        if erase_keys:
            for name in (keystore.CONTENT, keystore.IDENTITY):
                FileKeystore(folder / "keys", name).erase()
        shutil.rmtree(folder)
        fsync_dir(self.directory)

    def tidy(self):
        """At start (as owner): erase what an interrupted change left behind: pending
        keys (their session is gone), half-made folders, enrolments no longer in force."""
        self._require_owner()
        self.discard_pending()
        active = self.enrolment_dir
        for folder in list(self.directory.glob(".enrolment-*.tmp")) + list(self.directory.glob("enrolment-*")):
            if folder.is_dir() and (active is None or folder.resolve() != active.resolve()):
                self._remove_enrolment(folder, erase_keys=True)
        link = self.directory / self.ENROLMENT
        if link.is_symlink() and active is None:
            os.unlink(link)  # a link to nothing: the folder it named is gone
        spare = link.with_name("." + link.name + ".new")
        if spare.is_symlink():
            os.unlink(spare)  # a switch cut short before its rename
        self._sync_trust()

    # -- reading ------------------------------------------------------------------
    def log(self):
        """The owner gets the writable, shared log; anyone else a read-only view that
        never creates, cuts or repairs the file."""
        if self._log is None:
            if self.owned and not self.log_path.exists() and self.checkpoints().last() is not None:
                return _EmptyLog()  # signed heads but no log: a loss to report, never a fresh log
            if self.owned:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self._log = SharedLog(auditlog.AuditLog(str(self.log_path), keep_torn_tail=self._keep_torn_tail))
            elif self.log_path.exists():
                return auditlog.AuditLog(str(self.log_path), writable=False)
            else:
                return _EmptyLog()
        return self._log

    def acks(self):
        """The collector's durable acknowledgement of the log (device/retention.py)."""
        from .retention import AckStore
        self.checkpoints_path.parent.mkdir(parents=True, exist_ok=True)
        return AckStore(self.checkpoints_path.parent / "ack.json")

    def checkpoints(self):
        """The store of signed checkpoints (device/checkpoint.py)."""
        from .checkpoint import CheckpointStore
        if self._checkpoints is None:
            self.checkpoints_path.parent.mkdir(parents=True, exist_ok=True)
            self._checkpoints = CheckpointStore(self.checkpoints_path)
        return self._checkpoints

    def info(self):
        """What HELLO answers to anyone: who the device is and what state it is in.
        Certificates are public; the log head needs a collector (status_info)."""
        info = {"serial": self.serial(), "firmware": __version__, "state": self.enrolment_state(),
                "identity_chain": self.identity_chain_pem()}
        if self.is_provisioned():
            config = self.config()
            info.update(producer=config["producer"], config_version=config["version"])
        return info

    def status_info(self):
        """The HELLO fields, the log head and the content-signing chain: what `pull`
        and `provision` read once a session is authenticated."""
        info = self.info()
        log = self.log()
        first_seq, next_seq, head_hash = log.head() if hasattr(log, "head") else (
            log.first_seq, log.next_seq, log.head_hash)
        info["log"] = {"first_seq": first_seq, "next_seq": next_seq, "head_hash": head_hash.hex()}
        info["certificate_chain"] = self.chain_pem() if self.is_provisioned() else None
        info["config"] = self.config() if self.is_provisioned() else None
        return info


def _issued_by(cert, issuer):
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def _crl_number(crl):
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return -1


def _point_link(link, target):
    """Point `link` at `target` atomically (a new link renamed over the old one)."""
    tmp = link.with_name("." + link.name + ".new")
    if tmp.is_symlink() or tmp.exists():
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(link.parent)


class _EmptyLog:
    """A log that does not exist (yet), seen by a reader, or lost under signed heads:
    no records, genesis head, nothing can be appended."""
    first_seq = 1
    next_seq = 1
    count = 0
    head_hash = auditlog.logrecord.GENESIS_HASH
    torn_tail = damage = None
    path = None

    def head(self):
        return self.first_seq, self.next_seq, self.head_hash

    def tree_head(self):
        return 0, merkle.EMPTY_ROOT

    def root(self, size):
        if size:
            raise auditlog.AuditLogError("the audit log does not exist")
        return merkle.EMPTY_ROOT

    def consistency_proof(self, old_size, size):
        return []

    def refresh(self):
        pass

    def append(self, *args):
        raise auditlog.AuditLogError("the audit log is missing and the device signed heads of it: it is not "
                                     "recreated; pull and investigate")

    def read(self, start_seq, max_count, fits=None):
        return []
