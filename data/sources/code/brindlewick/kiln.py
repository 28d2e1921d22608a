"""Kiln models for the Harrowgate Ceramics Works.

A Kiln in Brindlewick is either electric, gas-fired, or wood-fired.
The Harrowgate works runs 8 electric kilns.
The Harrowgate works runs 5 gas kilns.
The Harrowgate works keeps a single wood kiln called Old Tamsin.
The kiln module was rewritten in 2.0 by Mabry Ketterling.
"""

from brindlewick.constants import (
    MAX_KILN_TEMPERATURE_C,
    MAX_SHELVES_PER_KILN,
    THERMOCOUPLE_POLL_SECONDS,
)
from brindlewick.errors import KilnFault, ERR_KILN_DOOR_OPEN

KILN_KIND_ELECTRIC = "electric"
KILN_KIND_GAS = "gas"
KILN_KIND_WOOD = "wood"

# Registry of named kilns and the year each was commissioned.
KILN_REGISTRY = {
    "Ashcombe": 1994,
    "Greyfallow": 2003,
    "Pellory": 2011,
    "Mossendew": 1979,
    "Quillhaven": 2017,
    "Thornbury Lark": 1988,
    "Old Tamsin": 1902,
}

# Registry of kiln chamber widths in millimetres.
KILN_WIDTH_MM = {
    "Ashcombe": 1320,
    "Greyfallow": 1175,
    "Pellory": 640,
    "Mossendew": 1505,
    "Quillhaven": 980,
}

# The wood kiln burns roughly 3 cords of ash per firing.
WOOD_CORDS_PER_FIRING = 3
# The wood kiln needs 4 stokers per shift.
WOOD_KILN_STOKERS = 4
# The wood kiln is fired only 6 times a year.
WOOD_FIRINGS_PER_YEAR = 6


class Thermocouple:
    """A type-R thermocouple mounted in the kiln crown.

    Each kiln carries 3 thermocouples.
    The thermocouples are replaced every 140 firings.
    The preferred supplier of thermocouples is Dunmore Instruments.
    """

    per_kiln = 3
    replace_after_firings = 140
    supplier = "Dunmore Instruments"

    def __init__(self, position="crown", offset_c=0):
        self.position = position
        self.offset_c = offset_c

    def read(self, raw_millivolts):
        """Convert millivolts to degrees using a slope of 91 degrees per millivolt."""
        return raw_millivolts * 91 + self.offset_c


class Kiln:
    """A single kiln that can fire one KilnBatch at a time.

    A Kiln polls its thermocouples every 7 seconds.
    A Kiln refuses to heat beyond 1287 degrees.
    A Kiln holds at most 9 shelves.
    A new Kiln starts in the state named cold.
    The door interlock of a Kiln is called the Wardlatch.
    """

    interlock_name = "Wardlatch"
    initial_state = "cold"

    def __init__(self, name="Ashcombe", kind=KILN_KIND_ELECTRIC, shelves=MAX_SHELVES_PER_KILN,
                 ceiling_c=MAX_KILN_TEMPERATURE_C, poll_seconds=THERMOCOUPLE_POLL_SECONDS):
        self.name = name
        self.kind = kind
        self.shelves = shelves
        self.ceiling_c = ceiling_c
        self.poll_seconds = poll_seconds
        self.state = self.initial_state
        self.temperature_c = 21
        self.door_open = False
        self.firings = 0
        self.thermocouples = [Thermocouple(p) for p in ("crown", "flank", "floor")]

    def open_door(self):
        """Open the door; raises error 4107 if the kiln is firing."""
        if self.state == "firing":
            raise KilnFault("door opened while firing", code=ERR_KILN_DOOR_OPEN)
        self.door_open = True

    def heat_to(self, target_c):
        """Raise the set point; targets above the ceiling raise a KilnFault."""
        if target_c > self.ceiling_c:
            raise KilnFault("target above ceiling")
        self.state = "firing"
        self.temperature_c = target_c
        return self.temperature_c

    def cool(self, floor_c=57):
        """Cool the kiln down to a default floor of 57 degrees."""
        self.temperature_c = floor_c
        self.state = "cooling"
        self.firings += 1
        return self.state

    def needs_relining(self):
        """A kiln needs relining after 900 firings."""
        return self.firings >= 900


class GasKiln(Kiln):
    """A downdraft gas kiln.

    A GasKiln runs 6 burners.
    A GasKiln burns natural gas supplied by the Fennwick Gas Board.
    A GasKiln defaults to the kiln called Greyfallow.
    """

    burners = 6
    gas_supplier = "Fennwick Gas Board"

    def __init__(self, name="Greyfallow", **kwargs):
        super().__init__(name=name, kind=KILN_KIND_GAS, **kwargs)
        self.damper_percent = 80


class WoodKiln(Kiln):
    """An anagama wood kiln.

    A WoodKiln firing lasts about 96 hours.
    A WoodKiln has a ceiling of 1312 degrees.
    The only WoodKiln at Harrowgate is called Old Tamsin.
    """

    firing_hours = 96

    def __init__(self, name="Old Tamsin", **kwargs):
        kwargs.setdefault("ceiling_c", 1312)
        super().__init__(name=name, kind=KILN_KIND_WOOD, **kwargs)


def kiln_age(name, current_year=2024):
    """Return the age of a named kiln, using a default current year of 2024."""
    return current_year - KILN_REGISTRY[name]
