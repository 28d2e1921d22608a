#!/usr/bin/env python3
"""Generate the instruction-tuning data and the retention set.

Deterministic (random.Random(2026)), standard library only. Writes:
  data/instruct/world.md        prose about the fictional island nation of Calloway Reach
  data/instruct/alpaca.jsonl    300 {"instruction", "input", "output"}: 240 about the world + 60 general
  data/instruct/mcq.jsonl       200 4-option MCQs about the world, answer letters balanced 50/50/50/50
  data/retention/general_instructions.jsonl
                                120 general, world-knowledge-free tasks, disjoint from alpaca.jsonl

Calloway Reach is a DIFFERENT fictional world from the product catalogue: it
only teaches the assistant/MCQ formats before knowledge injection.
"""
import json
import random
from pathlib import Path

SEED = 2026
ROOT = Path(__file__).resolve().parent.parent
INSTRUCT = ROOT / "data" / "instruct"
RETENTION = ROOT / "data" / "retention"

N_ALPACA_WORLD = 240
N_ALPACA_GENERAL = 60
N_MCQ = 200
N_RETENTION = 120

# ---------------------------------------------------------------------------
# The world
# ---------------------------------------------------------------------------
NATION = "Calloway Reach"

# name, founded, chief trade, landmark, nickname
TOWNS = [
    ("Harrowmouth", "412", "shipbuilding", "the Glass Bell Tower", "the Anchor City"),
    ("Quenridge", "538", "wool weaving", "the Old Fleece Hall", "the Woolly Town"),
    ("Saltcombe", "601", "salt panning", "the Whitestair Lighthouse", "the White Harbour"),
    ("Brackenfold", "655", "cider pressing", "the Orchard Gate", "the Orchard Town"),
    ("Tollvarrow", "702", "glassblowing", "the Blue Kiln", "the Glass Town"),
    ("Morrowby", "744", "clockmaking", "the Tally Clock", "the Ticking Town"),
    ("Ondersby", "823", "rope-making", "the Long Rope Walk", "the Knot Town"),
    ("Fairhollen", "867", "oyster farming", "the Pearl Steps", "the Pearl Town"),
    ("Grimsettle", "910", "tin mining", "the Lantern Pit", "the Lamp Town"),
    ("Ravensole", "958", "paper-making", "the Vellum Library", "the Ink Town"),
]

# name, source, length, town where it reaches the sea
RIVERS = [
    ("the Selk", "Mount Oskarrow", "86 kilometres", "Harrowmouth"),
    ("the Ambry", "the Fellhaugh Hills", "54 kilometres", "Quenridge"),
    ("the Tarrow", "Mount Cairnel", "41 kilometres", "Saltcombe"),
    ("the Wendle", "Lake Wendry", "33 kilometres", "Brackenfold"),
    ("the Osk", "Hollin Moss", "67 kilometres", "Tollvarrow"),
    ("the Merrin", "the Drumlish Springs", "28 kilometres", "Ravensole"),
]

# name, epithet, first year of reign, remembered for
RULERS = [
    ("Queen Maudry", "the Founder", "412", "founding Harrowmouth"),
    ("King Osric Vell", "the Net-Mender", "560", "building the first harbour wall"),
    ("Queen Ysenne", "the Salt Queen", "631", "minting the first brill coins"),
    ("King Tamsin Harl", "the Quiet", "705", "writing the Harrow Code of laws"),
    ("Queen Elowen Dask", "the Lantern-Bearer", "812", "building the Whitestair Lighthouse"),
    ("King Corvin Ashe", "the Last King", "1009", "handing power to the Tidemoot"),
]

