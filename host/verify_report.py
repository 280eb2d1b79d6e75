"""What `synthseal-host verify` does with its reports: the files a batch covers, the
overall result and exit code, and the outputs (a table for a terminal, JSON against the
published schema, JSONL and CSV rows, a self-contained HTML audit report). Layout and
fields are documented in docs/VERIFY.md; the JSON schema is verify-report.schema.json
beside this module."""

import base64
import csv
import html
import io
import json
import os
from pathlib import Path

from .. import __version__
from .client import shown
from .verify import FAIL, FAILED, INCOMPLETE, PASS, REPORT_SCHEMA_VERSION, SKIP, VERIFIED, WARN

SCHEMA_PATH = Path(__file__).resolve().parent / "verify-report.schema.json"

# Exit codes (docs/VERIFY.md). 2 is also what argparse and every other usage error give.
EXIT_VERIFIED, EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3

# A folder walked with -r contributes the files sealed ones are named as; a file named
# on the command line is always verified, whatever its name.
JPEG_SUFFIXES = (".jpg", ".jpeg")

# The fields of a CSV or JSONL row and of an HTML entry, in order.
ROW_FIELDS = ("file", "result", "label", "explicit_label", "label_text", "source_type", "device_serial",
              "sealed_at", "c2pa_state", "log", "origin", "classifier", "lab", "traced_to", "problems")

_RESULT_ORDER = {FAILED: 0, INCOMPLETE: 1, VERIFIED: 2}
_THUMBNAIL_PIXELS = 160


def expand_paths(paths, recursive):
    """The files to verify, in order: each path named, and with `recursive` the JPEG
    files under each folder named (sorted, symbolic links to folders not followed). A
    folder without `recursive` stays in the list: its report says to give -r."""
    files = []
    for path in paths:
        if recursive and os.path.isdir(path):
            for folder, subfolders, names in os.walk(path, onerror=lambda err: files.append(err.filename)):
                subfolders.sort()
                files += [os.path.join(folder, n) for n in sorted(names) if n.lower().endswith(JPEG_SUFFIXES)]
        else:
            files.append(path)
    return files


def overall_result(reports):
    results = {r["result"] for r in reports}
    return FAILED if FAILED in results else INCOMPLETE if INCOMPLETE in results else VERIFIED


def exit_code(reports):
    return {VERIFIED: EXIT_VERIFIED, FAILED: EXIT_FAILED, INCOMPLETE: EXIT_INCOMPLETE}[overall_result(reports)]


def summary(reports):
    counts = {VERIFIED: 0, FAILED: 0, INCOMPLETE: 0}
    for r in reports:
        counts[r["result"]] += 1
    return counts


def document(reports):
    """The JSON report: a versioned envelope around the per-file reports."""
    return {"schema_version": REPORT_SCHEMA_VERSION, "generator": "synthseal-host %s" % __version__,
            "result": overall_result(reports), "summary": summary(reports), "reports": reports}


def log_status(report):
    """The log proof in a few words: the record found, or why there is none."""
    if report["log_seq"] is not None:
        return "record %d" % report["log_seq"]
    check = next((c for c in report["checks"] if c["check"] == "log"), None)
    return "%s: %s" % (check["status"], check["detail"]) if check else "not checked"


def problems(report):
    """Every check that did not pass, one per line: fail first, then skip, then warn."""
    order = {FAIL: 0, SKIP: 1, WARN: 2}
    found = sorted((c for c in report["checks"] if c["status"] != PASS), key=lambda c: order[c["status"]])
    return ["%s %s: %s" % (c["status"], c["check"], c["detail"]) for c in found]


def notable_problems(report):
    """problems() as a person reads them: a failed file shows its failures and warnings,
    since what was skipped after a failure adds nothing to the verdict (JSON, JSONL and
    CSV keep every line)."""
    return [p for p in problems(report) if report["result"] != FAILED or not p.startswith(SKIP)]


def traced_status(report):
    """The trace in one line, or None: where a stripped or edited file came from."""
    t = report.get("traced_to")
    if not t:
        return None
    return "%s (record %s/%d, %s, found by %s)" % (t["summary"], t["serial"], t["seq"], t["produce_id"], t["method"])


def row(report):
    values = {key: report.get(key) for key in ROW_FIELDS}
    values.update(log=log_status(report), traced_to=traced_status(report), problems="\n".join(problems(report)))
    return values


def write_json(reports, out):
    json.dump(document(reports), out, indent=2, ensure_ascii=False)
    out.write("\n")


def write_jsonl(reports, out):
    for r in reports:
        out.write(json.dumps(row(r), ensure_ascii=False) + "\n")


