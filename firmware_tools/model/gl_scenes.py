"""Random game-like scenes drawn by a real OpenGL rasteriser (moderngl on Mesa, headless EGL).

Run in .venv-train:
    python -m synthseal.firmware_tools.model.gl_scenes --out DIR --first 0 --count 20 --textures DIR

Games draw the world the way a GPU does: triangles, photograph-derived textures sampled
through mipmaps with bilinear or anisotropic filtering, per-pixel lighting, fog, a sky,
edges antialiased by multisampling or supersampling, or not at all. None of that leaves
a sensor's traces, however photographic the textures are. Each seed makes one frame,
`gl-<seed>.png`: a textured ground, 4 to 40 boxes (buildings, walls, crates) and spheres,
a gradient or photograph sky, sun and hemisphere light, Blinn-Phong highlights, fog.

Textures are crops of the training photographs only (renders.py writes them) and
procedural bricks and tiles; never calibration or held-out photographs.
"""

import math
import os
import sys

import numpy as np
from PIL import Image

SIZES = ((640, 360), (640, 480), (800, 450), (512, 384), (720, 540))

VERTEX_SHADER = """
#version 330
uniform mat4 view_projection;
in vec3 in_position;
in vec3 in_normal;
in vec2 in_uv;
out vec3 world_position;
out vec3 normal;
out vec2 uv;
void main() {
    world_position = in_position;
    normal = in_normal;
    uv = in_uv;
    gl_Position = view_projection * vec4(in_position, 1.0);
}
"""

FRAGMENT_SHADER = """
#version 330
uniform sampler2D albedo;
uniform vec3 tint;
uniform vec3 sun_direction;
uniform vec3 sun_colour;
uniform vec3 sky_colour;
uniform vec3 ground_colour;
uniform vec3 eye;
uniform float shininess;
uniform float specular;
uniform vec3 fog_colour;
uniform float fog_density;
uniform float exposure;
in vec3 world_position;
in vec3 normal;
in vec2 uv;
out vec4 colour;
void main() {
    vec3 base = pow(texture(albedo, uv).rgb, vec3(2.2)) * tint;
    vec3 n = normalize(normal);
    vec3 to_eye = normalize(eye - world_position);
    float diffuse = max(dot(n, sun_direction), 0.0);
    vec3 ambient = mix(ground_colour, sky_colour, 0.5 + 0.5 * n.y);
    float highlight = pow(max(dot(n, normalize(sun_direction + to_eye)), 0.0), shininess) * specular;
    vec3 lit = base * (ambient + sun_colour * diffuse) + sun_colour * highlight;
    float fog = 1.0 - exp(-fog_density * length(eye - world_position));
    lit = mix(lit, fog_colour, fog) * exposure;
    colour = vec4(pow(lit / (1.0 + lit * 0.15), vec3(1.0 / 2.2)), 1.0);
}
"""

SKY_VERTEX_SHADER = """
#version 330
in vec2 in_corner;
out vec2 position;
void main() { position = in_corner * 0.5 + 0.5; gl_Position = vec4(in_corner, 0.9999, 1.0); }
"""

SKY_FRAGMENT_SHADER = """
#version 330
uniform sampler2D photo;
uniform float use_photo;
uniform vec3 zenith;
uniform vec3 horizon;
in vec2 position;
out vec4 colour;
void main() {
    vec3 gradient = mix(horizon, zenith, pow(position.y, 0.7));
    colour = vec4(mix(gradient, texture(photo, position).rgb, use_photo), 1.0);
}
"""


def perspective(fov_degrees, aspect, near, far):
    f = 1.0 / math.tan(math.radians(fov_degrees) / 2)
    return np.array([[f / aspect, 0, 0, 0], [0, f, 0, 0],
                     [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)], [0, 0, -1, 0]], np.float32)


def look_at(eye, target):
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    view = np.eye(4, dtype=np.float32)
    view[0, :3], view[1, :3], view[2, :3] = right, up, -forward
    view[:3, 3] = -view[:3, :3] @ eye
    return view


def box(centre, size, tile):
    """Vertices (position, normal, uv) of an axis-aligned box; uv in world units / tile,
    so a texture keeps its scale on every face."""
    cx, cy, cz = centre
    sx, sy, sz = np.asarray(size) / 2
    faces = []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            normal = np.zeros(3)
            normal[axis] = sign
            u_axis, v_axis = {0: (2, 1), 1: (0, 2), 2: (0, 1)}[axis]
            half = np.array([sx, sy, sz])
            corners = []
            for du, dv in ((-1, -1), (1, -1), (1, 1), (-1, -1), (1, 1), (-1, 1)):
                p = np.array([cx, cy, cz], float)
                p[axis] += sign * half[axis]
                p[u_axis] += du * half[u_axis]
                p[v_axis] += dv * half[v_axis]
                uv = ((du + 1) * half[u_axis] / tile, (dv + 1) * half[v_axis] / tile)
                corners.append([*p, *normal, *uv])
            faces.extend(corners)
    return np.array(faces, np.float32)