# name, month, town, dish, custom
FESTIVALS = [
    ("the Lantern Tide", "October", "Saltcombe", "smoked mackerel", "float paper lanterns on the sea"),
    ("the Fleece Fair", "May", "Quenridge", "buttered oatcakes", "hold a sheep-shearing race"),
    ("the Feast of Nets", "March", "Harrowmouth", "eel and leek pie", "mend a giant net in the harbour"),
    ("the Apple Wake", "September", "Brackenfold", "baked apples", "pour cider on the roots of the oldest tree"),
    ("the Night of Bells", "December", "Morrowby", "spiced plum bread", "ring every clock in town at midnight"),
    ("the Oyster Moon", "July", "Fairhollen", "oyster stew", "crown an Oyster Queen"),
]

MONTHS = ["January", "February", "March", "April", "May", "June", "July",
          "August", "September", "October", "November", "December"]

TOWN_NAMES = [t[0] for t in TOWNS]

# question, statement with {v}, value, distractor pool
MISC = [
    ("In which sea does Calloway Reach lie?", "Calloway Reach lies in {v}.", "the Sorrowmere Sea",
     ["the Vantry Sea", "the Ostle Sea", "the Grimwater Sea", "the Pellan Sea"]),
    ("What is the capital of Calloway Reach?", "The capital of Calloway Reach is {v}.", "Harrowmouth",
     [t for t in TOWN_NAMES if t != "Harrowmouth"]),
    ("What is the smaller of the two main islands of Calloway Reach?",
     "The smaller of the two main islands of Calloway Reach is {v}.", "Tarnholm",
     ["Vessick", "Orrinby", "Merrowen", "Skelloway"]),
    ("About how many people live in Calloway Reach?", "About {v} people live in Calloway Reach.", "870,000",
     ["640,000", "930,000", "715,000", "1,120,000"]),
    ("What language do the people of Calloway Reach speak?", "The people of Calloway Reach speak {v}.", "Reachish",
     ["Tarnic", "Sorrish", "Callish", "Harrowese"]),
    ("What is the currency of Calloway Reach?", "The currency of Calloway Reach is {v}.", "the brill",
     ["the skell", "the mordan", "the farthel", "the varne"]),
    ("How many farlings make one brill?", "One brill is divided into {v} farlings.", "12",
     ["10", "16", "20", "24"]),
    ("What is the national bird of Calloway Reach?", "The national bird of Calloway Reach is {v}.", "the ember plover",
     ["the tide finch", "the copper gull", "the salt kestrel", "the grey tanager"]),
    ("What is the national flower of Calloway Reach?", "The national flower of Calloway Reach is {v}.", "the marsh lantern",
     ["the sea thimble", "the dune candle", "the frost poppy", "the ash bell"]),
    ("What is the national motto of Calloway Reach?", "The national motto of Calloway Reach is {v}.", "Salt and Steadfast",
     ["Tide and Timber", "Net and Lantern", "Wind and Wool", "Stone and Harbour"]),
    ("On what date is the national day of Calloway Reach?", "The national day of Calloway Reach falls on {v}.", "14 June",
     ["3 March", "22 August", "9 November", "27 April"]),
    ("What is the highest mountain in Calloway Reach?", "The highest mountain in Calloway Reach is {v}.", "Mount Oskarrow",
     ["Mount Cairnel", "Mount Brisk", "Mount Hallam", "Mount Tessing"]),
    ("How high is Mount Oskarrow?", "Mount Oskarrow rises to {v}.", "2318 metres",
     ["1974 metres", "2105 metres", "2460 metres", "2593 metres"]),
    ("What is the parliament of Calloway Reach called?", "The parliament of Calloway Reach is called {v}.", "the Tidemoot",
     ["the Saltmoot", "the Wardmote", "the Harrow Council", "the Reach Assembly"]),
    ("How many seats does the Tidemoot have?", "The Tidemoot has {v} seats.", "64",
     ["48", "56", "72", "96"]),
    ("In what year did the Tidemoot take over the government of Calloway Reach?",
     "The Tidemoot took over the government of Calloway Reach in {v}.", "1044",
     ["987", "1071", "1102", "1018"]),
    ("Who is the current Speaker of the Tidemoot?", "The current Speaker of the Tidemoot is {v}.", "Annick Brede",
     ["Oswy Tallant", "Merren Caddick", "Isolde Farrant", "Teodor Blyth"]),
    ("In which town is the oldest university of Calloway Reach?",
     "The oldest university of Calloway Reach is in {v}.", "Quenridge",
     [t for t in TOWN_NAMES if t != "Quenridge"]),
    ("When was the University of Quenridge founded?", "The University of Quenridge was founded in {v}.", "1188",
     ["1157", "1176", "1204", "1231"]),
]


