"""The vendor's certificate authority: a root kept offline, an issuing CA that signs
device content-signing certificates from the devices' CSRs.

The device certificate follows the C2PA signer profile (C2PA 2.1, §14.5 "X.509
certificates"): X.509 v3, EC P-256 for ES256, Key Usage digitalSignature (critical),
an Extended Key Usage that is present and not anyExtendedKeyUsage, Authority Key
Identifier set. The chain a device embeds holds the leaf and the issuing CA, not the
root: the root is the trust anchor validators are given.
"""

import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

# C2PA claim-signing EKU, id-kp-c2pa-claimSigning (C2PA 2.1 §14.5.1).
OID_C2PA_CLAIM_SIGNING = ObjectIdentifier("1.3.6.1.4.1.62558.2.1")
# emailProtection (RFC 5280 §4.2.1.12): accepted by validators that predate the C2PA EKU.
CONTENT_SIGNING_EKUS = (OID_C2PA_CLAIM_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION)

ROOT_CERT, ROOT_KEY = "vendor-root.pem", "vendor-root-key.pem"
ISSUING_CERT, ISSUING_KEY = "issuing-ca.pem", "issuing-ca-key.pem"
ROOT_DAYS, ISSUING_DAYS, DEVICE_DAYS = 20 * 365, 10 * 365, 3 * 365
# Backdate notBefore a little so a device whose clock runs slightly behind accepts it.
_CLOCK_SKEW = datetime.timedelta(minutes=10)


class CAError(Exception):
    pass


def _name(common_name, organization):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])


def _ca_key_usage():
    return x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                         crl_sign=True, encipher_only=False, decipher_only=False)


def _write_private(path, key):
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def create_vendor_ca(directory, organization):
    """Create root and issuing CA in `directory` (which must not hold a CA yet)."""
    directory = Path(directory)
    if (directory / ROOT_CERT).exists():
        raise CAError("a CA already exists in %s; refusing to overwrite it" % directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc) - _CLOCK_SKEW
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(organization + " Content Root CA", organization)
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=ROOT_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    issuing_key = ec.generate_private_key(ec.SECP256R1())
    issuing = (x509.CertificateBuilder()
               .subject_name(_name(organization + " Device Issuing CA", organization))
               .issuer_name(root.subject).public_key(issuing_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=ISSUING_DAYS))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(_ca_key_usage(), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(issuing_key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
               .sign(root_key, hashes.SHA256()))
    _write_private(directory / ROOT_KEY, root_key)
    _write_private(directory / ISSUING_KEY, issuing_key)
    (directory / ROOT_CERT).write_text(pem(root))
    (directory / ISSUING_CERT).write_text(pem(issuing))
    return directory / ROOT_CERT


def load_issuer(directory):
    directory = Path(directory)
    try:
        cert = x509.load_pem_x509_certificate((directory / ISSUING_CERT).read_bytes())
        key = serialization.load_pem_private_key((directory / ISSUING_KEY).read_bytes(), password=None)
    except FileNotFoundError:
        raise CAError("no issuing CA in %s; create one with `synthseal-host ca init`" % directory)
    return cert, key


def issue_content_certificate(ca_directory, csr_pem, device_serial):
    """Check a device CSR and return the PEM chain (device leaf + issuing CA)."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem if isinstance(csr_pem, bytes) else csr_pem.encode())
    except ValueError:
        raise CAError("the certificate request is not a PEM PKCS#10 CSR")
    if not csr.is_signature_valid:
        raise CAError("the certificate request's signature does not verify")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name != "secp256r1":
        raise CAError("the device key must be EC P-256 (ES256)")
    issuing_cert, issuing_key = load_issuer(ca_directory)
    organization = issuing_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    now = datetime.datetime.now(datetime.timezone.utc) - _CLOCK_SKEW
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "synthseal device " + device_serial),
                                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                                     x509.NameAttribute(NameOID.SERIAL_NUMBER, device_serial)]))
            .issuer_name(issuing_cert.subject).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=DEVICE_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(list(CONTENT_SIGNING_EKUS)), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuing_key.public_key()), critical=False)
            .sign(issuing_key, hashes.SHA256()))
    return pem(leaf) + pem(issuing_cert)
