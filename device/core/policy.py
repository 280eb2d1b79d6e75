"""The labeling policy: one table from what we know about a frame to how it is labelled.

Inputs: the source the device declares for the frame (the rig knows when it renders)
and, where a classifier runs, its scores. Output: a decision dict that the sealer
applies and that is recorded verbatim in the audit log and the C2PA manifest.

The classifier is a safety net for frames declared as real captures: a declared
synthetic source keeps its row whatever the model says; an undeclared capture that the
model finds synthetic or a screen recapture above the threshold is labelled
"3" (suspected, GB 45438 Annex E); a capture the model could not classify is labelled
"2" (possibly), never as real. Neither draws the visible label: a false positive must
not stamp "AI生成" on a real photograph, while the metadata label and the log keep it
traceable.

Each row says:
    label     GB 45438 Annex E `Label` value, or None: no implicit AIGC label (a real
              capture is not AI-generated content and must not be labelled as such)
    explicit  whether the visible "AI生成" label is drawn on the image
    dst       the IPTC digitalSourceType of the C2PA `c2pa.created` action
    art17     the Art. 17 category of the Deep Synthesis Provisions that applies
              ("3": face generation/swap/manipulation, incl. virtual humans;
              "5": other generation or significant change of content), or None

README.md documents the same table for vendors; tests/test_policy.py holds them equal.
"""

IPTC_DST = "http://cv.iptc.org/newscodes/digitalsourcetype/"

SOURCE_CAPTURE = "capture"      # the camera sensor, pointing at the world
SOURCE_RIG_RENDER = "rig"       # the rig's own render or generator output (avatar, virtual human)
SOURCE_RIG_COMPOSITE = "composite"  # a real capture with synthetic elements composited in
DECLARED_SOURCES = (SOURCE_CAPTURE, SOURCE_RIG_RENDER, SOURCE_RIG_COMPOSITE)

# Where a frame came from. Only the agent's own camera can vouch that pixels are a real
# capture; whatever a local client hands in (a rig, a generator, any program) is sealed
# as synthetic, so the agent is no oracle for passing foreign content off as genuine.
ORIGIN_CAMERA = "camera"
ORIGIN_INTAKE = "intake"
ORIGIN_KINDS = (ORIGIN_CAMERA, ORIGIN_INTAKE)
INTAKE_SOURCES = (SOURCE_RIG_RENDER, SOURCE_RIG_COMPOSITE)

# Rule name -> row. The first three rules are the declared sources themselves.
POLICY_TABLE = {
    "capture": {"label": None, "explicit": False, "dst": "digitalCapture", "art17": None},
    "rig": {"label": "1", "explicit": True, "dst": "trainedAlgorithmicMedia", "art17": "3"},
    "composite": {"label": "1", "explicit": True, "dst": "compositeSynthetic", "art17": "5"},
    # Undeclared capture, classifier verdicts (a camera filming an LED volume or a
    # rendered scene records a virtual scene: Art. 17 (4), immersive realistic scenes).
    "capture-synthetic": {"label": "3", "explicit": False, "dst": "virtualRecording", "art17": "4"},
    "capture-screen": {"label": "3", "explicit": False, "dst": "screenCapture", "art17": None},
    # The classifier failed on this frame: fail closed, never "real".
    "capture-unclassified": {"label": "2", "explicit": False, "dst": "digitalCapture", "art17": None},
}
# Calibrated with the shipped model: the lowest threshold that flags at most 1 % of the
# calibration photographs (models/MODEL_CARD.md, "Calibration"); a new model brings its own.
DEFAULT_THRESHOLD = 0.63
# Classifier class -> the rule it triggers for an undeclared capture.
CLASS_RULES = {"synthetic": "capture-synthetic", "screen": "capture-screen"}


class PolicyError(ValueError):
    pass


def check_threshold(threshold):
    """Raise PolicyError unless threshold is a number in (0, 1]: a threshold above 1
    (or not a number) would let every undeclared capture pass as real."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise PolicyError("classifier threshold must be in (0, 1], got %r" % (threshold,))


def missing_classes(class_names):
    """The classifier classes the policy acts on that class_names lacks: a renamed class
    would otherwise read as score 0, i.e. as real."""
    return [name for name in CLASS_RULES if name not in class_names]


def check_origin(declared_source, origin_kind):
    """Raise PolicyError unless a frame of this origin may be declared this source."""
    if origin_kind not in ORIGIN_KINDS:
        raise PolicyError("unknown frame origin %r; use one of %s" % (origin_kind, ", ".join(ORIGIN_KINDS)))
    if declared_source not in DECLARED_SOURCES:
        raise PolicyError("unknown declared source %r; use one of %s"
                          % (declared_source, ", ".join(DECLARED_SOURCES)))
    if origin_kind == ORIGIN_INTAKE and declared_source not in INTAKE_SOURCES:
        raise PolicyError("frames handed to the agent are sealed as synthetic only: declare %s, not %r "
                          "(only the agent's own camera makes real captures)"
                          % (" or ".join(INTAKE_SOURCES), declared_source))


def decide(declared_source, scores=None, threshold=DEFAULT_THRESHOLD, classifier_error=None):
    """Return the decision for one frame: the chosen row, the rule that chose it, and
    the classifier's scores (or error) when a classifier ran.

    scores: {class name: probability} or None when no classifier is configured;
    classifier_error: a one-line reason when the classifier was configured but failed.
    """
    if declared_source not in DECLARED_SOURCES:
        raise PolicyError("unknown declared source %r; use one of %s"
                          % (declared_source, ", ".join(DECLARED_SOURCES)))
    if scores is not None:
        check_threshold(threshold)
        missing = missing_classes(scores)
        if missing:
            raise PolicyError("classifier scores lack the policy's classes %s" % missing)
        # Decide on the scores as recorded, so that anyone can re-derive the rule from the record.
        scores = dict((k, round(v, 4)) for k, v in scores.items())
    rule = declared_source
    if declared_source == SOURCE_CAPTURE:
        if classifier_error is not None:
            rule = "capture-unclassified"
        elif scores is not None:
            best = None
            for name in CLASS_RULES:
                score = scores[name]
                if score >= threshold and (best is None or score > scores[best]):
                    best = name
            if best is not None:
                rule = CLASS_RULES[best]
    decision = {"source": declared_source, "rule": rule}
    row = POLICY_TABLE[rule]
    for key in row:
        decision[key] = row[key]
    if scores is not None:
        decision["scores"] = scores
        decision["threshold"] = threshold
    if classifier_error is not None:
        decision["classifier_error"] = classifier_error
    return decision


def digital_source_type_uri(decision):
    return IPTC_DST + decision["dst"]
