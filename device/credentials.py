"""Credentials shared by the device and the host: certificate profiles, chain
validation, certificate requests and the signed device configuration.

One module so both ends hold one definition of what a synthseal certificate is.
Certificates (all leaves EC P-256, Key Usage digitalSignature, not a CA, chaining to the
vendor root through the issuing CA):

    content    the C2PA signer: EKU id-kp-c2pa-claimSigning 1.3.6.1.4.1.62558.2.1
               (C2PA 2.1 §14.5.1) plus emailProtection for older validators; subject
               SERIAL_NUMBER = the device serial.
    identity   the device's identity (log checkpoints, authenticating to hosts): EKU
               clientAuth, subject OU "synthseal-device-identity", SERIAL_NUMBER = the
               device serial, no role.
    operator   a technician's credential: EKU clientAuth and one subject OU
               "synthseal-role:<role>" per role (provisioner, collector); never the
               device-identity OU.

The three profiles exclude one another: a content certificate lacks clientAuth and the
identity OU; an identity certificate lacks the C2PA EKU and every role; an operator
certificate lacks the C2PA EKU and the identity OU.

Path validation is cryptography's x509.verification (RFC 5280 path building with the
CA/Browser-Forum-derived checks on CAs: basicConstraints, pathLen, keyCertSign, AKI),
with the leaf extension policy replaced by ours, since these are not TLS certificates:
no subjectAltName is required, and the EKU checked is the purpose's.
"""

import base64
import datetime
import hashlib
import json

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AttributeOID, ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store, VerificationError

from .core import aigc, policy
from .explicit_label import CORNERS, ExplicitLabelError, check_label_text


class CredentialError(Exception):
    """A certificate, request or configuration is refused; the message says why."""


ROLE_PROVISIONER = "provisioner"   # enrolment, configuration, rotation, decommissioning
ROLE_COLLECTOR = "collector"       # pulling audit logs
ROLES = (ROLE_PROVISIONER, ROLE_COLLECTOR)

PURPOSE_CONTENT = "content"
PURPOSE_IDENTITY = "identity"
PURPOSE_OPERATOR = "operator"
PURPOSES = (PURPOSE_CONTENT, PURPOSE_IDENTITY, PURPOSE_OPERATOR)

# id-kp-c2pa-claimSigning (C2PA 2.1 §14.5.1).
OID_C2PA_CLAIM_SIGNING = ObjectIdentifier("1.3.6.1.4.1.62558.2.1")
# emailProtection (RFC 5280 §4.2.1.12): accepted by validators that predate the C2PA EKU.
CONTENT_SIGNING_EKUS = (OID_C2PA_CLAIM_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION)
IDENTITY_EKUS = (ExtendedKeyUsageOID.CLIENT_AUTH,)
OPERATOR_EKUS = (ExtendedKeyUsageOID.CLIENT_AUTH,)
# Subject organizationalUnitName markers (X.520): ours, documented in docs/PROVISIONING.md.
IDENTITY_OU = "synthseal-device-identity"
ROLE_OU_PREFIX = "synthseal-role:"

MAX_PEM_BYTES = 64 * 1024       # a chain is a few kB; anything near this is not one
MAX_CHAIN_CERTIFICATES = 8
MAX_CHAIN_DEPTH = 4             # leaf, issuing CA, root, and one spare
_SIGNATURE_HASH = hashes.SHA256()


# -- certificates ---------------------------------------------------------------------

def load_pem_chain(pem):
    """The certificates in a PEM text (str or bytes), in order."""
    if isinstance(pem, str):
        pem = pem.encode("utf-8", "replace")
    if not isinstance(pem, bytes):
        raise CredentialError("a certificate chain must be PEM text")
    if len(pem) > MAX_PEM_BYTES:
        raise CredentialError("certificate chain of %d bytes is larger than the %d allowed"
                              % (len(pem), MAX_PEM_BYTES))
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise CredentialError("no PEM certificate in the chain (expected -----BEGIN CERTIFICATE-----)")
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as err:
        raise CredentialError("certificate chain is not valid PEM: %s" % err) from None
    if not certs:
        raise CredentialError("certificate chain is empty")
    if len(certs) > MAX_CHAIN_CERTIFICATES:
        raise CredentialError("certificate chain holds %d certificates; at most %d are allowed"
                              % (len(certs), MAX_CHAIN_CERTIFICATES))
    return certs


