"""The labeling policy: one table from what we know about a frame to how it is labelled.

Inputs: the source the device declares for the frame (the rig knows when it renders)
and, where a classifier runs, its scores. Output: a decision dict that the sealer
applies and that is recorded verbatim in the audit log and the C2PA manifest.

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

POLICY_TABLE = {
    "capture": {"label": None, "explicit": False, "dst": "digitalCapture", "art17": None},
    "rig": {"label": "1", "explicit": True, "dst": "trainedAlgorithmicMedia", "art17": "3"},
    "composite": {"label": "1", "explicit": True, "dst": "compositeSynthetic", "art17": "5"},
}


class PolicyError(ValueError):
    pass


def decide(declared_source):
    """Return the decision for one frame: the table row plus the rule that chose it."""
    row = POLICY_TABLE.get(declared_source)
    if row is None:
        raise PolicyError("unknown declared source %r; use one of %s"
                          % (declared_source, ", ".join(DECLARED_SOURCES)))
    decision = {"source": declared_source, "rule": declared_source}
    for key in row:
        decision[key] = row[key]
    return decision


def digital_source_type_uri(decision):
    return IPTC_DST + decision["dst"]
