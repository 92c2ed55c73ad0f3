"""Product types: what a product *is* ("toner cartridge", "notebook case", "processor") and which
types a query asks for ("hp toner" → toner, "laptop case" → the cases, "printer" → printers, not
printer drums).

A product's types come, in this order of trust, from
1. its ``category`` (Icecat's ``attr_t_product_type``; only some products carry one);
2. its title's *type slot*: Icecat titles read ``Brand Model <category in lower case> specs``
   ("OKI 42918914 toner cartridge Original Magenta"), so the first lower-case run of words after
   the brand, not a unit after a number nor a colour, names the type, once enough products share it;
3. a known type phrase written anywhere in its title, any case ("… Laptop Lock — Master");
4. otherwise a text classifier (TF-IDF words of the title → type, scikit-learn's linear SVM)
   trained on the products typed by 1–3 and checked on a held-out part of them
   (:meth:`TypeModel.holdout`).

A query's intended types are read from its words the way English names things: the *last* word
of the query that ends some type phrase is the head ("printer cable" asks for cables), and among
the types with that head the ones sharing most words with the query win ("phone case" → mobile
phone case, not camera case). A query naming no type has no intent, and the feature stays neutral.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indexer.analysis import minimal_english_stem, raw_tokens
from ranker.base import TypeIntent

log = logging.getLogger(__name__)

MIN_TYPE_PRODUCTS = 5  # a title slot becomes a type once this many products share it
# a query's last word asks for a type only when at least this share of the products whose title
# holds the word are of a type it ends ("printer" yes; "computer": mostly computer cases, monitors…)
MIN_HEAD_SHARE = 0.1
MAX_TYPE_WORDS = 4  # longer lower-case runs are descriptions, not a category name
MIN_CLASSIFIER_MARGIN = 0.0  # the SVM's decision value a predicted type needs (0: its own side)
MAX_INTENT_TYPES = 10
MIN_COMPOUND_LABELS = 3  # categorised products a compound of two type phrases needs (_compounds)

_WORD = re.compile(r"^[a-z][a-z\-/&']*[a-z]$")  # a lower-case word as Icecat writes categories
_MEASURE = re.compile(r"^[\d.,/()x\"']+(st|nd|rd|th)?$")  # "39.6", "(15.6\")", "8th": units follow
# words that join or pad a run and never name a type on their own
_FILLER = frozenset(
    [
        "a",
        "an",
        "and",
        "by",
        "for",
        "from",
        "in",
        "incl",
        "of",
        "on",
        "or",
        "over",
        "per",
        "the",
        "to",
        "up",
        "with",
        "x",
        "pc",
        "pcs",
        "pieces",
    ]
)
# a colour right after the model is a variant ("HP 302 black"), not a category
_COLOURS = frozenset(
    [
        "black",
        "white",
        "gray",
        "grey",
        "silver",
        "red",
        "blue",
        "green",
        "yellow",
        "cyan",
        "magenta",
        "pink",
        "purple",
        "orange",
        "brown",
        "gold",
        "beige",
        "transparent",
    ]
)

# per product: its title as written (case kept: the type slot is read from it) and its category
TypedText = tuple[str, str]


def title_slot(title: str) -> str | None:
    """The first lower-case run of words after the title's first two words (brand, model), trimmed
    of joining words: Icecat's category name in the title, or None."""
    toks = title.split()
    run: list[str] = []
    for i, tok in enumerate(toks[1:], start=1):
        # not right after the brand ("Jan van Haasteren", "Motorola one"), nor a unit after a
        # number other than the model ("39.6 cm"; "OKI 42918914 toner" is typed), nor a colour
        after_number = i > 2 and _MEASURE.match(toks[i - 1])
        opens = i > 1 and not (after_number or tok in _COLOURS)
        if _WORD.match(tok) and (run or opens):
            run.append(tok)
            continue
        if (phrase := _trim(run)) is not None:
            return phrase
        run = []
    return _trim(run)


