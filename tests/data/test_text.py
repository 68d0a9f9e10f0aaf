from data.text import amazon_item_text, movielens_item_text, text_title


def test_amazon_text_all_fields_in_order():
    meta = {
        "title": "Tom &amp; Jerry",
        "brand": "Acme",
        "categories": [["Toys", "Games"], ["Other"]],
        "price": 5,
    }
    assert (
        amazon_item_text("X1", meta)
        == "Title: Tom & Jerry; Brand: Acme; Categories: Toys, Games; Price: $5.00"
    )


def test_amazon_text_leaves_out_missing_fields_and_unknown_brand():
    meta = {"title": "  ", "brand": "unknown", "categories": ["Beauty", "Nails"], "price": float("nan")}
    assert amazon_item_text("X1", meta) == "Categories: Beauty, Nails"
    assert amazon_item_text("X1", {"title": "T", "price": "n/a", "brand": None}) == "Title: T"


def test_amazon_text_without_metadata_is_the_asin():
    assert amazon_item_text("B00X", None) == "ASIN: B00X"
    assert amazon_item_text("B00X", {"categories": []}) == "ASIN: B00X"


def test_movielens_text():
    assert movielens_item_text("Heat (1995)", "Action|Crime") == "Title: Heat (1995); Genres: Action, Crime"
    assert movielens_item_text("Solo (2020)", "(no genres listed)") == "Title: Solo (2020)"


def test_title_is_read_back_from_every_template():
    meta = {"title": "Lip Gloss; Pink", "brand": "Acme", "categories": ["Beauty"], "price": 5}
    assert text_title(amazon_item_text("X1", meta)) == "Lip Gloss; Pink"
    assert text_title(amazon_item_text("X1", {"title": "Only a title"})) == "Only a title"
    assert text_title(movielens_item_text("Heat (1995)", "Action")) == "Heat (1995)"
    assert text_title(amazon_item_text("X1", {"brand": "Acme"})) is None
    assert text_title(amazon_item_text("B00X", None)) is None
