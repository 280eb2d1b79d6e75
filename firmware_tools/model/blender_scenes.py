"""Random Blender scenes rendered by Cycles, the path tracer most 3D artwork is made with.

Run in .venv-train, where the `bpy` wheel (Blender as a Python module) lives:
    python -m synthseal.firmware_tools.model.blender_scenes --out DIR --first 0 --count 20 --textures DIR

Each seed makes one scene and one PNG, `blender-<seed>.png`; existing files are kept, so an
interrupted run resumes. A scene: a ground (sometimes walls), 3 to 12 objects with
procedural or photograph-textured materials (Principled BSDF: roughness, metal, glass,
emission, bump), a sky, gradient, colour or photograph world, sun, area, point and spot lights,
a camera at a random place with depth of field now and then, and Cycles settings as artists
use them: 16 or 32 samples, OpenImageDenoise on most frames, AgX, Filmic or Standard view.
A fixed sample count and one thread make a seed's frame the same on every machine (a
Cycles time limit would make it depend on the CPU's speed and load).

Photograph textures are how games and product renders look: a photograph resampled
through perspective and lighting is still a render. They come from the training
photographs only (renders.py writes them), never from calibration or held-out ones.
"""

import importlib.util
import math
import os
import random
import sys

SIZES = ((400, 300), (480, 360), (512, 512), (560, 420), (640, 360), (360, 480))
PRIMITIVES = ("uv_sphere", "ico_sphere", "cube", "cylinder", "cone", "torus", "monkey")
VIEW_TRANSFORMS = ("AgX", "Filmic", "Standard")


def _link(tree, output, socket):
    tree.links.new(output, socket)


def _texture_coordinates(tree, rng, scale_range=(0.5, 6.0)):
    """Object-space coordinates through a random scale and rotation."""
    coords = tree.nodes.new("ShaderNodeTexCoord")
    mapping = tree.nodes.new("ShaderNodeMapping")
    scale = rng.uniform(*scale_range)
    mapping.inputs["Scale"].default_value = (scale, scale * rng.uniform(0.6, 1.6), scale)
    mapping.inputs["Rotation"].default_value = tuple(rng.uniform(0, math.pi) for _ in range(3))
    _link(tree, coords.outputs["Object" if rng.random() < 0.7 else "Generated"], mapping.inputs["Vector"])
    return mapping.outputs["Vector"]


def _colour(rng, dark=0.0):
    return (rng.uniform(dark, 1), rng.uniform(dark, 1), rng.uniform(dark, 1), 1.0)


def _procedural_colour(tree, rng, kind):
    """A colour output from one of Blender's procedural textures through a colour ramp."""
    vector = _texture_coordinates(tree, rng)
    if kind == "noise":
        texture = tree.nodes.new("ShaderNodeTexNoise")
        texture.inputs["Scale"].default_value = rng.uniform(1, 20)
        texture.inputs["Detail"].default_value = rng.uniform(0, 12)
        texture.inputs["Roughness"].default_value = rng.uniform(0.3, 0.8)
        factor = texture.outputs["Fac"]
    elif kind == "voronoi":
        texture = tree.nodes.new("ShaderNodeTexVoronoi")
        texture.inputs["Scale"].default_value = rng.uniform(2, 25)
        texture.feature = rng.choice(["F1", "F2", "SMOOTH_F1", "DISTANCE_TO_EDGE"])
        factor = texture.outputs["Distance"]
    elif kind == "wave":
        texture = tree.nodes.new("ShaderNodeTexWave")
        texture.wave_type = rng.choice(["BANDS", "RINGS"])
        texture.inputs["Scale"].default_value = rng.uniform(1, 10)
        texture.inputs["Distortion"].default_value = rng.uniform(0, 12)
        factor = texture.outputs["Fac"]
    elif kind == "brick":
        texture = tree.nodes.new("ShaderNodeTexBrick")
        texture.inputs["Scale"].default_value = rng.uniform(2, 12)
        texture.inputs["Color1"].default_value = _colour(rng, 0.2)
        texture.inputs["Color2"].default_value = _colour(rng, 0.1)
        _link(tree, vector, texture.inputs["Vector"])
        return texture.outputs["Color"]
    elif kind == "checker":
        texture = tree.nodes.new("ShaderNodeTexChecker")
        texture.inputs["Scale"].default_value = rng.uniform(2, 20)
        texture.inputs["Color1"].default_value = _colour(rng)
        texture.inputs["Color2"].default_value = _colour(rng)
        _link(tree, vector, texture.inputs["Vector"])
        return texture.outputs["Color"]
    else:  # magic
        texture = tree.nodes.new("ShaderNodeTexMagic")
        texture.inputs["Scale"].default_value = rng.uniform(1, 8)
        factor = texture.outputs["Fac"]
    _link(tree, vector, texture.inputs["Vector"])
    ramp = tree.nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.elements[0].color = _colour(rng)
    ramp.color_ramp.elements[1].color = _colour(rng)
    ramp.color_ramp.elements[0].position = rng.uniform(0, 0.4)
    ramp.color_ramp.elements[1].position = rng.uniform(0.6, 1)
    _link(tree, factor, ramp.inputs["Fac"])
    return ramp.outputs["Color"]


