"""Training pairs for the cross-encoder: graded judgments plus pairs mined from the catalog.

Only ~100 judged queries exist, so most pairs come from the catalog itself: shopper-like
*pseudo-queries* built from one product's own fields (that product is the positive) and *hard
negatives* for those queries, mined from BM25 and vector retrieval. Every example records its
source so each source's contribution can be measured (``sources=`` drops one).

Sources: ``judged`` (label = rating / 3), ``pseudo_pos`` (1.0), ``bm25_neg`` / ``vector_neg`` (0.0).
The product side of every pair is :func:`ranker.rerank.cross_encoder.passage`, the text served at query time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from indexer.analysis import analyze, fold
from indexer.product import Product
from ranker.evaluation.relevance import Qrels
from ranker.rerank.cross_encoder import passage
from training.folds import query_group_key, query_keys

log = logging.getLogger(__name__)

SOURCES = ("pseudo", "judgments", "hard_negatives")
MAX_RATING = 3
MAX_QUERY_WORDS = 5
Retrieve = Callable[[str, int], Sequence[str]]


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_COLOURS = _set(
    "black white grey gray silver blue red green yellow cyan magenta purple pink orange brown gold "
    "beige transparent violet turquoise navy"
)
# Words that are never a product type on their own: colours, grades, packaging, units, fillers.
_NOT_TYPE = _COLOURS | _set(
    "original compatible standard high capacity light dark single pack pcs set of x cm mm m in inch "
    "ft gb tb mb kb w v g kg dpi ppm ml pixels pages page sheets hz ghz mhz rpm mbit gbit s yes no "
    "new up over outlet aged"
)
_STOP = _set("a an and for in of on the to with without by from or incl includes")
_NO_TYPE_ATTR = frozenset({"original", "compatible", "on-site", "1", ""})
# Head nouns that make a capitalized title word a product type when the title has no lowercase one.
_HEADS = _set(
    "adapter adaptor antenna backpack bag battery board bracket cabinet cable camera card cartridge "
    "case charger chassis computer connector controller converter cooler cord cover desktop dimm disk "
    "display dock docking drive drum earphone enclosure extender fan filter fuser headphone headset "
    "hub ink keyboard kit label lamp laptop lens memory microphone module monitor motherboard mount "
    "mouse notebook panel paper pen phone printer processor projector protector puzzle rack ribbon "
    "router scanner screen server sleeve speaker splitter stand station stylus switch tablet tape "
    "toner toy tray tripod ups watch workstation"
)
_WORD = re.compile(r"[^\W_]+(?:['.\-][^\W_]+)*", re.UNICODE)
_UNIT = re.compile(
    r"^\d+(?:[.,]\d+)?(?:x\d+)?(?:mm|cm|m|in|inch|ft|gb|tb|mb|kb|w|v|va|mah|ah|ghz|mhz|hz|g|kg|rpm|dpi|"
    r"p|k|pin|port|u|ml|l|pcs?|pages?|mbps|gbps|mbit|bit)?$"
)
_STORAGE = re.compile(r"^\d+(?:gb|tb)$")
_NUMBER = re.compile(r"^[\d.,]+$")
_PCS = re.compile(r"\b\d+\s*pc\(s\)", re.IGNORECASE)


@dataclass(frozen=True)
class Example:
    """One (query, product) pair; ``kind`` says which pseudo-query recipe made the query."""

    query: str
    product_id: str
    text: str
    label: float
    source: str
    kind: str = ""

    def __post_init__(self) -> None:
        if not self.query.strip() or not self.product_id or not self.text.strip():
            raise ValueError(f"example has an empty field: {self!r}")
        if not 0.0 <= self.label <= 1.0:
            raise ValueError(f"label must be in [0, 1], got {self.label!r} for {self.query!r}")


@dataclass
class TrainingSet:
    examples: list[Example] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.examples)

    def counts_by_source(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.examples:
            counts[e.source] = counts.get(e.source, 0) + 1
        return dict(sorted(counts.items()))

    def data_hash(self) -> str:
        """sha256 over the sorted examples: independent of their order, changes with any field."""
        h = hashlib.sha256()
        for line in sorted(_dumps(e) for e in self.examples):
            h.update(line.encode("utf-8") + b"\n")
        return h.hexdigest()

    def to_jsonl(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            for e in self.examples:
                fh.write(_dumps(e) + "\n")

    @classmethod
    def from_jsonl(cls, path: str | Path) -> TrainingSet:
        examples = []
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if line.strip():
                    try:
                        examples.append(Example(**json.loads(line)))
                    except (TypeError, ValueError) as exc:
                        raise ValueError(f"{path}:{n}: not a training example ({exc})") from None
        return cls(examples)


def _dumps(e: Example) -> str:
    return json.dumps(asdict(e), sort_keys=True, ensure_ascii=False)


# -- pseudo-queries -----------------------------------------------------------------------------
def _words(text: str) -> list[str]:
    """Lowercased, accent-folded words; internal - . ' kept (tl-wa860re, 2.0); "1 pc(s)" dropped."""
    return _WORD.findall(fold(_PCS.sub(" ", text).replace("(s)", "")))


