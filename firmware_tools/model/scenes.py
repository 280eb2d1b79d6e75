"""Procedural image generators for the three scene classes (numpy + Pillow only).

Every generator takes a numpy Generator and a frame size and returns float32 HxWx3 in
[0, 1] (display-referred, sRGB-like) unless it says uint8. The camera pipeline is what
makes a frame "real"; renders stay noise-free; a screen recapture is a render or a
scene shown on a simulated subpixel display and then filmed by the simulated camera.
"""

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

# JPEG quality ranges (the model card quotes them from here).
CAMERA_JPEG_QUALITY = (50, 97)  # camera output, re-saved photographs
RENDER_JPEG_QUALITY = (80, 97)  # renders saved by a tool

# ---------------------------------------------------------------- basic helpers


def to_uint8(image):
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_float(image_u8):
    return image_u8.astype(np.float32) / 255.0


def resize(image, height, width, resample=Image.BILINEAR):
    """Resize a float or uint8 HxWx3 image with Pillow; returns the same dtype family."""
    as_float = image.dtype != np.uint8
    pil = Image.fromarray(to_uint8(image) if as_float else image)
    out = np.asarray(pil.resize((width, height), resample))
    return to_float(out) if as_float else out


def gaussian_kernel(sigma):
    radius = max(1, int(math.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def blur(image, sigma):
    """Separable Gaussian blur in float, edges reflected (no quantization before noise)."""
    if sigma < 0.05:
        return image
    kernel = gaussian_kernel(sigma)
    radius = len(kernel) // 2
    padded = np.pad(image, ((radius, radius), (0, 0), (0, 0)), mode="reflect")
    out = sum(kernel[i] * padded[i:i + image.shape[0]] for i in range(len(kernel)))
    padded = np.pad(out, ((0, 0), (radius, radius), (0, 0)), mode="reflect")
    return sum(kernel[i] * padded[:, i:i + image.shape[1]] for i in range(len(kernel))).astype(np.float32)


def smooth_field(rng, height, width, cells):
    """Low-frequency random field in [0, 1]: a coarse grid upsampled bicubically."""
    coarse = rng.random((max(2, cells), max(2, int(cells * width / height) + 1)))
    pil = Image.fromarray((coarse * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
    return np.asarray(pil, dtype=np.float32) / 255.0


def fractal_field(rng, height, width, beta):
    """1/f^beta noise normalised to [0, 1]; beta ~2 has natural-image statistics."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    freq = np.sqrt(fx * fx + fy * fy)
    freq[0, 0] = 1.0
    spectrum = (rng.standard_normal(freq.shape) + 1j * rng.standard_normal(freq.shape)) / freq ** (beta / 2)
    spectrum[0, 0] = 0
    field = np.fft.irfft2(spectrum, s=(height, width))
    field -= field.min()
    return (field / max(field.max(), 1e-6)).astype(np.float32)


def random_color(rng, saturation=1.0):
    gray = rng.random()
    color = rng.random(3)
    return (gray * (1 - saturation) + color * saturation).astype(np.float32)


def linear_gradient(rng, height, width):
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (xx * math.cos(angle) + yy * math.sin(angle))
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    a, b = random_color(rng), random_color(rng)
    return a * (1 - t[..., None]) + b * t[..., None]


# ---------------------------------------------------------------- natural-like scenes


def natural_scene(rng, height, width):
    """Dead-leaves scene: occluding textured, shaded shapes with power-law sizes.

    Dead-leaves images reproduce the scale invariance and edge statistics of natural
    photographs, which gives the camera pipeline photo-like content to capture.
    """
    image = fractal_field(rng, height, width, 2.0)[..., None] * random_color(rng) + 0.2 * random_color(rng)
    n_shapes = int(rng.integers(25, 90))
    rmin, rmax = 4.0, max(height, width) / 2.0
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for _ in range(n_shapes):
        # Log-uniform radii: every scale equally represented, as in natural scenes.
        r = math.exp(rng.uniform(math.log(rmin), math.log(rmax)))
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        y0, y1 = int(max(0, cy - r * 1.6)), int(min(height, cy + r * 1.6 + 1))
        x0, x1 = int(max(0, cx - r * 1.6)), int(min(width, cx + r * 1.6 + 1))
        if y1 <= y0 or x1 <= x0:
            continue
        dy, dx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
        theta = rng.uniform(0, math.pi)
        ry = r * rng.uniform(0.4, 1.0)
        u_ = dx * math.cos(theta) + dy * math.sin(theta)
        v_ = -dx * math.sin(theta) + dy * math.cos(theta)
        wobble = 1 + 0.15 * np.sin(np.arctan2(v_, u_) * rng.integers(2, 7) + rng.uniform(0, 6))
        mask = ((u_ / r) ** 2 + (v_ / ry) ** 2) < wobble ** 2
        if not mask.any():
            continue
        h, w = y1 - y0, x1 - x0
        texture = fractal_field(rng, h, w, rng.uniform(1.2, 2.6))
        shade = 0.75 + 0.5 * (u_ / (2 * r) + 0.5) * rng.uniform(-0.6, 0.6)
        color = random_color(rng, rng.uniform(0.1, 0.9))
        fill = color * (shade * (1 - rng.uniform(0, 0.6) * (texture - 0.5)))[..., None]
        image[y0:y1, x0:x1][mask] = fill[mask]
    return np.clip(image, 0, 1)


def landscape_scene(rng, height, width):
    """Sky gradient over fractal terrain bands: the other common photo layout."""
    image = np.empty((height, width, 3), np.float32)
    sky_top, sky_bottom = np.array([0.25, 0.45, 0.85]) * rng.uniform(0.6, 1.1), np.array([0.75, 0.8, 0.9])
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    image[:] = sky_top * (1 - t) + sky_bottom * t
    image += 0.08 * (fractal_field(rng, height, width, 2.4)[..., None] - 0.5)
    horizon = height * rng.uniform(0.3, 0.7)
    for band in range(int(rng.integers(2, 5))):
        profile = fractal_field(rng, 1, width, 2.0)[0] * height * rng.uniform(0.1, 0.35)
        top = horizon + band * height * 0.1 - profile
        rows = np.arange(height, dtype=np.float32)[:, None]
        mask = rows > top[None, :]
        texture = fractal_field(rng, height, width, rng.uniform(1.4, 2.2))
        color = random_color(rng, 0.5) * np.array([0.7, 0.9, 0.6], np.float32)
        layer = color * (0.6 + 0.8 * texture[..., None])
        image[mask] = layer[mask]
    return np.clip(image, 0, 1)


# ---------------------------------------------------------------- render families


def render_flat_shapes(rng, height, width):
    """Flat-shaded vector art on a gradient: antialiased by 2x supersampling, no noise."""
    ss = 2
    base = to_uint8(linear_gradient(rng, height * ss, width * ss))
    pil = Image.fromarray(base)
    draw = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(3, 25))):
        color = tuple(int(c) for c in to_uint8(random_color(rng)))
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * (width * ss, height * ss)
        size = rng.uniform(0.05, 0.6) * max(height, width) * ss
        box = [x0, y0, x0 + size * rng.uniform(0.3, 1.5), y0 + size * rng.uniform(0.3, 1.5)]
        kind = rng.integers(0, 4)
        if kind == 0:
            draw.ellipse(box, fill=color)
        elif kind == 1:
            draw.rectangle(box, fill=color)
        elif kind == 2:
            points = [tuple(rng.uniform(0, 1, 2) * (width * ss, height * ss)) for _ in range(int(rng.integers(3, 7)))]
            draw.polygon(points, fill=color)
        else:
            draw.line([tuple(box[:2]), tuple(box[2:])], fill=color, width=int(rng.integers(2, 20)))
    return to_float(np.asarray(pil.resize((width, height), Image.LANCZOS)))


def render_shaded_3d(rng, height, width):
    """Ray-cast spheres on a ground plane with Lambert + Phong shading and soft shadows."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = linear_gradient(rng, height, width) * 0.6 + 0.2
    horizon = height * rng.uniform(0.3, 0.6)
    ground = yy > horizon
    checker = ((np.floor(xx / rng.uniform(10, 40)) + np.floor(yy / rng.uniform(10, 40))) % 2)[..., None]
    ground_color = random_color(rng, 0.4) * (0.6 + 0.3 * checker) if rng.random() < 0.5 else random_color(rng, 0.4) * np.ones_like(checker)
    image = np.where(ground[..., None], ground_color * (0.5 + 0.5 * (yy / height))[..., None], image)
    light = np.array([rng.uniform(-1, 1), rng.uniform(-1, -0.2), 1.0], np.float32)
    light /= np.linalg.norm(light)
    spheres = sorted(
        ((rng.uniform(0, width), rng.uniform(horizon, height), rng.uniform(0.05, 0.3) * min(height, width)) for _ in range(int(rng.integers(1, 6)))),
        key=lambda s: s[1],
    )
    for cx, cy, r in spheres:
        shadow = ((xx - cx - r * 0.4) / (r * 1.2)) ** 2 + ((yy - cy - r * 0.1) / (r * 0.35)) ** 2 < 1
        image = np.where(shadow[..., None], image * 0.55, image)
        cy = cy - r
        d2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / r ** 2
        inside = d2 < 1
        nz = np.sqrt(np.clip(1 - d2, 0, 1))
        normal = np.stack([(xx - cx) / r, (yy - cy) / r, nz], axis=-1)
        lambert = np.clip(normal @ light, 0, 1)
        reflect = 2 * (normal @ light)[..., None] * normal - light
        specular = np.clip(reflect[..., 2], 0, 1) ** rng.uniform(10, 60)
        color = random_color(rng, rng.uniform(0.3, 1.0))
        shaded = color * (0.15 + 0.85 * lambert[..., None]) + specular[..., None] * rng.uniform(0.2, 0.8)
        edge = np.clip((1 - d2) * r / 1.5, 0, 1)[..., None]  # analytic antialiasing
        image = np.where(inside[..., None], shaded * edge + image * (1 - edge), image)
    return np.clip(image, 0, 1).astype(np.float32)


def render_cg_texture(rng, height, width):
    """Noise-free procedural materials: smooth noise ramps, stripes, checkers, posterised fields."""
    field = smooth_field(rng, height, width, int(rng.integers(2, 10)))
    kind = rng.integers(0, 4)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == 0:
        t = field
    elif kind == 1:
        t = 0.5 + 0.5 * np.sin(xx / rng.uniform(3, 30) + 6 * field)
    elif kind == 2:
        period = rng.uniform(8, 64)
        t = ((np.floor(xx / period) + np.floor(yy / period)) % 2) * 0.6 + 0.4 * field
    else:
        t = np.floor(field * rng.integers(3, 8)) / 7.0
    a, b = random_color(rng), random_color(rng)
    image = a * (1 - t[..., None]) + b * t[..., None]
    return image.astype(np.float32)


_FONT_CACHE = {}


def _font(size):
    if size not in _FONT_CACHE:
        try:
            _FONT_CACHE[size] = ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
            _FONT_CACHE[size] = ImageFont.load_default()
    return _FONT_CACHE[size]


def render_ui_text(rng, height, width):
    """Screen-capture-like UI: panels, buttons, text lines, icons; pixel exact, no noise."""
    background = tuple(int(c) for c in to_uint8(random_color(rng, 0.2) * 0.3 + (0.7 if rng.random() < 0.6 else 0.0)))
    pil = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(pil)
    words = ["Settings", "Stream", "Avatar", "Record", "Live", "OK", "Cancel", "Scene 1", "Camera", "Mix", "Audio", "12:04", "FPS 60"]
    for _ in range(int(rng.integers(4, 16))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(20, width // 2 + 21)), int(rng.integers(10, height // 3 + 11))
        fill = tuple(int(c) for c in to_uint8(random_color(rng, 0.6)))
        draw.rounded_rectangle([x0, y0, x0 + w, y0 + h], radius=int(rng.integers(0, 8)), fill=fill)
        text_color = (255, 255, 255) if sum(fill) < 380 else (20, 20, 20)
        draw.text((x0 + 4, y0 + 2), words[int(rng.integers(0, len(words)))], fill=text_color, font=_font(int(rng.integers(10, 28))))
    for _ in range(int(rng.integers(2, 12))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        draw.text((x0, y0), " ".join(words[int(i)] for i in rng.integers(0, len(words), 4)), fill=(int(rng.integers(0, 256)),) * 3, font=_font(int(rng.integers(9, 20))))
    return to_float(np.asarray(pil))


def render_clean_scene(rng, height, width):
    """Photo-like content as a generator outputs it: natural layout, no sensor noise or mosaic."""
    scene = natural_scene(rng, height, width) if rng.random() < 0.6 else landscape_scene(rng, height, width)
    return blur(scene, rng.uniform(0.0, 1.0))


RENDER_FAMILIES = {
    "flat_shapes": render_flat_shapes,
    "shaded_3d": render_shaded_3d,
    "cg_texture": render_cg_texture,
    "ui_text": render_ui_text,
    "clean_scene": render_clean_scene,
}
# Never used for training: the held-out set measures synthetic detection on a render
# style the model has not seen.
HELD_OUT_RENDER_FAMILY = "shaded_3d"
TRAIN_RENDER_FAMILIES = tuple(f for f in RENDER_FAMILIES if f != HELD_OUT_RENDER_FAMILY)


def jpeg_roundtrip(image_u8, quality):
    buffer = io.BytesIO()
    Image.fromarray(image_u8).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def finish_render(rng, image):
    """Renders get shared too: some are rescaled or JPEG-compressed, none get sensor noise."""
    out = to_uint8(image)
    if rng.random() < 0.3:
        out = jpeg_roundtrip(out, rng.uniform(*RENDER_JPEG_QUALITY))
    return out


# ---------------------------------------------------------------- camera pipeline


def bayer_masks(height, width):
    """RGGB colour-filter-array masks, one plane per colour."""
    masks = np.zeros((height, width, 3), np.float32)
    masks[0::2, 0::2, 0] = 1
    masks[0::2, 1::2, 1] = 1
    masks[1::2, 0::2, 1] = 1
    masks[1::2, 1::2, 2] = 1
    return masks


def _tent_filter(plane):
    """3x3 [1 2 1]^2 smoothing with reflected edges."""
    padded = np.pad(plane, 1, mode="reflect")
    rows = 0.5 * padded[:-2] + padded[1:-1] + 0.5 * padded[2:]
    return 0.5 * rows[:, :-2] + rows[:, 1:-1] + 0.5 * rows[:, 2:]


def demosaic(raw, masks):
    """Bilinear demosaic: each colour is a normalised tent-filtered average of its samples."""
    out = np.empty_like(masks)
    for c in range(3):
        out[..., c] = _tent_filter(raw * masks[..., c]) / np.maximum(_tent_filter(masks[..., c]), 1e-6)
    return out


def camera_capture(rng, scene, downscale=1.0):
    """Simulate a small-sensor camera: optics, vignetting, mosaic, shot/read noise, ISP, JPEG.

    downscale > 1 captures at that many times the frame size and area-reduces, like a
    photo that was resized after capture (less noise, same optics and demosaic traces).
    Returns uint8.
    """
    height, width, _ = scene.shape
    if downscale > 1.01:
        big_h, big_w = int(height * downscale), int(width * downscale)
        scene = resize(scene, big_h, big_w, Image.BICUBIC)
    h, w, _ = scene.shape
    linear = np.clip(scene, 0, 1) ** 2.2
    linear = blur(linear, rng.uniform(0.5, 2.0))
    if rng.random() < 0.15:
        linear = motion_blur(linear, int(rng.integers(3, 12)), horizontal=rng.random() < 0.5)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    radius2 = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / ((h / 2) ** 2 + (w / 2) ** 2)
    linear = linear * (1 - rng.uniform(0.0, 0.45) * radius2)[..., None]
    linear = linear * rng.uniform(0.6, 1.3) * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    masks = bayer_masks(h, w)
    raw = (linear * masks).sum(axis=2)
    full_well = rng.uniform(150, 3000)  # electrons at white: small pixels are noisy
    raw = rng.poisson(np.clip(raw, 0, 1.5) * full_well).astype(np.float32) / full_well
    raw += rng.normal(0, rng.uniform(0.001, 0.012), raw.shape).astype(np.float32)
    rgb = demosaic(raw, masks)
    rgb = np.clip(rgb, 0, 1) ** (1 / 2.2)
    if rng.random() < 0.5:
        amount = rng.uniform(0.2, 1.0)
        rgb = rgb + amount * (rgb - blur(rgb, 1.0))
    if rng.random() < 0.35:  # ISP denoise
        rgb = blur(rgb, rng.uniform(0.4, 1.0))
    out = to_uint8(rgb)
    if downscale > 1.01:
        out = np.asarray(Image.fromarray(out).resize((width, height), Image.BOX))
    if rng.random() < 0.5:
        out = jpeg_roundtrip(out, rng.uniform(*CAMERA_JPEG_QUALITY))
    return out


def motion_blur(image, length, horizontal):
    """Box blur along one axis: camera shake or a moving subject during the exposure."""
    axis = 1 if horizontal else 0
    padded = np.pad(image, [(0, 0)] * axis + [(length // 2, length - 1 - length // 2)] + [(0, 0)] * (2 - axis), mode="edge")
    size = image.shape[axis]
    return sum(np.take(padded, np.arange(i, i + size), axis=axis) for i in range(length)) / length


# ---------------------------------------------------------------- screen recapture


PANEL_LAYOUTS = ("rgb_stripe", "pentile", "led_wall")


def panel_tile(rng, layout):
    """One repeating tile of a display's subpixel layout (6 camera-independent units per
    display pixel) and how many display pixels it spans per side.

    rgb_stripe: LCD, three vertical stripes per pixel with a black matrix between rows.
    pentile: AMOLED RGBG diamond, each pixel one large red or blue and one small green.
    led_wall: LED volume or signage, three small round emitters per pixel in a black field.
    """
    cell = 6
    if layout == "rgb_stripe":
        pattern = np.zeros((cell, cell, 3), np.float32)
        stripe = cell // 3
        rows_lit = max(1, int(round(cell * rng.uniform(0.55, 0.95))))
        for c in range(3):
            pattern[:rows_lit, c * stripe:(c + 1) * stripe - (1 if rng.random() < 0.7 else 0), c] = 1.0
        if rng.random() < 0.3:  # some panels use a different subpixel order
            pattern = pattern[:, ::-1]
        return pattern, 1
    if layout == "pentile":
        pattern = np.zeros((2 * cell, 2 * cell, 3), np.float32)
        for py in range(2):
            for px in range(2):
                big = 0 if (py + px) % 2 == 0 else 2  # red and blue alternate on a checkerboard
                y0, x0 = py * cell, px * cell
                pattern[y0 + 1:y0 + 5, x0:x0 + 3, big] = 1.0
                pattern[y0 + 2:y0 + 4, x0 + 4:x0 + 6, 1] = 1.0
        return pattern, 2
    if layout == "led_wall":
        pattern = np.zeros((cell, cell, 3), np.float32)
        yy, xx = np.mgrid[0:cell, 0:cell].astype(np.float32) + 0.5
        radius = rng.uniform(0.7, 1.2)
        for c, (cy, cx) in enumerate(((1.5, 1.5), (1.5, 4.5), (4.5, 3.0))):
            pattern[..., c] = (((yy - cy) ** 2 + (xx - cx) ** 2) <= radius ** 2).astype(np.float32)
        return pattern, 1
    raise ValueError(f"unknown panel layout {layout!r}")


def display_panel(rng, content_u8, frame_h, frame_w, layout="rgb_stripe"):
    """Show content on a display of the given subpixel layout and image it with a camera at pitch p.

    The panel is drawn with 6x6 subpixel units per display pixel and area-sampled by
    the camera grid at a non-integer pitch with a small rotation, which produces the
    moire a real recapture shows.
    """
    pitch = rng.uniform(1.3, 4.5)  # camera pixels per display pixel
    cell = 6
    display_h, display_w = 2 * (int(frame_h / pitch) // 2 + 2), 2 * (int(frame_w / pitch) // 2 + 2)
    content = np.asarray(Image.fromarray(content_u8).resize((display_w, display_h), Image.BILINEAR)).astype(np.float32) / 255.0
    gamma = rng.uniform(0.8, 1.3)
    cast = rng.uniform(0.85, 1.15, 3).astype(np.float32) * np.array([0.95, 1.0, 1.08], np.float32)
    black = rng.uniform(0.02, 0.12)
    content = black + (1 - black) * np.clip(content ** gamma * cast, 0, 1)
    pattern, span = panel_tile(rng, layout)
    # The camera exposes for the screen: lift the panel's mean back to the content's.
    exposure_gain = rng.uniform(0.7, 1.0) / float(pattern.mean(axis=(0, 1)).mean())
    panel = np.repeat(np.repeat(content, cell, axis=0), cell, axis=1) * np.tile(pattern, (display_h // span, display_w // span, 1))
    pil = Image.fromarray(to_uint8(panel))
    # The camera's optics spread each subpixel before the sensor samples it.
    pil = pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 4.0)))
    angle = rng.uniform(-5, 5)
    pil = pil.rotate(angle, resample=Image.BILINEAR, expand=False)
    scale_w, scale_h = display_w * pitch, display_h * pitch
    pil = pil.resize((int(scale_w), int(scale_h)), Image.BOX)
    top = int(rng.integers(0, max(1, pil.height - frame_h)))
    left = int(rng.integers(0, max(1, pil.width - frame_w)))
    frame = to_float(np.asarray(pil)[top:top + frame_h, left:left + frame_w]) * exposure_gain
    if frame.shape[0] < frame_h or frame.shape[1] < frame_w:
        frame = resize(frame, frame_h, frame_w)
    # Glare: a soft specular reflection on the glass.
    if rng.random() < 0.6:
        yy, xx = np.mgrid[0:frame_h, 0:frame_w].astype(np.float32)
        cy, cx = rng.uniform(0, frame_h), rng.uniform(0, frame_w)
        spread = rng.uniform(0.1, 0.5) * max(frame_h, frame_w)
        frame = frame + rng.uniform(0.05, 0.4) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * spread ** 2))[..., None]
    # Sometimes the display does not fill the frame: bezel and room around it.
    if rng.random() < 0.3:
        room = natural_scene(rng, frame_h, frame_w) * 0.5
        margin_y, margin_x = int(frame_h * rng.uniform(0.03, 0.2)), int(frame_w * rng.uniform(0.03, 0.2))
        room[margin_y - 2:frame_h - margin_y + 2, margin_x - 2:frame_w - margin_x + 2] = 0.03
        inner = resize(frame, frame_h - 2 * margin_y, frame_w - 2 * margin_x)
        room[margin_y:frame_h - margin_y, margin_x:frame_w - margin_x] = inner
        frame = room
    return np.clip(frame, 0, 1)


def screen_recapture(rng, content_u8, frame_h, frame_w, layout="rgb_stripe"):
    """A camera filming a display that shows content_u8: returns the uint8 camera frame."""
    return camera_capture(rng, display_panel(rng, content_u8, frame_h, frame_w, layout))


# ---------------------------------------------------------------- robustness perturbations


def add_noise(image_u8, sigma, rng, per_channel=True):
    """Additive Gaussian noise of sigma grey levels (independent per channel, or one luminance field)."""
    shape = image_u8.shape if per_channel else image_u8.shape[:2] + (1,)
    noisy = image_u8.astype(np.float32) + rng.normal(0.0, sigma, shape).astype(np.float32)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def blur_u8(image_u8, sigma):
    return to_uint8(blur(to_float(image_u8), sigma))


def brightness(image_u8, gain, gamma=1.0):
    return to_uint8(np.clip(to_float(image_u8) * gain, 0, 1) ** gamma)


def rescale(image_u8, factor, resample=Image.BICUBIC):
    height, width = image_u8.shape[:2]
    size = (max(8, int(round(width * factor))), max(8, int(round(height * factor))))
    return np.asarray(Image.fromarray(image_u8).resize(size, resample))


def robustness_augment(rng, frame, forged=False):
    """What happens to frames on their way: blur, rescaling, brightness changes and
    recompression, applied to every class alike so that none of them is a cue.

    Added noise is different: it is how a forger hides a render's clean pixels, and no
    camera makes it. A sensor's noise (shot and read noise) passes through the demosaic,
    the ISP's denoise and sharpening, which correlate it across neighbouring pixels and
    channels; the real class gets its noise only from the simulated camera. So only
    renders and screens (forged=True) get white noise added, 60% of them, per channel or
    as one luminance field; that teaches the model that added noise is no sign of a capture."""
    if rng.random() < 0.2:
        frame = rescale(frame, rng.uniform(0.5, 1.5), [Image.BILINEAR, Image.BICUBIC, Image.LANCZOS, Image.BOX][int(rng.integers(0, 4))])
    if rng.random() < 0.15:
        frame = blur_u8(frame, rng.uniform(0.3, 1.2))
    if rng.random() < 0.25:
        frame = brightness(frame, rng.uniform(0.5, 1.4), rng.uniform(0.75, 1.35))
    if forged and rng.random() < 0.6:
        frame = add_noise(frame, rng.uniform(1.0, 8.0), rng, per_channel=rng.random() < 0.7)
    if rng.random() < 0.5:
        frame = jpeg_roundtrip(frame, rng.uniform(60, 98))
    return frame