def _trim(run: list[str]) -> str | None:
    words = list(run)
    while words and words[0] in _FILLER:
        words.pop(0)
    while words and words[-1] in _FILLER:
        words.pop()
    if not words or len(words) > MAX_TYPE_WORDS:
        return None
    return " ".join(words)


def type_terms(phrase: str) -> tuple[str, ...]:
    """A type phrase as analyzed terms ("Headphones/Headset" → headphone, headset)."""
    return tuple(minimal_english_stem(w) for w in raw_tokens(phrase))


def type_heads(phrase: str) -> frozenset[str]:
    """The words a type phrase ends with: its last word, and each alternative of a slashed one
    ("power adapter/inverter" → adapter, inverter)."""
    words = phrase.lower().split()
    if not words:
        return frozenset()
    return frozenset(minimal_english_stem(w) for alt in words[-1].split("/") for w in raw_tokens(alt))


def _label(category: str) -> str | None:
    label = " ".join(raw_tokens(category))
    return label if label and not label.isdigit() and any(c.isalpha() for c in label) else None


@dataclass(frozen=True)
class TypeModel:
    """Type phrases with their product counts, the phrases each head word ends, and a classifier
    for products whose text names no known type."""

    counts: dict[str, int]  # type phrase → products typed with it (by category, slot or title)
    heads: dict[str, frozenset[str]] = field(repr=False, default_factory=dict)  # head → phrases
    terms: dict[str, frozenset[str]] = field(repr=False, default_factory=dict)  # phrase → its terms
    classifier: _Classifier | None = field(repr=False, default=None)
    known: dict[TypedText, frozenset[str]] = field(repr=False, default_factory=dict)  # fit-time cache
    matcher: _PhraseMatcher | None = field(repr=False, default=None)
    fingerprint: str = ""  # of the (title, category) pairs it was fitted on
    head_share: dict[str, float] = field(repr=False, default_factory=dict)  # see MIN_HEAD_SHARE

    # -- fitting ---------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls, docs: Iterable[TypedText], *, classifier: bool = True, previous: TypeModel | None = None
    ) -> TypeModel:
        """Learn the catalog's types from its products' (title, category); ``previous`` is
        returned as it is when it was fitted on the same products (a refresh refits only after
        the catalog changed)."""
        docs = list(docs)
        if previous is not None and previous.fingerprint == _fingerprint(docs):
            return previous
        slots, typed, compounds = _typed_by_text(docs)
        model = cls._with(Counter(p for ts in typed for p in ts), compounds=compounds)
        if classifier:
            clf = _train(
                [(t, _primary(ts, t, s)) for (t, _), ts, s in zip(docs, typed, slots, strict=True) if ts]
            )
            model = cls._with(model.counts, clf, compounds=compounds)
        untyped = [doc for doc, ts in zip(docs, typed, strict=True) if not ts]
        known = dict(zip(untyped, model._predict([t for t, _ in untyped]), strict=True))
        known.update((doc, ts) for doc, ts in zip(docs, typed, strict=True) if ts)
        model = cls._with(
            Counter(p for ts in known.values() for p in ts),
            model.classifier,
            known,
            _fingerprint(docs),
            compounds,
        )
        log.info(
            "product types: %d types; %d of %d products typed by their text, %d by the classifier",
            len(model.counts),
            sum(1 for ts in typed if ts),
            len(docs),
            sum(1 for doc, ts in zip(docs, typed, strict=True) if not ts and known[doc]),
        )
        return model

    @classmethod
    def _with(
        cls,
        counts: Counter[str] | dict[str, int],
        clf: _Classifier | None = None,
        known: dict[TypedText, frozenset[str]] | None = None,
        fingerprint: str = "",
        compounds: dict[tuple[str, str], str] | None = None,
    ) -> TypeModel:
        heads: dict[str, set[str]] = {}
        for p in counts:
            for h in type_heads(p):
                heads.setdefault(h, set()).add(p)
        return cls(
            counts=dict(counts),
            heads={h: frozenset(ps) for h, ps in heads.items()},
            head_share=_head_share(set(heads), known or {}),
            terms={p: frozenset(type_terms(p)) for p in counts},
            classifier=clf,
            known=dict(known or {}),
            matcher=_PhraseMatcher(counts, compounds),
            fingerprint=fingerprint,
        )

    # -- products --------------------------------------------------------------------------------
    def product_types(self, title: str, category: str = "") -> frozenset[str]:
        """The product's type phrases (empty when nothing names one and the classifier abstains)."""
        hit = self.known.get((title, category))
        if hit is not None:
            return hit
        ts = (
            frozenset()
            if self.matcher is None
            else _rule_types(title, category, title_slot(title), self.matcher)
        )
        return ts or self._predict([title])[0]

    def _predict(self, titles: Sequence[str]) -> list[frozenset[str]]:
        if self.classifier is None or not titles:
            return [frozenset() for _ in titles]
        labels = self.classifier.labels
        scores = self.classifier.svm.decision_function(self.classifier.vectorizer.transform(titles))
        if scores.ndim == 1:  # two classes: one column, positive = labels[1]
            scores = np.column_stack([-scores, scores])
        best = scores.argmax(axis=1)
        return [
            frozenset({labels[j]}) if scores[i, j] > MIN_CLASSIFIER_MARGIN else frozenset()
            for i, j in enumerate(best)
        ]

    # -- queries ---------------------------------------------------------------------------------
    def query_intent(self, terms: Sequence[str]) -> TypeIntent | None:
        """What an analyzed query asks for: its last word when that word ends some type phrase
        (only the last word counts: "flat screen tv" does not ask for a screen, whatever "tv" is).
        ``phrases`` are the types with that head sharing most words with the query (ties: the
        commonest), for the interpretation."""
        phrases = self.heads.get(terms[-1]) if terms else None
        if not phrases or self.head_share.get(terms[-1], 0.0) < MIN_HEAD_SHARE:
            return None
        words = frozenset(terms)
        overlap = {p: len(self.terms[p] & words) for p in phrases}
        top = max(overlap.values())
        best = sorted((p for p, n in overlap.items() if n == top), key=lambda p: (-self.counts[p], p))
        return TypeIntent(terms[-1], words, tuple(best[:MAX_INTENT_TYPES]))

    def __len__(self) -> int:
        return len(self.counts)


