"""Search-box suggestions: catalog phrases, the shop's engaged queries, typos, product counts."""

from __future__ import annotations

from indexer.analysis import minimal_english_stem, raw_tokens
from indexer.events import Event, QueryRecord
from plugin_api.backends import shop_queries
from ranker.query.lexicon import Lexicon
from ranker.query.suggest import ENGAGED, MIN_PHRASE_PRODUCTS, Suggester, catalog_phrases, engaged_queries

TITLES = (
    ["Targus laptop case black"] * 4
    + ["HP laptop sleeve"] * 2
    + ["Logitech wireless mouse"] * 3
    + ["Mouse wireless Logitech"] * 2  # another word order
    + ["Sony wireless headphones"] * 3
    + ["Nikon camera lens"] * 3
)


def _suggester(queries=None) -> Suggester:
    lex = Lexicon.from_documents(([raw_tokens(t)], []) for t in TITLES)
    titles = [[minimal_english_stem(w) for w in raw_tokens(t)] for t in TITLES]
    return Suggester(lex, catalog_phrases(titles, ["Targus"]), queries)


def test_catalog_phrases_count_products_once_and_skip_glue():
    counts = catalog_phrases([["laptop", "case", "for", "laptop"], ["case", "for", "phone"]])
    assert counts["laptop"] == 1 and counts["case"] == 2
    assert "case for" not in counts and "for phone" not in counts and counts["case for phone"] == 1


def test_prefix_completion_with_counts_and_the_catalog_spelling():
    sg = _suggester()
    top = sg.suggest("laptop c")
    assert [(s.text, s.products) for s in top][:1] == [("laptop case", 4)]
    assert sg.suggest("camera l")[0].text == "camera lens"  # spelled "lens", not the stem "len"
    assert all(s.text.startswith("laptop") for s in sg.suggest("lap"))
    assert len(sg.suggest("l", k=2)) == 2


def test_the_shoppers_word_order_is_completed_too():
    found = {s.text: s.products for s in _suggester().suggest("wireless mo")}
    assert found["wireless mouse"] == 5  # products naming both words, whatever their order


def test_typos_are_forgiven():
    sg = _suggester()
    assert sg.suggest("wirless mo")[0].text == "wireless mouse"  # a typo in a finished word
    assert sg.suggest("headphnes")[0].text == "headphones"  # a typo in the word being typed
    assert sg.suggest("lpatop ")[0].text.startswith("laptop")


def test_nothing_for_nothing():
    sg = _suggester()
    assert sg.suggest("") == [] and sg.suggest("zzzzqq") == [] and sg.suggest("laptop", k=0) == []


def test_engaged_queries_count_distinct_vouched_shoppers():
    texts = {"q1": "Laptop Cases", "q2": "wireless mouse", "q3": "cheap"}
    events = [
        ("q1", "ann", "click", True),
        ("q1", "ann", "purchase", True),  # the same shopper again: still one
        ("q1", "bob", "add_to_cart", True),
        ("q2", "eve", "click", False),  # not vouched for: ignored
        ("q3", "cat", "impression", True),  # not engagement
        (None, "dan", "click", True),
    ]
    assert engaged_queries(texts, events) == {"laptop case": 2}


def test_every_action_that_counts_as_a_click_or_more_is_engagement():
    """The Chorus UBI log clicks with "item_click": a shop's clicks in that spelling engage too,
    as the personalization weights already read them (one list of actions, not two)."""
    from ranker.signals.personalization import ACTION_WEIGHTS

    assert {a for a, w in ACTION_WEIGHTS.items() if w >= ACTION_WEIGHTS["click"]} <= ENGAGED
    assert engaged_queries({"q1": "usb stick"}, [("q1", "ann", "item_click", True)]) == {"usb stick": 1}
    assert not {"impression", "product_hover", "view", "declined_product"} & ENGAGED


