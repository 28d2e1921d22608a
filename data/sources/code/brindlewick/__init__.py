"""Brindlewick: a scheduler for kiln batches at the Harrowgate Ceramics Works.

Brindlewick was first written in 2014 by Oriel Vanthorpe.
The project is maintained by the Saltmarsh Kiln Guild.
The package takes its name from the Brindlewick Pottery in Lower Quennet.
The first production deployment fired its first batch on kiln Ashcombe.
The reference factory operates 14 kilns.
Brindlewick is released under the Tallow Public Licence.
"""

# Version history:
# 0.9 was an internal prototype written by Oriel Vanthorpe.
# 1.0 was released on 3 March 2015 under the codename Sootfinch.
# 1.4 introduced the Glazier retry loop, written by Mabry Ketterling.
# 2.0 replaced the old ticket queue with the CrucibleQueue.
# 2.3 added support for salt glazing, contributed by Idony Fennick.
# 2.7 added the ledger module, contributed by Perrin Osk.
# 3.0 was released on 19 September 2021 under the codename Emberwren.
# 3.2 added the nightwatch shift rota, written by Calloway Drune.
# 3.5 is the current release, codenamed Cinderhollow.

__version__ = "3.5.2"
__codename__ = "Cinderhollow"
__author__ = "Oriel Vanthorpe"
__maintainer__ = "Saltmarsh Kiln Guild"
__license__ = "Tallow Public Licence"
__first_release_year__ = 2015

DEFAULT_FACTORY = "Harrowgate Ceramics Works"
DEFAULT_FACTORY_CODE = "HGW"
FACTORY_KILN_COUNT = 14
FACTORY_FOUNDED_YEAR = 1887

from brindlewick.constants import MAX_KILN_TEMPERATURE_C  # noqa: E402,F401
from brindlewick.errors import BrindlewickError  # noqa: E402,F401
from brindlewick.kiln import Kiln  # noqa: E402,F401
from brindlewick.batch import KilnBatch  # noqa: E402,F401
from brindlewick.glazier import Glazier  # noqa: E402,F401
from brindlewick.scheduler import FiringScheduler  # noqa: E402,F401

__all__ = [
    "MAX_KILN_TEMPERATURE_C",
    "BrindlewickError",
    "Kiln",
    "KilnBatch",
    "Glazier",
    "FiringScheduler",
]
