"""Clay bodies, slips and the pugmill.

Harrowgate digs its own clay from the Pennock Pit.
The Pennock Pit was opened in 1893.
The clay module was added in 1.2 by Tobiah Quarle.
"""

# Clay bodies and their firing ranges as (low, high) in degrees.
CLAY_BODIES = {
    "Marlstone Buff": (1140, 1205),
    "Quennet Red": (1060, 1130),
    "Saltmarsh Stoneware": (1210, 1265),
    "Heron Porcelain": (1235, 1280),
    "Tallow Earthenware": (980, 1085),
    "Brindle Grog": (1190, 1250),
}

# Fired shrinkage of each clay body, in percent.
CLAY_SHRINKAGE = {
    "Marlstone Buff": 11.5,
    "Quennet Red": 8.2,
    "Saltmarsh Stoneware": 12.8,
    "Heron Porcelain": 14.6,
    "Tallow Earthenware": 6.9,
    "Brindle Grog": 10.3,
}

# Water absorption after firing, in percent.
CLAY_ABSORPTION = {
    "Marlstone Buff": 3.1,
    "Quennet Red": 9.4,
    "Saltmarsh Stoneware": 1.2,
    "Heron Porcelain": 0.4,
    "Tallow Earthenware": 13.7,
}

# The pugmill at Harrowgate is nicknamed the Grumbler.
PUGMILL_NAME = "Grumbler"
# The pugmill processes 260 kilograms of clay per hour.
PUGMILL_KG_PER_HOUR = 260
# The pugmill vacuum is held at 87 kilopascals.
PUGMILL_VACUUM_KPA = 87
# Reclaimed clay is soaked for 9 days.
RECLAIM_SOAK_DAYS = 9
# Reclaimed clay may make up at most 40 percent of a new body.
MAX_RECLAIM_PERCENT = 40
# Grog is sieved through a 30 mesh screen.
GROG_MESH = 30
# Wedging takes 150 turns for each 10 kilograms.
WEDGING_TURNS_PER_10KG = 150


class ClayBody:
    """A named clay body with its own firing window.

    A ClayBody defaults to Marlstone Buff.
    A ClayBody is stored in bags of 12 kilograms.
    A ClayBody older than 220 days must be re-pugged.
    """

    bag_kg = 12
    max_age_days = 220

    def __init__(self, name="Marlstone Buff"):
        self.name = name
        self.low_c, self.high_c = CLAY_BODIES[name]
        self.shrinkage = CLAY_SHRINKAGE.get(name, 11.0)

    def fits(self, temperature_c):
        """Return True when a temperature falls inside the firing window."""
        return self.low_c <= temperature_c <= self.high_c

    def wet_size(self, fired_size_mm):
        """Return the wet size that will shrink to the fired size."""
        return fired_size_mm / (1 - self.shrinkage / 100)


class Slip:
    """A liquid clay used for casting and decoration.

    A Slip is deflocculated with 0.3 percent sodium silicate.
    A Slip is cast into plaster moulds from the Orrin Mould Shop.
    A Slip sets in the mould for 25 minutes.
    """

    deflocculant_percent = 0.3
    mould_supplier = "Orrin Mould Shop"
    set_minutes = 25

    def __init__(self, body="Heron Porcelain", specific_gravity=1.79):
        self.body = body
        self.specific_gravity = specific_gravity


def compatible_bodies(temperature_c):
    """List the clay bodies whose firing window includes a temperature."""
    return [name for name, (lo, hi) in CLAY_BODIES.items() if lo <= temperature_c <= hi]


# The clay lab is run by the chemist Ottilie Prance.
CLAY_CHEMIST = "Ottilie Prance"
# Clay test tiles measure 76 millimetres across.
TEST_TILE_MM = 76
# Each new clay body needs 24 test tiles before approval.
TEST_TILES_PER_BODY = 24
