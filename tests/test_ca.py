"""The vendor CA: keys encrypted at rest, never overwritten, certificates that Debian's
openssl accepts, a CRL it verifies, and the `ca` commands as a technician runs them."""

import datetime
import os
import stat
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from synthseal.device import credentials as cr
from synthseal.host import ca

UTC = datetime.timezone.utc
PASS = "vendor ca passphrase"
NONCE = "0123456789abcdef"


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ca-tests") / "vendor-ca"
    ca.create_vendor_ca(directory, "CA Test Vendor", PASS)
    return directory


@pytest.fixture(scope="module")
def authority(ca_dir):
    return ca.load_ca(ca_dir, PASS)


def _csr(serial="CAM-000123", purpose=cr.PURPOSE_CONTENT, challenge=NONCE):
    return cr.make_csr(ec.generate_private_key(ec.SECP256R1()), serial, "Vendor", purpose, challenge)


def openssl_verify(ca_dir, tmp_path, chain_pem, purpose=None):
    leaf, issuing = tmp_path / "leaf.pem", tmp_path / "issuing.pem"
    certs = cr.load_pem_chain(chain_pem)
    leaf.write_text(ca.pem(certs[0]))
    issuing.write_text(ca.pem(certs[1]))
    command = ["openssl", "verify", "-x509_strict", "-CAfile", str(ca_dir / ca.ROOT_CERT), "-untrusted", str(issuing)]
    if purpose:
        command += ["-purpose", purpose]
    return subprocess.run(command + [str(leaf)], capture_output=True, text=True)


def test_ca_keys_are_encrypted_at_rest_and_private(ca_dir):
    for name in (ca.ROOT_KEY, ca.ISSUING_KEY):
        path = ca_dir / name
        assert path.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(ca_dir.stat().st_mode) == 0o700
    # openssl cannot read the key without the passphrase, and can with it.
    key = str(ca_dir / ca.ISSUING_KEY)
    assert subprocess.run(["openssl", "pkey", "-in", key, "-passin", "pass:wrong", "-noout"],
                          capture_output=True).returncode != 0
    assert subprocess.run(["openssl", "pkey", "-in", key, "-passin", "pass:" + PASS, "-noout"],
                          capture_output=True).returncode == 0


def test_lifetimes_are_30_and_25_years(authority):
    years = lambda c: (c.not_valid_after_utc - c.not_valid_before_utc).days // 365  # noqa: E731
    assert years(authority.root) == ca.ROOT_YEARS and years(authority.issuing) == ca.ISSUING_YEARS


def test_init_refuses_to_overwrite_a_ca_or_fill_a_used_folder(ca_dir, tmp_path):
    before = {p.name: p.read_bytes() for p in ca_dir.iterdir()}
    with pytest.raises(ca.CAError, match="already exists"):
        ca.create_vendor_ca(ca_dir, "Other", "x")
    assert {p.name: p.read_bytes() for p in ca_dir.iterdir()} == before
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    with pytest.raises(ca.CAError, match="not empty"):
        ca.create_vendor_ca(used, "Other", "x")
    assert [p.name for p in used.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert ca.create_vendor_ca(empty, "Other", "x") == empty / ca.ROOT_CERT
    with pytest.raises(ca.CAError, match="must not be empty"):
        ca.create_vendor_ca(tmp_path / "new", "Other", "")
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "used"]  # no staging folder left behind


def test_load_ca_names_a_wrong_passphrase_and_a_missing_ca(ca_dir, tmp_path):
    with pytest.raises(ca.CAError, match="wrong CA passphrase"):
        ca.load_ca(ca_dir, "not it")
    with pytest.raises(ca.CAError, match="no CA in"):
        ca.load_ca(tmp_path, PASS)


@pytest.mark.parametrize("purpose", [cr.PURPOSE_CONTENT, cr.PURPOSE_IDENTITY])
def test_openssl_accepts_device_chains(ca_dir, authority, tmp_path, purpose):
    chain = authority.issue_device(_csr(purpose=purpose), "CAM-000123", purpose, NONCE)
    result = openssl_verify(ca_dir, tmp_path, chain, "sslclient" if purpose == cr.PURPOSE_IDENTITY else None)
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stdout + result.stderr
    assert cr.verify_chain(cr.load_pem_chain(chain), [authority.root], purpose)


def test_openssl_accepts_an_operator_chain(ca_dir, authority, tmp_path):
    chain, key = authority.issue_operator("Ann", [cr.ROLE_PROVISIONER, cr.ROLE_COLLECTOR], key_passphrase="k")
    result = openssl_verify(ca_dir, tmp_path, chain, "sslclient")
    assert result.returncode == 0, result.stdout + result.stderr
    assert key.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert cr.operator_roles(cr.load_pem_chain(chain)[0]) == {cr.ROLE_PROVISIONER, cr.ROLE_COLLECTOR}


