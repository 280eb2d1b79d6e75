"""Inclusion proofs for third parties: the proof that a sealed file's audit record is
in a tree head its device signed (`synthseal-host log prove`, `log check-proof`).

The document (docs/FORMATS.md, "Inclusion proofs") carries everything a checker needs
besides the vendor root: the record's bytes, its leaf index, the signed checkpoint, the
RFC 9162 audit path from the leaf to the signed root, and the device identity
certificate chain that signs checkpoints. It is made only from a stored log that
re-checks against that signed head, and checked before it is written.
"""

import base64
import hashlib
import json

from ..device import checkpoint as checkpoints
from ..device import credentials
from ..device.core import logrecord, merkle
from . import logdb

PROOF_FORMAT = "synthseal-inclusion-proof/1"


class ProofError(Exception):
    """No proof can be made, or a proof does not hold; the message says why."""


def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def prove_file(db_path, path):
    """The inclusion proof (a dict) for the seal record of the file at `path`."""
    sha = file_sha256(path)
    db = logdb.open_readonly(db_path)
    try:
        found = logdb.find_record(db, sha)
        if found is None:
            raise ProofError("no seal record for %s (SHA-256 %s) in %s: pull the device that sealed it first, or the "
                             "file was changed after sealing" % (path, sha, db_path))
        return prove_record(db, found["device_serial"], found["seq"], file_sha256=sha)
    finally:
        db.close()


def prove_record(db, serial, seq, file_sha256=None):
    """The inclusion proof of record `seq` of `serial` in the newest stored signed head
    that covers it."""
    heads = [(columns, signed, chain) for columns, signed, chain in logdb.stored_checkpoints(db, serial)
             if signed is not None and columns["size"] >= seq]
    if not heads:
        raise ProofError("no signed tree head stored for device %s covers record %d yet: pull again" % (serial, seq))
    columns, signed, chain = max(heads, key=lambda h: (h[0]["counter"], h[0]["size"]))
    size = columns["size"]
    rows = db.execute("SELECT seq, raw FROM records WHERE device_serial=? AND seq<=? ORDER BY seq",
                      (serial, size)).fetchall()
    first = rows[0][0] if rows else 1
    raws = [bytes(raw) for _, raw in rows]
    if first == 1:
        tree = merkle.MerkleTree()
    else:
        # The device pruned records 1..first-1 before the first pull here: the tree
        # starts from the compact range it served for them.
        prefix = logdb.pruned_prefix(db, serial)
        if prefix is None or prefix.size != first - 1:
            raise ProofError("records 1..%d of device %s are not stored here and neither is their compact range: "
                             "no root can be recomputed" % (first - 1, serial))
        tree = merkle.PrunedTree(prefix)
    for raw in raws:
        tree.append(raw)
    if seq < first:
        raise ProofError("record %d of device %s is not stored here (pruned on the device before the first pull)"
                         % (seq, serial))
    if tree.size != size or tree.root().hex() != signed["checkpoint"]["root"]:
        raise ProofError("the stored records 1..%d of device %s do not hash to the root of signed head %d: the "
                         "database does not hold; run `synthseal-host log verify`" % (size, serial, columns["counter"]))
    proof = {"format": PROOF_FORMAT, "serial": serial, "seq": seq, "index": seq - 1,
             "record": base64.b64encode(raws[seq - first]).decode("ascii"),
             "checkpoint": signed, "audit_path": [h.hex() for h in tree.inclusion_proof(seq - 1, size)],
             "identity_chain": chain}
    if file_sha256 is not None:
        proof["file_sha256"] = file_sha256
    check_proof(proof)  # never hand out a proof that does not hold
    return proof


def check_proof(proof, anchors=None, file_sha256=None):
    """Check a proof document; return the decoded record. With `anchors` (the vendor
    root PEM) the identity chain must chain to it; with `file_sha256` the record must be
    the seal record of that file. Raises ProofError naming what does not hold."""
    try:
        if proof.get("format") != PROOF_FORMAT:
            raise ProofError("not a %s document" % PROOF_FORMAT)
        body, _ = checkpoints.parse_signed(proof["checkpoint"])
        record = base64.b64decode(proof["record"], validate=True)
        path = [bytes.fromhex(h) for h in proof["audit_path"]]
        index = proof["index"]
        key = logdb.checkpoint_signer(proof["identity_chain"], body["serial"], anchors)
        checkpoints.verify_checkpoint(proof["checkpoint"], key)
        rec = logrecord.decode_record(record)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ProofError("the proof is malformed: %s" % err)
    except (checkpoints.CheckpointError, credentials.CredentialError, logrecord.RecordError) as err:
        raise ProofError("the proof does not hold: %s" % err)
    if not isinstance(index, int) or rec["seq"] != index + 1:
        raise ProofError("the record is record %d, not leaf %r" % (rec["seq"], index))
    if not merkle.verify_inclusion(index, body["size"], merkle.leaf_hash(record), path,
                                   bytes.fromhex(body["root"])):
        raise ProofError("the audit path does not lead from record %d to the root the device signed in checkpoint %d"
                         % (rec["seq"], body["counter"]))
    if file_sha256 is not None and (rec["event"] != logrecord.EVENT_SEAL or rec["content_sha256"].hex() != file_sha256):
        raise ProofError("record %d is not the seal record of a file with SHA-256 %s" % (rec["seq"], file_sha256))
    return rec


def write_proof(proof, out):
    with open(out, "w") as f:
        json.dump(proof, f, indent=2, sort_keys=True)
        f.write("\n")
