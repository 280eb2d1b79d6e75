"""Frame sources. The agent needs a narrow surface from a camera: `capture_array()`
returning an HxWx3 uint8 frame, and `pre_callback`, the per-frame hook picamera2
offers. FakeCamera gives deterministic frames for the demo and the tests;
Picamera2Source wraps the real camera and imports picamera2 only when used, since it
installs only where libcamera exists.
"""

import numpy as np


class CameraError(Exception):
    pass


def _tent(plane):
    """[1 2 1]/4 in both directions, edges repeated."""
    padded = np.pad(plane, 1, mode="edge")
    rows = (padded[:-2] + 2 * padded[1:-1] + padded[2:]) / 4
    return (rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]) / 4


def _through_a_sensor(scene, noise, rng):
    """What a camera makes of a scene (0-255 float): a little optical blur, an RGGB
    colour-filter mosaic, shot noise that grows with the signal plus read noise (noise is
    the standard deviation in grey levels at mid-grey), bilinear demosaicing and the
    display gamma. The traces a real capture carries, so that the scene classifier sees
    a camera frame here and not a render with noise on top."""
    h, w, _ = scene.shape
    linear = (np.clip(scene, 0, 255) / 255.0) ** 2.2
    masks = np.zeros((h, w, 3), np.float32)
    masks[0::2, 0::2, 0] = 1
    masks[0::2, 1::2, 1] = 1
    masks[1::2, 0::2, 1] = 1
    masks[1::2, 1::2, 2] = 1
    raw = sum(_tent(linear[..., c]) * masks[..., c] for c in range(3))
    # sigma in linear units at mid-grey (0.5 display -> ~0.22 linear), mostly shot noise.
    sigma_mid = noise / 255.0 * 2.2 * 0.22 / 0.5
    full_well = 0.22 / max(sigma_mid, 1e-6) ** 2
    raw = rng.poisson(np.clip(raw, 0, 1) * full_well).astype(np.float32) / full_well
    raw += rng.normal(0, sigma_mid * 0.3, raw.shape).astype(np.float32)
    rgb = np.empty_like(masks)
    for c in range(3):
        rgb[..., c] = _tent(raw * masks[..., c]) / _tent(masks[..., c])
    return (np.clip(rgb, 0, 1) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)


class FakeCamera:
    """Deterministic test scenes: smooth gradients and shapes, captured through a
    simulated sensor (mosaic, shot and read noise, demosaic).
    Frame n is the same on every run (seeded by n), different from frame n+1.
    sensor_noise=0 gives clean renders, as a rig feeding a capture card would."""

    def __init__(self, width=1280, height=960, seed=0, sensor_noise=3.0, frame_pool=0):
        """frame_pool > 0: make that many frames once and cycle through them, so that
        a benchmark measures the agent rather than numpy's noise generator (a real
        sensor delivers frames at a fixed rate in hardware)."""
        if width < 64 or height < 64:
            raise CameraError("fake camera frames must be at least 64x64")
        self.width = width
        self.height = height
        self.seed = seed
        self.sensor_noise = sensor_noise
        self.frame_index = 0
        self.pre_callback = None
        self.channel_order = "RGB"
        self._pool = [self._make_frame() for _ in range(frame_pool)]
        self.frame_index = 0
        # Recorded with every frame: a fake camera is a test bench, never evidence.
        self.origin = {"kind": "camera", "camera": "fake", "sensor": "synthetic-test-scenes", "lab": True}

    def capture_array(self):
        if self._pool:
            out = self._pool[self.frame_index % len(self._pool)].copy()
            self.frame_index += 1
        else:
            out = self._make_frame()
        if self.pre_callback is not None:
            self.pre_callback(out)
        return out

    def _make_frame(self):
        rng = np.random.default_rng((self.seed, self.frame_index))
        h, w = self.height, self.width
        y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
        x = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
        base = rng.uniform(40, 200, size=3).astype(np.float32)
        tilt = rng.uniform(-60, 60, size=(2, 3)).astype(np.float32)
        frame = base + x[..., None] * tilt[0] + y[..., None] * tilt[1]
        for _ in range(4):  # a few discs of flat colour: something to look at
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            r = rng.uniform(0.05, 0.2) * min(h, w)
            mask = (y - cy / h) ** 2 * h * h + (x - cx / w) ** 2 * w * w < r * r
            frame[mask] = rng.uniform(0, 255, size=3)
        if self.sensor_noise:
            out = _through_a_sensor(frame, self.sensor_noise, rng)
        else:
            out = np.clip(frame, 0, 255).astype(np.uint8)
        self.frame_index += 1
        return out

    def close(self):
        pass


class Picamera2Source:
    """The real camera (Raspberry Pi). picamera2's "RGB888" buffers are B, G, R in
    memory; frames are handed on as captured, with channel_order "BGR", and the
    classifier and the sealer read them in that order (no extra full-frame copy)."""

    def __init__(self, width=4056, height=3040):
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise CameraError("picamera2 is not installed; on Raspberry Pi OS run "
                              "`sudo apt install python3-picamera2` and create the venv with --system-site-packages")
        self._camera = Picamera2()
        config = self._camera.create_still_configuration(main={"size": (width, height), "format": "RGB888"})
        self._camera.configure(config)
        self._camera.start()
        self.pre_callback = None
        self.channel_order = "BGR"
        properties = getattr(self._camera, "camera_properties", None) or {}
        self.origin = {"kind": "camera", "camera": "picamera2",
                       "sensor": str(properties.get("Model", "unknown"))[:64],
                       "size": [width, height]}

    def capture_array(self):
        frame = self._camera.capture_array("main")
        if self.pre_callback is not None:
            self.pre_callback(frame)
        return frame

    def close(self):
        self._camera.stop()
        self._camera.close()
