"""Certificate profiles, chain validation, certificate requests and the signed
configuration: real keys, real certificates from a real vendor CA, each refusal proved."""

import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AttributeOID, NameOID

from synthseal.device import credentials as cr
from synthseal.host import ca

UTC = datetime.timezone.utc
SERIAL = "CAM-000123"
NONCE = "9f2c4a1be07d3355"


@pytest.fixture(scope="module")
def authority(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cred") / "ca"
    ca.create_vendor_ca(directory, "Credential Test Vendor", "ca-pass")
    return ca.load_ca(directory, "ca-pass")


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    directory = tmp_path_factory.mktemp("foreign") / "ca"
    ca.create_vendor_ca(directory, "Credential Test Vendor", "other-pass")  # same names, other keys
    return ca.load_ca(directory, "other-pass")


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def device_chain(authority, purpose, serial=SERIAL):
    return cr.load_pem_chain(authority.issue_device(cr.make_csr(_key(), serial, "Vendor", purpose, NONCE),
                                                    serial, purpose, NONCE))


@pytest.fixture(scope="module")
def chains(authority):
    provisioner = authority.issue_operator("Ann Provisioner", [cr.ROLE_PROVISIONER])
    collector = authority.issue_operator("Carl Collector", [cr.ROLE_COLLECTOR])
    return {
        "content": device_chain(authority, cr.PURPOSE_CONTENT),
        "identity": device_chain(authority, cr.PURPOSE_IDENTITY),
        "provisioner": (cr.load_pem_chain(provisioner[0]),
                        serialization.load_pem_private_key(provisioner[1].encode(), None)),
        "collector": (cr.load_pem_chain(collector[0]),
                      serialization.load_pem_private_key(collector[1].encode(), None)),
    }


def custom_leaf(authority, key=None, ca_leaf=False, not_before=None, not_after=None, ekus=None, subject=None):
    """A leaf signed by the real issuing CA with chosen parameters (what a broken or
    hostile issuance could produce)."""
    key = key or _key()
    now = datetime.datetime.now(UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "odd"),
                                                   x509.NameAttribute(NameOID.SERIAL_NUMBER, SERIAL)]))
               .issuer_name(authority.issuing.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before or now - datetime.timedelta(days=1))
               .not_valid_after(not_after or now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca_leaf, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=ca_leaf,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage(list(ekus or cr.CONTENT_SIGNING_EKUS)), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   authority._issuing_key.public_key()), critical=False))
    return [builder.sign(authority._issuing_key, hashes.SHA256()), authority.issuing]


def test_each_profile_passes_for_its_purpose_only(authority, chains):
    root = [authority.root]
    assert cr.verify_chain(chains["content"], root, cr.PURPOSE_CONTENT) == chains["content"][0]
    assert cr.verify_chain(chains["identity"], root, cr.PURPOSE_IDENTITY) == chains["identity"][0]
    assert cr.verify_chain(chains["provisioner"][0], root, cr.PURPOSE_OPERATOR)
    for chain, wrong in ((chains["content"], cr.PURPOSE_IDENTITY), (chains["content"], cr.PURPOSE_OPERATOR),
                         (chains["identity"], cr.PURPOSE_CONTENT), (chains["identity"], cr.PURPOSE_OPERATOR),
                         (chains["provisioner"][0], cr.PURPOSE_CONTENT),
                         (chains["provisioner"][0], cr.PURPOSE_IDENTITY)):
        with pytest.raises(cr.CredentialError):
            cr.verify_chain(chain, root, wrong)


