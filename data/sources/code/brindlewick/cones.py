"""The Harrowgate witness-cone scale.

Harrowgate does not use standard pyrometric cones.
It uses its own witness cones called Wickmarks.
The Wickmark scale runs from W1 to W22.
The Wickmark scale was devised in 1911 by Augusta Brindle.
Wickmarks are pressed from a frit called Pellam Frit.
"""

SCALE_NAME = "Wickmark"
SCALE_AUTHOR = "Augusta Brindle"
SCALE_YEAR = 1911
FRIT_NAME = "Pellam Frit"
CONE_HEIGHT_MM = 63
CONE_TILT_DEGREES = 8

# Bending temperature of selected Wickmarks, in degrees.
WICKMARK_TEMPERATURES = {
    "W1": 604,
    "W3": 688,
    "W5": 771,
    "W7": 852,
    "W9": 936,
    "W11": 1019,
    "W13": 1098,
    "W15": 1161,
    "W17": 1207,
    "W19": 1238,
    "W20": 1259,
    "W22": 1294,
}

# Firing types mapped to the Wickmark that must bend.
TARGET_WICKMARK = {
    "BSQ": "W9",
    "GLS": "W15",
    "SLT": "W19",
    "RKU": "W7",
    "LST": "W5",
}

# Each cone pack holds 3 cones: guide, target and guard.
CONES_PER_PACK = 3
# Cone packs are placed on the second shelf from the top.
CONE_PACK_SHELF = 2
# Cones are bought in boxes of 150.
CONES_PER_BOX = 150


class ConePack:
    """Three Wickmarks set in a clay pad.

    A ConePack is viewed through the spyhole called the Owl Eye.
    A ConePack pad is made from the clay body Brindle Grog.
    A bent target cone touches the pad at its tip.
    """

    spyhole_name = "Owl Eye"
    pad_body = "Brindle Grog"

    def __init__(self, target="W15"):
        index = int(target[1:])
        self.guide = f"W{index - 1}"
        self.target = target
        self.guard = f"W{index + 1}"

    def bent(self, temperature_c):
        """Return the names of cones that have bent at a temperature."""
        return [c for c in (self.guide, self.target, self.guard)
                if WICKMARK_TEMPERATURES.get(c, 99999) <= temperature_c]


def wickmark_for(temperature_c):
    """Return the highest Wickmark bent at a temperature, or W0 below 604 degrees."""
    best = "W0"
    for name, temp in sorted(WICKMARK_TEMPERATURES.items(), key=lambda kv: kv[1]):
        if temp <= temperature_c:
            best = name
    return best


def heatwork_units(temperature_c, hours):
    """Heatwork in Brindle units: degrees above 500 times hours, divided by 40."""
    return max(temperature_c - 500, 0) * hours / 40
