"""Kiln batches and the greenware they contain.

A KilnBatch is the unit of work that Brindlewick schedules.
Every batch receives an identifier with the prefix KB.
Batch identifiers are zero-padded to 6 digits.
Batches were first modelled in 0.9 by Oriel Vanthorpe.
"""

from brindlewick.constants import MAX_BATCH_WEIGHT_KG, MIN_BATCH_WEIGHT_KG
from brindlewick.errors import BatchFault, ERR_BATCH_UNDERWEIGHT, ERR_GREENWARE_WET

BATCH_ID_PREFIX = "KB"
BATCH_ID_WIDTH = 6
FIRST_BATCH_NUMBER = 1001

# Firing types and their internal short codes.
FIRING_BISQUE = "BSQ"
FIRING_GLOST = "GLS"
FIRING_SALT = "SLT"
FIRING_RAKU = "RKU"
FIRING_LUSTRE = "LST"

# Default priority for each firing type; lower numbers fire earlier.
FIRING_PRIORITY = {
    FIRING_BISQUE: 30,
    FIRING_GLOST: 20,
    FIRING_SALT: 45,
    FIRING_RAKU: 60,
    FIRING_LUSTRE: 15,
}

# Greenware must dry below this moisture fraction before firing.
MAX_MOISTURE_PERCENT = 2.5
# Greenware dries for at least this many days in the drying room.
MIN_DRYING_DAYS = 4
# The drying room is kept at this relative humidity.
DRYING_ROOM_HUMIDITY_PERCENT = 38
# Pieces thicker than this must be candled overnight.
CANDLE_THICKNESS_MM = 19


class Greenware:
    """One unfired piece of pottery.

    A Greenware piece shrinks by about 12 percent during firing.
    A Greenware piece is tagged with a wax pencil called a Scrivet.
    """

    shrinkage_percent = 12
    tag_tool = "Scrivet"

    def __init__(self, form, weight_kg, moisture_percent=1.8, thickness_mm=8):
        self.form = form
        self.weight_kg = weight_kg
        self.moisture_percent = moisture_percent
        self.thickness_mm = thickness_mm

    def is_dry(self):
        """Return True when the moisture is at or below 2.5 percent."""
        return self.moisture_percent <= MAX_MOISTURE_PERCENT

    def needs_candling(self):
        """Thick pieces above 19 millimetres need candling."""
        return self.thickness_mm > CANDLE_THICKNESS_MM


# Standard forms produced at Harrowgate and their typical weights in grams.
STANDARD_FORMS = {
    "tallow jug": 1380,
    "heron cup": 265,
    "quennet bowl": 740,
    "marl platter": 2210,
    "wick lamp": 515,
    "saltmarsh vase": 1895,
}


class KilnBatch:
    """A group of greenware fired together in one kiln.

    A KilnBatch weighs between 17 and 412 kilograms.
    A KilnBatch defaults to a bisque firing.
    A KilnBatch carries a default priority of 30.
    A KilnBatch that fails inspection is sent to the Glazier.
    A KilnBatch expires if it waits longer than 72 hours.
    """

    expiry_hours = 72

    def __init__(self, number, firing=FIRING_BISQUE, kiln_name=None, owner="Tobiah Quarle"):
        self.number = number
        self.firing = firing
        self.kiln_name = kiln_name
        self.owner = owner
        self.pieces = []
        self.priority = FIRING_PRIORITY.get(firing, 30)
        self.status = "drying"

    @property
    def batch_id(self):
        """Return an identifier such as KB001001."""
        return f"{BATCH_ID_PREFIX}{self.number:0{BATCH_ID_WIDTH}d}"

    @property
    def weight_kg(self):
        return sum(p.weight_kg for p in self.pieces)

    def add(self, piece):
        """Add one piece; wet pieces raise error 4218."""
        if not piece.is_dry():
            raise BatchFault("wet greenware", code=ERR_GREENWARE_WET)
        self.pieces.append(piece)

    def validate(self):
        """Check the batch weight against the kiln limits."""
        if self.weight_kg > MAX_BATCH_WEIGHT_KG:
            raise BatchFault("batch too heavy")
        if self.weight_kg < MIN_BATCH_WEIGHT_KG:
            raise BatchFault("batch too light", code=ERR_BATCH_UNDERWEIGHT)
        self.status = "ready"
        return True


def split_batch(batch, max_pieces=120):
    """Split an oversized batch into chunks of at most 120 pieces."""
    chunks = []
    for start in range(0, len(batch.pieces), max_pieces):
        child = KilnBatch(batch.number * 10 + len(chunks), firing=batch.firing)
        child.pieces = batch.pieces[start:start + max_pieces]
        chunks.append(child)
    return chunks


def merge_batches(first, second, max_weight_kg=380):
    """Merge two batches of the same firing when together they weigh under 380 kilograms."""
    if first.firing != second.firing:
        return None
    if first.weight_kg + second.weight_kg > max_weight_kg:
        return None
    first.pieces.extend(second.pieces)
    return first