def test_the_content_certificate_keeps_the_c2pa_profile_and_the_service_life(authority):
    leaf = cr.load_pem_chain(authority.issue_device(_csr(), "CAM-000123", cr.PURPOSE_CONTENT, NONCE))[0]
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == list(ca.CONTENT_SIGNING_EKUS)
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days >= 365 * ca.DEFAULT_SERVICE_YEARS
    capped = cr.load_pem_chain(authority.issue_device(_csr(), "CAM-000123", cr.PURPOSE_CONTENT, NONCE, 25))[0]
    assert capped.not_valid_after_utc == authority.issuing.not_valid_after_utc


def test_issuing_refuses_a_csr_for_another_serial_or_session(authority):
    with pytest.raises(ca.CAError, match="not 'WRONG-SERIAL'"):
        authority.issue_device(_csr(), "WRONG-SERIAL", cr.PURPOSE_CONTENT, NONCE)
    with pytest.raises(ca.CAError, match="challenge"):
        authority.issue_device(_csr(), "CAM-000123", cr.PURPOSE_CONTENT, "ffff")
    with pytest.raises(ca.CAError, match="content or identity"):
        authority.issue_device(_csr(), "CAM-000123", cr.PURPOSE_OPERATOR, NONCE)


def test_the_offline_flow_checks_the_serial_but_not_the_session(ca_dir):
    csr = _csr(challenge="offline")
    assert ca.issue_content_certificate(ca_dir, csr, "CAM-000123", PASS)
    with pytest.raises(ca.CAError, match="for device 'CAM-000123', not 'WRONG-SERIAL'"):
        ca.issue_content_certificate(ca_dir, csr, "WRONG-SERIAL", PASS)


def test_revocation_is_listed_in_a_crl_that_openssl_verifies(tmp_path):
    directory = tmp_path / "ca"
    ca.create_vendor_ca(directory, "CRL Vendor", PASS)
    authority = ca.load_ca(directory, PASS)
    chain = authority.issue_device(_csr(), "CAM-000123", cr.PURPOSE_CONTENT, NONCE)
    leaf = cr.load_pem_chain(chain)[0]
    when = datetime.datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    authority.revoke(leaf, when, "cessationOfOperation")
    authority.revoke(leaf, when + datetime.timedelta(days=1), "keyCompromise")  # the first date stands
    text = authority.crl_pem()
    assert (directory / ca.CRL_FILE).read_text() == text
    crl = x509.load_pem_x509_crl(text.encode())
    entry = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
    assert entry.revocation_date_utc == when and len(crl) == 1
    result = subprocess.run(["openssl", "crl", "-in", str(directory / ca.CRL_FILE), "-noout", "-verify",
                             "-CAfile", str(directory / ca.ISSUING_CERT)], capture_output=True, text=True)
    assert result.returncode == 0 and "verify OK" in (result.stdout + result.stderr), result.stdout + result.stderr
    # openssl's own revocation check of the chain now fails.
    (tmp_path / "leaf.pem").write_text(chain)
    (tmp_path / "ca-and-crl.pem").write_text(authority.root_pem + ca.pem(authority.issuing) + text)
    result = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", str(tmp_path / "ca-and-crl.pem"),
                             str(tmp_path / "leaf.pem")], capture_output=True, text=True)
    assert result.returncode != 0 and "revoked" in result.stdout + result.stderr
    ca.create_vendor_ca(tmp_path / "other", "Other", PASS)
    with pytest.raises(ca.CAError, match="not issued by this CA"):
        ca.load_ca(tmp_path / "other", PASS).revoke(leaf, when, "keyCompromise")


def test_load_operator_checks_the_pair_and_the_passphrase(authority, tmp_path):
    chain, key = authority.issue_operator("Ann", [cr.ROLE_COLLECTOR], key_passphrase="op-pass")
    (tmp_path / "op.pem").write_text(chain)
    (tmp_path / "op-key.pem").write_text(key)
    certs, private = ca.load_operator(tmp_path / "op.pem", tmp_path / "op-key.pem", "op-pass")
    assert cr.public_key_der(private) == cr.public_key_der(certs[0])
    with pytest.raises(ca.CAError, match="encrypted: give its passphrase"):
        ca.load_operator(tmp_path / "op.pem", tmp_path / "op-key.pem")
    with pytest.raises(ca.CAError, match="wrong passphrase"):
        ca.load_operator(tmp_path / "op.pem", tmp_path / "op-key.pem", "nope")
    other_chain, _ = authority.issue_operator("Bob", [cr.ROLE_COLLECTOR])
    (tmp_path / "bob.pem").write_text(other_chain)
    with pytest.raises(ca.CAError, match="does not belong"):
        ca.load_operator(tmp_path / "bob.pem", tmp_path / "op-key.pem", "op-pass")
    with pytest.raises(ca.CAError, match="not found"):
        ca.load_operator(tmp_path / "none.pem", tmp_path / "op-key.pem")