@dataclass(frozen=True)
class Holdout:
    """How well the classifier types products it did not learn from."""

    products: int  # held-out products typed by their text (category, slot or title phrase)
    accuracy: float  # share whose predicted type is one of those
    labelled: int  # of them, products with a category (attr_t_product_type)
    labelled_accuracy: float
    coverage: float  # share where the classifier did not abstain
    types: int  # types it chooses from


def holdout(docs: Iterable[TypedText], *, share: float = 0.2, seed: int = 0) -> Holdout:
    """Train the classifier on all but ``share`` of the text-typed products, predict the rest
    from their titles alone (an abstention counts as wrong)."""
    docs = list(docs)
    slots, typed = typed_by_text(docs)
    rows = [(t, c, ts, _primary(ts, t, s)) for (t, c), s, ts in zip(docs, slots, typed, strict=True) if ts]
    rng = np.random.default_rng(seed)
    test = rng.random(len(rows)) < share
    clf = _train([(t, y) for (t, _, _, y), held in zip(rows, test, strict=True) if not held])
    model = TypeModel._with({}, clf)
    held = [r for r, h in zip(rows, test, strict=True) if h]
    pred = model._predict([t for t, *_ in held])
    hit = [bool(p & ts) for p, (_, _, ts, _) in zip(pred, held, strict=True)]
    lab = [h for h, (_, c, _, _) in zip(hit, held, strict=True) if _label(c)]
    return Holdout(
        products=len(held),
        accuracy=float(np.mean(hit)) if hit else 0.0,
        labelled=len(lab),
        labelled_accuracy=float(np.mean(lab)) if lab else 0.0,
        coverage=float(np.mean([bool(p) for p in pred])) if pred else 0.0,
        types=len(clf.labels) if clf else 0,
    )


