"""synthseal-host: the field technician's tool (provision, pull, verify)."""

import argparse
import json
import os
import sys

from ..device import __version__


def cmd_ports(args):
    from .client import list_ports
    ports = list_ports()
    if not ports:
        print("no serial ports found; is the device cable connected?")
    for device, description, hwid in ports:
        print("%-20s %s  %s" % (device, description, hwid))


def _client(args):
    from .client import DeviceClient, SerialTransport, find_device_port
    port = args.port
    if port == "auto":
        port = find_device_port(args.baud)
        print("device found on %s" % port, file=sys.stderr)
    return DeviceClient(SerialTransport(port, args.baud), give_up_after=args.give_up_after)


def _operator(args):
    from .session import Operator
    if not args.operator:
        raise ValueError("this command needs operator credentials: --operator DIR (or $SYNTHSEAL_OPERATOR), a folder "
                         "with operator.pem and operator-key.pem from `synthseal-host ca operator`")
    return Operator.load(args.operator)


def _read(path, what):
    """A PEM file's text; ValueError with one line that names the file otherwise."""
    from .client import shown
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as err:
        raise ValueError("cannot read %s %s: %s" % (what, shown(path, 200), err.strerror or err))
    except UnicodeDecodeError:
        raise ValueError("%s %s is not PEM text (not UTF-8: a binary or DER file?)" % (what, shown(path, 200))) from None


def _verify_crl(args):
    """--crl for `verify`: read and parsed before any file is, so an unusable one is a
    usage error (exit 2), not a failed check in every report."""
    if not args.crl:
        return None
    from cryptography import x509
    from .client import shown
    crl = _read(args.crl, "CRL")
    try:
        x509.load_pem_x509_crl(crl.encode())
    except ValueError:
        raise ValueError("CRL %s holds no PEM X.509 CRL; give the file `synthseal-host ca crl --out` writes"
                         % shown(args.crl, 200)) from None
    return crl


def _crl(args):
    return _read(args.crl, "CRL") if getattr(args, "crl", None) else None


def _authenticated(args):
    """A client whose session is authenticated with the operator's credentials, the
    device's identity checked against --trust-anchor."""
    operator, anchor, crl = _operator(args), _read(args.trust_anchor, "trust anchor"), _crl(args)
    client = _client(args)
    client.authenticate(operator, anchor, crl_pem=crl)
    return client


def _ca_for_provisioning(args):
    from .ca import load_ca
    from .inventory import Inventory
    vendor = load_ca(args.ca, _passphrase(CA_PASSPHRASE_ENV, "CA passphrase"))
    inventory = Inventory(args.inventory or os.path.join(args.ca, "inventory.sqlite"))
    crl = _crl(args)
    if crl is None and os.path.exists(os.path.join(args.ca, "crl.pem")):
        crl = vendor.crl_pem()
    return vendor, inventory, crl


def _settings(args):
    """The configuration keys given on the command line (None: not given)."""
    settings = {}
    for key in ("producer", "filing_number", "label_text", "label_position", "retention_days"):
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = value
    if getattr(args, "threshold", None) is not None:
        settings["policy"] = {"classifier_threshold": args.threshold}
    if "label_text" in settings:
        # Refused here, before any passphrase is asked or port opened; the signing step
        # (credentials.check_config) and the device check it again.
        from ..device.explicit_label import ExplicitLabelError, check_label_text
        try:
            check_label_text(settings["label_text"])
        except ExplicitLabelError as err:
            raise ValueError("--label-text: %s" % err) from None
    return settings


def _print_summary(summary, args, title):
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(title)
    from .client import shown
    for key, value in summary.items():
        print("  %-21s %s" % (key, shown(value, 2000)))


def cmd_provision(args):
    from .provision import Steps, provision
    settings = _settings(args)
    if "producer" not in settings:
        raise ValueError("--producer is required: the GB 45438 ContentProducer (provider name or code)")
    operator = _operator(args)  # credentials first: a wrong passphrase is told before any port is opened
    vendor, inventory, crl = _ca_for_provisioning(args)
    with inventory:
        summary = provision(_client(args), vendor, inventory, operator, settings,
                            service_years=args.service_years, crl_pem=crl, steps=Steps(5, sys.stderr))
    _print_summary(summary, args, "enrolment summary (paste into the ticket):")