def chain_pem(certs):
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def fingerprint(cert):
    """Lowercase hex SHA-256 of the certificate's DER encoding."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def cert_serial(cert):
    """The device serial in the subject (SERIAL_NUMBER attribute), or None."""
    values = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    return values[0].value if len(values) == 1 else None


def _ou_values(cert):
    return [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]


def operator_roles(cert):
    """The known roles an operator certificate carries (subject OU synthseal-role:<role>)."""
    return {v[len(ROLE_OU_PREFIX):] for v in _ou_values(cert)
            if v.startswith(ROLE_OU_PREFIX) and v[len(ROLE_OU_PREFIX):] in ROLES}


def public_key_der(key_or_cert):
    """SubjectPublicKeyInfo DER of a certificate, CSR, public or private key."""
    key = key_or_cert
    if isinstance(key, (x509.Certificate, x509.CertificateSigningRequest)):
        key = key.public_key()
    elif hasattr(key, "public_key"):  # a private key
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _is_p256(key):
    return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)


def _eku_validator(purpose):
    """Leaf EKU check for a purpose (the verifier calls it with the extension value)."""
    def check(_policy, _cert, eku):
        usages = set(eku)
        if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages:
            raise ValueError("the certificate's EKU is anyExtendedKeyUsage, which C2PA and synthseal refuse")
        if purpose == PURPOSE_CONTENT:
            if OID_C2PA_CLAIM_SIGNING not in usages:
                raise ValueError("not a content-signing certificate: EKU lacks C2PA claim signing 1.3.6.1.4.1.62558.2.1")
            if ExtendedKeyUsageOID.CLIENT_AUTH in usages:
                raise ValueError("a content-signing certificate must not carry clientAuth")
        elif ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
            raise ValueError("not an %s certificate: EKU lacks clientAuth" % purpose)
        elif OID_C2PA_CLAIM_SIGNING in usages:
            raise ValueError("an %s certificate must not carry the C2PA claim-signing EKU" % purpose)
    return check


def _key_usage_validator(_policy, _cert, usage):
    if not usage.digital_signature:
        raise ValueError("Key Usage lacks digitalSignature")
    if usage.key_cert_sign or usage.crl_sign:
        raise ValueError("a leaf certificate must not have keyCertSign or cRLSign")


def _leaf_policy(purpose):
    return (ExtensionPolicy.webpki_defaults_ee()
            .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
            .require_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _eku_validator(purpose))
            .require_present(x509.KeyUsage, Criticality.CRITICAL, _key_usage_validator))


def _anchor_list(anchors):
    if isinstance(anchors, (str, bytes)):
        return load_pem_chain(anchors)
    anchors = list(anchors or [])
    if not anchors:
        raise CredentialError("no trust anchor given: an empty anchor list trusts nothing")
    return anchors


def _validation_time(at):
    if at is None:
        return datetime.datetime.now(datetime.timezone.utc)
    if at.tzinfo is None:
        raise CredentialError("validation time must carry a timezone (e.g. datetime.timezone.utc)")
    return at


def _verification_reason(err):
    text = str(err)
    if text.startswith("validation failed: "):
        text = text[len("validation failed: "):]
    text = text.split(" (encountered processing", 1)[0]
    if "Python extension validator failed: " in text:
        text = text.split("Python extension validator failed: ", 1)[1].split(": ", 1)[-1]
    return text


def verify_chain(chain, anchors, purpose, at=None):
    """Validate a leaf-first chain (leaf + intermediates, no root) up to one of the
    anchors (root certificates, or their PEM text) for a purpose at time `at` (timezone-
    aware; default now). Return the leaf, or raise CredentialError naming the problem."""
    if purpose not in PURPOSES:
        raise CredentialError("unknown certificate purpose %r; use one of %s" % (purpose, ", ".join(PURPOSES)))
    if isinstance(chain, (str, bytes)):
        chain = load_pem_chain(chain)
    chain = list(chain)
    if not chain:
        raise CredentialError("certificate chain is empty")
    anchors = _anchor_list(anchors)
    at = _validation_time(at)
    leaf = chain[0]
    # Clear messages for the common refusals first; the verifier below checks them all again.
    if not _is_p256(leaf.public_key()):
        raise CredentialError("the %s certificate's key is not EC P-256 (ES256)" % purpose)
    for cert in chain:
        if at < cert.not_valid_before_utc:
            raise CredentialError("certificate %r is not yet valid (valid from %s)"
                                  % (cert.subject.rfc4514_string(), cert.not_valid_before_utc.isoformat()))
        if at > cert.not_valid_after_utc:
            raise CredentialError("certificate %r expired on %s"
                                  % (cert.subject.rfc4514_string(), cert.not_valid_after_utc.isoformat()))
    verifier = (PolicyBuilder().store(Store(anchors)).time(at).max_chain_depth(MAX_CHAIN_DEPTH)
                .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_leaf_policy(purpose))
                .build_client_verifier())
    try:
        verifier.verify(leaf, chain[1:])
    except VerificationError as err:
        reason = _verification_reason(err)
        if "candidates exhausted" in reason:
            reason = "it does not chain to the trust anchor (issued by another CA, or a signature does not verify)"
        raise CredentialError("%s certificate %r refused: %s" % (purpose, leaf.subject.rfc4514_string(), reason)) from None
    ous = _ou_values(leaf)
    roles = operator_roles(leaf)
    if purpose == PURPOSE_IDENTITY:
        if IDENTITY_OU not in ous or roles:
            raise CredentialError("not a device identity certificate: subject OU %r missing or a role present"
                                  % IDENTITY_OU)
    elif IDENTITY_OU in ous:
        raise CredentialError("a device identity certificate cannot serve as %s certificate" % purpose)
    if purpose in (PURPOSE_CONTENT, PURPOSE_IDENTITY) and not cert_serial(leaf):
        raise CredentialError("the %s certificate names no device serial (subject SERIAL_NUMBER)" % purpose)
    if purpose == PURPOSE_OPERATOR and not roles:
        raise CredentialError("the operator certificate carries no role (subject OU %s<role>, roles %s)"
                              % (ROLE_OU_PREFIX, ", ".join(ROLES)))
    if purpose == PURPOSE_CONTENT and roles:
        raise CredentialError("a content-signing certificate must not carry an operator role")
    return leaf


# -- certificate requests ---------------------------------------------------------------

MAX_CHALLENGE_LENGTH = 255  # PKCS#9 challengePassword: DirectoryString of at most 255 characters


def csr_common_name(serial, purpose):
    return "synthseal device %s %s" % (serial, purpose)


def make_csr(private_key, serial, organization, purpose, challenge):
    """A PKCS#10 request (PEM bytes) for `purpose`, subject CN "synthseal device <serial>
    <purpose>", O organization, SERIAL_NUMBER serial; the challengePassword attribute
    carries `challenge` (the session nonce in hex), so the signature over the request
    proves possession of the key within this session."""
    try:
        aigc.check_value("serial", serial)
    except aigc.LabelError as err:
        raise CredentialError("%s; use printable ASCII without spaces" % err) from None
    if purpose not in (PURPOSE_CONTENT, PURPOSE_IDENTITY):
        raise CredentialError("a device requests %s or %s certificates, not %r"
                              % (PURPOSE_CONTENT, PURPOSE_IDENTITY, purpose))
    _check_challenge(challenge)
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, csr_common_name(serial, purpose)),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, serial),
    ])
    csr = (x509.CertificateSigningRequestBuilder().subject_name(subject)
           .add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode("ascii"))
           .sign(private_key, _SIGNATURE_HASH))
    return csr.public_bytes(serialization.Encoding.PEM)


def _check_challenge(challenge):
    if not isinstance(challenge, str) or not challenge or len(challenge) > MAX_CHALLENGE_LENGTH \
            or not all(0x21 <= ord(c) <= 0x7E for c in challenge):
        raise CredentialError("the challenge must be 1 to %d printable ASCII characters (the session nonce in hex)"
                              % MAX_CHALLENGE_LENGTH)


def load_csr(csr_pem):
    if isinstance(csr_pem, str):
        csr_pem = csr_pem.encode("utf-8", "replace")
    if not isinstance(csr_pem, bytes) or len(csr_pem) > MAX_PEM_BYTES:
        raise CredentialError("the certificate request must be PEM or DER of at most %d bytes" % MAX_PEM_BYTES)
    try:
        if b"-----BEGIN" in csr_pem:
            return x509.load_pem_x509_csr(csr_pem)
        return x509.load_der_x509_csr(csr_pem)
    except ValueError:
        raise CredentialError("the certificate request is not a PKCS#10 CSR (PEM or DER)") from None


def check_csr(csr_pem, serial, challenge):
    """Check a device's request; return its public key. The request must be signed by
    its key (possession), EC P-256, name `serial` in subject SERIAL_NUMBER, and carry
    `challenge` as challengePassword. challenge=None skips the challenge: only for the
    offline flow (`ca issue`), where the request travels as a file and no session exists."""
    csr = load_csr(csr_pem)
    if not csr.is_signature_valid:
        raise CredentialError("the certificate request's signature does not verify (no proof of possession)")
    key = csr.public_key()
    if not _is_p256(key):
        raise CredentialError("the requested key must be EC P-256 (ES256)")
    names = csr.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if len(names) > 1:
        raise CredentialError("the certificate request names %d serials; it must name one" % len(names))
    if names:
        requested = names[0].value
    else:
        raise CredentialError("the certificate request names no device serial (subject SERIAL_NUMBER)")
    if requested != serial:
        raise CredentialError("the certificate request is for device %r, not %r; refusing to certify one "
                              "device's key under another's serial" % (requested, serial))
    if challenge is not None:
        _check_challenge(challenge)
        try:
            attribute = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD)
        except x509.AttributeNotFound:
            raise CredentialError("the certificate request carries no challenge: it was not made in this session") from None
        value = attribute.value
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if value != challenge:
            raise CredentialError("the certificate request's challenge does not match this session's nonce "
                                  "(a replayed or foreign request)")
    return key


# -- signed configuration ---------------------------------------------------------------

CONFIG_FORMAT = "synthseal-config/1"
MAX_CONFIG_BYTES = 64 * 1024
MAX_CONFIG_VERSION = 2 ** 31 - 1  # fits every integer column and counter that records it
MIN_RETENTION_DAYS = 180      # Labeling Measures: logs kept at least six months
DEFAULT_RETENTION_DAYS = 183
MAX_FILING_NUMBER_LENGTH = 64
MAX_LABEL_TEXT_LENGTH = 32
DEFAULT_LABEL_POSITION = "bottom-left"

CONFIG_KEYS = {
    "serial": "the device this configuration is for (it refuses any other)",
    "version": "integer >= 1; the device applies only a version above the one it has (no replay, no rollback)",
    "producer": "GB 45438 ContentProducer: the provider's name or code, printable ASCII without space, '\"' or '\\'",
    "filing_number": "the deep-synthesis filing number (备案编号), shown by the service; may be empty",
    "label_text": "the visible label text: \"AI\" or \"人工智能\" and \"生成\" or \"合成\" (GB 45438), e.g. \"AI生成\"",
    "label_position": "the corner the visible label is drawn in: %s" % ", ".join(CORNERS),
    "policy": "labeling policy options (see POLICY_KEYS)",
    "retention_days": "days audit records are kept after the host acknowledged them; at least %d" % MIN_RETENTION_DAYS,
}
POLICY_KEYS = {
    "classifier_threshold": "score in (0, 1] at which a declared capture is labelled suspected "
                            "(device/core/policy.py; default %s)" % policy.DEFAULT_THRESHOLD,
}


def default_config(serial, producer, version=1, **overrides):
    config = {"serial": serial, "version": version, "producer": producer, "filing_number": "",
              "label_text": "AI生成", "label_position": DEFAULT_LABEL_POSITION,
              "policy": {"classifier_threshold": policy.DEFAULT_THRESHOLD},
              "retention_days": DEFAULT_RETENTION_DAYS}
    for key, value in overrides.items():
        if key not in CONFIG_KEYS:
            raise CredentialError("unknown configuration key %r; keys are %s" % (key, ", ".join(CONFIG_KEYS)))
        config[key] = value
    check_config(config)
    return config


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_config(config):
    """Raise CredentialError naming the first key that is missing, unknown or not allowed."""
    if not isinstance(config, dict):
        raise CredentialError("configuration must be a JSON object")
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    missing = [k for k in CONFIG_KEYS if k not in config]
    if unknown:
        raise CredentialError("unknown configuration keys %s; keys are %s" % (", ".join(unknown), ", ".join(CONFIG_KEYS)))
    if missing:
        raise CredentialError("configuration lacks %s" % ", ".join(missing))
    for key in ("serial", "producer"):
        try:
            aigc.check_value(key, config[key])
        except aigc.LabelError as err:
            raise CredentialError("configuration %s: %s" % (key, err)) from None
        if not config[key]:
            raise CredentialError("configuration %s is empty" % key)
    if not _is_int(config["version"]) or not 1 <= config["version"] <= MAX_CONFIG_VERSION:
        raise CredentialError("configuration version must be an integer from 1 to %d, got %r"
                              % (MAX_CONFIG_VERSION, config["version"]))
    filing = config["filing_number"]
    if not isinstance(filing, str) or len(filing) > MAX_FILING_NUMBER_LENGTH \
            or any(not ch.isprintable() for ch in filing):
        raise CredentialError("configuration filing_number must be printable text of at most %d characters, "
                              "without control characters" % MAX_FILING_NUMBER_LENGTH)
    text = config["label_text"]
    if not isinstance(text, str) or len(text) > MAX_LABEL_TEXT_LENGTH or any(not ch.isprintable() for ch in text):
        raise CredentialError("configuration label_text must be printable text of at most %d characters"
                              % MAX_LABEL_TEXT_LENGTH)
    try:
        check_label_text(text)
    except ExplicitLabelError as err:
        raise CredentialError("configuration label_text: %s" % err) from None
    if config["label_position"] not in CORNERS:
        raise CredentialError("configuration label_position %r is not one of %s"
                              % (config["label_position"], ", ".join(CORNERS)))
    options = config["policy"]
    if not isinstance(options, dict):
        raise CredentialError("configuration policy must be an object")
    unknown = sorted(set(options) - set(POLICY_KEYS))
    if unknown:
        raise CredentialError("unknown policy options %s; options are %s" % (", ".join(unknown), ", ".join(POLICY_KEYS)))
    if "classifier_threshold" in options:
        try:
            policy.check_threshold(options["classifier_threshold"])
        except policy.PolicyError as err:
            raise CredentialError("configuration policy: %s" % err) from None
    days = config["retention_days"]
    if not _is_int(days) or days < MIN_RETENTION_DAYS:
        raise CredentialError("configuration retention_days must be an integer >= %d (six months), got %r"
                              % (MIN_RETENTION_DAYS, days))


def canonical_json(value):
    """The bytes a configuration signature covers."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign_config(config, signer_key, signer_chain_pem):
    """The signed configuration document (UTF-8 JSON bytes): format, config, the
    signer's chain (operator certificate + issuing CA) and the base64 DER ECDSA
    P-256/SHA-256 signature over canonical_json(config)."""
    check_config(config)
    if isinstance(signer_chain_pem, bytes):
        signer_chain_pem = signer_chain_pem.decode("ascii")
    certs = load_pem_chain(signer_chain_pem)
    if public_key_der(certs[0]) != public_key_der(signer_key):
        raise CredentialError("the signing key does not belong to the signer certificate")
    signature = signer_key.sign(canonical_json(config), ec.ECDSA(_SIGNATURE_HASH))
    document = {"format": CONFIG_FORMAT, "config": config, "signer_chain": chain_pem(certs),
                "signature": base64.b64encode(signature).decode("ascii")}
    return json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8")