def _phrase(text: str, max_words: int = 4) -> str:
    """A clean type phrase from an attribute value: no parentheses, numbers or codes."""
    words = [w for w in _words(re.sub(r"\([^)]*\)", " ", text)) if _is_word(w)]
    return " ".join(words) if 0 < len(words) <= max_words else ""


def _is_word(w: str) -> bool:
    return w.replace("-", "").replace("'", "").isalpha() and "." not in w


def _is_code(w: str) -> bool:
    """A model number / SKU: letters and digits mixed, or a long digit run; not a size or unit."""
    w = w.lower()
    if len(w) < 3 or _UNIT.match(w):
        return False
    has_digit = any(c.isdigit() for c in w)
    return (has_digit and any(c.isalpha() for c in w)) or (w.isdigit() and len(w) >= 5)


def _title_runs(text: str) -> list[list[str]]:
    """Runs of consecutive title words (original case) not interrupted by punctuation."""
    runs: list[list[str]] = []
    last_end = -1
    text = _PCS.sub(" ", text).replace("(s)", "")
    for m in _WORD.finditer(text):
        gap = text[last_end : m.start()] if last_end >= 0 else " "
        if gap.strip() or not runs:
            runs.append([])
        runs[-1].append(m.group(0))
        last_end = m.end()
    return runs


def _strip_prefix(text: str, prefix: str) -> str:
    n = len(prefix)
    if prefix and text.lower().startswith(prefix.lower()) and not text[n : n + 1].isalnum():
        return text[n:].strip()
    return text


def _title_type(p: Product) -> str:
    """The product type in an Icecat-style title ("<brand> <model> <type, lowercase> <specs>").

    First, the first run of lowercase words after brand and model ("toner cartridge",
    "networking cable"); else the title's first segment when its last plain word is a known
    head noun, with the word before it ("Fiber Patch Cable, 6M" -> "patch cable"; "Battery Grip
    BG-E7" gives nothing: a grip is not a battery).
    """
    after_brand = _strip_prefix(p.title, p.brand)
    rest = _strip_prefix(after_brand, p.name) or after_brand
    for run in _title_runs(rest):
        words: list[str] = []
        for i, w in enumerate(run + [""]):
            if w.islower() and _is_word(w) and len(w) > 1 and w not in _NOT_TYPE | _STOP:
                # a lowercase word right after a bare number counts something ("25 licenses")
                if words or i == 0 or not _NUMBER.match(run[i - 1]):
                    words.append(w)
            elif words:
                return " ".join(fold(x) for x in words[-3:])  # English heads come last
    words = _words(re.split(r",| - |\(|\|", after_brand, maxsplit=1)[0])
    while words and (not _is_word(words[-1]) or words[-1] in _NOT_TYPE | _STOP):
        words.pop()  # trailing codes, colours, "original"
    if words and _head(words[-1]):
        prev = words[-2] if len(words) > 1 else ""
        good = _is_word(prev) and len(prev) > 2 and prev not in _NOT_TYPE | _STOP | set(_words(p.brand))
        return f"{prev} {words[-1]}" if good else words[-1]
    return ""


def _head(word: str) -> bool:
    return "".join(analyze(word)) in _HEADS


def product_type(p: Product) -> str:
    """A shopper's noun phrase for what the product is (lowercase, no codes); "" when none is found.

    Order: attribute ``product_type``, category, the type in the title, attribute ``type``.
    """
    for text in (str(p.attributes.get("product_type", "")), p.category):
        if fold(text.strip()) not in _NO_TYPE_ATTR and (phrase := _phrase(text)):
            return phrase
    if t := _title_type(p):
        return t
    raw = p.attributes.get("type")
    if isinstance(raw, str) and fold(raw.strip()) not in _NO_TYPE_ATTR:
        return _phrase(raw)
    return ""


def _attribute_words(p: Product, type_words: set[str]) -> list[str]:
    """Candidate qualifiers for "attr_type": colour, screen size, storage size, wireless."""
    title = _words(p.title)
    out = [w for w in title if w in _COLOURS]
    colour = p.attributes.get("product_colour")
    if not out and isinstance(colour, str) and "," not in colour and fold(colour) in _COLOURS:
        out.append(fold(colour))
    diag = p.attributes.get("display_diagonal")
    if isinstance(diag, float) and 1 <= diag <= 120:
        out.append(f"{diag:g} inch")
    out += [w for w in title if _STORAGE.match(w)]
    if "wireless" in title or p.attributes.get("connectivity_technology") == "Wireless":
        out.append("wireless")
    return sorted({w for w in out if w not in type_words})