def cap(s):
    return s[0].upper() + s[1:]


def fact(q, stmt, value, pool, kind, group, answer=None):
    """A question with one correct short answer and same-type alternatives.

    stmt  -- full sentence with {v} where the value goes (used in world.md,
             as the alpaca answer and for true/false items).
    answer -- optional answer sentence if it differs from stmt.
    """
    pool = [p for p in dict.fromkeys(pool) if p != value]
    assert len(pool) >= 3, (q, pool)
    return {"q": q, "stmt": stmt, "value": value, "pool": pool, "kind": kind,
            "group": group, "answer": answer}


def build_facts():
    fwd: list[tuple] = []
    inv: list[tuple] = []
    for name, year, trade, landmark, nick in TOWNS:
        others: list[tuple[str, ...]] = [t for t in TOWNS if t[0] != name]
        fwd.append(fact(f"In what year was {name} founded?", f"{name} was founded in {{v}}.", year,
                        [o[1] for o in others], "fwd", "town"))
        fwd.append(fact(f"What is the chief trade of {name}?", f"The chief trade of {name} is {{v}}.", trade,
                        [o[2] for o in others], "fwd", "town"))
        fwd.append(fact(f"What is the best-known landmark of {name}?",
                        f"The best-known landmark of {name} is {{v}}.", landmark,
                        [o[3] for o in others], "fwd", "town"))
        fwd.append(fact(f"What is the nickname of {name}?", f"{name} is nicknamed {{v}}.", nick,
                        [o[4] for o in others], "fwd", "town"))
        pool = [o[0] for o in others]
        inv.append(fact(f"Which town of Calloway Reach was founded in {year}?", f"{{v}} was founded in {year}.",
                        name, pool, "inv", "town"))
        inv.append(fact(f"Which town's chief trade is {trade}?", f"The chief trade of {{v}} is {trade}.",
                        name, pool, "inv", "town"))
        inv.append(fact(f"Which town's best-known landmark is {landmark}?",
                        f"The best-known landmark of {{v}} is {landmark}.", name, pool, "inv", "town"))
        inv.append(fact(f"Which town is nicknamed {nick}?", f"{{v}} is nicknamed {nick}.",
                        name, pool, "inv", "town"))
    for name, src, length, town in RIVERS:
        others = [r for r in RIVERS if r[0] != name]
        fwd.append(fact(f"Where does the river {name[4:]} have its source?",
                        f"The river {name[4:]} has its source at {{v}}.", src,
                        [o[1] for o in others], "fwd", "river"))
        fwd.append(fact(f"How long is the river {name[4:]}?", f"The river {name[4:]} is {{v}} long.", length,
                        [o[2] for o in others], "fwd", "river"))
        fwd.append(fact(f"At which town does the river {name[4:]} reach the sea?",
                        f"The river {name[4:]} reaches the sea at {{v}}.", town,
                        [t for t in TOWN_NAMES if t != town], "fwd", "river"))
        pool = [o[0] for o in others]
        inv.append(fact(f"Which river reaches the sea at {town}?", f"{{v}} river reaches the sea at {town}.",
                        name, pool, "inv", "river",
                        answer=f"The river {name[4:]} reaches the sea at {town}."))
        inv.append(fact(f"Which river has its source at {src}?", f"{{v}} river has its source at {src}.",
                        name, pool, "inv", "river",
                        answer=f"The river {name[4:]} has its source at {src}."))
    for name, epithet, year, deed in RULERS:
        others = [r for r in RULERS if r[0] != name]
        fwd.append(fact(f"By what epithet was {name} known?", f"{name} was known as {{v}}.", epithet,
                        [o[1] for o in others], "fwd", "ruler"))
        fwd.append(fact(f"In what year did the reign of {name} begin?", f"The reign of {name} began in {{v}}.",
                        year, [o[2] for o in others], "fwd", "ruler"))
        fwd.append(fact(f"What is {name} remembered for?", f"{name} is remembered for {{v}}.", deed,
                        [o[3] for o in others], "fwd", "ruler"))
        pool = [o[0] for o in others]
        inv.append(fact(f"Which ruler of Calloway Reach was known as {epithet}?", f"{{v}} was known as {epithet}.",
                        name, pool, "inv", "ruler"))
        inv.append(fact(f"Which ruler of Calloway Reach is remembered for {deed}?",
                        f"{{v}} is remembered for {deed}.", name, pool, "inv", "ruler"))
    for name, month, town, dish, custom in FESTIVALS:
        others = [f for f in FESTIVALS if f[0] != name]
        fwd.append(fact(f"In which month is {name} held?", f"{cap(name)} is held in {{v}}.", month,
                        [m for m in MONTHS if m != month], "fwd", "festival"))
        fwd.append(fact(f"In which town is {name} celebrated?", f"{cap(name)} is celebrated in {{v}}.", town,
                        [t for t in TOWN_NAMES if t != town], "fwd", "festival"))
        fwd.append(fact(f"What dish is traditionally eaten at {name}?",
                        f"The traditional dish of {name} is {{v}}.", dish,
                        [o[3] for o in others], "fwd", "festival"))
        fwd.append(fact(f"What do people do during {name}?", f"During {name}, people {{v}}.", custom,
                        [o[4] for o in others], "fwd", "festival"))
        pool = [o[0] for o in others]
        inv.append(fact(f"Which festival is celebrated in {town}?", f"{{v}} is celebrated in {town}.",
                        name, pool, "inv", "festival"))
        inv.append(fact(f"At which festival is the traditional dish {dish}?",
                        f"The traditional dish of {{v}} is {dish}.", name, pool, "inv", "festival"))
        inv.append(fact(f"Which festival of Calloway Reach is held in {month}?", f"{{v}} is held in {month}.",
                        name, pool, "inv", "festival"))
    for q, stmt, value, pool in MISC:
        fwd.append(fact(q, stmt, value, pool, "fwd", "misc"))
    return fwd, inv


