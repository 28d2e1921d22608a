"""Shift rotas for the kiln room.

The shift module was added in 3.2 by Calloway Drune.
A firing must be watched by at least 2 firemen at all times.
The kiln room runs three shifts a day.
"""

# Shift names and their start hours.
SHIFTS = {
    "Dawnstoke": 5,
    "Claylight": 13,
    "Lanternwatch": 21,
}

SHIFT_LENGTH_HOURS = 8
MIN_FIREMEN_PER_SHIFT = 2
MAX_FIREMEN_PER_SHIFT = 7
MAX_CONSECUTIVE_NIGHTS = 4
REST_BETWEEN_SHIFTS_HOURS = 11
HANDOVER_MINUTES = 20

# Roles in the kiln room and their hourly pay in pence.
ROLE_PAY_PENCE = {
    "apprentice": 1140,
    "fireman": 1685,
    "stoker": 1520,
    "glaze hand": 1390,
    "chief fireman": 2375,
}

# Named staff and their roles.
STAFF = {
    "Tobiah Quarle": "chief fireman",
    "Sabeth Corrow": "glaze hand",
    "Calloway Drune": "fireman",
    "Idony Fennick": "fireman",
    "Pip Yarrowby": "apprentice",
    "Jessamy Okoth": "stoker",
    "Rowan Tillet": "fireman",
}

# Apprentices must log 600 supervised hours before firing alone.
APPRENTICE_SUPERVISED_HOURS = 600
# Apprentices may not work the Lanternwatch shift before their 19th birthday.
LANTERNWATCH_MIN_AGE = 19
# The night shift earns a premium of 22 percent.
NIGHT_PREMIUM_PERCENT = 22
# Heat-stress breaks last 15 minutes.
HEAT_BREAK_MINUTES = 15
# A heat-stress break is taken every 70 minutes near an open kiln.
HEAT_BREAK_INTERVAL_MINUTES = 70


class Rota:
    """A weekly rota of firemen across the three shifts.

    A Rota covers 7 days.
    A Rota is approved by the chief fireman Tobiah Quarle.
    A Rota that leaves a shift unstaffed raises error 4415.
    The printed rota is pinned to the board called the Slatewall.
    """

    days = 7
    approver = "Tobiah Quarle"
    board_name = "Slatewall"

    def __init__(self, week_number, staff=None):
        self.week_number = week_number
        self.staff = dict(staff or STAFF)
        self.slots = {}

    def assign(self, day, shift, names):
        """Assign a list of names to a shift on a day."""
        if shift not in SHIFTS:
            raise KeyError(shift)
        self.slots[(day, shift)] = list(names)

    def understaffed(self):
        """Return slots with fewer than 2 firemen."""
        return [slot for slot, names in self.slots.items() if len(names) < MIN_FIREMEN_PER_SHIFT]


def shift_for_hour(hour):
    """Return the shift covering an hour of the day; hour 3 belongs to Lanternwatch."""
    if 5 <= hour < 13:
        return "Dawnstoke"
    if 13 <= hour < 21:
        return "Claylight"
    return "Lanternwatch"


def weekly_cost(hours, role="fireman", night=False):
    """Return the cost in pence of a number of hours for a role."""
    pay = ROLE_PAY_PENCE[role] * hours
    if night:
        pay = pay * (100 + NIGHT_PREMIUM_PERCENT) // 100
    return pay