def test_helpers_name_serial_roles_and_fingerprint(chains):
    content, identity = chains["content"][0], chains["identity"][0]
    assert cr.cert_serial(content) == cr.cert_serial(identity) == SERIAL
    assert cr.operator_roles(chains["provisioner"][0][0]) == {cr.ROLE_PROVISIONER}
    assert cr.operator_roles(identity) == set()
    assert cr.fingerprint(content) == __import__("hashlib").sha256(
        content.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert cr.public_key_der(content) == content.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_a_chain_from_another_ca_is_refused(foreign, authority):
    chain = device_chain(foreign, cr.PURPOSE_CONTENT)
    with pytest.raises(cr.CredentialError, match="does not chain to the trust anchor"):
        cr.verify_chain(chain, [authority.root], cr.PURPOSE_CONTENT)


def test_expired_and_not_yet_valid_certificates_are_refused(authority, chains):
    with pytest.raises(cr.CredentialError, match="expired"):
        cr.verify_chain(chains["content"], [authority.root], cr.PURPOSE_CONTENT,
                        at=datetime.datetime.now(UTC) + datetime.timedelta(days=365 * 11))
    with pytest.raises(cr.CredentialError, match="not yet valid"):
        cr.verify_chain(chains["content"], [authority.root], cr.PURPOSE_CONTENT,
                        at=datetime.datetime.now(UTC) - datetime.timedelta(days=2))
    future = custom_leaf(authority, not_before=datetime.datetime.now(UTC) + datetime.timedelta(days=1))
    with pytest.raises(cr.CredentialError, match="not yet valid"):
        cr.verify_chain(future, [authority.root], cr.PURPOSE_CONTENT)
    with pytest.raises(cr.CredentialError, match="timezone"):
        cr.verify_chain(chains["content"], [authority.root], cr.PURPOSE_CONTENT, at=datetime.datetime(2030, 1, 1))


def test_a_ca_certificate_is_refused_as_a_leaf(authority):
    with pytest.raises(cr.CredentialError, match="cA must not be asserted"):
        cr.verify_chain(custom_leaf(authority, ca_leaf=True), [authority.root], cr.PURPOSE_CONTENT)
    with pytest.raises(cr.CredentialError):
        cr.verify_chain([authority.issuing], [authority.root], cr.PURPOSE_CONTENT)


def test_a_key_on_another_curve_is_refused(authority):
    assert cr.verify_chain(custom_leaf(authority), [authority.root], cr.PURPOSE_CONTENT)  # the control
    with pytest.raises(cr.CredentialError, match="P-256"):
        cr.verify_chain(custom_leaf(authority, key=ec.generate_private_key(ec.SECP384R1())), [authority.root],
                        cr.PURPOSE_CONTENT)


def test_a_broken_signature_is_refused(authority, chains):
    der = bytearray(chains["content"][0].public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte of the ECDSA signature's s
    broken = x509.load_der_x509_certificate(bytes(der))
    with pytest.raises(cr.CredentialError, match="does not chain"):
        cr.verify_chain([broken, authority.issuing], [authority.root], cr.PURPOSE_CONTENT)


def test_any_extended_key_usage_is_refused(authority):
    chain = custom_leaf(authority, ekus=[x509.oid.ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE, cr.OID_C2PA_CLAIM_SIGNING])
    with pytest.raises(cr.CredentialError, match="anyExtendedKeyUsage"):
        cr.verify_chain(chain, [authority.root], cr.PURPOSE_CONTENT)


def test_an_operator_certificate_without_a_role_is_refused(authority):
    chain = custom_leaf(authority, ekus=[x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH],
                        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "no role"),
                                           x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                                              cr.ROLE_OU_PREFIX + "janitor")]))
    with pytest.raises(cr.CredentialError, match="no role"):
        cr.verify_chain(chain, [authority.root], cr.PURPOSE_OPERATOR)


def test_an_empty_anchor_list_trusts_nothing(chains):
    with pytest.raises(cr.CredentialError, match="no trust anchor"):
        cr.verify_chain(chains["content"], [], cr.PURPOSE_CONTENT)


@pytest.mark.parametrize("text, message", [
    ("", "no PEM certificate"),
    ("hello", "no PEM certificate"),
    ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not valid PEM"),
    ("-----BEGIN CERTIFICATE-----" + "A" * 70000, "larger than"),
])
def test_load_pem_chain_refuses_what_is_not_a_chain(text, message):
    with pytest.raises(cr.CredentialError, match=message):
        cr.load_pem_chain(text)