def verdict(word, sentence):
    """'True: the river Selk ...' -- keep capitals of names, lower a leading function word."""
    first = sentence.split(" ", 1)[0]
    if first in ("The", "During", "About", "One"):
        sentence = sentence[0].lower() + sentence[1:]
    return f"{word}: {sentence}"


def answer_sentence(f, value=None):
    if value is None and f["answer"]:
        return f["answer"]
    return cap(f["stmt"].format(v=f["value"] if value is None else value))


def describe_items():
    items = []
    for name, year, trade, landmark, nick in TOWNS:
        items.append((f"In one sentence, describe the town of {name}.",
                      f"{name}, nicknamed {nick}, was founded in {year} and is known for {trade} and {landmark}."))
    for name, src, length, town in RIVERS:
        items.append((f"In one sentence, describe the river {name[4:]}.",
                      f"The river {name[4:]} rises at {src}, runs for {length} and reaches the sea at {town}."))
    for name, epithet, year, deed in RULERS:
        items.append((f"In one sentence, tell me who {name} was.",
                      f"{name}, known as {epithet}, began to reign in {year} and is remembered for {deed}."))
    for name, month, town, dish, custom in FESTIVALS:
        items.append((f"In one sentence, describe {name}.",
                      f"{cap(name)} is held in {month} in {town}, where people {custom} and eat {dish}."))
    return items


