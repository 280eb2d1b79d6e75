"""The vendor's certificate authority: a root kept offline, an issuing CA that signs
device certificates (from CSRs the devices make) and operator credentials, and the
revocation list.

Layout of a CA folder (docs/PROVISIONING.md):

    vendor-root.pem          the trust anchor validators are given
    vendor-root-key.pem      root key, encrypted (PKCS#8, passphrase), mode 0600; needed only
                             at `ca init`: move it to offline storage afterwards
    issuing-ca.pem           the issuing CA, embedded in every device chain
    issuing-ca-key.pem       issuing key, encrypted (PKCS#8, passphrase), mode 0600
    crl.pem                  the issuing CA's CRL: every revoked certificate and when

Certificate profiles are device/credentials.py's. The content certificate follows the
C2PA signer profile (C2PA 2.1, §14.5 "X.509 certificates"): X.509 v3, EC P-256 for ES256,
Key Usage digitalSignature (critical), an Extended Key Usage that is present and not
anyExtendedKeyUsage, Authority Key Identifier set. The chain a device embeds holds the
leaf and the issuing CA, not the root.
"""

import datetime
import os
import shutil
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..device import credentials
from ..device.core import aigc
from ..device.credentials import CONTENT_SIGNING_EKUS, OID_C2PA_CLAIM_SIGNING, CredentialError  # noqa: F401
from ..device.durable import atomic_write, fsync_dir, write_new

ROOT_CERT, ROOT_KEY = "vendor-root.pem", "vendor-root-key.pem"
ISSUING_CERT, ISSUING_KEY = "issuing-ca.pem", "issuing-ca-key.pem"
CRL_FILE = "crl.pem"
CA_FILES = (ROOT_CERT, ROOT_KEY, ISSUING_CERT, ISSUING_KEY, CRL_FILE)
ROOT_YEARS, ISSUING_YEARS = 30, 25
# A device certificate lives as long as the device is in service (see VendorCA.issue_device).
DEFAULT_SERVICE_YEARS = 10
MAX_SERVICE_YEARS = 25
DEFAULT_OPERATOR_DAYS = 365
CRL_VALID_DAYS = 90            # nextUpdate: publish a fresh CRL (`ca crl`) at least this often
# Backdate notBefore a little so a device whose clock runs slightly behind accepts it.
_CLOCK_SKEW = datetime.timedelta(minutes=10)
# RFC 5280 §5.3.1 reason codes, by their ASN.1 names.
REVOCATION_REASONS = tuple(r.value for r in x509.ReasonFlags if r is not x509.ReasonFlags.remove_from_crl)


class CAError(Exception):
    pass


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _add_years(when, years):
    try:
        return when.replace(year=when.year + years)
    except ValueError:  # 29 February
        return when.replace(year=when.year + years, day=28)


def _name(common_name, organization, *extra):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)] + list(extra))


def _key_usage(ca):
    return x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                         crl_sign=ca, encipher_only=False, decipher_only=False)


def _encrypted(key, passphrase):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(passphrase.encode("utf-8")))


def _check_passphrase(passphrase):
    if not isinstance(passphrase, str) or not passphrase:
        raise CAError("the CA passphrase must not be empty: the CA keys are encrypted with it")


