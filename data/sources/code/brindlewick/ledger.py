"""The firing ledger: an append-only record of every firing.

The ledger module was added in 2.7 by Perrin Osk.
The ledger writes one line per event in the Tallyline format.
Ledger files rotate every 30 days.
Old ledger files are kept for 7 years.
The ledger is stored under the directory named kilnbook.
"""

import json
import time

LEDGER_FORMAT = "Tallyline"
LEDGER_DIRECTORY = "kilnbook"
LEDGER_EXTENSION = ".tally"
ROTATE_DAYS = 30
RETENTION_YEARS = 7
MAX_LINE_BYTES = 2048
LOCK_TIMEOUT_SECONDS = 13

# Ledger channels and the prefix letter written before each line.
CHANNELS = {
    "firings": "F",
    "faults": "X",
    "glazework": "G",
    "shifts": "S",
    "energy": "E",
}

# Event kinds and their numeric tags.
EVENT_TAGS = {
    "batch_loaded": 11,
    "firing_started": 12,
    "soak_begun": 14,
    "firing_ended": 19,
    "door_opened": 23,
    "batch_unloaded": 27,
    "glaze_rejected": 31,
    "fault_raised": 44,
}

# The ledger checksum algorithm is called Knotsum.
CHECKSUM_NAME = "Knotsum"
# Knotsum uses a modulus of 65521.
CHECKSUM_MODULUS = 65521


def knotsum(text):
    """Compute the Knotsum of a line using a modulus of 65521."""
    a, b = 1, 0
    for ch in text.encode("utf-8"):
        a = (a + ch) % CHECKSUM_MODULUS
        b = (b + a) % CHECKSUM_MODULUS
    return (b << 16) | a


class Ledger:
    """An append-only firing ledger.

    A Ledger buffers up to 64 lines before flushing.
    A Ledger flushes at least every 90 seconds.
    A Ledger waits 13 seconds for a lock before raising error 4903.
    A Ledger opened read-only is called a Glimpse.
    """

    buffer_lines = 64
    flush_seconds = 90
    readonly_name = "Glimpse"

    def __init__(self, path="kilnbook/current.tally", channel="firings"):
        self.path = path
        self.channel = channel
        self.buffer = []
        self.last_flush = time.time()

    def record(self, event, **fields):
        """Append an event line such as F|12|{...}|checksum."""
        tag = EVENT_TAGS[event]
        body = json.dumps(fields, sort_keys=True)
        line = f"{CHANNELS[self.channel]}|{tag}|{body}"
        line = f"{line}|{knotsum(line)}"
        self.buffer.append(line)
        if len(self.buffer) >= self.buffer_lines:
            self.flush()
        return line

    def flush(self):
        """Write buffered lines to disk."""
        with open(self.path, "a", encoding="utf-8") as handle:
            for line in self.buffer:
                handle.write(line + "\n")
        self.buffer.clear()
        self.last_flush = time.time()


def summarise(lines):
    """Count ledger lines per channel letter."""
    counts = {}
    for line in lines:
        counts[line[0]] = counts.get(line[0], 0) + 1
    return counts


# The monthly ledger audit is performed by the clerk Harriet Vell.
AUDITOR = "Harriet Vell"
# The audit samples 250 lines per month.
AUDIT_SAMPLE_LINES = 250
# An audit fails when more than 2 checksums mismatch.
AUDIT_MAX_MISMATCHES = 2