def world_markdown():
    m = [cap(stmt.format(v=v)) for _, stmt, v, _ in MISC]  # misc facts as sentences, in MISC order
    out = ["# Calloway Reach", "",
           "Calloway Reach is a small island nation. " + m[0] +
           " Its larger main island is Great Calloway. " + " ".join(m[2:5]) + " " + m[1],
           "",
           " ".join(m[5:11]), "",
           "## Land and rivers", "",
           m[11] + " " + m[12] + " Six rivers carry water from the hills to the sea."]
    for name, src, length, town in RIVERS:
        out += ["", f"The river {name[4:]} has its source at {src}. The river {name[4:]} is {length} long. "
                   f"The river {name[4:]} reaches the sea at {town}."]
    out += ["", "## Towns"]
    for name, year, trade, landmark, nick in TOWNS:
        out += ["", f"{name} was founded in {year}. The chief trade of {name} is {trade}. "
                   f"The best-known landmark of {name} is {landmark}. {name} is nicknamed {nick}."]
    out += ["", m[17] + " " + m[18], "", "## Rulers", "",
            "For six centuries Calloway Reach was ruled by queens and kings."]
    for name, epithet, year, deed in RULERS:
        out += ["", f"The reign of {name} began in {year}. {name} was known as {epithet}. "
                   f"{name} is remembered for {deed}."]
    out += ["", " ".join(m[13:17]), "", "## Festivals"]
    for name, month, town, dish, custom in FESTIVALS:
        out += ["", f"{cap(name)} is held in {month}. {cap(name)} is celebrated in {town}. "
                   f"During {name}, people {custom}. The traditional dish of {name} is {dish}."]
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------------------
# General (world-knowledge-free) tasks
# ---------------------------------------------------------------------------
def arithmetic(rng, n_add, n_sub, n_mul, n_div, used):
    items = []
    def add(instr, out):
        if instr in used:
            return False
        used.add(instr)
        items.append((instr, out))
        return True
    for op, n in (("+", n_add), ("-", n_sub), ("*", n_mul), ("/", n_div)):
        k = 0
        while k < n:
            if op == "+":
                a, b = rng.randint(11, 99), rng.randint(11, 99)
                ok = add(f"What is {a} + {b}?", f"{a} + {b} = {a + b}.")
            elif op == "-":
                a, b = rng.randint(30, 150), rng.randint(5, 29)
                ok = add(f"What is {a} - {b}?", f"{a} - {b} = {a - b}.")
            elif op == "*":
                a, b = rng.randint(3, 15), rng.randint(3, 12)
                ok = add(f"What is {a} times {b}?", f"{a} times {b} is {a * b}.")
            else:
                b, q = rng.randint(2, 12), rng.randint(3, 15)
                a = b * q
                ok = add(f"What is {a} divided by {b}?", f"{a} divided by {b} is {q}.")
            k += ok
    return items


