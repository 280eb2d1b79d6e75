"""The device's keys, behind one small interface: the content-signing key (C2PA and
ReservedCode1 signatures) and the identity key (authenticating the device to hosts,
signing log checkpoints).

Keys are generated on the device and never leave it: nothing here returns or exports
private key bytes. Callers get signatures, the public key and a CSR. FileKeystore
keeps each key in a file readable only by the agent's user; a PKCS#11, TPM or
secure-element keystore implements the same methods.
"""

import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from . import credentials


class KeystoreError(Exception):
    pass


CONTENT, IDENTITY = "content", "identity"


class FileKeystore:
    def __init__(self, directory, name=CONTENT):
        self.directory = Path(directory)
        self.name = name
        self._key = None

    @property
    def key_path(self):
        return self.directory / ("%s-key.pem" % self.name)

    def exists(self):
        return self.key_path.exists()

    def generate(self):
        """Create the P-256 content key. Refuses to replace an existing key: a new key
        would orphan the certificate and every signature made so far."""
        if self.exists():
            raise KeystoreError("a %s key already exists at %s; it is never replaced in place"
                                % (self.name, self.key_path))
        self.directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        tmp = self.key_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.key_path)
        self._key = key

    def _private_key(self):
        if self._key is None:
            if not self.exists():
                raise KeystoreError("no %s key at %s: the device is not enrolled; provision it with "
                                    "`synthseal-host provision`" % (self.name, self.key_path))
            self._key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        return self._key

    def public_key(self):
        return self._private_key().public_key()

    def sign_der(self, data):
        """ECDSA P-256/SHA-256 signature, DER-encoded (what C2PA's callback expects)."""
        return self._private_key().sign(data, ec.ECDSA(hashes.SHA256()))

    def sign_raw(self, data):
        """The same signature as 64 bytes r||s (JOSE/COSE form)."""
        r, s = decode_dss_signature(self.sign_der(data))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def csr(self, serial, organization, challenge):
        """A PKCS#10 request (PEM) for this key's certificate, signed by the key (proof of
        possession), carrying the session's challenge so it cannot be replayed."""
        return credentials.make_csr(self._private_key(), serial, organization, self.name, challenge)

    def erase(self):
        """Overwrite the key file, then remove it. On flash storage the overwrite is
        best effort (wear levelling may keep old blocks); a secure element erases for real."""
        self._key = None
        try:
            info = self.key_path.stat()
        except FileNotFoundError:
            return
        if info.st_nlink > 1:
            # Another name still holds this key (the enrolment in force, linked into a
            # configuration change): only this name goes; the key itself stays.
            self.key_path.unlink()
            return
        size = info.st_size
        with open(self.key_path, "r+b") as f:
            f.write(os.urandom(size))
            f.flush()
            os.fsync(f.fileno())
        self.key_path.unlink()
