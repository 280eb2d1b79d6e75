"""The device's content-signing key, behind one small interface.

The key is generated on the device and never leaves it: nothing here returns or
exports private key bytes. Callers get signatures, the public key and a CSR.
FileKeystore keeps the key in a file readable only by the agent's user; a PKCS#11,
TPM or secure-element keystore implements the same four methods.
"""

import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID


class KeystoreError(Exception):
    pass


class FileKeystore:
    KEY_FILE = "content-key.pem"

    def __init__(self, directory):
        self.directory = Path(directory)
        self._key = None

    @property
    def key_path(self):
        return self.directory / self.KEY_FILE

    def exists(self):
        return self.key_path.exists()

    def generate(self):
        """Create the P-256 content key. Refuses to replace an existing key: a new key
        would orphan the certificate and every signature made so far."""
        if self.exists():
            raise KeystoreError("a content key already exists at %s; it is never replaced in place" % self.key_path)
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
                raise KeystoreError("no content key at %s; run `synthseal-device init` first" % self.key_path)
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

    def csr(self, common_name, organization):
        """A PKCS#10 request for the content-signing certificate, signed by the key."""
        subject = x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ])
        return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(
            self._private_key(), hashes.SHA256())