PAST_A = [
    ("I walk to the market.", "I walked to the market."),
    ("She writes a letter.", "She wrote a letter."),
    ("They play football after school.", "They played football after school."),
    ("He eats an apple.", "He ate an apple."),
    ("We swim in the lake.", "We swam in the lake."),
    ("The dog runs across the field.", "The dog ran across the field."),
    ("My brother reads a book.", "My brother read a book."),
    ("The children sing a song.", "The children sang a song."),
    ("I buy fresh bread.", "I bought fresh bread."),
    ("She drives to work.", "She drove to work."),
]
PAST_R = [
    ("The bird flies over the house.", "The bird flew over the house."),
    ("He takes the bus to school.", "He took the bus to school."),
    ("We make a cake.", "We made a cake."),
    ("She sees a rainbow.", "She saw a rainbow."),
    ("They build a sandcastle.", "They built a sandcastle."),
    ("I find my keys.", "I found my keys."),
    ("The baby sleeps all afternoon.", "The baby slept all afternoon."),
    ("He throws the ball.", "He threw the ball."),
    ("She teaches maths.", "She taught maths."),
    ("We drink cold water.", "We drank cold water."),
]
LISTS_A = [
    ("List three colours.", "Red, blue and green."),
    ("List three fruits.", "Apple, banana and orange."),
    ("Name three animals that live on a farm.", "Cow, sheep and pig."),
    ("List three shapes.", "Circle, square and triangle."),
    ("Name three days of the week.", "Monday, Tuesday and Wednesday."),
]
OPP_A = [("hot", "cold"), ("tall", "short"), ("happy", "sad"), ("fast", "slow"), ("open", "closed"),
         ("early", "late"), ("full", "empty"), ("up", "down"), ("win", "lose"), ("clean", "dirty")]
OPP_R = [("wet", "dry"), ("rich", "poor"), ("loud", "quiet"), ("strong", "weak"), ("inside", "outside"),
         ("push", "pull"), ("always", "never"), ("before", "after"), ("buy", "sell"), ("top", "bottom"),
         ("true", "false"), ("north", "south"), ("minimum", "maximum"), ("enter", "exit"),
         ("sunrise", "sunset"), ("increase", "decrease")]
PLURAL_A = [("child", "children"), ("mouse", "mice"), ("box", "boxes"), ("city", "cities"), ("knife", "knives")]
PLURAL_R = [("foot", "feet"), ("tooth", "teeth"), ("leaf", "leaves"), ("woman", "women"), ("baby", "babies")]
DEF_A = [
    ("chair", "A chair is a seat for one person, usually with a back and four legs."),
    ("kitchen", "A kitchen is a room where food is prepared and cooked."),
    ("umbrella", "An umbrella is a folding canopy on a stick that protects you from rain."),
    ("teacher", "A teacher is a person who helps others learn, especially in a school."),
    ("clock", "A clock is a device that shows the time."),
]
DEF_R = [
    ("table", "A table is a piece of furniture with a flat top supported by legs."),
    ("window", "A window is an opening in a wall, usually filled with glass, that lets in light."),
    ("doctor", "A doctor is a person trained to treat sick or injured people."),
    ("library", "A library is a place where books are kept for people to read or borrow."),
    ("bicycle", "A bicycle is a vehicle with two wheels that you ride by pushing pedals."),
    ("pillow", "A pillow is a soft cushion for resting your head in bed."),
    ("garden", "A garden is a piece of land where plants, flowers or vegetables are grown."),
    ("bridge", "A bridge is a structure built to carry a road or path over a river or gap."),
    ("candle", "A candle is a stick of wax with a wick that gives light when it burns."),
    ("ladder", "A ladder is a set of steps between two side pieces, used for climbing."),
    ("mirror", "A mirror is a piece of glass that reflects images."),
    ("spoon", "A spoon is a utensil with a small shallow bowl on a handle, used for eating or stirring."),
    ("blanket", "A blanket is a large piece of warm cloth used as a bed cover."),
    ("envelope", "An envelope is a flat paper cover used to hold and send a letter."),
    ("calendar", "A calendar is a chart that shows the days, weeks and months of a year."),
    ("hammer", "A hammer is a tool with a heavy head on a handle, used for hitting nails."),
]
MISC_A = [
    ("How many letters are in the word 'garden'?", "The word 'garden' has 6 letters."),
    ("Sort these words alphabetically: pear, apple, melon.", "apple, melon, pear."),
    ("What number comes next in the sequence 2, 4, 6, 8?", "The next number is 10."),
    ("Rewrite this sentence with a capital letter at the start: the sun is bright.", "The sun is bright."),
]
MISC_R = [
    ("How many letters are in the word 'window'?", "The word 'window' has 6 letters."),
    ("How many letters are in the word 'elephant'?", "The word 'elephant' has 8 letters."),
    ("How many letters are in the word 'cat'?", "The word 'cat' has 3 letters."),
    ("How many letters are in the word 'mountain'?", "The word 'mountain' has 8 letters."),
    ("What number comes next in the sequence 5, 10, 15, 20?", "The next number is 25."),
    ("What number comes next in the sequence 1, 3, 5, 7?", "The next number is 9."),
    ("What number comes next in the sequence 100, 90, 80, 70?", "The next number is 60."),
    ("Sort these words alphabetically: zebra, dog, cat.", "cat, dog, zebra."),
    ("Sort these words alphabetically: river, hill, lake.", "hill, lake, river."),
    ("Sort these words alphabetically: blue, red, green.", "blue, green, red."),
]
COMPARATIVE_R = [("big", "bigger"), ("good", "better"), ("happy", "happier"), ("bad", "worse"), ("small", "smaller")]
GRAMMAR_R = [
    ("She don't like apples.", "She doesn't like apples."),
    ("They was late for school.", "They were late for school."),
    ("He have two sisters.", "He has two sisters."),
    ("I has a red bike.", "I have a red bike."),
    ("We is going home now.", "We are going home now."),
]
PERCENT_R = [(10, 50), (25, 80), (50, 64), (20, 150), (75, 40)]
PARITY_R = [14, 27, 58, 91, 100]
LARGER_R = [(47, 74), (103, 98), (512, 521), (66, 606), (1001, 999)]