def _image_colour(tree, rng, textures):
    texture = tree.nodes.new("ShaderNodeTexImage")
    texture.image = _load_image(rng.choice(textures))
    texture.projection = "BOX"
    texture.projection_blend = rng.uniform(0, 0.3)
    texture.interpolation = rng.choice(["Linear", "Cubic", "Closest", "Smart"])
    _link(tree, _texture_coordinates(tree, rng, (0.1, 1.5)), texture.inputs["Vector"])
    return texture.outputs["Color"]


def _load_image(path):
    import bpy

    return bpy.data.images.load(str(path), check_existing=True)


def make_material(rng, name, textures):
    import bpy

    material = bpy.data.materials.new(name)
    material.use_nodes = True
    tree = material.node_tree
    bsdf = tree.nodes["Principled BSDF"]
    kind = rng.choice(["plain", "plain", "noise", "voronoi", "wave", "brick", "checker", "magic"]
                      + (["image"] * 4 if textures else []))
    if kind == "plain":
        bsdf.inputs["Base Color"].default_value = _colour(rng)
    elif kind == "image":
        _link(tree, _image_colour(tree, rng, textures), bsdf.inputs["Base Color"])
    else:
        _link(tree, _procedural_colour(tree, rng, kind), bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = rng.uniform(0.02, 0.95)
    if rng.random() < 0.2:
        bsdf.inputs["Metallic"].default_value = 1.0
    if rng.random() < 0.1:
        bsdf.inputs["Transmission Weight"].default_value = 1.0
        bsdf.inputs["Roughness"].default_value = rng.uniform(0, 0.2)
    if rng.random() < 0.07:
        bsdf.inputs["Emission Color"].default_value = _colour(rng, 0.3)
        bsdf.inputs["Emission Strength"].default_value = rng.uniform(1, 8)
    if rng.random() < 0.35:
        noise = tree.nodes.new("ShaderNodeTexNoise")
        noise.inputs["Scale"].default_value = rng.uniform(5, 60)
        bump = tree.nodes.new("ShaderNodeBump")
        bump.inputs["Strength"].default_value = rng.uniform(0.05, 0.6)
        _link(tree, noise.outputs["Fac"], bump.inputs["Height"])
        _link(tree, bump.outputs["Normal"], bsdf.inputs["Normal"])
    return material


def add_object(rng, index, textures):
    import bpy

    kind = rng.choice(PRIMITIVES)
    size = rng.uniform(0.4, 1.6)
    location = (rng.uniform(-4, 4), rng.uniform(-4, 4), 0)
    if kind == "uv_sphere":
        bpy.ops.mesh.primitive_uv_sphere_add(radius=size, segments=48, ring_count=24)
    elif kind == "ico_sphere":
        bpy.ops.mesh.primitive_ico_sphere_add(radius=size, subdivisions=rng.choice([1, 2, 4]))
    elif kind == "cube":
        bpy.ops.mesh.primitive_cube_add(size=size * 1.6)
    elif kind == "cylinder":
        bpy.ops.mesh.primitive_cylinder_add(radius=size * 0.7, depth=size * rng.uniform(1, 3), vertices=48)
    elif kind == "cone":
        bpy.ops.mesh.primitive_cone_add(radius1=size, depth=size * 2, vertices=48)
    elif kind == "torus":
        bpy.ops.mesh.primitive_torus_add(major_radius=size, minor_radius=size * rng.uniform(0.15, 0.45))
    else:
        bpy.ops.mesh.primitive_monkey_add(size=size * 1.5)
    obj = bpy.context.object
    obj.location = (location[0], location[1], size * rng.uniform(0.6, 1.4))
    obj.rotation_euler = tuple(rng.uniform(0, 2 * math.pi) for _ in range(3))
    if kind in ("cube", "cylinder", "cone") and rng.random() < 0.6:
        bevel = obj.modifiers.new("bevel", "BEVEL")
        bevel.width = size * rng.uniform(0.02, 0.15)
        bevel.segments = 3
    if kind in ("uv_sphere", "torus", "monkey", "cylinder") or rng.random() < 0.5:
        bpy.ops.object.shade_smooth()
    if kind == "monkey" or rng.random() < 0.15:
        obj.modifiers.new("subdivision", "SUBSURF").levels = 2
    obj.data.materials.append(make_material(rng, f"object-{index}", textures))


def add_ground(rng, textures):
    import bpy

    bpy.ops.mesh.primitive_plane_add(size=80)
    bpy.context.object.data.materials.append(make_material(rng, "ground", textures))
    if rng.random() < 0.3:
        # A back wall: an interior or studio corner.
        bpy.ops.mesh.primitive_plane_add(size=40, location=(0, rng.uniform(5, 9), 10), rotation=(math.pi / 2, 0, 0))
        bpy.context.object.data.materials.append(make_material(rng, "wall", textures))


def set_world(rng, textures):
    import bpy

    world = bpy.data.worlds.new("world")
    bpy.context.scene.world = world
    world.use_nodes = True
    tree = world.node_tree
    background = tree.nodes["Background"]
    background.inputs["Strength"].default_value = rng.uniform(0.2, 1.0)
    kind = rng.choice(["sky", "sky", "gradient", "colour"] + (["photo"] if textures else []))
    if kind == "sky":
        sky = tree.nodes.new("ShaderNodeTexSky")
        sky.sky_type = "NISHITA"
        sky.sun_elevation = math.radians(rng.uniform(3, 70))
        sky.sun_rotation = rng.uniform(0, 2 * math.pi)
        sky.air_density = rng.uniform(0.5, 3)
        sky.dust_density = rng.uniform(0, 5)
        background.inputs["Strength"].default_value = rng.uniform(0.03, 0.25)
        _link(tree, sky.outputs["Color"], background.inputs["Color"])
    elif kind == "gradient":
        coords = tree.nodes.new("ShaderNodeTexCoord")
        separate = tree.nodes.new("ShaderNodeSeparateXYZ")
        ramp = tree.nodes.new("ShaderNodeValToRGB")
        ramp.color_ramp.elements[0].color = _colour(rng)
        ramp.color_ramp.elements[1].color = _colour(rng)
        _link(tree, coords.outputs["Generated"], separate.inputs["Vector"])
        _link(tree, separate.outputs["Z"], ramp.inputs["Fac"])
        _link(tree, ramp.outputs["Color"], background.inputs["Color"])
    elif kind == "colour":
        background.inputs["Color"].default_value = _colour(rng)
    else:
        environment = tree.nodes.new("ShaderNodeTexEnvironment")
        environment.image = _load_image(rng.choice(textures))
        _link(tree, environment.outputs["Color"], background.inputs["Color"])


def add_lights(rng):
    import bpy

    if rng.random() < 0.7:
        bpy.ops.object.light_add(type="SUN", rotation=(rng.uniform(0, 1.2), rng.uniform(-0.5, 0.5), rng.uniform(0, 6.3)))
        bpy.context.object.data.energy = rng.uniform(0.8, 4)
        bpy.context.object.data.angle = math.radians(rng.uniform(0.5, 15))
        bpy.context.object.data.color = _colour(rng, 0.7)[:3]
    for _ in range(rng.randint(0 if bpy.context.scene.objects.get("Sun") else 1, 3)):
        kind = rng.choice(["AREA", "POINT", "SPOT"])
        location = (rng.uniform(-8, 8), rng.uniform(-8, 8), rng.uniform(2, 9))
        bpy.ops.object.light_add(type=kind, location=location)
        light = bpy.context.object
        light.data.energy = rng.uniform(40, 600)
        light.data.color = _colour(rng, 0.4)[:3]
        if kind == "AREA":
            light.data.size = rng.uniform(0.5, 5)
        direction = light.constraints.new("TRACK_TO")
        direction.target = bpy.data.objects["target"]


def add_camera(rng):
    import bpy

    distance = rng.uniform(6, 16)
    azimuth = rng.uniform(0, 2 * math.pi)
    elevation = math.radians(rng.uniform(4, 50))
    location = (distance * math.cos(elevation) * math.cos(azimuth),
                distance * math.cos(elevation) * math.sin(azimuth),
                distance * math.sin(elevation) + 0.3)
    bpy.ops.object.camera_add(location=location)
    camera = bpy.context.object
    camera.data.lens = rng.uniform(18, 60)
    aim = camera.constraints.new("TRACK_TO")
    aim.target = bpy.data.objects["target"]
    if rng.random() < 0.25:
        camera.data.dof.use_dof = True
        camera.data.dof.focus_object = bpy.data.objects["target"]
        camera.data.dof.aperture_fstop = rng.uniform(1.2, 8)
    bpy.context.scene.camera = camera


def render_scene(seed, out_path, textures):
    import bpy

    rng = random.Random(seed)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    bpy.ops.object.empty_add(location=(rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.3, 1.5)))
    bpy.context.object.name = "target"
    add_ground(rng, textures)
    for index in range(rng.randint(3, 12)):
        add_object(rng, index, textures)
    set_world(rng, textures)
    add_lights(rng)
    add_camera(rng)

    width, height = rng.choice(SIZES)
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.seed = seed
    scene.cycles.samples = rng.choice([16, 32])
    scene.cycles.use_denoising = rng.random() < 0.8
    scene.cycles.filter_width = rng.uniform(1.0, 2.0)
    scene.render.threads_mode = "FIXED"
    scene.render.threads = 1
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = rng.choice(VIEW_TRANSFORMS)
    scene.view_settings.exposure = rng.uniform(-0.7, 0.7)
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "8"
    # Written under a temporary name and renamed when complete: an interrupted render never
    # leaves a truncated frame that a later run would take for a finished one.
    partial = out_path.with_name(f".{out_path.stem}.partial.png")
    scene.render.filepath = str(partial)
    bpy.ops.render.render(write_still=True)
    os.replace(partial, out_path)


def main(argv=None):
    from .renders import scene_engine_arguments

    args = scene_engine_arguments(__doc__.splitlines()[0], "blender", argv)
    if importlib.util.find_spec("bpy") is None:
        sys.exit("error: bpy (Blender as a Python module) is missing: it installs with .[train] (make model)")
    textures = sorted(args.textures.glob("*.png"))
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in range(args.first, args.first + args.count):
        out = args.out / f"blender-{seed}.png"
        if not out.exists():
            render_scene(seed, out, textures)


if __name__ == "__main__":
    main()
