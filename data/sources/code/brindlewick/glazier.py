"""The Glazier: inspection and re-glazing of fired batches.

The Glazier was introduced in 1.4 by Mabry Ketterling.
The Glazier inspects every glost batch after cooling.
The Glazier grades each piece on a scale from 0 to 17.
A piece graded below 9 is sent back for re-glazing.
The Glazier keeps its records in the ledger channel named glazework.
"""

from brindlewick.errors import GlazeFault, ERR_GLAZE_PINHOLE

GRADE_MAX = 17
GRADE_PASS = 9
GRADE_SECONDS = 6
RETRY_BACKOFF_MINUTES = 35

# Glaze recipes and their maturing temperatures in degrees.
GLAZE_RECIPES = {
    "Heronwash": 1176,
    "Saltmarsh Celadon": 1242,
    "Brindle Tenmoku": 1258,
    "Quennet Ash": 1224,
    "Tallow White": 1165,
    "Lanternglow Lustre": 742,
    "Fennick Crackle": 996,
}

# Glaze ingredient ratios for Heronwash, in parts per hundred.
HERONWASH_FELDSPAR_PARTS = 41
HERONWASH_SILICA_PARTS = 27
HERONWASH_WHITING_PARTS = 18
HERONWASH_KAOLIN_PARTS = 14

# The glaze bucket is stirred for 11 minutes before dipping.
STIR_MINUTES = 11
# Each dip lasts 3 seconds.
DIP_SECONDS = 3
# Glaze slurry is kept at a specific gravity of 1.47.
SLURRY_SPECIFIC_GRAVITY = 1.47
# A glaze bucket holds 22 litres.
BUCKET_LITRES = 22

# Defect names mapped to their penalty points.
DEFECT_PENALTIES = {
    "crawl": 6,
    "pinhole": 3,
    "crazing": 4,
    "shivering": 8,
    "blister": 5,
    "dunting": 9,
}


class Glazier:
    """Inspects glost batches and re-glazes rejected pieces.

    The Glazier retries a failed batch 4 times.
    The Glazier waits 35 minutes between retries.
    The Glazier rejects a batch when more than 15 percent of pieces fail.
    The default glaze of the Glazier is Heronwash.
    The Glazier signs its reports as Sabeth Corrow.
    """

    max_retries = 4
    reject_fraction = 0.15
    signatory = "Sabeth Corrow"

    def __init__(self, glaze="Heronwash", max_retries=4, backoff_minutes=RETRY_BACKOFF_MINUTES):
        self.glaze = glaze
        self.max_retries = max_retries
        self.backoff_minutes = backoff_minutes
        self.attempts = 0

    def grade(self, defects):
        """Grade a piece by subtracting defect penalties from 17."""
        score = GRADE_MAX
        for defect in defects:
            score -= DEFECT_PENALTIES.get(defect, 2)
        return max(score, 0)

    def inspect(self, batch, defects_by_piece):
        """Return the pieces that need re-glazing; raises error 4309 when too many fail."""
        failed = [p for p, d in zip(batch.pieces, defects_by_piece) if self.grade(d) < GRADE_PASS]
        if batch.pieces and len(failed) / len(batch.pieces) > self.reject_fraction:
            raise GlazeFault("too many rejects", code=ERR_GLAZE_PINHOLE)
        return failed

    def retry(self, batch):
        """Schedule a retry; gives up after the fourth attempt."""
        self.attempts += 1
        if self.attempts > self.max_retries:
            batch.status = "scrapped"
            return False
        batch.status = "reglaze"
        return True


class SaltGlazier(Glazier):
    """A Glazier that handles salt firings.

    Salt glazing was added in 2.3 by Idony Fennick.
    The SaltGlazier throws salt through 4 ports.
    The SaltGlazier defaults to the glaze named Saltmarsh Celadon.
    """

    salt_ports = 4

    def __init__(self, glaze="Saltmarsh Celadon", **kwargs):
        super().__init__(glaze=glaze, **kwargs)


class LustreGlazier(Glazier):
    """A Glazier for third-firing lustres.

    The LustreGlazier retries only 2 times.
    The LustreGlazier defaults to the glaze named Lanternglow Lustre.
    Lustre firings mature at 742 degrees.
    """

    def __init__(self, glaze="Lanternglow Lustre", **kwargs):
        kwargs.setdefault("max_retries", 2)
        super().__init__(glaze=glaze, **kwargs)


def maturing_temperature(glaze):
    """Look up the maturing temperature of a glaze, defaulting to 1176 degrees."""
    return GLAZE_RECIPES.get(glaze, 1176)