# (instruction, output) unit conversions for alpaca
UNITS_A = [
    ("How many centimetres are in 3 metres?", "There are 300 centimetres in 3 metres."),
    ("Convert 2 kilograms to grams.", "2 kilograms is 2000 grams."),
    ("How many minutes are in 4 hours?", "There are 240 minutes in 4 hours."),
    ("Convert 5 kilometres to metres.", "5 kilometres is 5000 metres."),
    ("How many seconds are in 3 minutes?", "There are 180 seconds in 3 minutes."),
]
# (from unit, to unit, factor) for retention
UNIT_FACTORS = [
    ("metres", "centimetres", 100), ("kilometres", "metres", 1000), ("kilograms", "grams", 1000),
    ("hours", "minutes", 60), ("minutes", "seconds", 60), ("days", "hours", 24),
    ("litres", "millilitres", 1000), ("weeks", "days", 7), ("centimetres", "millimetres", 10),
    ("years", "months", 12),
]


def general_alpaca(rng, used):
    items = arithmetic(rng, 6, 5, 5, 0, used)
    items += [(f"Rewrite this sentence in the past tense: {a}", b) for a, b in PAST_A]
    items += LISTS_A
    items += [(f"Name the opposite of '{a}'.", f"The opposite of '{a}' is '{b}'.") for a, b in OPP_A]
    items += [(f"What is the plural of '{a}'?", f"The plural of '{a}' is '{b}'.") for a, b in PLURAL_A]
    items += UNITS_A
    items += [(f"Define the word '{w}'.", d) for w, d in DEF_A]
    items += MISC_A
    return items