def cmd_configure(args):
    from .provision import configure
    settings = _settings(args)
    if not settings:
        raise ValueError("nothing to change: give at least one of --producer, --filing-number, --label-text, "
                         "--label-position, --threshold, --retention-days")
    operator = _operator(args)
    vendor, inventory, crl = _ca_for_provisioning(args)
    with inventory:
        summary = configure(_client(args), vendor, inventory, operator, settings, crl_pem=crl)
    _print_summary(summary, args, "configuration applied:")


def cmd_rotate(args):
    from .provision import Steps, rotate
    operator = _operator(args)
    vendor, inventory, crl = _ca_for_provisioning(args)
    with inventory:
        summary = rotate(_client(args), vendor, inventory, operator, service_years=args.service_years,
                         crl_pem=crl, steps=Steps(3, sys.stderr))
    _print_summary(summary, args, "keys rotated:")


def cmd_decommission(args):
    from .provision import decommission
    if not args.yes:
        if not sys.stdin.isatty():
            raise ValueError("decommission makes the device erase its keys for good; add --yes to confirm")
        if input("The device will erase its keys; its certificates will be revoked. Type 'yes' to go on: ") != "yes":
            raise ValueError("not confirmed; nothing was done")
    operator = _operator(args)
    vendor, inventory, crl = _ca_for_provisioning(args)
    with inventory:
        summary = decommission(_client(args), vendor, inventory, operator, args.reason, crl_pem=crl,
                               finish=args.finish)
    _print_summary(summary, args, "device decommissioned (keys erased, certificates revoked):")


class ProgressBar:
    """Draws a pull's progress on one line of `out` (stderr): bar, bytes, records,
    rate and ETA. Only on a terminal: a pipe or a log file gets the summary alone."""

    def __init__(self, out=sys.stderr, width=24):
        self.out = out
        self.width = width
        self.enabled = out.isatty()
        self._drawn = 0.0

    def __call__(self, state):
        now = state["seconds"]
        done = state["records"] >= state["total_records"]
        if not self.enabled or (now - self._drawn < 0.2 and not done):
            return
        self._drawn = now
        self.out.write("\r" + format_progress(state, self.width))
        self.out.flush()

    def close(self):
        if self.enabled and self._drawn:
            self.out.write("\n")
            self.out.flush()