def type_match(intent: TypeIntent | None, types: Iterable[str]) -> float:
    """+1 when the product is of the type the query asks for (its type ends in the query's last
    word: "printer" → inkjet printer), 0 when its type only shares a modifier with the query
    ("printer" → printer drum, "toner" → toner cartridge: related, not what was named), -1 when
    it is of another known type (a notebook for "laptop case"). 0 without intent or type."""
    types = list(types)
    if intent is None or not types:
        return 0.0
    if any(intent.head in type_heads(p) for p in types):
        return 1.0
    if any(intent.words.intersection(type_terms(p)) for p in types):
        return 0.0
    return -1.0


def type_precision(intent: TypeIntent | None, top: Sequence[Iterable[str]]) -> float | None:
    """Share of ``top`` (each product's types) of the type the query asks for; None without intent."""
    if intent is None or not top:
        return None
    return sum(1 for ts in top if type_match(intent, ts) == 1.0) / len(top)


class _PhraseMatcher:
    """Known type phrases found in a title, any case, as whole words (longest first), and the
    compounds of two (:func:`_compounds`) that name the first one's type."""

    def __init__(self, phrases: Iterable[str], compounds: dict[tuple[str, str], str] | None = None):
        self.phrases = set(phrases)
        self.compounds = dict(compounds or {})
        self.by_first: dict[str, list[tuple[str, ...]]] = {}
        self.names: dict[tuple[str, ...], str] = {}
        for p in self.phrases:
            words = tuple(raw_tokens(p))
            if words:
                self.by_first.setdefault(words[0], []).append(words)
                self.names.setdefault(words, p)
        for ws in self.by_first.values():
            ws.sort(key=len, reverse=True)

    def spans(self, title: str) -> list[tuple[int, int, str]]:
        """(first word, word after the last, phrase) of each phrase found, in title order."""
        words = raw_tokens(title)
        found = []
        for i, w in enumerate(words[1:], start=1):
            if _MEASURE.match(words[i - 1]):  # "1 pc(s)", "1.54 kg": a unit, not a type
                continue
            for cand in self.by_first.get(w, ()):
                if tuple(words[i : i + len(cand)]) == cand:
                    found.append((i, i + len(cand), self.names[cand]))
                    break
        return found

    def typed(self, title: str) -> str | None:
        """The type a title names: its longest phrase (later wins a tie: "laptop lock" over
        "laptop"), unless it follows another phrase as a compound that names the first one's type
        ("Notebook PC": a notebook)."""
        spans = self.spans(title)
        if not spans:
            return None
        start, _, best = max(reversed(spans), key=lambda s: len(s[2].split()))
        before = next((p for _, end, p in spans if end == start), None)
        return self.compounds.get((before, best), best) if before is not None else best


def _compounds(docs: Sequence[TypedText], matcher: _PhraseMatcher) -> dict[tuple[str, str], str]:
    """Two type phrases back to back ("Notebook PC", "Camera Battery") name the second one's type
    unless the products whose category is known say otherwise: (first, second) → the first one's
    type, where at least MIN_COMPOUND_LABELS of them carry a type the first phrase heads, more than
    carry one the second heads."""
    votes: dict[tuple[str, str], Counter[str]] = {}
    for title, category in docs:
        if (lbl := _label(category)) is None:
            continue
        spans = matcher.spans(title)
        for (_, end, a), (start, _, b) in zip(spans, spans[1:], strict=False):
            if end == start:
                votes.setdefault((a, b), Counter())[lbl] += 1
    out = {}
    for (a, b), labels in votes.items():
        by_a = Counter({t: n for t, n in labels.items() if type_heads(t) & type_heads(a)})
        by_b = sum(n for t, n in labels.items() if type_heads(t) & type_heads(b))
        if sum(by_a.values()) >= MIN_COMPOUND_LABELS and sum(by_a.values()) > by_b:
            out[(a, b)] = by_a.most_common(1)[0][0]
    return out