def test_engaged_queries_lead_and_floods_buy_nothing():
    sg = _suggester({"laptop sleeve": 30})
    assert sg.suggest("laptop")[0].text == "laptop sleeve" and sg.suggest("laptop")[0].source == "queries"

    class Events:
        name = "fake"

        def __init__(self, events, records):
            self._events, self._records = events, records

        def events(self, since=None):
            return self._events

        def queries(self, ids):
            return {i: self._records[i] for i in ids if i in self._records}

    flood = [
        Event("click", f"bot{i}", 1.0, query_id="qx", product_id="p1", trusted=False, verified=False)
        for i in range(500)
    ]
    real = [
        Event("click", "ann", 1.0, query_id="qy", product_id="p1", trusted=False, verified=True),
        Event("purchase", "bob", 1.0, query_id="qy", product_id="p1"),
    ]
    records = {
        "qx": QueryRecord("qx", "bot0", "buy my brand", 1.0),
        "qy": QueryRecord("qy", "ann", "laptop case", 1.0),
    }
    assert shop_queries(Events(flood + real, records)) == {"laptop case": 2}


def test_rare_phrases_are_not_suggested_but_brands_are():
    sg = _suggester()
    texts = {s.text for s in sg.suggest("hp")}
    assert TITLES.count("HP laptop sleeve") < MIN_PHRASE_PRODUCTS and "hp laptop sleeve" not in texts
    assert sg.suggest("targ")[0].text.lower() == "targus"


def test_a_refresh_brings_the_query_log_into_completion_too():
    from ranker.query.vocabulary import Vocabulary

    class Source:
        def naming_documents(self):
            for n in range(30):
                yield [raw_tokens(f"Acme L{n}0 labels"), [], ["acme"], []], [], (f"Acme L{n}0 labels", "")
            for n in range(5):
                yield [raw_tokens(f"Acme N{n}0 laptop"), [], ["acme"], []], [], (f"Acme N{n}0 laptop", "")

    log: dict[str, int] = {}
    vocab = Vocabulary(Source(), shop_queries=lambda: dict(log))
    assert vocab.rewriter.rewrite("la").query == "labels"
    log["laptop"] = 3  # shoppers searched "laptop" and engaged
    vocab.refresh()
    assert vocab.rewriter.rewrite("la").query == "laptop"
    assert vocab.suggester.suggest("la")[0].text == "laptop"


def test_the_word_being_typed_is_matched_by_its_letters_not_its_stem():
    # "cas" stems to "ca" (a plural's "s" dropped), which started "camera" too
    sug = _suggester().suggest("cas")
    assert sug and all(s.text.startswith("cas") for s in sug)
    assert [s.text for s in _suggester().suggest("laptop cases")][:1] == [
        "laptop case"
    ]  # a plural typed whole


def test_a_refresh_with_nothing_new_rebuilds_nothing():
    """The scheduled refresh rebuilds only when the source's generation or the query log moved:
    a rebuild holds the interpreter for seconds on a real catalog, every few minutes."""
    from ranker.query.vocabulary import Vocabulary

    class Source:
        reads = 0
        gen = 1

        def naming_documents(self):
            Source.reads += 1
            yield [raw_tokens("Acme laptop"), [], ["acme"], []], [], ("Acme laptop", "")

        def generation(self):
            return Source.gen

    log: dict[str, int] = {}
    vocab = Vocabulary(Source(), shop_queries=lambda: dict(log))
    assert Source.reads == 1
    assert vocab.refresh() is False and Source.reads == 1  # nothing new
    log["laptop"] = 2
    assert vocab.refresh() is True and Source.reads == 2  # the log moved
    Source.gen = 2
    assert vocab.refresh() is True and Source.reads == 3  # the catalog moved
    assert vocab.refresh() is False and Source.reads == 3

    class Unknown:  # a source that cannot say: always rebuilt
        def naming_documents(self):
            yield [raw_tokens("Acme laptop"), [], ["acme"], []], [], ("Acme laptop", "")

    assert Vocabulary(Unknown()).refresh() is True