# -- certificate requests ---------------------------------------------------------------

def test_a_csr_proves_possession_and_names_serial_and_session():
    key = _key()
    csr_pem = cr.make_csr(key, SERIAL, "Vendor", cr.PURPOSE_IDENTITY, NONCE)
    csr = x509.load_pem_x509_csr(csr_pem)
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "synthseal device %s identity" % SERIAL
    assert csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value == NONCE.encode()
    assert cr.public_key_der(cr.check_csr(csr_pem, SERIAL, NONCE)) == cr.public_key_der(key)
    assert cr.check_csr(csr.public_bytes(serialization.Encoding.DER), SERIAL, NONCE)  # DER too


def test_a_csr_for_another_serial_is_refused():
    csr = cr.make_csr(_key(), "CAM-000123", "Vendor", cr.PURPOSE_CONTENT, NONCE)
    with pytest.raises(cr.CredentialError, match="for device 'CAM-000123', not 'WRONG-SERIAL'"):
        cr.check_csr(csr, "WRONG-SERIAL", NONCE)


def test_a_csr_from_another_session_is_refused():
    csr = cr.make_csr(_key(), SERIAL, "Vendor", cr.PURPOSE_CONTENT, NONCE)
    with pytest.raises(cr.CredentialError, match="challenge does not match"):
        cr.check_csr(csr, SERIAL, "00" * 8)
    bare = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.SERIAL_NUMBER, SERIAL)])).sign(_key(), hashes.SHA256())
    with pytest.raises(cr.CredentialError, match="carries no challenge"):
        cr.check_csr(bare.public_bytes(serialization.Encoding.PEM), SERIAL, NONCE)