def typed_by_text(docs: Sequence[TypedText]) -> tuple[list[str | None], list[frozenset[str]]]:
    """Each product's title slot, and its types as its category and title name them."""
    slots, typed, _ = _typed_by_text(docs)
    return slots, typed


def _typed_by_text(
    docs: Sequence[TypedText],
) -> tuple[list[str | None], list[frozenset[str]], dict[tuple[str, str], str]]:
    slots = [title_slot(t) for t, _ in docs]
    shared = Counter(s for s in slots if s)
    phrases = {s for s, n in shared.items() if n >= MIN_TYPE_PRODUCTS}
    phrases.update(lbl for _, c in docs if (lbl := _label(c)))
    matcher = _PhraseMatcher(phrases)
    matcher.compounds = _compounds(docs, matcher)
    typed = [_rule_types(t, c, s, matcher) for (t, c), s in zip(docs, slots, strict=True)]
    return slots, typed, matcher.compounds


def _rule_types(title: str, category: str, slot: str | None, matcher: _PhraseMatcher) -> frozenset[str]:
    """The types a product's category and title name (``matcher``: the known type phrases)."""
    out = set()
    if (lbl := _label(category)) is not None:
        out.add(lbl)
    if slot in matcher.phrases:
        out.add(slot)
    if not out and (named := matcher.typed(title)) is not None:
        out.add(named)
    return frozenset(out)


def _head_share(heads: set[str], known: dict[TypedText, frozenset[str]]) -> dict[str, float]:
    """Per head word: of the products whose title holds it, the share of a type it ends."""
    named: Counter[str] = Counter()
    typed: Counter[str] = Counter()
    for (title, _), ts in known.items():
        words = {minimal_english_stem(w) for w in raw_tokens(title)}
        own = {h for p in ts for h in type_heads(p)}
        for h in words.intersection(heads):
            named[h] += 1
            typed[h] += h in own
    return {h: typed[h] / n for h, n in named.items()}


def _fingerprint(docs: Sequence[TypedText]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for title, category in sorted(docs):
        h.update(title.encode("utf-8", "replace") + b"\x00" + category.encode("utf-8", "replace") + b"\x01")
    return h.hexdigest()


def _primary(types: frozenset[str], title: str, slot: str | None) -> str:
    """One label per product for the classifier: the title slot when typed by it, else the rest."""
    return slot if slot in types else sorted(types)[0]


@dataclass(frozen=True)
class _Classifier:
    vectorizer: Any  # sklearn TfidfVectorizer over _title_words
    svm: Any  # sklearn LinearSVC, one class per label
    labels: list[str]


def _train(rows: Sequence[tuple[str, str]]) -> _Classifier | None:
    labels = sorted({y for _, y in rows})
    if len(labels) < 2 or len(rows) < 2 * len(labels):  # too few examples of each type to learn
        return None
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    vectorizer = TfidfVectorizer(analyzer=_title_words, ngram_range=(1, 1), min_df=2, sublinear_tf=True)
    x = vectorizer.fit_transform([t for t, _ in rows])
    index = {y: i for i, y in enumerate(labels)}
    svm = LinearSVC(C=1.0).fit(x, np.array([index[y] for _, y in rows]))
    return _Classifier(vectorizer, svm, labels)


def _title_words(title: str) -> list[str]:
    """Stemmed words of a title and its adjacent pairs (the classifier's features)."""
    terms = [minimal_english_stem(w) for w in raw_tokens(title)]
    return terms + [f"{a} {b}" for a, b in zip(terms, terms[1:], strict=False)]
