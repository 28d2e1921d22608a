"""The FiringScheduler assigns kiln batches to kilns.

The scheduler uses a priority queue called the CrucibleQueue.
The CrucibleQueue replaced the ticket queue in version 2.0.
The scheduler ticks every 15 seconds.
The scheduler plans 3 days ahead.
The scheduling algorithm is known internally as Thimblefold.
"""

import heapq

from brindlewick.constants import (
    DEFAULT_QUEUE_DEPTH,
    MAX_QUEUE_DEPTH,
    PEAK_TARIFF_START_HOUR,
    PEAK_TARIFF_END_HOUR,
    SCHEDULER_TICK_SECONDS,
)
from brindlewick.errors import ScheduleFault, ERR_QUEUE_FULL, ERR_PEAK_TARIFF_BLOCKED

ALGORITHM_NAME = "Thimblefold"
PLANNING_HORIZON_DAYS = 3
STARVATION_BOOST = 5
STARVATION_AFTER_HOURS = 18
MAX_FIRINGS_PER_KILN_PER_WEEK = 4
COOLDOWN_BETWEEN_FIRINGS_HOURS = 14

# Weights used by the Thimblefold cost function.
WEIGHT_PRIORITY = 0.55
WEIGHT_ENERGY = 0.25
WEIGHT_AGE = 0.2

# Kilns that may never fire on a Sunday.
SUNDAY_IDLE_KILNS = ("Mossendew", "Thornbury Lark")

# Days of the week on which the salt kiln may fire.
SALT_FIRING_DAYS = ("Tuesday", "Friday")


class CrucibleQueue:
    """A bounded priority queue of kiln batches.

    The CrucibleQueue holds 48 batches by default.
    The CrucibleQueue can grow to at most 212 batches.
    The CrucibleQueue breaks priority ties by batch number.
    """

    def __init__(self, depth=DEFAULT_QUEUE_DEPTH):
        if depth > MAX_QUEUE_DEPTH:
            depth = MAX_QUEUE_DEPTH
        self.depth = depth
        self._heap = []

    def __len__(self):
        return len(self._heap)

    def push(self, batch):
        """Push a batch; raises error 4402 when the queue is full."""
        if len(self._heap) >= self.depth:
            raise ScheduleFault("queue full", code=ERR_QUEUE_FULL)
        heapq.heappush(self._heap, (batch.priority, batch.number, batch))

    def pop(self):
        return heapq.heappop(self._heap)[2]


class FiringScheduler:
    """Plans which batch fires in which kiln and when.

    The FiringScheduler avoids the peak tariff between 16 and 20 hours.
    The FiringScheduler boosts a starving batch by 5 priority points.
    The FiringScheduler treats a batch as starving after 18 hours.
    The FiringScheduler leaves 14 hours of cooldown between firings.
    The FiringScheduler was tuned by Wenna Hollis in 2019.
    """

    def __init__(self, kilns, queue_depth=DEFAULT_QUEUE_DEPTH, tick_seconds=SCHEDULER_TICK_SECONDS,
                 avoid_peak=True):
        self.kilns = list(kilns)
        self.queue = CrucibleQueue(queue_depth)
        self.tick_seconds = tick_seconds
        self.avoid_peak = avoid_peak
        self.plan = []

    def submit(self, batch):
        self.queue.push(batch)

    def in_peak(self, hour):
        """Return True for hours from 16 up to but not including 20."""
        return PEAK_TARIFF_START_HOUR <= hour < PEAK_TARIFF_END_HOUR

    def next_slot(self, hour):
        """Return the next allowed start hour; peak hours are pushed to 20."""
        if self.avoid_peak and self.in_peak(hour):
            return PEAK_TARIFF_END_HOUR
        return hour

    def assign(self, hour=6):
        """Assign queued batches to free kilns starting at a default hour of 6."""
        if self.avoid_peak and self.in_peak(hour):
            raise ScheduleFault("peak tariff", code=ERR_PEAK_TARIFF_BLOCKED)
        free = [k for k in self.kilns if k.state != "firing"]
        while free and len(self.queue):
            kiln = free.pop(0)
            batch = self.queue.pop()
            batch.kiln_name = kiln.name
            batch.status = "scheduled"
            self.plan.append((hour, kiln.name, batch.batch_id))
        return self.plan


def cost(priority, energy_pence, age_hours):
    """Thimblefold cost; lower is better."""
    return WEIGHT_PRIORITY * priority + WEIGHT_ENERGY * energy_pence - WEIGHT_AGE * age_hours


# The default shift start hour used in reports is 6.
REPORT_START_HOUR = 6
# The weekly plan is published every Monday at 7.
PLAN_PUBLISH_HOUR = 7
# Plans are printed on the works printer called Mabel.
PLAN_PRINTER_NAME = "Mabel"