def _model_code(p: Product) -> str:
    """The first SKU-like word of the name, else of the title; a short numeric name counts ("hp 364")."""
    name = _words(p.name)
    if 0 < len(name) <= 2 and name[0].isdigit() and len(name[0]) >= 2:
        return name[0]
    for text in (p.name, _strip_prefix(p.title, p.brand)):
        for w in _words(text):
            if _is_code(w):
                return w
    return ""


def _title_span(p: Product, ptype: str, rng: random.Random) -> str:
    """2-4 consecutive plain title words; not starting with the brand, not ending on a filler,
    and not ending on another product's head noun ("mobile phone" for a "mobile phone case")."""
    brand = set(_words(p.brand))
    type_head = ptype.split()[-1] if ptype else ""
    windows = []
    for run in _title_runs(p.title):
        words = [fold(w) for w in run]
        ok = [_is_word(w) and len(w) > 1 for w in words]
        for size in (2, 3, 4):
            for i in range(len(words) - size + 1):
                span = words[i : i + size]
                if (
                    all(ok[i : i + size])
                    and span[0] not in _STOP | _NOT_TYPE | brand
                    and span[-1] not in _STOP | _NOT_TYPE
                    and not (type_head and _head(span[-1]) and type_head not in span)
                ):
                    windows.append(" ".join(span))
    return rng.choice(windows) if windows else ""


def pseudo_queries(product: Product, rng: random.Random) -> list[tuple[str, str]]:
    """Shopper-like queries for one product, from its own fields only: ``[(query, kind), ...]``.

    Kinds: "type" ("toner cartridge"), "brand_type" ("hp toner cartridge"), "attr_type"
    ("black toner cartridge", "17 inch notebook"), "title_span" (2-4 title words, no codes) and
    "model" ("xerox 006r90321"). Lowercase, 1-5 words, deduplicated by group key; ``rng``
    chooses the qualifier and the title span, so the output is deterministic given its state.
    """
    brand = " ".join(_words(product.brand))
    ptype = product_type(product)
    cands: list[tuple[str, str]] = []
    if ptype:
        cands.append((ptype, "type"))
        if brand:
            cands.append((ptype if ptype.startswith(brand + " ") else f"{brand} {ptype}", "brand_type"))
        quals = _attribute_words(product, set(ptype.split()))
        if quals:
            cands.append((f"{rng.choice(quals)} {ptype}", "attr_type"))
    span = _title_span(product, ptype, rng)
    if span:
        cands.append((span, "title_span"))
    code = _model_code(product)
    if code:
        cands.append((f"{brand} {code}".strip(), "model"))
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for query, kind in cands:
        query = " ".join(query.split())
        key = query_group_key(query)
        if query and key and key not in seen and len(query.split()) <= MAX_QUERY_WORDS:
            seen.add(key)
            out.append((query, kind))
    return out


# -- hard negatives -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Profile:
    title_key: str
    tokens: frozenset[str]
    brand: str
    type_key: str


def _profile(p: Product, cache: dict[str, _Profile]) -> _Profile:
    if p.id not in cache:
        tokens = frozenset(analyze(passage(p) + " " + p.brand))
        ptype = query_group_key(product_type(p))
        cache[p.id] = _Profile(" ".join(analyze(p.title)), tokens, fold(p.brand.strip()), ptype)
    return cache[p.id]


def mine_hard_negatives(
    query: str,
    positives: Collection[str],
    lexical: Retrieve | None,
    vector: Retrieve | None,
    n: int = 50,
    k: int = 4,
    *,
    catalog: Mapping[str, Product] | None = None,
    cache: dict[str, _Profile] | None = None,
) -> list[tuple[str, str]]:
    """Up to ``k`` ``(product_id, source)`` negatives from the top ``n`` of each retriever.

    Sources alternate (``bm25_neg``, ``vector_neg``, ...) in rank order; a retriever may be None.
    Skipped: positives, ids missing from ``catalog`` (when given: a pair needs the product's
    text) and likely *false* negatives, i.e. a candidate that
      1. has the same analyzed title as a positive (a duplicate listing), or
      2. contains every query term in its passage or brand (a shopper would accept it), or
      3. has the brand and :func:`product_type` of a positive, unless the query names a model
         code (then siblings of the same brand and type are exactly the negatives we want).
    Without ``catalog`` only rule "not a positive" applies.
    """
    pos, cache = set(positives), {} if cache is None else cache
    pos_profiles = [_profile(catalog[i], cache) for i in pos if catalog is not None and i in catalog]
    titles = {pp.title_key for pp in pos_profiles}
    brand_types = {(pp.brand, pp.type_key) for pp in pos_profiles if pp.type_key}
    q_tokens = set(analyze(query))
    has_code = any(_is_code(w) for w in _words(query))

    def acceptable(cid: str) -> bool:
        if cid in pos or catalog is None:
            return cid not in pos
        if cid not in catalog:
            return False
        c = _profile(catalog[cid], cache)
        if c.title_key in titles or (q_tokens and q_tokens <= c.tokens):
            return False
        return has_code or (c.brand, c.type_key) not in brand_types

    lists = [
        (source, iter(fn(query, n) if fn is not None else ()))
        for source, fn in (("bm25_neg", lexical), ("vector_neg", vector))
    ]
    out: list[tuple[str, str]] = []
    chosen: set[str] = set()
    while len(out) < k and lists:
        for entry in list(lists):
            source, it = entry
            for cid in it:
                if cid not in chosen and acceptable(cid):
                    chosen.add(cid)
                    out.append((cid, source))
                    break
            else:
                lists.remove(entry)
            if len(out) >= k:
                break
    return out