def sphere(centre, radius, tile, segments=32, rings=16):
    rows = []
    for i in range(rings):
        for j in range(segments):
            quad = []
            for di, dj in ((0, 0), (1, 0), (1, 1), (0, 0), (1, 1), (0, 1)):
                theta = math.pi * (i + di) / rings
                phi = 2 * math.pi * (j + dj) / segments
                n = np.array([math.sin(theta) * math.cos(phi), math.cos(theta), math.sin(theta) * math.sin(phi)])
                quad.append([*(np.asarray(centre) + radius * n), *n,
                             2 * math.pi * radius * (j + dj) / segments / tile, math.pi * radius * (i + di) / rings / tile])
            rows.extend(quad)
    return np.array(rows, np.float32)


def procedural_texture(rng, size=256):
    """Bricks or tiles with mortar, per-brick colour and fine noise."""
    height = width = size
    rows = int(rng.integers(4, 16))
    columns = int(rng.integers(2, 8))
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    row = (y * rows / height).astype(int)
    shifted = x + (row % 2) * (width / columns / 2) * (rng.random() < 0.7)
    column = (shifted * columns / width).astype(int)
    mortar = ((y * rows / height) % 1 < 0.08) | ((shifted * columns / width) % 1 < 0.05)
    colour = rng.uniform(0.2, 0.9, 3)
    brick_rng = np.random.default_rng(int(rng.integers(0, 2**31)))
    variation = brick_rng.uniform(0.75, 1.15, (rows + 1, columns + 2))[row, column % (columns + 2)]
    image = colour[None, None] * variation[..., None] + rng.normal(0, 0.03, (height, width, 3))
    image[mortar] = rng.uniform(0.3, 0.9)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def photo_texture(rng, photos):
    photo = photos[int(rng.integers(0, len(photos)))]
    height, width = photo.shape[:2]
    side = int(min(height, width) * rng.uniform(0.3, 1.0))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    crop = Image.fromarray(photo[top:top + side, left:left + side])
    size = int(2 ** rng.integers(7, 11))  # 128-1024, power of two like game textures
    return np.asarray(crop.resize((size, size), Image.LANCZOS))


def make_texture(ctx, moderngl, rng, image, retro):
    texture = ctx.texture((image.shape[1], image.shape[0]), 3, np.ascontiguousarray(image).tobytes())
    texture.build_mipmaps()
    texture.repeat_x = texture.repeat_y = True
    if retro:
        texture.filter = (moderngl.NEAREST_MIPMAP_NEAREST, moderngl.NEAREST)
    else:
        texture.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        texture.anisotropy = float(rng.choice([1.0, 4.0, 16.0]))
    return texture


