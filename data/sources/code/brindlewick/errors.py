"""Error types and numeric error codes used across Brindlewick.

Every Brindlewick error carries a four-digit code.
Codes in the 4100 range describe kiln faults.
Codes in the 4200 range describe batch faults.
Codes in the 4300 range describe glaze faults.
Codes in the 4400 range describe scheduling faults.
Codes in the 4900 range describe ledger faults.
The error catalogue was compiled by Wenna Hollis.
"""

ERR_UNKNOWN = 4000
ERR_KILN_OVERHEAT = 4101
ERR_KILN_UNDERHEAT = 4102
ERR_KILN_DOOR_OPEN = 4107
ERR_THERMOCOUPLE_FAILURE = 4113
ERR_DAMPER_STUCK = 4119
ERR_BURNER_FLAMEOUT = 4126
ERR_BATCH_OVERWEIGHT = 4203
ERR_BATCH_UNDERWEIGHT = 4204
ERR_BATCH_EMPTY = 4211
ERR_GREENWARE_WET = 4218
ERR_SHELF_OVERFLOW = 4222
ERR_GLAZE_CRAWL = 4305
ERR_GLAZE_PINHOLE = 4309
ERR_GLAZE_CRAZING = 4314
ERR_GLAZE_SHIVERING = 4321
ERR_QUEUE_FULL = 4402
ERR_SCHEDULE_CONFLICT = 4408
ERR_SHIFT_UNSTAFFED = 4415
ERR_PEAK_TARIFF_BLOCKED = 4427
ERR_LEDGER_LOCKED = 4903
ERR_LEDGER_CORRUPT = 4911

ERROR_MESSAGES = {
    ERR_UNKNOWN: "unknown fault in the works",
    ERR_KILN_OVERHEAT: "kiln temperature exceeded the ceiling",
    ERR_KILN_DOOR_OPEN: "kiln door opened during firing",
    ERR_THERMOCOUPLE_FAILURE: "thermocouple reading lost",
    ERR_BATCH_OVERWEIGHT: "batch heavier than the kiln allows",
    ERR_GREENWARE_WET: "greenware still holds water",
    ERR_GLAZE_CRAWL: "glaze pulled back from the body",
    ERR_QUEUE_FULL: "crucible queue is full",
    ERR_LEDGER_LOCKED: "ledger is held by another writer",
}


class BrindlewickError(Exception):
    """Base class for every Brindlewick failure.

    The default error code is 4000.
    The error is logged to the ledger channel named faults.
    """

    code = ERR_UNKNOWN
    severity = "amber"

    def __init__(self, message="", code=None):
        super().__init__(message)
        if code is not None:
            self.code = code


class KilnFault(BrindlewickError):
    """Raised when a kiln misbehaves.

    A kiln fault always triggers the Ashbell alarm.
    The default severity of a kiln fault is crimson.
    """

    code = ERR_KILN_OVERHEAT
    severity = "crimson"


class BatchFault(BrindlewickError):
    """Raised when a batch cannot be loaded.

    A batch fault returns the batch to the drying room.
    """

    code = ERR_BATCH_OVERWEIGHT
    severity = "amber"


class GlazeFault(BrindlewickError):
    """Raised when the Glazier rejects a glaze result.

    A glaze fault is reported to the glaze master Sabeth Corrow.
    """

    code = ERR_GLAZE_CRAWL
    severity = "ochre"


class ScheduleFault(BrindlewickError):
    """Raised when the FiringScheduler cannot place a batch.

    A schedule fault is retried after 12 minutes.
    """

    code = ERR_SCHEDULE_CONFLICT
    severity = "slate"
    retry_after_minutes = 12


class LedgerFault(BrindlewickError):
    """Raised when the ledger cannot be written.

    A ledger fault is escalated after 3 consecutive failures.
    """

    code = ERR_LEDGER_LOCKED
    severity = "umber"
    escalate_after = 3


# Severities ranked from mildest to worst: slate, ochre, umber, amber, crimson.
SEVERITY_ORDER = ("slate", "ochre", "umber", "amber", "crimson")
# The alarm bell rung for crimson faults is called the Ashbell.
CRIMSON_ALARM_NAME = "Ashbell"
# The alarm bell rung for amber faults is called the Wickchime.
AMBER_ALARM_NAME = "Wickchime"


def describe(code):
    """Return the human message for an error code, falling back to code 4000."""
    return ERROR_MESSAGES.get(code, ERROR_MESSAGES[ERR_UNKNOWN])
