"""A deterministic synthetic shop: a catalogue with real structure and user sequences a model can learn.

Catalogue: `n_categories` categories (each in a department, with its own product nouns and a few brands);
item text = data.text.amazon_item_text of {title "<brand> <adjective> <noun> <model no.>", brand,
categories [department, category], price}. Item popularity inside a category follows a Zipf law.
Sequences: the category of the next item follows a Markov chain (to the "next" category with `p_next`, the
same category with `p_stay`, any category otherwise); the item is drawn by popularity inside that category,
never repeating an item within a user. Knowing the last item's category therefore predicts the next item far
better than global popularity does, which gives a clear bar for a sequence model to beat.
"""

import gin
import numpy as np

from data.schema import RawDataset, check_dataset
from data.text import amazon_item_text

CATEGORIES = [  # (department, category, product nouns)
    ("Beauty", "Lipstick", ["lipstick", "lip gloss", "lip liner"]),
    ("Beauty", "Nail Polish", ["nail polish", "nail lacquer", "top coat"]),
    ("Beauty", "Shampoo", ["shampoo", "conditioner", "hair mask"]),
    ("Beauty", "Skin Care", ["face cream", "serum", "moisturizer"]),
    ("Sports", "Running", ["running shoes", "running shorts", "sports watch"]),
    ("Sports", "Camping", ["tent", "sleeping bag", "camping stove"]),
    ("Sports", "Cycling", ["bike helmet", "bike light", "cycling gloves"]),
    ("Sports", "Fitness", ["yoga mat", "dumbbell set", "resistance band"]),
    ("Toys", "Board Games", ["board game", "strategy game", "party game"]),
    ("Toys", "Puzzles", ["jigsaw puzzle", "3D puzzle", "puzzle cube"]),
    ("Toys", "Building Sets", ["building set", "brick kit", "construction set"]),
    ("Toys", "Dolls", ["fashion doll", "doll house", "baby doll"]),
    ("Kitchen", "Coffee", ["coffee grinder", "espresso cup", "french press"]),
    ("Kitchen", "Baking", ["baking tray", "cake mold", "rolling pin"]),
    ("Kitchen", "Knives", ["chef knife", "knife block", "sharpener"]),
    ("Kitchen", "Storage", ["food container", "spice rack", "bread box"]),
]
BRANDS = ["Aurora", "Bexley", "Corvina", "Dalmore", "Elara", "Fenwick", "Galvan", "Halden", "Ivory Peak",
          "Juniper", "Kestrel", "Lumen", "Marlow", "Nordic Fox", "Orla", "Pinecrest"]  # fmt: skip
ADJECTIVES = ["classic", "deluxe", "compact", "organic", "premium", "travel", "pro", "soft", "bright", "mini"]
BRANDS_PER_CATEGORY = 4


def category_transitions(n_categories: int, p_next: float, p_stay: float) -> np.ndarray:
    """[K, K] row-stochastic: c -> c+1 (mod K) with p_next, c -> c with p_stay, the rest spread uniformly."""
    rest = (1.0 - p_next - p_stay) / n_categories
    if rest < 0:
        raise ValueError(f"p_next + p_stay must be <= 1, got {p_next} + {p_stay}")
    eye = np.eye(n_categories)
    return p_stay * eye + p_next * np.roll(eye, 1, axis=1) + rest


def make_catalogue(rng: np.random.Generator, n_items: int, n_categories: int) -> tuple[np.ndarray, list[str]]:
    """(category of each item [I] int64, item texts). Every category gets items when n_items >= K."""
    item_cat = rng.permutation(np.arange(n_items) % n_categories).astype(np.int64)
    cat_brands = [rng.choice(len(BRANDS), BRANDS_PER_CATEGORY, replace=False) for _ in range(n_categories)]
    texts = []
    for item, cat in enumerate(item_cat):
        department, category, nouns = CATEGORIES[cat]
        brand = BRANDS[rng.choice(cat_brands[cat])]
        title = f"{brand} {rng.choice(ADJECTIVES)} {rng.choice(nouns)} {rng.integers(100, 1000)}"
        price = float(np.round(rng.lognormal(np.log(10 + 5 * cat), 0.5), 2))
        meta = {"title": title, "brand": brand, "categories": [department, category], "price": price}
        texts.append(amazon_item_text(f"syn{item:05d}", meta))
    return item_cat, texts


def zipf_weights(rng: np.random.Generator, item_cat: np.ndarray, alpha: float) -> np.ndarray:
    """[I] popularity weights: inside each category, a random ranking weighted rank^-alpha (rank from 1)."""
    weights = np.empty(len(item_cat))
    for cat in np.unique(item_cat):
        members = np.flatnonzero(item_cat == cat)
        weights[members] = (1.0 + rng.permutation(len(members))) ** -alpha
    return weights


def sample_sequence(rng: np.random.Generator, length: int, transitions: np.ndarray, item_cat: np.ndarray,
                    weights: np.ndarray) -> np.ndarray:  # fmt: skip
    """One user's items [length] int64 (no repeats): Markov chain over categories, popularity inside one."""
    seen = np.zeros(len(item_cat), dtype=bool)
    cat = rng.choice(len(transitions))
    items = []
    for _ in range(min(length, len(item_cat))):
        w = weights * ~seen * (item_cat == cat)
        if w.sum() == 0:  # category used up: any unseen item by popularity
            w = weights * ~seen
        item = rng.choice(len(w), p=w / w.sum())
        seen[item] = True
        items.append(item)
        cat = rng.choice(len(transitions), p=transitions[item_cat[item]])
    return np.array(items, dtype=np.int64)


@gin.configurable
def load_synthetic(
    n_items: int = 200,
    n_users: int = 300,
    seed: int = 0,
    n_categories: int = 12,
    min_len: int = 5,
    max_len: int = 20,
    p_next: float = 0.6,
    p_stay: float = 0.25,
    zipf_alpha: float = 1.0,
) -> RawDataset:
    """The shop of the module docstring (same arguments, same data); lengths ~ U{min_len..max_len}."""
    if not 1 <= n_categories <= len(CATEGORIES):
        raise ValueError(f"n_categories must be in 1..{len(CATEGORIES)}, got {n_categories}")
    rng = np.random.default_rng(seed)
    item_cat, texts = make_catalogue(rng, n_items, n_categories)
    weights = zipf_weights(rng, item_cat, zipf_alpha)
    transitions = category_transitions(n_categories, p_next, p_stay)
    lengths = rng.integers(min_len, max_len + 1, size=n_users)
    sequences = [sample_sequence(rng, int(n), transitions, item_cat, weights) for n in lengths]
    keys = [f"syn{i:05d}" for i in range(n_items)]
    user_ids = np.arange(1, n_users + 1, dtype=np.int64)
    return check_dataset(RawDataset("synthetic", sequences, user_ids, keys, texts))