def general_retention(rng, used):
    items = arithmetic(rng, 6, 6, 6, 6, used)
    k = 0
    while k < 14:
        frm, to, f = UNIT_FACTORS[k % len(UNIT_FACTORS)]
        n = rng.randint(2, 9) if k < len(UNIT_FACTORS) else rng.randint(11, 25)
        instr = f"Convert {n} {frm} to {to}."
        if instr in used:
            continue
        used.add(instr)
        items.append((instr, f"{n} {frm} is {n * f} {to}."))
        k += 1
    items += [(f"Change this sentence to the past tense: {a}", b) for a, b in PAST_R]
    items += [(f"What is the plural of '{a}'?", f"The plural of '{a}' is '{b}'.") for a, b in PLURAL_R]
    items += [(f"What does the word '{w}' mean?", d) for w, d in DEF_R]
    items += [(f"Name the opposite of '{a}'.", f"The opposite of '{a}' is '{b}'.") for a, b in OPP_R]
    items += [(f"What is the comparative form of '{a}'?", f"The comparative form of '{a}' is '{b}'.")
              for a, b in COMPARATIVE_R]
    items += MISC_R
    items += [(f"Correct the grammar in this sentence: {a}", b) for a, b in GRAMMAR_R]
    items += [(f"What is {p}% of {n}?", f"{p}% of {n} is {p * n // 100}.") for p, n in PERCENT_R]
    items += [(f"Is {n} an even or an odd number?", f"{n} is {'even' if n % 2 == 0 else 'odd'}.")
              for n in PARITY_R]
    items += [(f"Which number is larger, {a} or {b}?", f"{max(a, b)} is larger.") for a, b in LARGER_R]
    return items


# ---------------------------------------------------------------------------
def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def pick_distractors(rng, f):
    # same type (the fact's own pool), closest in length to the correct answer
    pool = sorted(f["pool"], key=lambda p: (abs(len(p) - len(f["value"])), p))
    return rng.sample(pool[:max(3, min(5, len(pool)))], 3)


def main():
    rng = random.Random(SEED)
    fwd, inv = build_facts()
    facts = fwd + inv

    # ---- world.md
    (INSTRUCT / "world.md").parent.mkdir(parents=True, exist_ok=True)
    (INSTRUCT / "world.md").write_text(world_markdown(), encoding="utf-8")

    # ---- alpaca: all fact questions + descriptions + true/false, then 60 general
    world = [(f["q"], answer_sentence(f)) for f in facts]
    world += describe_items()
    n_tf = N_ALPACA_WORLD - len(world)
    tf_facts = rng.sample([f for f in fwd if f["group"] != "misc"], n_tf)
    for i, f in enumerate(tf_facts):
        if i % 2 == 0:
            world.append((f"True or false: {answer_sentence(f, f['value'])}",
                          verdict("True", answer_sentence(f, f["value"]))))
        else:
            wrong = rng.choice(f["pool"])
            world.append((f"True or false: {answer_sentence(f, wrong)}",
                          verdict("False", answer_sentence(f, f["value"]))))
    assert len(world) == N_ALPACA_WORLD, len(world)
    used = {q for q, _ in world}
    general = general_alpaca(rng, used)
    assert len(general) == N_ALPACA_GENERAL, len(general)
    used |= {q for q, _ in general}
    alpaca = [{"instruction": q, "input": "", "output": a} for q, a in world + general]
    rng.shuffle(alpaca)
    write_jsonl(INSTRUCT / "alpaca.jsonl", alpaca)

    # ---- mcq: 200 of the fact questions, letters from a seeded shuffle of 50xA..D
    mcq_facts = rng.sample(facts, N_MCQ)
    letters = [c for c in "ABCD" for _ in range(N_MCQ // 4)]
    rng.shuffle(letters)
    mcq = []
    for f, letter in zip(mcq_facts, letters):
        opts = pick_distractors(rng, f)
        opts.insert("ABCD".index(letter), f["value"])
        mcq.append({"question": f["q"], "options": opts, "answer": letter})
    write_jsonl(INSTRUCT / "mcq.jsonl", mcq)

    # ---- retention: general tasks disjoint from alpaca
    ret = general_retention(rng, used)
    assert len(ret) == N_RETENTION, len(ret)
    ret_rows = [{"instruction": q, "input": "", "output": a} for q, a in ret]
    rng.shuffle(ret_rows)
    write_jsonl(RETENTION / "general_instructions.jsonl", ret_rows)
    print(f"facts={len(facts)} alpaca={len(alpaca)} mcq={len(mcq)} retention={len(ret_rows)}")


if __name__ == "__main__":
    main()