# A spreadsheet takes a cell that starts with one of these as a formula (=HYPERLINK(...)
# in a file name would run when the CSV is opened): such a cell gets a leading single
# quote (OWASP's advice for CSV injection). Only in CSV: JSONL keeps the raw value.
_CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """One CSV cell: "" for None, a value that a spreadsheet would run as a formula
    prefixed with a single quote, anything else as it is."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_CSV_FORMULA_START):
        return "'" + value
    return value


def write_csv(reports, out):
    # Rows end in CRLF (RFC 4180): the writer quotes a field holding any character of the
    # line terminator, so a carriage return in a file name stays inside its field too.
    writer = csv.DictWriter(out, fieldnames=ROW_FIELDS, lineterminator="\r\n")
    writer.writeheader()
    for r in reports:
        writer.writerow({k: csv_cell(v) for k, v in row(r).items()})


def write_table(reports, out):
    """For a terminal: one row per file, then one line per check that did not pass.
    Every name and detail goes through shown(), so a file name cannot move the cursor,
    recolour the terminal or start a new row."""
    header = ("file", "Label", "explicit", "C2PA", "log", "origin", "lab", "result")
    rows = []
    for r in reports:
        explicit = {True: "yes", False: "no"}.get(r["explicit_label"], "?")
        origin = (r.get("origin") or "-").split(" (")[0].replace("intake from ", "intake:").replace("camera ", "camera:")
        lab = {True: "LAB", False: "no"}.get(r.get("lab"), "?")
        rows.append((shown(os.path.basename(r["file"]), 80), r["label"] or "-", explicit, r["c2pa_state"] or "none",
                     "seq %d" % r["log_seq"] if r["log_seq"] is not None else "-", shown(origin.replace(" ", "_"), 40),
                     lab, r["result"].upper() if r["result"] != VERIFIED else r["result"]))
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    for line in [header] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip(), file=out)
    for r in reports:
        if traced_status(r):
            print("TRACED %s: %s" % (shown(r["file"]), shown(traced_status(r), 600)), file=out)
        for problem in notable_problems(r):
            status, rest = problem.split(" ", 1)
            print("%s %s: %s" % (status.upper(), shown(r["file"]), shown(rest, 600)), file=out)
    counts = summary(reports)
    print("%d file%s: %d verified, %d failed, %d incomplete" % (len(reports), "" if len(reports) == 1 else "s",
                                                              counts[VERIFIED], counts[FAILED], counts[INCOMPLETE]),
          file=out)


def thumbnail_data_uri(path):
    """A small JPEG of the file as a data: URI, or None when it cannot be decoded."""
    from PIL import Image
    try:
        with Image.open(path) as image:
            image.draft("RGB", (_THUMBNAIL_PIXELS, _THUMBNAIL_PIXELS))  # JPEG: decode at a reduced scale
            image = image.convert("RGB")
            image.thumbnail((_THUMBNAIL_PIXELS, _THUMBNAIL_PIXELS))
            encoded = io.BytesIO()
            image.save(encoded, "JPEG", quality=80)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(encoded.getvalue()).decode("ascii")


_HTML_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.4em; text-align: left; vertical-align: top; }
th { background: #eee; }
tr.failed td.result { background: #f8d0d0; }
tr.incomplete td.result { background: #fbeec0; }
tr.verified td.result { background: #d4f0d4; }
td.problems { white-space: pre-wrap; font-size: 0.9em; }
td.file { word-break: break-all; }
"""


def write_html(reports, out):
    """A self-contained audit report: failures first, thumbnails inline, every value
    from a file or a device HTML-escaped."""
    e = html.escape
    counts = summary(reports)
    out.write("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
              "<title>synthseal verification report</title><style>%s</style></head><body>\n" % _HTML_STYLE)
    out.write("<h1>synthseal verification report</h1>\n<p>%s: %d files, %d verified, %d failed, %d incomplete "
              "(report schema %d, %s)</p>\n" % (e(overall_result(reports)), len(reports), counts[VERIFIED],
                                                counts[FAILED], counts[INCOMPLETE], REPORT_SCHEMA_VERSION,
                                                e("synthseal-host %s" % __version__)))
    out.write("<table>\n<tr><th>image</th><th>file</th><th>result</th><th>Label</th><th>visible label</th>"
              "<th>source type</th><th>device</th><th>sealed at</th><th>log</th><th>traced to</th><th>problems</th></tr>\n")
    for r in sorted(reports, key=lambda r: _RESULT_ORDER[r["result"]]):
        readable = any(c["check"] == "file" and c["status"] == PASS for c in r["checks"])
        uri = thumbnail_data_uri(r["file"]) if readable else None
        image = '<img alt="" src="%s">' % e(uri) if uri else "-"
        explicit = {True: "required", False: "not required"}.get(r["explicit_label"], "?")
        if r["label_text"] is not None:
            explicit += ": " + r["label_text"]
        # (class, HTML): only the image cell is markup made here; everything else is escaped.
        cells = (("image", image), ("file", e(r["file"])), ("result", e(r["result"])), ("", e(r["label"] or "-")),
                 ("", e(explicit)), ("", e(r["source_type"] or "-")), ("", e(r["device_serial"] or "-")),
                 ("", e(r["sealed_at"] or "-")), ("", e(log_status(r))), ("", e(traced_status(r) or "-")),
                 ("problems", e("\n".join(notable_problems(r)))))
        out.write('<tr class="%s">' % e(r["result"]))
        out.write("".join('<td class="%s">%s</td>' % (cls, content) for cls, content in cells))
        out.write("</tr>\n")
    out.write("</table>\n</body></html>\n")


WRITERS = {"table": write_table, "json": write_json, "jsonl": write_jsonl, "csv": write_csv, "html": write_html}