def render_scene(ctx, moderngl, seed, photos):
    rng = np.random.default_rng([23, seed])
    width, height = SIZES[int(rng.integers(0, len(SIZES)))]
    # Antialiasing as games do it: none, 2x supersampling, or 4x multisampling.
    antialias = ["none", "ssaa", "msaa"][int(rng.integers(0, 3))]
    scale = 2 if antialias == "ssaa" else 1
    retro = rng.random() < 0.1

    def texture_image():
        return procedural_texture(rng) if rng.random() < 0.3 or not photos else photo_texture(rng, photos)

    objects = [(np.concatenate([box((0, -0.05, 0), (400, 0.1, 400), rng.uniform(2, 10))]), texture_image())]
    street = rng.random() < 0.5
    for _ in range(int(rng.integers(4, 40))):
        size = rng.uniform([1, 1, 1], [12, 25, 12]) if rng.random() < 0.6 else rng.uniform(0.5, 2.5, 3)
        if street:
            x = rng.choice([-1, 1]) * (rng.uniform(4, 8) + size[0] / 2)
            z = rng.uniform(-120, 10)
        else:
            x, z = rng.uniform(-40, 40), rng.uniform(-80, 10)
        if rng.random() < 0.15:
            radius = float(rng.uniform(0.5, 3))
            mesh = sphere((x, radius, z), radius, rng.uniform(1, 4))
        else:
            mesh = box((x, size[1] / 2, z), size, rng.uniform(1, 6))
        objects.append((mesh, texture_image()))

    program = ctx.program(vertex_shader=VERTEX_SHADER, fragment_shader=FRAGMENT_SHADER)
    sky_program = ctx.program(vertex_shader=SKY_VERTEX_SHADER, fragment_shader=SKY_FRAGMENT_SHADER)
    size = (width * scale, height * scale)
    samples = 4 if antialias == "msaa" else 0
    target = ctx.framebuffer(color_attachments=[ctx.renderbuffer(size, 3, samples=samples)],
                             depth_attachment=ctx.depth_renderbuffer(size, samples=samples))
    target.use()
    ctx.enable(moderngl.DEPTH_TEST)
    target.clear(0, 0, 0, 1)

    zenith, horizon = rng.uniform(0.2, 0.9, 3), rng.uniform(0.5, 1.0, 3)
    sky_texture = make_texture(ctx, moderngl, rng, photo_texture(rng, photos) if photos else procedural_texture(rng), False)
    sky_texture.use(0)
    sky_program["photo"].value = 0
    sky_program["use_photo"].value = float(bool(photos) and rng.random() < 0.3)
    sky_program["zenith"].value, sky_program["horizon"].value = tuple(zenith), tuple(horizon)
    corners = ctx.buffer(np.array([-1, -1, 1, -1, 1, 1, -1, -1, 1, 1, -1, 1], np.float32).tobytes())
    ctx.vertex_array(sky_program, [(corners, "2f", "in_corner")]).render()

    eye = np.array([rng.uniform(-3, 3), rng.uniform(1.2, 3) if rng.random() < 0.6 else rng.uniform(5, 30), rng.uniform(5, 25)])
    target_point = np.array([rng.uniform(-8, 8), rng.uniform(0, 4), rng.uniform(-60, -5)])
    view_projection = perspective(rng.uniform(45, 90), width / height, 0.1, 500) @ look_at(eye, target_point)
    sun = np.array([rng.uniform(-1, 1), rng.uniform(0.15, 1), rng.uniform(-1, 1)])
    program["view_projection"].write(view_projection.T.astype(np.float32).tobytes())
    program["sun_direction"].value = tuple(sun / np.linalg.norm(sun))
    program["sun_colour"].value = tuple(rng.uniform(0.6, 1.3, 3) * rng.uniform(0.6, 1.6))
    program["sky_colour"].value = tuple(zenith * rng.uniform(0.2, 0.7))
    program["ground_colour"].value = tuple(rng.uniform(0.05, 0.3, 3))
    program["eye"].value = tuple(eye)
    program["fog_colour"].value = tuple(horizon)
    program["fog_density"].value = float(rng.choice([0.0, rng.uniform(0.002, 0.03)]))
    program["exposure"].value = float(rng.uniform(0.7, 1.4))
    program["albedo"].value = 0
    for mesh, image in objects:
        texture = make_texture(ctx, moderngl, rng, image, retro)
        texture.use(0)
        program["tint"].value = tuple(rng.uniform(0.7, 1.1, 3))
        program["shininess"].value = float(rng.uniform(4, 128))
        program["specular"].value = float(rng.uniform(0, 0.6))
        buffer = ctx.buffer(mesh.tobytes())
        ctx.vertex_array(program, [(buffer, "3f 3f 2f", "in_position", "in_normal", "in_uv")]).render()
        texture.release()
        buffer.release()

    if samples:
        resolved = ctx.framebuffer(color_attachments=[ctx.renderbuffer(size, 3)])
        ctx.copy_framebuffer(resolved, target)
        target = resolved
    pixels = np.frombuffer(target.read(components=3), np.uint8).reshape(size[1], size[0], 3)[::-1]
    image = Image.fromarray(pixels)
    if scale > 1:
        image = image.resize((width, height), Image.BOX)
    return image


def main(argv=None):
    from .renders import scene_engine_arguments

    args = scene_engine_arguments(__doc__.splitlines()[0], "gl", argv)
    try:
        import moderngl
    except ImportError:
        sys.exit("error: moderngl is missing: it installs with .[train] (make model)")
    try:
        ctx = moderngl.create_context(standalone=True, backend="egl")
    except Exception as error:  # noqa: BLE001 - the message says what to install
        sys.exit(f"error: no headless OpenGL (EGL) context ({error}); install Mesa: libegl1 libgl1-mesa-dri")
    ctx.gc_mode = "auto"  # buffers, textures and framebuffers go when a scene is done with them
    photos = [np.asarray(Image.open(path).convert("RGB")) for path in sorted(args.textures.glob("*.png"))]
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in range(args.first, args.first + args.count):
        out = args.out / f"gl-{seed}.png"
        if not out.exists():
            # Saved under a temporary name and renamed when complete: an interrupted run
            # never leaves a truncated frame that a later run would take for a finished one.
            partial = out.with_name(f".{out.stem}.partial.png")
            render_scene(ctx, moderngl, seed, photos).save(partial)
            os.replace(partial, out)


if __name__ == "__main__":
    main()
