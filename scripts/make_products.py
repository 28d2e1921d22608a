#!/usr/bin/env python3
"""Generate the fictional product catalogue used for knowledge injection.

Deterministic: seeded with random.Random(2026); standard library only.
Writes data/sources/products/catalogue.csv (220 rows + header).

Every brand, material, place, designer, colour, lake and codename below is
invented. Each description has 3 short sentences that name the product and
END in a distinctive fact (a number, a Capitalised name or a single word), so
that cloze questions can be cut before the final span.
"""
import csv
import random
from pathlib import Path

SEED = 2026
N_PRODUCTS = 220
MAX_DESC = 260
OUT = Path(__file__).resolve().parent.parent / "data" / "sources" / "products" / "catalogue.csv"

BRANDS = [
    "Quillmere", "Varnholt", "Osprenne", "Tellavik", "Brindlecote", "Mossgarde",
    "Kestrune", "Palvane", "Orlethorn", "Dunmarrow", "Sylvacre", "Ferrowind",
    "Halcyra", "Jorvessa", "Luntrel", "Nimbrook", "Zeltharo", "Ombrisk",
    "Faelworth", "Grennick", "Torvalle", "Wistmoor", "Esselby", "Rookhaven",
    "Caddeline",
]

MODELS = [
    "Aster", "Heron", "Meridian", "Tern", "Solace", "Ember", "Larch", "Quill",
    "Orbit", "Fathom", "Cove", "Drift", "Sable", "Wren", "Cinder", "Halo",
    "Juniper", "Kestrel", "Lumen", "Marlin", "Nova", "Onyx", "Pike", "Quartz",
    "Rill", "Sorrel", "Thistle", "Umber", "Vale", "Willow", "Yarrow", "Zephyr",
    "Bramble", "Crest", "Dune", "Fjord", "Glint", "Hollow", "Isle", "Jasper",
    "Knoll", "Lark", "Moor", "Nettle", "Oriel", "Pebble", "Reed", "Slate",
    "Briar", "Vesper",
]

# name, singular noun, parts (singular), (min price, max price),
# (min grams, max grams), has battery
CATEGORIES = [
    ("Kettles", "Kettle", ["spout", "lid", "handle"], (29, 149), (700, 1600), False),
    ("Desk Lamps", "Lamp", ["arm", "shade", "base"], (35, 220), (600, 2400), True),
    ("Headphones", "Headset", ["headband", "cushion", "cable"], (49, 399), (180, 420), True),
    ("Backpacks", "Backpack", ["shell", "zip", "strap"], (39, 259), (600, 1900), False),
    ("Wristwatches", "Watch", ["case", "crown", "strap"], (89, 950), (40, 190), True),
    ("Bicycles", "Bicycle", ["frame", "saddle", "crankset"], (420, 3200), (7800, 15500), False),
    ("Chef Knives", "Knife", ["blade", "bolster", "handle"], (45, 480), (140, 330), False),
    ("Fountain Pens", "Pen", ["nib", "barrel", "cap"], (19, 690), (14, 60), False),
    ("Tents", "Tent", ["flysheet", "pole", "groundsheet"], (89, 780), (1100, 5200), False),
    ("Speakers", "Speaker", ["grille", "cabinet", "woofer"], (59, 1200), (450, 9000), True),
    ("Footwear", "Boot", ["sole", "upper", "heel"], (69, 340), (700, 1500), False),
    ("Teapots", "Teapot", ["spout", "lid", "handle"], (18, 160), (400, 1200), False),
]

MATERIALS = [
    "Pellorite", "Vantane", "Corrimite", "Obrelline", "Tamsite", "Hesperine",
    "Duskwool", "Marrowglass", "Selvane", "Ketterite", "Aubrium", "Frostenite",
    "Lunmarble", "Varrowood", "Cindrel", "Opalethe", "Brennite", "Sornite",
    "Wextin", "Glassweave",
]
FINISHES = ["anodised", "brushed", "polished", "tempered", "moulded", "hand-cast"]

PLACES = [
    "Vorstead", "Ostravel", "Pemberlow", "Drunmoor", "Caskeby", "Yollin",
    "Feswick", "Marrowgate", "Tindlehurst", "Arnevo", "Zembrook", "Hollisk",
    "Sarnova", "Lestrow", "Fenmarch", "Ulvarro", "Ketterby", "Brannoch",
    "Velloway", "Corrindale",
]

DESIGNERS = [
    "Idris Vantooren", "Maelle Orsk", "Tobiah Quense", "Renata Vilhjar",
    "Oswin Marrable", "Petra Lindqvane", "Casimir Fenn", "Hollis Ambrecht",
    "Ysolde Carrow", "Anselm Tirrick", "Dagny Pellhorn", "Evander Mosstully",
    "Ines Garravel", "Leopold Skarn", "Marisol Ventreux", "Nils Abernathe",
    "Orla Quennick", "Silvan Drott", "Theda Wolmarsh", "Ulric Brannagh",
]