def test_a_csr_with_a_wrong_key_type_or_signature_is_refused():
    csr = cr.make_csr(ec.generate_private_key(ec.SECP384R1()), SERIAL, "Vendor", cr.PURPOSE_CONTENT, NONCE)
    with pytest.raises(cr.CredentialError, match="P-256"):
        cr.check_csr(csr, SERIAL, NONCE)
    der = bytearray(x509.load_pem_x509_csr(cr.make_csr(_key(), SERIAL, "V", cr.PURPOSE_CONTENT, NONCE))
                    .public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    with pytest.raises(cr.CredentialError, match="possession"):
        cr.check_csr(bytes(der), SERIAL, NONCE)
    with pytest.raises(cr.CredentialError, match="not a PKCS#10"):
        cr.check_csr(b"garbage", SERIAL, NONCE)


# -- signed configuration ---------------------------------------------------------------

def _signed(chains, signer="provisioner", **overrides):
    chain, key = chains[signer]
    config = cr.default_config(SERIAL, "synthseal-vendor", **overrides)
    return cr.sign_config(config, key, cr.chain_pem(chain))


def test_a_signed_configuration_verifies_and_round_trips(authority, chains):
    document = _signed(chains, version=3, filing_number="Beijing-RG-20250101", label_text="人工智能合成",
                       label_position="top-right", policy={"classifier_threshold": 0.7})
    config = cr.verify_config(document, [authority.root], SERIAL, 2)
    assert config["version"] == 3 and config["label_text"] == "人工智能合成"
    assert config["policy"] == {"classifier_threshold": 0.7}
    assert json.loads(document)["format"] == cr.CONFIG_FORMAT
    assert set(config) == set(cr.CONFIG_KEYS)


def test_a_configuration_with_a_bad_signature_is_refused(authority, chains):
    document = json.loads(_signed(chains, version=2))
    document["config"]["retention_days"] = 400  # a valid value, but not the signed one
    with pytest.raises(cr.CredentialError, match="signature does not verify"):
        cr.verify_config(json.dumps(document).encode(), [authority.root], SERIAL, 1)


@pytest.mark.parametrize("current", [2, 3])
def test_an_older_or_replayed_configuration_is_refused(authority, chains, current):
    with pytest.raises(cr.CredentialError, match="older or replayed configuration"):
        cr.verify_config(_signed(chains, version=2), [authority.root], SERIAL, current)


def test_a_configuration_for_another_device_is_refused(authority, chains):
    with pytest.raises(cr.CredentialError, match="not this device"):
        cr.verify_config(_signed(chains, version=2), [authority.root], "CAM-999999", 1)


def test_a_configuration_signed_by_a_collector_is_refused(authority, chains):
    with pytest.raises(cr.CredentialError, match="do not include provisioner"):
        cr.verify_config(_signed(chains, signer="collector", version=2), [authority.root], SERIAL, 1)


def test_a_configuration_signed_by_an_expired_operator_is_refused(authority, chains):
    with pytest.raises(cr.CredentialError, match="expired"):
        cr.verify_config(_signed(chains, version=2), [authority.root], SERIAL, 1,
                         at=datetime.datetime.now(UTC) + datetime.timedelta(days=400))


def test_a_configuration_signed_under_another_ca_is_refused(foreign, chains):
    with pytest.raises(cr.CredentialError, match="does not chain"):
        cr.verify_config(_signed(chains, version=2), [foreign.root], SERIAL, 1)


@pytest.mark.parametrize("key, value, message", [
    ("label_text", "Generated", "AI"),
    ("label_text", "AI生成\n", "printable"),
    ("label_text", "NOT AI生成", "says more than the statement"),
    ("label_text", "DETAIL合成", "says more than the statement"),
    ("label_text", "0%AI生成", "says more than the statement"),
    ("label_text", "AI生成?", "says more than the statement"),
    ("retention_days", 179, "180"),
    ("retention_days", True, "180"),
    ("version", 0, "from 1 to"),
    ("version", 2 ** 31, "from 1 to"),
    ("producer", "has space", "outside the allowed set"),
    ("filing_number", "x\x07", "control"),
    ("label_position", "middle", "not one of"),
    ("policy", {"classifier_threshold": 1.5}, r"\(0, 1\]"),
    ("policy", {"lab": True}, "unknown policy options"),
])
def test_configuration_values_are_checked_before_signing_and_after(authority, chains, key, value, message):
    arguments = {"serial": SERIAL, "producer": "synthseal-vendor", key: value}
    with pytest.raises(cr.CredentialError, match=message):
        cr.default_config(**arguments)
    # A signer that skipped the checks gets the same refusal from the device.
    chain, signer_key = chains["provisioner"]
    config = cr.default_config(SERIAL, "synthseal-vendor", version=2)
    config[key] = value
    signature = signer_key.sign(cr.canonical_json(config), ec.ECDSA(hashes.SHA256()))
    document = json.dumps({"format": cr.CONFIG_FORMAT, "config": config, "signer_chain": cr.chain_pem(chain),
                           "signature": __import__("base64").b64encode(signature).decode()}).encode()
    with pytest.raises(cr.CredentialError, match=message):
        cr.verify_config(document, [authority.root], SERIAL, 1)


def test_unknown_keys_and_oversized_documents_are_refused(authority, chains):
    document = json.loads(_signed(chains, version=2))
    document["extra"] = 1
    with pytest.raises(cr.CredentialError, match="exactly the keys"):
        cr.verify_config(json.dumps(document).encode(), [authority.root], SERIAL, 1)
    with pytest.raises(cr.CredentialError, match="unknown configuration key"):
        cr.default_config(SERIAL, "p", colour="red")
    with pytest.raises(cr.CredentialError, match="exceeds"):
        cr.verify_config(b" " * (cr.MAX_CONFIG_BYTES + 1), [authority.root], SERIAL, 1)
    with pytest.raises(cr.CredentialError, match="not UTF-8 JSON"):
        cr.verify_config(b"\xff{", [authority.root], SERIAL, 1)