_DOCUMENT_KEYS = ("format", "config", "signer_chain", "signature")


def _no_duplicate_keys(pairs):
    """A key twice in one object: parsers disagree on which one counts, so none does."""
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a key appears twice in one JSON object")
    return dict(pairs)


def verify_config_signed(document, anchors, serial, current_version, at=None):
    """verify_config, returning (config, signer leaf certificate) for the audit record."""
    if isinstance(document, str):
        document = document.encode("utf-8")
    if not isinstance(document, bytes):
        raise CredentialError("a signed configuration is JSON bytes")
    if len(document) > MAX_CONFIG_BYTES:
        raise CredentialError("signed configuration of %d bytes exceeds the %d allowed" % (len(document), MAX_CONFIG_BYTES))
    try:
        outer = json.loads(document.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CredentialError("signed configuration is not UTF-8 JSON") from None
    if not isinstance(outer, dict) or set(outer) != set(_DOCUMENT_KEYS):
        raise CredentialError("signed configuration must have exactly the keys %s" % ", ".join(_DOCUMENT_KEYS))
    if outer["format"] != CONFIG_FORMAT:
        raise CredentialError("signed configuration format %r is not %s" % (outer["format"], CONFIG_FORMAT))
    if not isinstance(outer["signer_chain"], str) or not isinstance(outer["signature"], str):
        raise CredentialError("signed configuration signer_chain and signature must be strings")
    config = outer["config"]
    check_config(config)
    signer = verify_chain(load_pem_chain(outer["signer_chain"]), anchors, PURPOSE_OPERATOR, at)
    if ROLE_PROVISIONER not in operator_roles(signer):
        raise CredentialError("the configuration is signed by %r, whose roles (%s) do not include %s"
                              % (signer.subject.rfc4514_string(), ", ".join(sorted(operator_roles(signer))),
                                 ROLE_PROVISIONER))
    try:
        signature = base64.b64decode(outer["signature"], validate=True)
        signer.public_key().verify(signature, canonical_json(config), ec.ECDSA(_SIGNATURE_HASH))
    except (ValueError, InvalidSignature):
        raise CredentialError("the configuration's signature does not verify: it was altered or signed by another key") from None
    if config["serial"] != serial:
        raise CredentialError("the configuration is for device %r, not this device %r" % (config["serial"], serial))
    if not _is_int(current_version):
        raise CredentialError("current configuration version must be an integer")
    if config["version"] <= current_version:
        raise CredentialError("older or replayed configuration: version %d, and this device already has version %d"
                              % (config["version"], current_version))
    return config, signer


def verify_config(document, anchors, serial, current_version, at=None):
    """Check a signed configuration document for this device; return its config dict.
    The document is at most MAX_CONFIG_BYTES, has exactly the documented keys, is signed
    by an operator with the provisioner role whose chain is valid at `at`, names this
    serial, and has a version above current_version. Anything else: CredentialError."""
    return verify_config_signed(document, anchors, serial, current_version, at)[0]
