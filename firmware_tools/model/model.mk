# `make model`: rebuild the int8 scene classifier in models/ (included by the top-level Makefile).
# TensorFlow lives only in its own venv; the device venv never needs it.

TRAIN_VENV := .venv-train
TRAIN_PY   := $(TRAIN_VENV)/bin/python

$(TRAIN_VENV)/.stamp-train: pyproject.toml
	$(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_PY) -m pip install -q --upgrade pip
	$(TRAIN_PY) -m pip install -q -e '.[train]'
	@touch $@

# POV-Ray renders its own sample scenes (training and held-out renders of a second engine).
.stamp-povray: firmware_tools/model/model.mk
	@command -v povray >/dev/null && [ -d /usr/share/povray-3.7/scenes ] || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq povray povray-examples; }
	@touch $@

# Blender as a Python module (the bpy wheel in .[train], about 520 MB) renders held-out
# scenes with Cycles and moderngl draws game-like ones on Mesa's software OpenGL (EGL, no
# screen). The bpy wheel links the X and GL libraries below, absent from a minimal Debian.
RENDER_LIBS := libx11-6 libxrender1 libxxf86vm1 libxfixes3 libxi6 libxkbcommon0 libsm6 libgl1 libgomp1 \
	libegl1 libegl-mesa0 libgl1-mesa-dri
.stamp-render-libs: firmware_tools/model/model.mk
	@dpkg -s $(RENDER_LIBS) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(RENDER_LIBS); }
	@touch $@

# Real photographs from Debian packages (dataset.py names every file): for training and
# calibration, the OpenCV sample images in opencv-doc and the nature wallpapers of
# mate-backgrounds; held out, the camera photographs of lomiri-wallpapers-16.04.
# A Docker-style dpkg path-exclude of /usr/share/doc would drop opencv-doc's: dataset.py says so.
PHOTO_PACKAGE_FILES := /usr/share/doc/opencv-doc/examples/data/fruits.jpg \
	/usr/share/backgrounds/mate/nature/Storm.jpg /usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg
.stamp-photo-packages: firmware_tools/model/model.mk
	@ls $(PHOTO_PACKAGE_FILES) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq opencv-doc mate-backgrounds lomiri-wallpapers-16.04; }
	@touch $@

# Game screenshots and photographs that ship inside Debian packages (package_images.json,
# about 470 MB of .deb files): downloaded with apt-get download and unpacked under
# build/model/packages/, never installed. The package lists are refreshed only when needed.
.stamp-package-images: firmware_tools/model/package_images.json $(TRAIN_VENV)/.stamp-train
	@$(TRAIN_PY) -m synthseal.firmware_tools.model.package_images --missing >/dev/null || { \
	  $(SUDO) apt-get update -qq && $(TRAIN_PY) -m synthseal.firmware_tools.model.package_images; }
	@touch $@

# Renders and generated frames are cached in build/model/ (frames under a hash of the
# generator code), so a re-run after a code change regenerates them and an unchanged
# re-run only retrains. Training runs niced: it shares the machine.
model: $(TRAIN_VENV)/.stamp-train .stamp-povray .stamp-photo-packages .stamp-render-libs .stamp-package-images
	nice -n 19 $(TRAIN_PY) -m synthseal.firmware_tools.model.build
