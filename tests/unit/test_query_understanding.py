"""Query understanding: the lexicon, the speller's no-correction rules, completion and rewriting."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.analysis import analyze, raw_tokens
from indexer.errors import BadInputError
from ranker.base import Mode, SearchRequest, SearchResult
from ranker.query.lexicon import Lexicon, lexicon_of
from ranker.query.rewrite import QueryRewriter
from ranker.query.searcher import UnderstandingSearcher
from ranker.query.speller import Speller, max_edits

# (naming text, other text) per product: titles/brands name it, descriptions describe it
CATALOG = [
    ("Lenovo ThinkPad laptop", "business notebook"),
    ("HP laptop case", "protective sleeve"),
    ("Targus laptop case black", ""),
    ("Targus laptop backpack", "padded compartment"),
    ("Samsung phone case", "silicone"),
    ("Apple iPhone case", ""),
    ("Brother TN-2110 toner cartridge", "laser printer toner"),
    ("Brother TN-2120 toner", ""),
    ("HP laser printer", "wireless duplex"),
    ("Canon inkjet printer", ""),
    ("Sony wireless headphones", "noise cancelling"),
    ("Bose wireless earbuds", ""),
    ("Logitech wireless mouse", ""),
    ("Camera bag", "canvas"),
    ("Canon camera", "mirrorless"),
    ("Pro stand for ipad", ""),
    ("Ink refill", ""),
]


BRANDS = {"Lenovo", "HP", "Targus", "Samsung", "Apple", "Brother", "Canon", "Sony", "Bose", "Logitech"}


def _lexicon(rows=CATALOG) -> Lexicon:
    """Naming fields as the backends list them: title, name, brand (the first word when a brand), category."""

    def naming(title: str) -> list[list[str]]:
        first = title.split()[0]
        return [raw_tokens(title), [], raw_tokens(first) if first in BRANDS else [], []]

    return Lexicon.from_documents((naming(n), analyze(o)) for n, o in rows)


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return _lexicon()


@pytest.fixture(scope="module")
def rewriter(lexicon) -> QueryRewriter:
    return QueryRewriter(lexicon)


# -- lexicon -----------------------------------------------------------------------------------
def test_lexicon_counts_products_prefixes_and_co_occurrence(lexicon):
    assert lexicon.count("laptop") == 4 and lexicon.count("case") == 4
    assert lexicon.known("sleeve") and lexicon.id("sleeve") is None  # described, not named
    assert not lexicon.known("sleev")
    assert [lexicon.terms[j] for j in lexicon.with_prefix("ca")] == ["camera", "canon", "cartridge", "case"]
    assert len(lexicon.with_prefix("zz")) == 0 and len(lexicon.with_prefix("")) == 0
    cands = np.asarray([lexicon.id("case"), lexicon.id("backpack"), lexicon.id("toner")])
    # with "laptop": products naming both (a reference count over the rows)
    expected = [
        sum(1 for n, _ in CATALOG if {"laptop", t} <= set(analyze(n))) for t in ("case", "backpack", "toner")
    ]
    assert lexicon.co_counts(cands, [lexicon.id("laptop")]).tolist() == expected == [2, 1, 0]
    assert lexicon.co_counts(cands, []).tolist() == [4, 1, 2]


def test_affinity_falls_back_to_any_context_term_then_to_frequency(lexicon):
    cands = np.asarray([lexicon.id("case"), lexicon.id("toner")])
    ids = [lexicon.id("samsung"), lexicon.id("brother")]
    assert lexicon.co_counts(cands, ids).tolist() == [0, 0]  # no product names both context terms
    assert lexicon.affinity(cands, ids).tolist() == [1, 2]  # each with one of them
    assert lexicon.affinity(cands, [lexicon.id("mouse")]).tolist() == [4, 2]  # plain frequency


def test_fingerprint_tells_vocabularies_apart(lexicon):
    assert lexicon.fingerprint() == _lexicon().fingerprint()
    assert lexicon.fingerprint() != _lexicon(CATALOG[:-1]).fingerprint()


def test_lexicon_of_a_backend_that_cannot_list_its_vocabulary_is_none():
    assert lexicon_of(object()) is None


# -- speller: what it never touches ------------------------------------------------------------
def test_edit_budget_follows_word_length_and_spares_model_numbers():
    assert [max_edits(w) for w in ("ink", "inkk", "lapto", "laptopp", "headphoness")] == [0, 1, 1, 1, 2]
    assert max_edits("tn-2110") == max_edits("tn2110") == max_edits("16gb") == 0
    assert max_edits("café") == 0  # only ASCII letters (folded input never has accents)


@pytest.mark.parametrize(
    "term",
    [
        "ink",  # short: under 4 letters is never corrected
        "tn2120",  # model numbers are never corrected
        "2110",
        "sleeve",  # a real (described) word
        "laptop",  # a real (named) word
        "xyzzyq",  # nothing within reach
        "lapxxxp",  # three edits away: beyond the budget
    ],
)
def test_no_correction(lexicon, term):
    assert Speller(lexicon).correct(term) is None


def test_one_edit_from_four_letters_two_from_eight(lexicon):
    sp = Speller(lexicon)
    assert sp.correct("canin").corrected == "canon"  # substitution
    assert sp.correct("lpatop").corrected == "laptop"  # transposition is one edit
    assert sp.correct("headphnes").corrected == "headphone"  # a stem: "headphones" → "headphone"
    assert sp.correct("hedphne", raw="hedphnes").corrected == "headphone"  # two edits at 8 letters
    assert sp.correct("lptp") is None  # two edits at 4 letters: no
    fix = sp.correct("wirelse", raw="wirelses")  # the stemmer cut the typo's "s": raw is looked up too
    assert fix is not None and fix.corrected == "wireless" and fix.edits == 1


def test_a_typo_in_a_plural_counts_its_edits_from_the_plural():
    rows = [("Paperback books", ""), ("Batterie externe", ""), ("Windows 10", "")]
    sp = Speller(_lexicon(rows + [("AA batteries", "")] * 3))
    # "booksd" is one edit from "books" but two from the stem "book" (beyond 6 letters' budget)
    assert sp.correct("booksd", raw="booksd").corrected == "book"
    # "batterikes": one edit from "batteries" (3 products) as from "batterie" (1): within reach
    # through its plural, "battery" is a candidate, and the commoner one wins
    assert sp.correct("batterike", raw="batterikes").corrected == "battery"
    assert sp.correct("windoe", raw="windoes").corrected == "window"
    assert sp.correct("book", raw="books") is None  # a plural of a catalog word is no typo


def test_ties_keep_the_first_letter_then_follow_the_context(lexicon):
    sp = Speller(lexicon)
    # "cass" is one edit from "case" and from "bass"-like words only if they exist; with "laptop"
    # as context the candidate laptop products name wins
    assert sp.correct("cass", [lexicon.id("laptop")]).corrected == "case"
    # a transposition is one edit
    assert sp.correct("prinetr").corrected == "printer"
    rows = [("Aaaa bbbb", "")] * 5 + [("Caaaa", "")]
    # "baaaa": one edit from "aaaa" (delete b, 5 products) and from "caaaa" (1 product): the first
    # letter is kept where a candidate keeps it... neither does; then the more frequent wins
    assert Speller(_lexicon(rows)).correct("baaaa").corrected == "aaaa"
    rows = [("Aaaa", "")] * 5 + [("Baaab", "")]
    assert Speller(_lexicon(rows)).correct("baaaa").corrected == "baaab"  # keeps "b", though rarer


def test_a_term_the_live_index_holds_is_not_corrected(lexicon):
    sp = Speller(lexicon)
    asked = []

    def confirm(term: str) -> bool:
        asked.append(term)
        return True

    assert sp.correct("canin", confirm=confirm) is None and asked == ["canin"]
    assert sp.correct("laptop", confirm=confirm) is None and asked == ["canin"]  # known: not even asked


# -- rewriting ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "query",
    ["laptop case", "brother tn-2110 toner", "wireless mouse", "ink", "pro stand", "Targus laptop case "],
)
def test_clean_queries_are_searched_as_typed(rewriter, query):
    interp = rewriter.rewrite(query)
    assert (
        interp.query == query and not interp.changed and not interp.corrections and interp.completion is None
    )


def test_the_word_being_typed_is_completed_with_the_context(rewriter):
    interp = rewriter.rewrite("laptop ca")
    assert interp.query == "laptop case"
    assert interp.completion is not None and interp.completion.prefix == "ca"
    assert rewriter.rewrite("canon ca").query == "canon camera"
    assert rewriter.rewrite("thinkp").query == "thinkpad"


def test_the_word_being_typed_is_completed_from_its_letters_not_its_stem(rewriter):
    # "cas" stems to "ca" (a plural's "s" dropped): completing "ca" gave "camera canon"
    assert rewriter.rewrite("camera cas").query == "camera case"
    assert rewriter.rewrite("Samsung phone cas").completion.completed == "case"
    # a finished plural still finds its singular's completions
    assert rewriter.rewrite("laptop cases").query == "laptop cases"


def test_a_completion_that_heads_a_product_type_leads():
    from ranker.query.types import TypeModel

    # as many products name "ipad" with "startech" (a brand) as with "stand" (a type they are)
    titles = [f"StarTech PAD{n}0 iPad stand Black" for n in range(6)]
    titles += [f"StarTech CBL{n}0 iPad cable White" for n in range(6)]
    titles += [f"Acme ST{n}0 stand Grey" for n in range(5)]
    rows = [(t, "") for t in titles]
    lexicon = _lexicon(rows)
    assert lexicon.count("startech") > lexicon.count("stand")
    assert QueryRewriter(lexicon).rewrite("ipad st").query == "ipad startech"  # counts alone
    types = TypeModel.fit(rows, classifier=False)
    assert types.head_share["stand"] == 1.0
    assert QueryRewriter(lexicon, types=types).rewrite("ipad st").query == "ipad stand"


def test_the_shops_engaged_queries_lead_completions_with_the_same_context():
    rows = [(f"Acme L{n}0 labels White", "") for n in range(30)]
    rows += [(f"Acme N{n}0 laptop Silver", "") for n in range(5)]
    lexicon = _lexicon(rows)
    assert QueryRewriter(lexicon).rewrite("la").query == "labels"  # the catalog alone
    logged = QueryRewriter(lexicon, queries={"laptop bag": 3})  # analyzed text → engaged shoppers
    assert logged.rewrite("la").query == "laptop"  # 5 × (1 + 3)² outweighs 30
    assert logged.rewrite("acme la").query == "acme labels"  # no logged query names "acme"
    rw = QueryRewriter(lexicon)
    rw.use(lexicon, queries={"laptop": 4})
    assert rw.rewrite("la").query == "laptop"
    rw.use(lexicon)  # None keeps the log
    assert rw.rewrite("la").query == "laptop"


def test_completions_are_ranked_as_the_rewrite_completes():
    rows = [(f"Acme L{n}0 labels White", "") for n in range(30)]
    rows += [(f"Acme N{n}0 laptop Silver", "") for n in range(5)] + [("Lamp shade", "")]
    lexicon = _lexicon(rows)
    rw = QueryRewriter(lexicon)
    assert rw.completions("la") == ["labels", "laptop", "lamp"]  # products naming each
    assert rw.completions("la")[0] == rw.rewrite("la").query
    assert rw.completions("acme la") == ["labels", "laptop"]  # no Acme lamp: not a completion
    assert QueryRewriter(lexicon, queries={"laptop": 4}).completions("la")[0] == "laptop"
    assert rw.completions("") == [] and rw.completions("zq") == []


def test_a_finished_word_is_not_completed(rewriter):
    assert rewriter.rewrite("laptop ca ").query == "laptop ca "
    assert rewriter.rewrite("laptop ca.").completion is None  # punctuation after it: finished


def test_a_real_last_word_stays_and_likelier_completions_join_the_lexical_leg():
    rows = [("Pro camera", "")] * 4 + [("Procam professional camera", "")] * 12
    interp = QueryRewriter(_lexicon(rows)).rewrite("pro")
    assert interp.query == "pro" and interp.completion is None
    assert [t for t, _ in interp.expansions][:2] == ["procam", "professional"]
    assert all(0 < w < 1 for _, w in interp.expansions)


def test_typos_are_corrected_anywhere_and_the_text_around_them_kept(rewriter):
    interp = rewriter.rewrite("Targus lpatop, case")
    assert interp.query == "targus laptop, case"
    assert [(c.original, c.corrected) for c in interp.corrections] == [("lpatop", "laptop")]
    assert interp.as_dict()["corrected_query"] == "targus laptop, case"


def test_a_mistyped_last_word_is_corrected_when_no_completion_fits(rewriter):
    interp = rewriter.rewrite("laser prniter")
    assert interp.query == "laser printer" and interp.completion is None


def test_nothing_to_read(rewriter):
    for q in ("!!!", "   "):
        assert rewriter.rewrite(q).query == q


def test_understanding_searcher_searches_the_rewrite_unless_exact(rewriter):
    seen: list[SearchRequest] = []

    class Inner:
        def search(self, req, options=None):
            seen.append(req)
            return SearchResult([], Mode.HYBRID, {"total": 1.0})

    s = UnderstandingSearcher(Inner(), rewriter)
    res = s.search(SearchRequest("laptop ca"))
    assert seen[-1].query == "laptop case" and res.interpretation.completion is not None
    assert "understand" in res.timings_ms
    res = s.search(SearchRequest("laptop ca", exact=True))
    assert seen[-1].query == "laptop ca" and seen[-1].expansions == ()
    assert res.interpretation.exact and res.interpretation.query == "laptop ca"


def test_expansions_are_bounded_and_weighted():
    SearchRequest("q", expansions=(("a", 0.5),))
    for bad in ((("a", 0.0),), (("a", 2.0),), (("", 0.5),), tuple(("a", 0.5) for _ in range(11))):
        with pytest.raises(BadInputError, match="expansions"):
            SearchRequest("q", expansions=bad)


def test_brands_and_model_numbers_are_detected(rewriter):
    interp = rewriter.rewrite("brother tn-2110 toner")
    assert interp.brands == ("brother",) and interp.models == ("tn-2110",)
    assert interp.query == "brother tn-2110 toner"  # detected, never corrected
    assert rewriter.rewrite("samsung phone case").brands == ("samsung",)
    none = rewriter.rewrite("laptop case 16gb")
    assert none.brands == () and none.models == ()  # a measure is no model number
    assert rewriter.rewrite("tn-9999 toner").models == ()  # a model no product names


def test_the_word_being_typed_beats_a_typo_unless_the_typo_is_far_likelier():
    rows = [("SD card", "")] * 20 + [("SD cradle", "")] + [("Ear pads", "")] * 15 + [("Earbuds case", "")] * 2
    rw = QueryRewriter(_lexicon(rows))
    assert rw.rewrite("sd crad").query == "sd card"  # "card": one edit, 20 products; "cradle": 1
    assert rw.rewrite("earb").query == "earbuds"  # "ear" (one edit) is likelier, but not 10 times


def test_a_word_being_typed_is_not_corrected_by_dropping_its_last_letters():
    # "microw" is one deletion from "micro" (30 products, with no context far likelier than
    # "microwave"), but a shopper typing "microwave" passes through it: no typo drops its own end
    rows = [("Micro USB cable", "")] * 30 + [("Microwave oven", "")] * 2 + [("Earbuds case", "")]
    rows += [("Ear pads", "")] * 40
    rw = QueryRewriter(_lexicon(rows))
    assert rw.rewrite("microw").query == "microwave"
    assert rw.rewrite("earbu").query == "earbuds"
    assert rw.rewrite("microw ").query == "micro "  # a finished word: a typo, corrected


def test_a_function_word_typed_last_with_no_product_naming_it_with_the_rest_is_a_prefix():
    rows = [("Xbox One controller", "")] * 2 + [("Plug on wall", "")] * 30
    rows += [("Brother TN-2110 toner", "")] + [("Guide to printers", "")] * 20
    rows += [("Phone case", "")] * 3 + [("Phone cordless", "")] * 3 + [("Power cord", "")] * 20
    rw = QueryRewriter(_lexicon(rows))
    assert rw.rewrite("xbox on").query == "xbox one"
    assert rw.rewrite("brother tn-2110 to").query == "brother tn-2110 toner"
    # other common words stay as typed, whatever the context
    assert rw.rewrite("phone cord").query == "phone cord"
    assert rw.rewrite("on").query == "on"  # nothing else typed: the word itself


def test_a_word_only_descriptions_hold_completes_too(rewriter):
    interp = rewriter.rewrite("nois")  # "noise" is in a description ("noise cancelling"), no title
    assert interp.query == "noise" and interp.completion is not None
