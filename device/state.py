"""The device's state directory: identity, keys, certificate chain and audit log.

    <state>/config.json        serial, producer code, label text (written by `init`)
    <state>/keys/              the keystore (content key, mode 0600)
    <state>/certs/chain.pem    content-signing certificate + issuing CA (no root)
    <state>/log/audit.log      the append-only audit log
"""

import json
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import __version__
from .core import aigc, auditlog
from .explicit_label import DEFAULT_TEXT, check_label_text
from .keystore import FileKeystore


class DeviceStateError(Exception):
    pass


def _atomic_write(path, data):
    tmp = path.with_name("." + path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class DeviceState:
    def __init__(self, directory):
        self.directory = Path(directory)
        self.keystore = FileKeystore(self.directory / "keys")
        self.config_path = self.directory / "config.json"
        self.chain_path = self.directory / "certs" / "chain.pem"
        self.log_path = self.directory / "log" / "audit.log"
        self._log = None

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
        if self._log is None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = auditlog.AuditLog(str(self.log_path))
        return self._log

    def info(self):
        """What HELLO answers: identity, state, log head and the certificate chain, so
        the host can check ReservedCode1 signatures of this device's files."""
        config = self.config()
        log = self.log()
        return {
            "serial": config["serial"],
            "producer": config["producer"],
            "firmware": __version__,
            "state": "provisioned" if self.is_provisioned() else "awaiting-certificate",
            "log": {"first_seq": log.first_seq, "next_seq": log.next_seq,
                    "head_hash": log.head_hash.hex()},
            "certificate_chain": self.chain_pem() if self.chain_path.exists() else None,
        }