# -- the commands -------------------------------------------------------------------------

def host(*args, env=None):
    environment = dict(os.environ)
    environment.pop("SYNTHSEAL_CA_PASSPHRASE", None)
    environment.pop("SYNTHSEAL_OPERATOR_PASSPHRASE", None)
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "synthseal.host.cli"] + [str(a) for a in args],
                          capture_output=True, text=True, env=environment, stdin=subprocess.DEVNULL, timeout=120)


def _one_line_error(result):
    lines = result.stderr.strip().splitlines()
    return result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ")


def test_ca_commands_end_to_end(tmp_path):
    env = {"SYNTHSEAL_CA_PASSPHRASE": PASS, "SYNTHSEAL_OPERATOR_PASSPHRASE": "laptop pass"}
    directory = tmp_path / "vendor-ca"
    no_pass = host("ca", "init", "--dir", directory, "--org", "Cli Vendor")
    assert _one_line_error(no_pass) and "SYNTHSEAL_CA_PASSPHRASE" in no_pass.stderr and not directory.exists()
    empty = host("ca", "init", "--dir", directory, "--org", "Cli Vendor", env={"SYNTHSEAL_CA_PASSPHRASE": ""})
    assert _one_line_error(empty) and "empty" in empty.stderr and not directory.exists()
    assert host("ca", "init", "--dir", directory, "--org", "Cli Vendor", env=env).returncode == 0
    again = host("ca", "init", "--dir", directory, "--org", "Cli Vendor", env=env)
    assert _one_line_error(again) and "already exists" in again.stderr

    result = host("ca", "operator", "--dir", directory, "--name", "Ann", "--role", "provisioner", "--role",
                  "collector", "--days", 30, "--out", tmp_path / "ann", env=env)
    assert result.returncode == 0, result.stderr
    key_path = tmp_path / "ann" / "operator-key.pem"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert key_path.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    chain, _ = ca.load_operator(tmp_path / "ann" / "operator.pem", key_path, "laptop pass")
    assert cr.fingerprint(chain[0]) in result.stdout and "collector, provisioner" in result.stdout
    wrong = host("ca", "operator", "--dir", directory, "--name", "Bob", "--role", "provisioner", "--out",
                 tmp_path / "bob", env=dict(env, SYNTHSEAL_CA_PASSPHRASE="guess"))
    assert _one_line_error(wrong) and "wrong CA passphrase" in wrong.stderr and not (tmp_path / "bob").exists()

    # `ca issue --serial WRONG-SERIAL` for a CSR made by CAM-000123 is refused.
    (tmp_path / "device.csr").write_bytes(_csr(challenge="offline"))
    wrong_serial = host("ca", "issue", "--dir", directory, "--csr", tmp_path / "device.csr", "--serial",
                        "WRONG-SERIAL", "--out", tmp_path / "chain.pem", env=env)
    assert _one_line_error(wrong_serial) and "not 'WRONG-SERIAL'" in wrong_serial.stderr
    assert not (tmp_path / "chain.pem").exists()
    assert host("ca", "issue", "--dir", directory, "--csr", tmp_path / "device.csr", "--serial", "CAM-000123",
                "--out", tmp_path / "chain.pem", env=env).returncode == 0

    result = host("ca", "revoke", "--dir", directory, "--cert", tmp_path / "chain.pem", "--reason",
                  "cessationOfOperation", env=env)
    assert result.returncode == 0, result.stderr
    result = host("ca", "crl", "--dir", directory, "--out", tmp_path / "crl.pem", env=env)
    assert result.returncode == 0 and "1 revoked" in result.stdout, result.stderr
    crl = x509.load_pem_x509_crl((tmp_path / "crl.pem").read_bytes())
    leaf = cr.load_pem_chain((tmp_path / "chain.pem").read_text())[0]
    assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None
    result = subprocess.run(["openssl", "crl", "-in", str(tmp_path / "crl.pem"), "-noout", "-verify", "-CAfile",
                             str(directory / ca.ISSUING_CERT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