def create_vendor_ca(directory, organization, passphrase):
    """Create root and issuing CA in `directory`, which must not exist or be empty.
    Both keys are encrypted with `passphrase`. Everything is written into a temporary
    folder beside it and renamed into place at the end: a failure leaves no half CA."""
    _check_passphrase(passphrase)
    if not isinstance(organization, str) or not organization.strip() or not organization.isprintable():
        raise CAError("the organisation name must be printable text")
    directory = Path(directory)
    if directory.exists():
        if not directory.is_dir():
            raise CAError("%s exists and is not a folder" % directory)
        present = [name for name in CA_FILES if (directory / name).exists()]
        if present:
            raise CAError("a CA already exists in %s (%s); refusing to overwrite it" % (directory, ", ".join(present)))
        if any(directory.iterdir()):
            raise CAError("%s is not empty; `ca init` writes a CA into a new or empty folder" % directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    now = _now() - _CLOCK_SKEW
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(organization + " Content Root CA", organization)
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(_add_years(now, ROOT_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    issuing_key = ec.generate_private_key(ec.SECP256R1())
    issuing = (x509.CertificateBuilder()
               .subject_name(_name(organization + " Device Issuing CA", organization))
               .issuer_name(root.subject).public_key(issuing_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(_add_years(now, ISSUING_YEARS))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(_key_usage(ca=True), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(issuing_key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
               .sign(root_key, hashes.SHA256()))
    staging = Path(tempfile.mkdtemp(prefix="." + directory.name + ".init-", dir=directory.parent))
    try:
        write_new(staging / ROOT_KEY, _encrypted(root_key, passphrase), 0o600)
        write_new(staging / ISSUING_KEY, _encrypted(issuing_key, passphrase), 0o600)
        write_new(staging / ROOT_CERT, pem(root).encode())
        write_new(staging / ISSUING_CERT, pem(issuing).encode())
        write_new(staging / CRL_FILE, _sign_crl(issuing, issuing_key, [], 1).encode())
        fsync_dir(staging)
        os.chmod(staging, 0o700)
        # rename(2) replaces an empty folder and refuses a non-empty one, so a CA that
        # appeared meanwhile is never overwritten either.
        os.rename(staging, directory)
        fsync_dir(directory.parent)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise CAError("could not create the CA in %s: %s" % (directory, err.strerror or err)) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory / ROOT_CERT


def load_ca(directory, passphrase):
    """Open the CA in `directory` with its passphrase (the issuing key is decrypted; the
    root key is not needed and may be offline)."""
    directory = Path(directory)
    _check_passphrase(passphrase)
    try:
        root = x509.load_pem_x509_certificate((directory / ROOT_CERT).read_bytes())
        issuing = x509.load_pem_x509_certificate((directory / ISSUING_CERT).read_bytes())
        key_pem = (directory / ISSUING_KEY).read_bytes()
    except FileNotFoundError as err:
        raise CAError("no CA in %s (missing %s); create one with `synthseal-host ca init`"
                      % (directory, Path(err.filename).name)) from None
    except ValueError:
        raise CAError("the CA certificates in %s are not PEM certificates" % directory) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=passphrase.encode("utf-8"))
    except TypeError:
        raise CAError("the issuing CA key in %s is not encrypted; refusing to use a CA key stored in the clear"
                      % directory) from None
    except ValueError:
        raise CAError("wrong CA passphrase for %s (the issuing CA key does not decrypt)" % directory) from None
    if credentials.public_key_der(key) != credentials.public_key_der(issuing):
        raise CAError("the issuing CA key in %s does not belong to %s" % (directory, ISSUING_CERT))
    try:
        issuing.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        raise CAError("%s in %s is not issued by %s" % (ISSUING_CERT, directory, ROOT_CERT)) from None
    return VendorCA(directory, root, issuing, key)


class VendorCA:
    """An opened CA: issues device and operator certificates, keeps the CRL."""

    def __init__(self, directory, root, issuing, issuing_key):
        self.directory = Path(directory)
        self.root = root
        self.issuing = issuing
        self._issuing_key = issuing_key
        self.root_pem = pem(root)
        self.organization = issuing.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value

    # -- issuing ----------------------------------------------------------------------
    def _not_after(self, wanted):
        """No certificate outlives the issuing CA that vouches for it."""
        return min(wanted, self.issuing.not_valid_after_utc)

    def _leaf(self, subject, public_key, not_before, not_after, ekus):
        return (x509.CertificateBuilder().subject_name(subject)
                .issuer_name(self.issuing.subject).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(not_before).not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(_key_usage(ca=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._issuing_key.public_key()),
                               critical=False)
                .sign(self._issuing_key, hashes.SHA256()))

    def issue_device(self, csr_pem, serial, purpose, challenge, service_years=DEFAULT_SERVICE_YEARS):
        """Check a device's CSR (credentials.check_csr: possession, P-256, subject serial,
        and the session challenge unless challenge is None) and return the PEM chain
        (leaf + issuing CA, no root) for `purpose` (content or identity).

        Lifetime: the device's stated service life (service_years, capped at the issuing
        CA's notAfter), not a short renewal period. A C2PA validator checks the signer
        certificate at validation time when the manifest carries no trusted timestamp,
        and a device in the field has no timestamp authority: with a short certificate,
        every file a device sealed in service would turn Invalid
        (signingCredential.expired) on the day the certificate expired. Trust ends
        instead by revocation (decommissioning, a compromised key) through the
        inventory and the CRL, which `verify --crl` reads with the file's sealing time,
        and by rotation (new keys and certificates) while the device is in service."""
        if purpose not in (credentials.PURPOSE_CONTENT, credentials.PURPOSE_IDENTITY):
            raise CAError("devices get %s or %s certificates, not %r"
                          % (credentials.PURPOSE_CONTENT, credentials.PURPOSE_IDENTITY, purpose))
        try:
            aigc.check_value("serial", serial)
        except aigc.LabelError as err:
            raise CAError("%s; use printable ASCII without spaces" % err) from None
        if isinstance(service_years, bool) or not isinstance(service_years, int) \
                or not 1 <= service_years <= MAX_SERVICE_YEARS:
            raise CAError("service life must be 1 to %d years" % MAX_SERVICE_YEARS)
        try:
            public_key = credentials.check_csr(csr_pem, serial, challenge)
        except CredentialError as err:
            raise CAError(str(err)) from None
        now = _now() - _CLOCK_SKEW
        serial_attribute = x509.NameAttribute(NameOID.SERIAL_NUMBER, serial)
        if purpose == credentials.PURPOSE_CONTENT:
            subject = _name("synthseal device " + serial, self.organization, serial_attribute)
            ekus = CONTENT_SIGNING_EKUS
        else:
            subject = _name("synthseal device %s identity" % serial, self.organization,
                            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, credentials.IDENTITY_OU),
                            serial_attribute)
            ekus = credentials.IDENTITY_EKUS
        leaf = self._leaf(subject, public_key, now, self._not_after(_add_years(now, service_years)), ekus)
        return pem(leaf) + pem(self.issuing)

    def issue_operator(self, name, roles, days=DEFAULT_OPERATOR_DAYS, key_passphrase=None):
        """A technician's credential: a P-256 key generated here for their laptop and a
        certificate (EKU clientAuth, one subject OU per role). Returns (chain PEM: leaf +
        issuing CA, key PEM: PKCS#8, encrypted with key_passphrase when given)."""
        if not isinstance(name, str) or not name.strip() or not name.isprintable() or len(name) > 64:
            raise CAError("the operator name must be printable text of 1 to 64 characters")
        roles = list(dict.fromkeys(roles or []))
        unknown = [r for r in roles if r not in credentials.ROLES]
        if not roles or unknown:
            raise CAError("operator roles must be one or more of %s%s" % (
                ", ".join(credentials.ROLES), " (not %s)" % ", ".join(map(repr, unknown)) if unknown else ""))
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3660:
            raise CAError("operator certificate lifetime must be 1 to 3660 days")
        if key_passphrase is not None and not key_passphrase:
            raise CAError("the operator key passphrase must not be empty (give None for an unencrypted key)")
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now() - _CLOCK_SKEW
        subject = _name(name, self.organization, *[
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, credentials.ROLE_OU_PREFIX + role) for role in roles])
        leaf = self._leaf(subject, key.public_key(), now,
                          self._not_after(now + datetime.timedelta(days=days)), credentials.OPERATOR_EKUS)
        encryption = (serialization.BestAvailableEncryption(key_passphrase.encode("utf-8")) if key_passphrase
                      else serialization.NoEncryption())
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
        return pem(leaf) + pem(self.issuing), key_pem.decode("ascii")

    # -- revocation -------------------------------------------------------------------
    def _crl(self):
        try:
            crl = x509.load_pem_x509_crl((self.directory / CRL_FILE).read_bytes())
        except FileNotFoundError:
            return None
        except ValueError:
            raise CAError("%s in %s is not a PEM CRL" % (CRL_FILE, self.directory)) from None
        if crl.issuer != self.issuing.subject or not crl.is_signature_valid(self._issuing_key.public_key()):
            raise CAError("%s in %s is not signed by this issuing CA; refusing to extend it" % (CRL_FILE, self.directory))
        return crl

    def revoked(self):
        """[(certificate serial number, revocation date, reason)] from the CRL."""
        crl = self._crl()
        entries = []
        for entry in crl or []:
            try:
                reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
            except x509.ExtensionNotFound:
                reason = x509.ReasonFlags.unspecified.value
            entries.append((entry.serial_number, entry.revocation_date_utc, reason))
        return entries

    def revoke(self, cert, revoked_at, reason):
        """Add a certificate this CA issued to the CRL (rewritten atomically). A
        certificate already listed keeps its first revocation date."""
        if isinstance(cert, (str, bytes)):
            try:
                cert = credentials.load_pem_chain(cert)[0]
            except CredentialError as err:
                raise CAError(str(err)) from None
        if reason not in REVOCATION_REASONS:
            raise CAError("revocation reason must be one of %s" % ", ".join(REVOCATION_REASONS))
        if revoked_at.tzinfo is None:
            raise CAError("the revocation time must carry a timezone")
        try:
            cert.verify_directly_issued_by(self.issuing)
        except (ValueError, TypeError, InvalidSignature):
            raise CAError("certificate %r was not issued by this CA's issuing CA" % cert.subject.rfc4514_string()) from None
        entries = self.revoked()
        if any(serial == cert.serial_number for serial, _, _ in entries):
            return
        entries.append((cert.serial_number, revoked_at, reason))
        self._write_crl(entries)

    def crl_pem(self):
        """A freshly signed CRL (new thisUpdate/nextUpdate, next CRL number) listing every
        revoked certificate; also written to crl.pem in the CA folder."""
        return self._write_crl(self.revoked())

    def _write_crl(self, entries):
        crl = self._crl()
        number = 1
        if crl is not None:
            try:
                number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
            except x509.ExtensionNotFound:
                pass
        text = _sign_crl(self.issuing, self._issuing_key, entries, number)
        atomic_write(self.directory / CRL_FILE, text.encode())
        return text


def _sign_crl(issuing, issuing_key, entries, number):
    now = _now()
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuing.subject)
               .last_update(now).next_update(now + datetime.timedelta(days=CRL_VALID_DAYS))
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuing_key.public_key()),
                              critical=False))
    for serial, revoked_at, reason in entries:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at)
            .add_extension(x509.CRLReason(x509.ReasonFlags(reason)), critical=False).build())
    return builder.sign(issuing_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def issue_content_certificate(ca_directory, csr_pem, device_serial, passphrase):
    """The offline flow (`ca issue`): the CSR travels as a file, so there is no session
    and no challenge to check; the subject serial must still equal device_serial."""
    return load_ca(ca_directory, passphrase).issue_device(csr_pem, device_serial, credentials.PURPOSE_CONTENT, None)


def load_operator(chain_path, key_path, passphrase=None):
    """An operator's credential from its files: (chain certificates, private key)."""
    try:
        chain_text = Path(chain_path).read_bytes()
        key_text = Path(key_path).read_bytes()
    except FileNotFoundError as err:
        raise CAError("operator credential file %s not found; issue one with `synthseal-host ca operator`"
                      % err.filename) from None
    try:
        chain = credentials.load_pem_chain(chain_text)
    except CredentialError as err:
        raise CAError("%s: %s" % (chain_path, err)) from None
    try:
        key = serialization.load_pem_private_key(key_text, password=passphrase.encode("utf-8") if passphrase else None)
    except TypeError:
        if passphrase:
            raise CAError("%s is not encrypted, but a passphrase was given" % key_path) from None
        raise CAError("%s is encrypted: give its passphrase ($SYNTHSEAL_OPERATOR_PASSPHRASE)" % key_path) from None
    except ValueError:
        raise CAError("%s: wrong passphrase, or not a PEM private key" % key_path) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CAError("%s is not an EC P-256 key" % key_path)
    if credentials.public_key_der(key) != credentials.public_key_der(chain[0]):
        raise CAError("%s does not belong to the certificate in %s" % (key_path, chain_path))
    try:
        usages = chain[0].extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = []
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages or not credentials.operator_roles(chain[0]):
        raise CAError("%s is not an operator certificate (clientAuth and a role)" % chain_path)
    return chain, key

