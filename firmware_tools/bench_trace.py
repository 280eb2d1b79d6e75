"""`make bench`, section "trace": what tracing costs on the seal path of a Pi HQ frame
(4056x3040) and what it survives (docs/TRACING.md).

- cost: the watermark's embedding and the pixel fingerprint (decode of the emitted JPEG,
  SHA-256 of its RGB bytes, PDQ), medians over sealed frames, against the whole seal
  path without them (every stage Sealer.seal times: visible label, JPEG encoding,
  implicit label, C2PA, hash and write, log and rename);
- invisibility: PSNR of the watermarked frame against the frame, over R, G and B;
- survival: for each edit, on several sealed frames, whether the watermark still
  decodes to the record's identifier, its sync score, and the PDQ distance to the
  record's hash.
"""

import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from ..device import fingerprint, watermark
from ..device.camera import FakeCamera
from ..device.seal import Sealer
from ..host.lab import enrolled_device, make_vendor

WIDTH, HEIGHT = 4056, 3040
TRACING_STAGES = ("watermark_ms", "fingerprint_ms")


def _jpeg(image, quality):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _crop(image, keep):
    """The centre `keep` share of each side, offset by a few pixels off the tile grid."""
    w, h = image.size
    left, top = int(w * (1 - keep) / 2) + 3, int(h * (1 - keep) / 2) + 5
    return image.crop((left, top, left + int(w * keep), top + int(h * keep)))


def _region(image, width, height):
    return image.crop((1001, 777, 1001 + width, 777 + height))


