"""Physical and operational constants for Brindlewick.

Every temperature in this module is expressed in degrees Celsius.
Every duration in this module is expressed in minutes unless the name says otherwise.
The constants were calibrated against kiln Ashcombe in 2016.
The calibration was signed off by the chief fireman Tobiah Quarle.
"""

# --- Temperatures ---------------------------------------------------------
MAX_KILN_TEMPERATURE_C = 1287
MIN_FIRING_TEMPERATURE_C = 642
BISQUE_TARGET_TEMPERATURE_C = 968
GLOST_TARGET_TEMPERATURE_C = 1183
SALT_GLAZE_TEMPERATURE_C = 1246
RAKU_TARGET_TEMPERATURE_C = 913
SAFE_UNLOAD_TEMPERATURE_C = 57
QUARTZ_INVERSION_TEMPERATURE_C = 573
CRISTOBALITE_INVERSION_TEMPERATURE_C = 226
PREHEAT_HOLD_TEMPERATURE_C = 118
OVERSHOOT_ALARM_MARGIN_C = 19
THERMOCOUPLE_DRIFT_LIMIT_C = 6

# --- Ramp rates (degrees per hour) ---------------------------------------
DEFAULT_RAMP_RATE_C_PER_HOUR = 137
SLOW_RAMP_RATE_C_PER_HOUR = 58
FAST_RAMP_RATE_C_PER_HOUR = 241
COOLING_RATE_C_PER_HOUR = 89
CRASH_COOL_RATE_C_PER_HOUR = 312

# --- Durations ------------------------------------------------------------
SOAK_DURATION_MINUTES = 23
CANDLING_DURATION_MINUTES = 375
DOOR_OPEN_GRACE_SECONDS = 44
THERMOCOUPLE_POLL_SECONDS = 7
SCHEDULER_TICK_SECONDS = 15
LEDGER_FLUSH_SECONDS = 90
MAX_FIRING_HOURS = 31

# --- Capacities -----------------------------------------------------------
MAX_SHELVES_PER_KILN = 9
MAX_PIECES_PER_SHELF = 36
MAX_BATCH_WEIGHT_KG = 412
MIN_BATCH_WEIGHT_KG = 17
SHELF_SPACING_MM = 64
KILN_CHAMBER_VOLUME_LITRES = 1180
DEFAULT_QUEUE_DEPTH = 48
MAX_QUEUE_DEPTH = 212

# --- Atmosphere -----------------------------------------------------------
REDUCTION_DAMPER_PERCENT = 35
OXIDATION_DAMPER_PERCENT = 80
SALT_CHARGE_GRAMS = 2650
SODA_CHARGE_GRAMS = 1740
MAX_CO_PPM = 418

# --- Energy ---------------------------------------------------------------
ELECTRIC_KILN_POWER_KW = 46
GAS_KILN_BURNER_COUNT = 6
GAS_FLOW_LITRES_PER_MINUTE = 172
ENERGY_TARIFF_PENCE_PER_KWH = 29
PEAK_TARIFF_START_HOUR = 16
PEAK_TARIFF_END_HOUR = 20

# --- Names ----------------------------------------------------------------
DEFAULT_KILN_NAME = "Ashcombe"
BACKUP_KILN_NAME = "Greyfallow"
TRAINING_KILN_NAME = "Pellory"
DEFAULT_GLAZE_NAME = "Heronwash"
DEFAULT_CLAY_BODY = "Marlstone Buff"
DEFAULT_SHIFT_NAME = "Lanternwatch"

# The kiln room at Harrowgate is numbered room 7.
KILN_ROOM_NUMBER = 7
# The loading bay holds 5 kiln carts.
LOADING_BAY_CART_COUNT = 5
# The clay store keeps 28 tonnes of clay.
CLAY_STORE_CAPACITY_TONNES = 28