# -- the training set ---------------------------------------------------------------------------
def build_training_set(
    products: Iterable[Product],
    judgments_qrels: Qrels | None,
    *,
    lexical: Retrieve | None,
    vector: Retrieve | None,
    exclude_queries: Iterable[str] = (),
    per_product: int = 2,
    negatives_per_query: int = 4,
    candidates: int = 50,
    max_products: int | None = None,
    seed: int = 13,
    sources: Iterable[str] = SOURCES,
    progress: bool = False,
) -> TrainingSet:
    """Judged pairs + pseudo-query positives + mined hard negatives, deterministic for a seed.

    ``products`` is the catalog (judged ids and mined negatives are looked up in it);
    ``max_products`` of them (seeded sample) get ``per_product`` pseudo-queries each. Queries
    that are near-duplicates (:func:`training.folds.query_keys`) of an ``exclude_queries`` entry
    (a CV fold's test queries) are dropped from every source. Pseudo-queries with the same group
    key are merged (all their products are positives, and none of them a negative). A
    (query group, product) pair appears once: judged beats pseudo beats negative.
    """
    wanted = set(sources)
    if unknown := wanted - set(SOURCES):
        raise ValueError(f"unknown source(s) {sorted(unknown)}; choose from {', '.join(SOURCES)}")
    catalog = {p.id: p for p in products}
    banned: set[str] = set().union(*(query_keys(q) for q in exclude_queries))
    out: list[Example] = []
    seen: set[tuple[str, str]] = set()

    def add(e: Example) -> None:
        key = (query_group_key(e.query), e.product_id)
        if key not in seen:
            seen.add(key)
            out.append(e)

    if "judgments" in wanted and judgments_qrels:
        missing = 0
        for q in sorted(judgments_qrels):
            if query_keys(q) & banned:
                continue
            for pid, rating in sorted(judgments_qrels[q].items()):
                if pid not in catalog:
                    missing += 1
                    continue
                label = min(max(rating, 0), MAX_RATING) / MAX_RATING
                add(Example(q, pid, passage(catalog[pid]), label, "judged"))
        if missing:
            log.info("%d judged pairs name products missing from the catalog; skipped", missing)

    if wanted & {"pseudo", "hard_negatives"}:
        ids = sorted(catalog)
        if max_products is not None and max_products < len(ids):
            ids = sorted(random.Random(seed).sample(ids, max_products))
        groups: dict[str, tuple[str, str, list[str]]] = {}
        dropped = 0
        for pid in ids:
            rng = random.Random(f"{seed}:{pid}")
            qs = pseudo_queries(catalog[pid], rng)
            for query, kind in rng.sample(qs, min(per_product, len(qs))):
                if query_keys(query) & banned:
                    dropped += 1
                    continue
                groups.setdefault(query_group_key(query), (query, kind, []))[2].append(pid)
        if dropped:
            log.info("dropped %d pseudo-queries that match excluded queries", dropped)
        items = list(groups.values())
        if progress:
            from tqdm import tqdm

            items = tqdm(items, desc="pseudo-queries", unit="query")
        cache: dict[str, _Profile] = {}
        for query, kind, pids in items:
            if "pseudo" in wanted:
                for pid in pids:
                    add(Example(query, pid, passage(catalog[pid]), 1.0, "pseudo_pos", kind))
            if "hard_negatives" in wanted:
                n, k = candidates, negatives_per_query
                negs = mine_hard_negatives(query, pids, lexical, vector, n, k, catalog=catalog, cache=cache)
                for nid, source in negs:
                    add(Example(query, nid, passage(catalog[nid]), 0.0, source, kind))
    result = TrainingSet(out)
    log.info("training set: %d examples %s", len(result), result.counts_by_source())
    return result