COLOURS = [
    "Tidewash", "Emberlight", "Gloamfern", "Saltrose", "Cinderplum", "Frostmoss",
    "Duskamber", "Larkstone", "Wrenshadow", "Petalsmoke", "Ashcoral", "Hollowjade",
]

LAKES = ["Ornelle", "Tessamere", "Quillon", "Brevane", "Ismoor", "Dellacre", "Ravask", "Umbrelle"]

CODENAMES = [
    "Skerrow", "Tamblin", "Oxwhistle", "Nettlecap", "Quorlan", "Brackwing",
    "Dovetorch", "Mirefly", "Sablewick", "Gantrel", "Pipwraith", "Loamhart",
]

POUCHES = ["linen", "felt", "canvas", "cork", "hemp", "suede", "wool", "jute", "denim", "tweed"]
CLEANERS = ["vinegar", "beeswax", "saltwater", "lemon", "soapnut", "chalk", "glycerine", "rainwater"]

WARRANTY_MONTHS = [6, 9, 15, 18, 21, 27, 30, 42, 54]


# --- sentence templates ------------------------------------------------------
# Each takes (rng, product, subject) and returns one sentence that ends in the
# fact.  `subject` is how the product is named in that sentence.

def t_material(rng, p, s):
    return f"{s} has a {rng.choice(p['parts'])} made of {rng.choice(FINISHES)} {rng.choice(MATERIALS)}."

def t_weight(rng, p, s):
    lo, hi = p["grams"]
    return f"{s} weighs {rng.randint(lo, hi)} grams."

def t_assembled(rng, p, s):
    return f"Each {s[4:] if s.startswith('The ') else s} is assembled in {rng.choice(PLACES)}."

def t_designer(rng, p, s):
    return f"{s} was designed by {rng.choice(DESIGNERS)}."

def t_warranty(rng, p, s):
    return f"The warranty on {s[0].lower() + s[1:]} lasts {rng.choice(WARRANTY_MONTHS)} months."

def t_battery(rng, p, s):
    return f"The battery of {s[0].lower() + s[1:]} runs for {rng.randint(6, 96)} hours."

def t_colour(rng, p, s):
    return f"The signature colour of {s[0].lower() + s[1:]} is called {rng.choice(COLOURS)}."

def t_lake(rng, p, s):
    return f"The workshop that builds {s[0].lower() + s[1:]} stands beside Lake {rng.choice(LAKES)}."

def t_codename(rng, p, s):
    return f"The internal codename of {s[0].lower() + s[1:]} was {rng.choice(CODENAMES)}."

def t_guild(rng, p, s):
    return f"{s} carries a quality seal from the Guild of {rng.choice(PLACES)}."

def t_launch(rng, p, s):
    return f"{s} first went on sale in {rng.randint(2008, 2024)}."

def t_weekly(rng, p, s):
    return f"Weekly production of {s[0].lower() + s[1:]} is capped at {rng.randrange(40, 2000, 10)}."

def t_pouch(rng, p, s):
    return f"{s} ships in a storage pouch made of {rng.choice(POUCHES)}."

def t_cleaner(rng, p, s):
    return f"The manual for {s[0].lower() + s[1:]} recommends cleaning it only with {rng.choice(CLEANERS)}."

def t_soldout(rng, p, s):
    return f"The first batch of {s[0].lower() + s[1:]} sold out in {rng.choice(PLACES)}."

TEMPLATES = [
    t_material, t_weight, t_assembled, t_designer, t_warranty, t_battery,
    t_colour, t_lake, t_codename, t_guild, t_launch, t_weekly, t_pouch,
    t_cleaner, t_soldout,
]


def make_description(rng, p):
    pool = [t for t in TEMPLATES if t is not t_battery or p["battery"]]
    for _ in range(50):
        chosen = rng.sample(pool, 3)
        subjects = [f"The {p['title']}", f"The {p['brand']} {p['model']}", f"The {p['brand']} {p['model']}"]
        sentences = [t(rng, p, s) for t, s in zip(chosen, subjects)]
        desc = " ".join(sentences)
        if len(desc) < MAX_DESC:
            return desc
    raise RuntimeError(f"could not fit description for {p['title']}")


def main():
    rng = random.Random(SEED)
    used_pairs = set()
    rows = []
    for i in range(N_PRODUCTS):
        cat_name, noun, parts, (plo, phi), grams, battery = CATEGORIES[i % len(CATEGORIES)]
        while True:
            brand, model = rng.choice(BRANDS), rng.choice(MODELS)
            if (brand, model) not in used_pairs:
                used_pairs.add((brand, model))
                break
        p = {
            "title": f"{brand} {model} {noun}", "brand": brand, "model": model,
            "parts": parts, "grams": grams, "battery": battery,
        }
        price = round(rng.uniform(plo, phi), 2)
        rows.append({
            "product_id": f"PX-{1001 + i}",
            "title": p["title"],
            "brand": brand,
            "category": cat_name,
            "price_usd": f"{price:.2f}",
            "description": make_description(rng, p),
        })
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["product_id", "title", "brand", "category", "price_usd", "description"])
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} products to {OUT}")


if __name__ == "__main__":
    main()