# Each edit as a re-encoder would make it; where a quality is not named, the copy is
# saved at Pillow's default JPEG quality, 75.
EDITS = {
    "none (the emitted file, quality 92)": lambda im: im,
    "JPEG quality 75": lambda im: _jpeg(im, 75),
    "JPEG quality 50": lambda im: _jpeg(im, 50),
    "resize to 1/2, quality 75": lambda im: _jpeg(im.resize((im.width // 2, im.height // 2), Image.LANCZOS), 75),
    "resize to 1/4, quality 75": lambda im: _jpeg(im.resize((im.width // 4, im.height // 4), Image.LANCZOS), 75),
    "resize to 1920 wide, quality 75": lambda im: _jpeg(im.resize((1920, round(1920 * im.height / im.width)), Image.LANCZOS), 75),
    "resize to 1/8, quality 75": lambda im: _jpeg(im.resize((im.width // 8, im.height // 8), Image.LANCZOS), 75),
    "crop 10 % (90 % of each side kept), quality 75": lambda im: _jpeg(_crop(im, 0.9), 75),
    "crop to the centre half of each side, quality 75": lambda im: _jpeg(_crop(im, 0.5), 75),
    "crop 10 %, then resize to 1/2, quality 75": lambda im: _jpeg(_crop(im, 0.9).resize((im.width * 9 // 20, im.height * 9 // 20), Image.LANCZOS), 75),
    "crop to 512x512, quality 75": lambda im: _jpeg(_region(im, 512, 512), 75),
    "crop to 256x256, quality 75": lambda im: _jpeg(_region(im, 256, 256), 75),
    "crop to 200x150, quality 75": lambda im: _jpeg(_region(im, 200, 150), 75),
    "Gaussian blur radius 3, quality 75": lambda im: _jpeg(im.filter(ImageFilter.GaussianBlur(3)), 75),
}


def _psnr(a, b):
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return round(float(10 * np.log10(255.0 ** 2 / mse)), 2)


def bench_trace(runs=9, survival_frames=3):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        state = enrolled_device(tmp / "device", make_vendor(tmp / "ca", "Bench Vendor"), "BENCH-T", producer="bench")
        sealer = Sealer(state)
        camera = FakeCamera(WIDTH, HEIGHT, frame_pool=survival_frames)
        frames = [camera.capture_array() for _ in range(survival_frames)]
        sealer.seal(frames[0], "rig", tmp / "out")  # warm-up: font layout, c2pa library load
        sealed = [sealer.seal(frames[i % len(frames)], "rig", tmp / "out") for i in range(max(runs, survival_frames))]
        state.release()

        stages = {}
        for result in sealed:
            for stage, ms in result["timings"].items():
                if stage != "classify_ms":  # a rig frame is not classified
                    stages.setdefault(stage, []).append(ms)
        totals = [sum(ms for s, ms in r["timings"].items() if s != "classify_ms") for r in sealed]
        without_watermark = [t - r["timings"]["watermark_ms"] for t, r in zip(totals, sealed)]
        without_tracing = [t - sum(r["timings"][s] for s in TRACING_STAGES) for t, r in zip(totals, sealed)]
        embed_alone = []
        for i in range(runs):
            t = time.perf_counter()
            watermark.embed(frames[i % len(frames)], watermark.new_identifier())
            embed_alone.append((time.perf_counter() - t) * 1000.0)

        psnr = {"fake camera frames (sensor noise)": [_psnr(watermark.embed(f, watermark.new_identifier()), f) for f in frames]}
        render = FakeCamera(WIDTH, HEIGHT, sensor_noise=0, seed=9).capture_array()
        psnr["clean render (no sensor noise)"] = [_psnr(watermark.embed(render, watermark.new_identifier()), render)]

        survival = {}
        for name, edit in EDITS.items():
            rows = []
            for result in sealed[:survival_frames]:
                trace = result["decision"]["trace"]
                with Image.open(result["path"]) as emitted:
                    edited = edit(emitted.convert("RGB"))
                t = time.perf_counter()
                found = watermark.detect(edited, sizes=[(WIDTH, HEIGHT)])
                detect_ms = (time.perf_counter() - t) * 1000.0
                rows.append({"decoded": found["identifier"] == trace["wm"], "wrong": found["identifier"] not in (None, trace["wm"]),
                             "sync_score": found["sync_score"], "detect_ms": detect_ms,
                             "pdq_distance": fingerprint.pdq_distance(fingerprint.pdq(edited)[0], trace["pdq"])})
            survival[name] = {
                "size": "%dx%d" % edited.size,
                "watermark_decoded": "%d/%d" % (sum(r["decoded"] for r in rows), len(rows)),
                "watermark_wrong_identifier": sum(r["wrong"] for r in rows),
                "sync_score_min": min(r["sync_score"] for r in rows),
                "detect_ms_median": round(statistics.median(r["detect_ms"] for r in rows), 1),
                "pdq_distance_max": max(r["pdq_distance"] for r in rows),
            }
    watermark_ms = statistics.median(stages["watermark_ms"])
    fingerprint_ms = statistics.median(stages["fingerprint_ms"])
    seal_without = statistics.median(without_watermark)
    return {
        "frame": "%dx%d" % (WIDTH, HEIGHT),
        "runs": len(sealed),
        "seal_stage_ms_median": {s: round(statistics.median(v), 3) for s, v in sorted(stages.items())},
        "watermark_ms_median": round(watermark_ms, 3),
        "watermark_embed_alone_ms_median": round(statistics.median(embed_alone), 3),
        "fingerprint_ms_median": round(fingerprint_ms, 3),
        "seal_path_ms_median_without_watermark": round(seal_without, 3),
        "seal_path_ms_median_without_tracing": round(statistics.median(without_tracing), 3),
        "watermark_vs_seal_path_without_it": round(watermark_ms / seal_without, 3),
        "watermark_vs_seal_path_without_tracing": round(watermark_ms / statistics.median(without_tracing), 3),
        "fingerprint_vs_seal_path_without_tracing": round(fingerprint_ms / statistics.median(without_tracing), 3),
        "psnr_db": psnr,
        "watermark": {"algorithm": watermark.ALGORITHM, "chip_px": watermark.CHIP, "tile_px": watermark.TILE,
                      "amplitude": watermark.AMPLITUDE, "identifier_bits": watermark.ID_BITS},
        "survival": survival,
        "note": "seal path: every stage Sealer.seal times for a rig frame (no classifier), JPEG encoding included. "
                "watermark_embed_alone: watermark.embed() by itself, outside the seal path. "
                "survival: watermark decoded on N of the sealed frames; pdq_distance of 256 bits (match <= %d)."
                % fingerprint.PDQ_MATCH_DISTANCE,
    }