def format_progress(state, width=24):
    total = max(1, state["total_records"])
    filled = int(width * state["records"] / total)
    eta = state["eta"]
    eta_text = "--:--" if eta is None else "%d:%02d" % (eta // 60, eta % 60)
    return "[%s%s] %3d%%  %s  %d/%d records  %s/s  ETA %s " % (
        "#" * filled, "." * (width - filled), 100 * state["records"] // total, _size(state["bytes"]),
        state["records"], state["total_records"], _size(state["rate"]), eta_text)


def _size(n):
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (n, unit)
        n /= 1000.0


def cmd_info(args):
    """HELLO needs no credentials; with --operator the authenticated status adds the
    verified identity and the log head."""
    from .client import shown
    if args.operator:
        client = _authenticated(args)
        info = client.status()
    else:
        info = _client(args).info()
    if args.json:
        print(json.dumps(info, indent=2))
        return
    for key in ("serial", "producer", "firmware", "state", "config_version"):
        # What a device says is shown, never obeyed: control characters become escapes.
        print("%-14s %s" % (key, shown(info.get(key, "(not given)"))))
    if "log" in info:
        log = info["log"]
        print("%-14s %d records (seq %d..%d), head %s" % ("log", log["next_seq"] - log["first_seq"], log["first_seq"],
                                                         log["next_seq"] - 1, log["head_hash"][:16]))
        print("%-14s verified against %s" % ("identity", args.trust_anchor))


def cmd_pull(args):
    from .client import shown
    from .logdb import pull
    bar = ProgressBar()
    try:
        summary = pull(_authenticated(args), args.db, progress=bar)
    finally:
        bar.close()
    if args.json:
        print(json.dumps(summary))
        return
    print("device %s: %d new records verified and stored; %d in %s" % (summary["serial"], summary["pulled"],
                                                                     summary["stored"], args.db))
    checkpoint = summary.get("checkpoint")
    if checkpoint:
        print("signed tree head: %d records, root %s, checkpoint %d (signature and consistency checked)"
              % (checkpoint["size"], checkpoint["root"][:16], checkpoint["counter"]))
    for warning in summary.get("warnings") or ():
        print("warning: %s" % shown(warning, 500))
    if summary.get("new_certificate"):
        print("device %s shows a new content-signing certificate (a key rotation), checked against the vendor "
              "root; the earlier ones are kept for the files they sealed" % summary["serial"])
    if summary["efficiency"] is not None:
        print("transfer: %s of records in %.1f s at %d baud: %.1f %% of the line rate"
              % (_size(summary["payload_bytes"]), summary["seconds"], summary["baudrate"],
                 100 * summary["efficiency"]))


def cmd_upload(args):
    from pathlib import Path
    with open(args.file, "rb") as f:
        data = f.read()
    name = args.name or Path(args.file).name
    digest = _authenticated(args).upload(data, name)
    print("%s stored on the device as %s (SHA-256 %s verified)" % (args.file, name, digest.hex()))


def cmd_log_verify(args):
    """`log verify` (and its older name `log-check`): the stored log against the signed heads."""
    from .logdb import verify_log
    anchors = _read(args.trust_anchor, "trust anchor") if getattr(args, "trust_anchor", None) else None
    problems = verify_log(args.db, args.serial, anchors)
    for problem in problems:
        print("FAIL %s" % problem)
    if not problems:
        print("hash chains hold for every stored record in %s, and every stored signed tree head re-checks: "
              "signature, columns, and the Merkle root of the records it covers" % args.db)
        if anchors is None:
            print("note: the identity certificates were taken from the database; give --trust-anchor to check "
                  "them against the vendor root")
    return 1 if problems else 0


def cmd_log_prove(args):
    from .logproof import prove_file, write_proof
    proof = prove_file(args.db, args.file)
    body = proof["checkpoint"]["checkpoint"]
    if args.out:
        write_proof(proof, args.out)
        print("%s: record %d of device %s is in the tree head of %d records the device signed (checkpoint %d); "
              "proof written to %s (%d hashes in its audit path)" % (args.file, proof["seq"], proof["serial"],
                                                                     body["size"], body["counter"], args.out,
                                                                     len(proof["audit_path"])))
    else:
        print(json.dumps(proof, indent=2, sort_keys=True))


def cmd_log_export(args):
    from .logexport import export
    anchors = _read(args.trust_anchor, "trust anchor") if args.trust_anchor else None
    records, heads = export(args.db, args.format, args.out, args.serial, anchors)
    print("%d records and %d signed tree heads written to %s (%s), after the stored log verified"
          % (records, heads, args.out, args.format))


def cmd_log_check_proof(args):
    from .logproof import ProofError, check_proof, file_sha256
    try:
        with open(args.proof) as f:
            proof = json.load(f)
    except ValueError as err:
        raise ValueError("%s is not JSON: %s" % (args.proof, err))
    try:
        rec = check_proof(proof, _read(args.trust_anchor, "trust anchor"),
                          file_sha256(args.file) if args.file else None)
    except ProofError as err:
        print("FAIL %s: %s" % (args.proof, err))
        return 1
    body = proof["checkpoint"]["checkpoint"]
    print("OK %s: record %d (%s, content SHA-256 %s) of device %s is in the tree head of %d records it signed "
          "(checkpoint %d), identity certificate checked against %s%s"
          % (args.proof, rec["seq"], logrecord_event(rec), rec["content_sha256"].hex(), body["serial"], body["size"],
             body["counter"], args.trust_anchor, "; it is the seal record of %s" % args.file if args.file else ""))
    return 0


def logrecord_event(rec):
    from ..device.core.logrecord import EVENT_NAMES
    return EVENT_NAMES.get(rec["event"], "event %d" % rec["event"])


def cmd_verify(args):
    from . import verify_report
    from .client import shown
    from .verify import Verifier
    anchors = _read(args.trust_anchor, "trust anchor")
    crl = _verify_crl(args)
    files = verify_report.expand_paths(args.files, args.recursive)
    if not files:
        raise ValueError("no JPEG files under %s" % ", ".join(shown(p, 200) for p in args.files))
    output_format = "json" if args.json else args.format
    progress = sys.stderr.isatty() and len(files) > 1
    reports = []
    # The database is opened once, here: one clear error up front if it is not an audit
    # database, before any file is read or the report file is created.
    with Verifier(anchors, args.db, crl) as verifier:
        out = open(args.out, "w", encoding="utf-8", newline="") if args.out else sys.stdout
        try:
            for i, path in enumerate(files, 1):
                if progress:
                    print("\r\x1b[Kverifying %d/%d" % (i, len(files)), end="", file=sys.stderr, flush=True)
                reports.append(verifier.verify(path))
            if progress:
                print("\r\x1b[K", end="", file=sys.stderr, flush=True)
            verify_report.WRITERS[output_format](reports, out)
        finally:
            if out is not sys.stdout:
                out.close()
    return verify_report.exit_code(reports)


def cmd_trace(args):
    """`trace`: find the seal record of files whose labels were stripped or whose pixels
    were re-encoded, resized or cropped (host/trace.py)."""
    from .client import shown
    from .logdb import open_readonly
    from .trace import trace_file
    anchors = _read(args.trust_anchor, "trust anchor") if args.trust_anchor else None
    open_readonly(args.db).close()  # one clear error up front, not one per file
    results = [trace_file(path, args.db, anchors) for path in args.files]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        # Names and details go through shown(), as verify's table does: a file name (or a
        # value from the database) cannot drive the terminal or start a new line.
        for r in results:
            print("%s: %s" % (shown(r["file"], 500), shown(r["summary"], 2000)))
            if r["traced"]:
                print("  record %s/%d (%s), found by %s: %s" % (shown(r["serial"], 100), r["seq"], shown(r["produce_id"], 100),
                                                               r["method"], shown(r["detail"], 4000)))
            else:
                print("  %s" % shown(r["detail"], 4000))
            for problem in r["log_problems"] or ():
                print("  FAIL log: %s" % shown(problem, 1000))
        if anchors is None:
            print("note: the log was taken as stored; give --trust-anchor to re-check it against the vendor root")
    return 0 if all(r["traced"] for r in results) else 1


CA_PASSPHRASE_ENV = "SYNTHSEAL_CA_PASSPHRASE"
OPERATOR_PASSPHRASE_ENV = "SYNTHSEAL_OPERATOR_PASSPHRASE"


def _passphrase(env, what, confirm=False):
    """A passphrase from the environment, else asked on the terminal (twice for a new one)."""
    import getpass
    import os
    from .ca import CAError
    value = os.environ.get(env)
    if value is None:
        if not sys.stdin.isatty():
            raise CAError("no %s: set $%s or run on a terminal to be asked" % (what, env))
        value = getpass.getpass("%s: " % what.capitalize())
        if confirm and getpass.getpass("%s again: " % what.capitalize()) != value:
            raise CAError("the two %ss differ; nothing was written" % what)
    if not value:
        raise CAError("the %s must not be empty" % what)
    return value


def cmd_ca_init(args):
    from .ca import create_vendor_ca
    passphrase = _passphrase(CA_PASSPHRASE_ENV, "CA passphrase", confirm=True)
    root = create_vendor_ca(args.dir, args.org, passphrase)
    print("vendor root and issuing CA created in %s (keys encrypted with the passphrase); give validators %s "
          "as the trust anchor, and move vendor-root-key.pem to offline storage" % (args.dir, root))


def cmd_ca_issue(args):
    from .ca import issue_content_certificate
    with open(args.csr) as f:
        chain = issue_content_certificate(args.dir, f.read(), args.serial, _passphrase(CA_PASSPHRASE_ENV, "CA passphrase"))
    with open(args.out, "w") as f:
        f.write(chain)
    print("content-signing chain for %s written to %s" % (args.serial, args.out))


def cmd_ca_operator(args):
    import os
    from pathlib import Path
    from ..device import credentials
    from .ca import CAError, load_ca
    out = Path(args.out)
    chain_path, key_path = out / "operator.pem", out / "operator-key.pem"
    for path in (chain_path, key_path):
        if path.exists():
            raise CAError("%s already exists; choose another --out folder" % path)
    authority = load_ca(args.dir, _passphrase(CA_PASSPHRASE_ENV, "CA passphrase"))
    key_passphrase = _passphrase(OPERATOR_PASSPHRASE_ENV, "operator key passphrase", confirm=True)
    chain, key = authority.issue_operator(args.name, args.role, days=args.days, key_passphrase=key_passphrase)
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    chain_path.write_text(chain)
    leaf = credentials.load_pem_chain(chain)[0]
    print("operator %s: roles %s, valid until %s" % (args.name, ", ".join(sorted(credentials.operator_roles(leaf))),
                                                     leaf.not_valid_after_utc.date().isoformat()))
    print("certificate %s (SHA-256 %s)" % (chain_path, credentials.fingerprint(leaf)))
    print("key         %s (mode 0600, encrypted with the operator key passphrase)" % key_path)


def cmd_ca_revoke(args):
    import datetime
    from ..device import credentials
    from .ca import load_ca
    with open(args.cert) as f:
        leaf = credentials.load_pem_chain(f.read())[0]
    authority = load_ca(args.dir, _passphrase(CA_PASSPHRASE_ENV, "CA passphrase"))
    authority.revoke(leaf, datetime.datetime.now(datetime.timezone.utc), args.reason)
    print("certificate %s (%s) revoked: %s; publish the CRL with `synthseal-host ca crl`"
          % (credentials.fingerprint(leaf)[:16], leaf.subject.rfc4514_string(), args.reason))


def cmd_ca_crl(args):
    from .ca import load_ca, pem
    authority = load_ca(args.dir, _passphrase(CA_PASSPHRASE_ENV, "CA passphrase"))
    text = authority.crl_pem()
    with open(args.out, "w") as f:
        # The issuing CA certificate travels with the CRL, so `verify --crl` can check
        # the CRL's signature with nothing but the vendor root.
        f.write(text + pem(authority.issuing))
    print("CRL with %d revoked certificates written to %s" % (len(authority.revoked()), args.out))


def cmd_devices(args):
    from .client import shown
    from .inventory import Inventory
    with Inventory(args.inventory, create=False) as inventory:
        devices = inventory.devices()
    if args.json:
        print(json.dumps(devices, indent=2))
        return
    if not devices:
        print("no devices in %s" % args.inventory)
        return
    header = ("serial", "state", "identity", "content", "config", "provisioned by", "provisioned at")
    rows = [(d["serial"], d["state"], d["identity_fingerprint"][:16], d["content_fingerprint"][:16],
             "v%d" % d["config_version"], d["provisioned_by"], d["provisioned_at"][:19] + "Z") for d in devices]
    # What came from a device or an operator is shown, never obeyed: control characters become escapes.
    rows = [tuple(shown(v) for v in row) for row in rows]
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def cmd_demo(args):
    from .demo import run_demo
    return run_demo(args.out, frames=args.frames)


def _add_link_options(p):
    p.add_argument("--port", default="auto",
                   help="serial device, e.g. /dev/ttyACM0 (see `synthseal-host ports`); `auto` finds the device "
                        "by its USB IDs or by asking each port (default: %(default)s)")
    p.add_argument("--baud", type=_positive_int, default=115200, help="baud rate (default: %(default)s)")
    p.add_argument("--give-up-after", type=_positive_float, default=300.0, metavar="SECONDS",
                   help="stop when the device has not answered for this long; faults and disconnects "
                        "shorter than this are ridden out (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _add_credential_options(p, required=True):
    p.add_argument("--operator", default=os.environ.get("SYNTHSEAL_OPERATOR"), metavar="DIR",
                   help="operator credentials: operator.pem and operator-key.pem from `ca operator` (default: "
                        "$SYNTHSEAL_OPERATOR; the key's passphrase from $SYNTHSEAL_OPERATOR_PASSPHRASE)")
    if required:
        p.add_argument("--trust-anchor", required=True, metavar="PEM",
                       help="the vendor root: the device must prove an identity certificate from it")
    else:
        p.add_argument("--trust-anchor", metavar="PEM", help="the vendor root (needed with --operator)")
    p.add_argument("--crl", metavar="PEM", help="the vendor's newest CRL, handed to the device so it refuses "
                                               "revoked operators")


def _add_provisioning_options(p, settings=True, keep_unset=False):
    from ..device.core.policy import DEFAULT_THRESHOLD
    p.add_argument("--ca", required=True, metavar="DIR", help="the vendor CA folder (`ca init`); its passphrase "
                                                             "from $SYNTHSEAL_CA_PASSPHRASE or a prompt")
    p.add_argument("--inventory", metavar="PATH", help="inventory database (default: DIR/inventory.sqlite)")
    p.add_argument("--operator", default=os.environ.get("SYNTHSEAL_OPERATOR"), metavar="DIR",
                   help="operator credentials with the provisioner role (default: $SYNTHSEAL_OPERATOR)")
    p.add_argument("--crl", metavar="PEM", help="CRL to hand to the device (default: the CA's crl.pem)")
    if settings:
        def unset(default):
            return "not given: kept as it is" if keep_unset else "default: %s" % default

        p.add_argument("--producer", help="GB 45438 ContentProducer: provider name or code (printable ASCII)")
        p.add_argument("--filing-number", help="filing number (备案编号) shown with the content")
        p.add_argument("--label-text", help='visible label text; must hold "AI" or "人工智能" and "生成" or "合成" '
                                            '(%s)' % unset("AI生成"))
        p.add_argument("--label-position", help="corner of the visible label: bottom-left, bottom-right, top-left, "
                                                "top-right (%s)" % unset("bottom-left"))
        p.add_argument("--threshold", type=float, help="classifier score at which a declared capture is labelled "
                                                       "suspected (%s)" % unset(DEFAULT_THRESHOLD))
        p.add_argument("--retention-days", type=int, help="audit log retention in days, at least 180 (%s)"
                                                           % unset("183"))


def _positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def build_parser():
    from ..device.credentials import ROLES
    from .ca import REVOCATION_REASONS
    parser = argparse.ArgumentParser(
        prog="synthseal-host",
        description="Provision synthseal devices, pull and verify their audit logs, verify sealed files.")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ports", help="list serial ports")
    p.set_defaults(func=cmd_ports)

    p = sub.add_parser("info", help="show a device's serial, firmware and state (with --operator: its verified "
                                    "identity and log head)")
    _add_link_options(p)
    _add_credential_options(p, required=False)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("provision", help="enrol a factory-fresh device: keys made on it, certificates and a signed "
                                         "configuration written to it, recorded in the inventory")
    _add_link_options(p)
    _add_provisioning_options(p)
    p.add_argument("--service-years", type=_positive_int, help="certificate lifetime: the device's service life "
                                                                "(default: 10 years)")
    p.set_defaults(func=cmd_provision)

    p = sub.add_parser("configure", help="push a new signed configuration (the one in force with the changes given)")
    _add_link_options(p)
    _add_provisioning_options(p, keep_unset=True)
    p.set_defaults(func=cmd_configure)

    p = sub.add_parser("rotate", help="new keys and certificates for an enrolled device")
    _add_link_options(p)
    _add_provisioning_options(p, settings=False)
    p.add_argument("--service-years", type=_positive_int, help="lifetime of the new certificates (default: 10 years)")
    p.set_defaults(func=cmd_rotate)

    p = sub.add_parser("decommission", help="make the device erase its keys (logged) and revoke its certificates")
    _add_link_options(p)
    _add_provisioning_options(p, settings=False)
    p.add_argument("--reason", default="decommissioned", help="recorded in the device's audit log and the "
                                                              "inventory (the CRL entry says cessationOfOperation)")
    p.add_argument("--yes", action="store_true", help="confirm without being asked (the keys cannot come back)")
    p.add_argument("--finish", action="store_true",
                   help="the device already erased its keys but the inventory missed it (a lost answer): "
                        "revoke its certificates now")
    p.set_defaults(func=cmd_decommission)

    p = sub.add_parser("pull", help="pull new audit records into a SQLite database, verifying the hash chain")
    _add_link_options(p)
    _add_credential_options(p)
    p.add_argument("--db", required=True, help="SQLite file (created if missing)")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("upload", help="store a file on the device (its upload folder), SHA-256 checked")
    _add_link_options(p)
    _add_credential_options(p)
    p.add_argument("file", metavar="FILE")
    p.add_argument("--name", help="name on the device (default: the file's name)")
    p.set_defaults(func=cmd_upload)

    def add_log_verify_options(p):
        p.add_argument("--db", required=True, help="SQLite file written by `pull`")
        p.add_argument("--serial", help="only this device")
        p.add_argument("--trust-anchor", metavar="PEM", help="the vendor root: the stored identity certificates "
                                                             "must chain to it (else they are taken as stored)")
        p.set_defaults(func=cmd_log_verify)

    p = sub.add_parser("log-check", help="the same as `log verify` (its older name)")
    add_log_verify_options(p)

    log = sub.add_parser("log", help="the pulled audit log: verify, prove a file's record, export").add_subparsers(
        dest="log_command", required=True)
    p = log.add_parser("verify", help="re-check the stored log offline against the device's signed tree heads: "
                                      "record bytes and columns, hash chain, checkpoint signatures, Merkle roots")
    add_log_verify_options(p)

    p = log.add_parser("prove", help="the inclusion proof that a sealed file's record is in a tree head its device "
                                     "signed, for a third party (docs/FORMATS.md)")
    p.add_argument("file", metavar="FILE", help="the sealed file (found in the log by its SHA-256)")
    p.add_argument("--db", required=True, help="SQLite file written by `pull`")
    p.add_argument("--out", help="write the proof here (default: print it)")
    p.set_defaults(func=cmd_log_prove)
    p = log.add_parser("check-proof", help="check an inclusion proof from `log prove`")
    p.add_argument("proof", metavar="PROOF", help="the proof JSON")
    p.add_argument("--trust-anchor", required=True, metavar="PEM", help="the vendor root")
    p.add_argument("--file", help="also check that the proved record is this file's seal record")
    p.set_defaults(func=cmd_log_check_proof)

    p = log.add_parser("export", help="write the verified log for auditors: every record with its decoded fields, "
                                      "and the signed tree head with its signature")
    p.add_argument("--db", required=True, help="SQLite file written by `pull`")
    p.add_argument("--format", required=True, choices=("jsonl", "csv"))
    p.add_argument("--out", required=True, help="the file to write")
    p.add_argument("--serial", help="only this device")
    p.add_argument("--trust-anchor", metavar="PEM", help="the vendor root, for the verification before export")
    p.set_defaults(func=cmd_log_export)

    p = sub.add_parser("verify", help="verify sealed files: C2PA, AIGC labels, visible label, device signature, "
                                      "audit log, revocation",
                       description="Verify sealed files. Each file gets every check with pass, fail, warn or skip "
                                   "and a reason, and a result: verified, failed, or incomplete (a check could not "
                                   "be made). Exit status: 0 all verified, 1 any failed, 3 none failed but some "
                                   "incomplete, 2 usage error. Report format: docs/VERIFY.md.")
    p.add_argument("files", nargs="+", metavar="PATH", help="files, or folders with -r")
    p.add_argument("-r", "--recursive", action="store_true", help="verify the .jpg/.jpeg files under each folder")
    p.add_argument("--trust-anchor", required=True, help="PEM file of the vendor root certificate(s)")
    p.add_argument("--db", help="pulled log database: enables the audit-record check (and the device signature "
                                "for files whose manifest is not Trusted)")
    p.add_argument("--crl", help="the vendor's revocation list (`synthseal-host ca crl --out`): enables the "
                                 "revocation check against the file's sealing time")
    p.add_argument("--format", choices=("table", "json", "jsonl", "csv", "html"), default="table",
                   help="table (default), json (the versioned report), jsonl or csv (one row per file), "
                        "html (a self-contained audit report with thumbnails)")
    p.add_argument("--json", action="store_true", help="the same as --format json")
    p.add_argument("--out", help="write the report to this file (default: standard output)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("trace", help="find the seal record of files whose labels were removed, or that were "
                                     "re-encoded, resized or cropped: by decoded pixels, watermark, perceptual hash")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--db", required=True, help="SQLite file written by `pull`")
    p.add_argument("--trust-anchor", metavar="PEM", help="the vendor root: the log holding the record must verify "
                                                         "against it (else the log is taken as stored)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_trace)

    ca = sub.add_parser("ca", help="the vendor certificate authority").add_subparsers(dest="ca_command", required=True)
    p = ca.add_parser("init", help="create a vendor root and issuing CA")
    p.add_argument("--dir", required=True, help="CA directory (private keys are written with mode 0600)")
    p.add_argument("--org", required=True, help="vendor organisation name")
    p.set_defaults(func=cmd_ca_init)
    p = ca.add_parser("issue", help="issue a device content-signing certificate from its CSR (offline flow)")
    p.add_argument("--dir", required=True, help="CA directory")
    p.add_argument("--csr", required=True, help="the device's certificate request (PEM)")
    p.add_argument("--serial", required=True, help="the device serial number (must be the one the CSR names)")
    p.add_argument("--out", required=True, help="where to write the chain (PEM)")
    p.set_defaults(func=cmd_ca_issue)
    p = ca.add_parser("operator", help="issue an operator credential (certificate + encrypted key) for a technician")
    p.add_argument("--dir", required=True, help="CA directory")
    p.add_argument("--name", required=True, help="the technician's name")
    p.add_argument("--role", required=True, action="append", choices=ROLES,
                   help="a role the credential carries (repeat for several)")
    p.add_argument("--days", type=_positive_int, default=365, help="validity in days (default: %(default)s)")
    p.add_argument("--out", required=True, help="folder for operator.pem and operator-key.pem")
    p.set_defaults(func=cmd_ca_operator)
    p = ca.add_parser("revoke", help="revoke a certificate this CA issued (added to the CRL)")
    p.add_argument("--dir", required=True, help="CA directory")
    p.add_argument("--cert", required=True, help="the certificate (PEM; the first one in the file)")
    p.add_argument("--reason", required=True, choices=REVOCATION_REASONS, help="RFC 5280 reason")
    p.set_defaults(func=cmd_ca_revoke)
    p = ca.add_parser("crl", help="write a freshly signed CRL with the issuing CA certificate")
    p.add_argument("--dir", required=True, help="CA directory")
    p.add_argument("--out", required=True, help="where to write the CRL (PEM)")
    p.set_defaults(func=cmd_ca_crl)

    p = sub.add_parser("devices", help="list the provisioned devices in the inventory")
    p.add_argument("--inventory", required=True, help="the inventory database (SQLite)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("demo", help="run the whole job on a simulated device (fake camera, virtual serial link)")
    p.add_argument("--out", default="demo-output", help="demo folder, replaced on each run (default: %(default)s)")
    p.add_argument("--frames", type=int, default=6, help="frames to capture (default: %(default)s)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None):
    from ..device.credentials import CredentialError
    from .ca import CAError
    from .client import HostError
    from .inventory import InventoryError
    from .logdb import ChainError, LogDbError
    from .logexport import ExportError
    from .logproof import ProofError
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except ChainError as err:
        print("error: audit log chain broken: %s" % err, file=sys.stderr)
        return 1
    except (HostError, CAError, CredentialError, InventoryError, LogDbError, ProofError, ExportError, OSError, ValueError) as err:
        print("error: %s" % err, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
