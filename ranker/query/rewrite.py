"""What the shopper meant to type: misspelled terms corrected, the word being typed completed.

:class:`QueryRewriter` turns the query as typed into the query to search, and says what it did
(:class:`Interpretation`). Both backends then search the same rewritten text, so they behave the
same by construction. Only terms that match nothing in the catalog are touched, so a product
that holds the typed word exactly is never outranked by a "corrected" one.

Search-as-you-type: unless the query ends in a space (the shopper finished the word), its last
term is read as a prefix and completed with the catalog term that most products hold together
with the query's other terms, unless the typed word is itself a common enough word there
(:data:`KEEP_TYPED_SHARE`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from indexer.analysis import analyze, fold, minimal_english_stem, token_spans
from ranker.base import Constraint, TypeIntent
from ranker.query.constraints import parse
from ranker.query.lexicon import Lexicon
from ranker.query.speller import Correction, Speller
from ranker.query.suggest import FUNCTION_WORDS
from ranker.query.suggest import QUERY_LOG_WEIGHT as SUGGEST_QUERY_LOG_WEIGHT
from ranker.query.types import TypeModel

# A typed last word stays as typed when at least this share as many products name it as name its
# most frequent completion (or as name its likeliest completion with the query's other terms).
KEEP_TYPED_SHARE = 0.2
# A model number: letters and digits in one word ("tn2110", "ps4", "wh-1000xm5", "tn-2110").
MODEL = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[a-z])[a-z0-9]+(?:-[a-z0-9]+)*(?![\w-])")
_ADJACENT = re.compile(r"[a-z]\d|\d[a-z]")
_LONG_DIGITS = re.compile(r"\d{3,}")


def _model_like(word: str) -> bool:
    """Letters next to digits ("ps4", "1000xm5"), or a hyphen before 3+ digits ("tn-2110")."""
    return bool(_ADJACENT.search(word)) or ("-" in word and bool(_LONG_DIGITS.search(word)))


# The last word, when both a prefix of catalog words and one edit from another: read as a typo
# only when the corrected word is this many times likelier with the other words ("sd crad" →
# "sd card", not "sd cradle"; "earb" → "earbuds", not "ear").
TYPO_OVER_PREFIX = 10.0
# Prefixes shorter than this are not completed.
MIN_PREFIX = 1
# Shoppers end a query on the product type they want ("laptop ca" → "case", "ipad st" → "stand"),
# so a completion that heads a product type counts up to this many times more: (1 + TYPE_HEAD_PRIOR
# × its head share, ranker.query.types). Chosen on completion accuracy over prefixes of the dev
# queries and, as a check on other queries, of the synthetic UBI log's (bench/README.md).
TYPE_HEAD_PRIOR = 4.0
# ... and a completion shoppers searched for and then engaged with, by the suggester's weighting:
# × (1 + distinct engaged shoppers of logged queries naming it with the query's other words)^this.
QUERY_LOG_WEIGHT = SUGGEST_QUERY_LOG_WEIGHT
# Other likely completions of the word being typed go to the lexical leg at this weight (the query
# itself weighs 1), at most MAX_EXPANSIONS of them, each named with the query's other terms by at
# least EXPAND_SHARE as many products as the likeliest completion.
EXPANSION_WEIGHT = 0.5
MAX_EXPANSIONS = 3
EXPAND_SHARE = 0.1


@dataclass(frozen=True)
class Completion:
    prefix: str
    completed: str


@dataclass(frozen=True)
class Interpretation:
    """The query as typed, the query searched, and each change between them."""

    original: str
    query: str
    corrections: tuple[Correction, ...] = ()
    completion: Completion | None = None
    expansions: tuple[tuple[str, float], ...] = ()  # (term, weight) OR'd into the lexical leg
    exact: bool = False  # the shopper asked for the text as typed
    constraints: tuple[Constraint, ...] = ()  # the query's numbers, as soft preferences
    brands: tuple[str, ...] = ()  # catalog brands the query names
    models: tuple[str, ...] = ()  # model numbers it names (letters and digits some product names)
    intent: TypeIntent | None = None  # the product type it asks for (ranker.query.types)

    @property
    def changed(self) -> bool:
        return self.query != self.original

    def as_dict(self) -> dict[str, object]:
        return {
            "original_query": self.original,
            "query": self.query,
            "corrected_query": self.query if self.corrections else None,
            "corrections": [
                {"from": c.original, "to": c.corrected, "edits": c.edits} for c in self.corrections
            ],
            "completion": (
                None
                if self.completion is None
                else {"prefix": self.completion.prefix, "completed": self.completion.completed}
            ),
            "expansions": [{"term": t, "weight": w} for t, w in self.expansions],
            "constraints": [asdict(c) for c in self.constraints],
            "brands": list(self.brands),
            "models": list(self.models),
            "types": list(self.intent.phrases) if self.intent else [],
            "exact": self.exact,
        }


class QueryRewriter:
    """Rewrites queries against one lexicon at a time; :meth:`use` swaps in a newer one (a
    rewrite in flight keeps the lexicon it started with)."""

    def __init__(
        self,
        lexicon: Lexicon,
        confirm: Callable[[str], bool] | None = None,
        *,
        complete_prefix: bool = True,
        types: TypeModel | None = None,
        queries: Mapping[str, int] | None = None,
    ):
        self.confirm = confirm  # does the live index match this raw term?
        self.complete_prefix = complete_prefix
        self._state = _State.of(lexicon, types, queries or {})

    @property
    def lexicon(self) -> Lexicon:
        return self._state.lexicon

    @property
    def speller(self) -> Speller:
        return self._state.speller

    @property
    def types(self) -> TypeModel | None:
        return self._state.types

    @property
    def queries(self) -> Mapping[str, int]:
        """The shop's engaged queries it completes with (analyzed text → distinct shoppers)."""
        return self._state.queries

    def use(
        self, lexicon: Lexicon, types: TypeModel | None = None, queries: Mapping[str, int] | None = None
    ) -> None:
        """Rewrite against ``lexicon`` (and ``types``, and the shop's engaged ``queries``: analyzed
        text → distinct shoppers; None keeps the current ones) from now on (its speller is built
        before the swap)."""
        st = self._state
        self._state = _State.of(
            lexicon, st.types if types is None else types, st.queries if queries is None else queries
        )

    def product_types(self, title: str, category: str = "") -> frozenset[str]:
        """A product's types under the current type model (none without one)."""
        types = self._state.types
        return frozenset() if types is None else types.product_types(title, category)

    def rewrite(self, query: str) -> Interpretation:
        """Price phrases leave the text ("tv under 500" searches "tv", price ≤ 500 a preference),
        then typos are corrected and the last word completed."""
        parsed = parse(query)
        st = self._state  # one lexicon for the whole rewrite, whatever a refresh swaps in
        lex, types = st.lexicon, st.types
        interp = self._words(parsed.text, st)
        terms = analyze(interp.query)
        brands = tuple(" ".join(lex.surface(t) for t in b) for b in lex.brands_in(terms))
        measures = {fold(c.text) for c in parsed.constraints}
        models = tuple(
            m.group(0)
            for m in MODEL.finditer(fold(interp.query))
            if _model_like(m.group(0))
            and m.group(0) not in measures
            and all(lex.known(t) for t in analyze(m.group(0)))
        )
        intent = types.query_intent(terms) if types is not None else None
        return replace(
            interp,
            original=query,
            constraints=parsed.constraints,
            brands=brands,
            models=models,
            intent=intent,
        )

    def completions(self, query: str) -> list[str]:
        """The catalog's completions of the query's last word (as the catalog spells them),
        likeliest first by the score the rewrite completes with: products naming each with the
        query's other words × :meth:`_State.weights`. The rewrite takes the first, unless the
        typed word stands on its own. (What a completion bench measures the choice against.)"""
        st = self._state
        _, spans = token_spans(query)
        if not spans:
            return []
        lex = st.lexicon
        terms = [minimal_english_stem(tok) for _, _, tok in spans]
        context = [j for t in terms[:-1] if (j := lex.id(t)) is not None]
        cands = lex.with_prefix(spans[-1][2])
        cands = cands[np.asarray([lex.terms[int(j)] not in terms[:-1] for j in cands.tolist()], dtype=bool)]
        if len(cands) == 0:
            return []
        co = lex.affinity(cands, context)
        order, _ = st.ranked(cands, co, context)
        return [lex.surface(lex.terms[int(cands[j])]) for j in order if co[j] > 0]

    def _words(self, query: str, st: _State) -> Interpretation:
        lex, speller = st.lexicon, st.speller
        folded, spans = token_spans(query)
        if not spans:
            return Interpretation(query, query)
        terms = [minimal_english_stem(tok) for _, _, tok in spans]
        ids = [lex.id(t) for t in terms]
        open_end = self.complete_prefix and spans[-1][1] == len(folded) and not query[-1:].isspace()
        replaced: dict[int, str] = {}
        corrections: list[Correction] = []
        completion: Completion | None = None
        expansions: tuple[str, ...] = ()

        def context(i: int) -> list[int]:
            return [j for k, j in enumerate(ids) if k != i and j is not None]

        last = len(terms) - 1
        for i, term in enumerate(terms):
            done = None
            if i == last and open_end:
                done, expansions = self._complete(st, spans[i][2], term, context(i), set(terms[:i]))
            fix = None
            if not lex.known(term):
                fix = speller.correct(term, context(i), self.confirm, raw=spans[i][2])
            if done is not None and fix is not None:  # a word being typed, unless a typo is far likelier
                keeps_first = fix.corrected[:1] == term[:1]
                named = done in lex.ids and fix.corrected in lex.ids
                co = (
                    lex.affinity(np.asarray([lex.ids[done], lex.ids[fix.corrected]]), context(i))
                    if named
                    else np.zeros(2)
                )
                # a "correction" that only drops the last letters typed is the word being typed
                # passing through a shorter one ("microw" → "microwave", not "micro")
                truncates = term.startswith(fix.corrected) or spans[i][2].startswith(fix.corrected)
                if named and keeps_first and not truncates and co[1] > TYPO_OVER_PREFIX * co[0]:
                    done, expansions = None, ()
                else:
                    fix = None
            if done is not None:
                completion = Completion(spans[i][2], lex.surface(done))
                replaced[i] = completion.completed
            elif fix is not None:
                corrections.append(Correction(spans[i][2], lex.surface(fix.corrected), fix.edits))
                replaced[i] = corrections[-1].corrected
        weighted = tuple((lex.surface(t), EXPANSION_WEIGHT) for t in expansions)
        if not replaced:
            return Interpretation(query, query, expansions=weighted)
        out, at = [], 0
        for i, (start, end, _) in enumerate(spans):
            if i in replaced:
                out += [folded[at:start], replaced[i]]
                at = end
        out.append(folded[at:])
        return Interpretation(query, "".join(out), tuple(corrections), completion, weighted)

    @staticmethod
    def _complete(
        st: _State, prefix: str, term: str, context: list[int], exclude: set[str]
    ) -> tuple[str | None, tuple[str, ...]]:
        """The word being typed (``prefix`` as typed, ``term`` its stem): its completion (None:
        leave it as typed) and the other likely completions, which the lexical leg matches too
        (:data:`EXPANSION_WEIGHT`). Completions start with the letters typed, not with the stem
        ("cas" is no plural of "ca"); a typed plural keeps its singular among them. Each candidate
        weighs the products naming it with the other words times :meth:`_State.weights`."""
        lex = st.lexicon
        if len(prefix) < MIN_PREFIX:
            return None, ()
        typed = lex.id(term)
        cands = lex.with_prefix(prefix)
        if typed is not None and not (len(cands) and cands[0] <= typed <= cands[-1]):
            cands = np.union1d(cands, [typed])
        if len(cands) == 0:  # no product names such a word; a description may ("earb" → "earbuds")
            described = [t for t in lex.described_with_prefix(prefix) if t != prefix and t.isalpha()]
            return (described[0], ()) if described and not lex.known(term) else (None, ())
        co = lex.affinity(cands, context)
        keep = cands != typed
        keep &= np.asarray([lex.terms[int(j)] not in exclude for j in cands.tolist()], dtype=bool)
        keep &= co > 0
        if not keep.any():
            return None, ()
        if typed is not None:
            # a word in its own right, by the products alone (a prior never outvotes what was
            # typed): kept, and its likelier completions matched beside it
            mine = int(co[int(np.flatnonzero(cands == typed)[0])])
            order = np.lexsort((-lex.df[cands], -co))
            ranked = [(lex.terms[int(cands[j])], int(co[j])) for j in order if keep[j]]
            top = ranked[0][1]
            # common in the catalog ("ps4 pro", "phone cord" stay), unless a function word
            # (suggest.FUNCTION_WORDS) no product names with the other words: a query seldom
            # ends on one, so it is the start of a longer word ("xbox on" → "xbox one")
            common = lex.count(term) >= KEEP_TYPED_SHARE * int(lex.df[cands].max()) and not (
                term in FUNCTION_WORDS and context and mine == 0
            )
            if common or mine >= KEEP_TYPED_SHARE * top:
                return None, tuple(
                    t for t, c in ranked[:MAX_EXPANSIONS] if c > mine and c >= EXPAND_SHARE * top
                )
        order, score = st.ranked(cands, co, context)
        ranked_w = [(lex.terms[int(cands[j])], float(score[j])) for j in order if keep[j]]
        best = ranked_w[0][1]
        likely = [t for t, c in ranked_w[: MAX_EXPANSIONS + 1] if c >= EXPAND_SHARE * best]
        return likely[0], tuple(likely[1:])


@dataclass(frozen=True)
class _State:
    """What one rewrite reads, swapped in whole by :meth:`QueryRewriter.use`."""

    lexicon: Lexicon
    speller: Speller
    types: TypeModel | None
    queries: Mapping[str, int]  # the shop's engaged queries: analyzed text → distinct shoppers
    prior: np.ndarray  # per lexicon term: 1 + TYPE_HEAD_PRIOR × its head share
    logged: dict[int, list[tuple[frozenset[int], int]]]  # term id → (query's term ids, shoppers)

    @classmethod
    def of(cls, lexicon: Lexicon, types: TypeModel | None, queries: Mapping[str, int]) -> _State:
        prior = np.ones(len(lexicon), dtype=np.float64)
        for head, share in (types.head_share if types is not None else {}).items():
            j = lexicon.id(head)
            if j is not None:
                prior[j] += TYPE_HEAD_PRIOR * share
        logged: dict[int, list[tuple[frozenset[int], int]]] = {}
        for text, shoppers in queries.items():
            ids = frozenset(j for t in text.split() if (j := lexicon.id(t)) is not None)
            for j in ids:
                logged.setdefault(j, []).append((ids, int(shoppers)))
        return cls(lexicon, Speller(lexicon), types, dict(queries), prior, logged)

    def ranked(
        self, cands: np.ndarray, co: np.ndarray, context: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The completion score of each candidate (``co``: products naming it with the context,
        times :meth:`weights`) and the candidates' order by it: likeliest first, then most frequent."""
        score = co * self.weights(cands, context)
        return np.lexsort((-self.lexicon.df[cands], -score)), score

    def weights(self, cands: np.ndarray, context: Sequence[int]) -> np.ndarray:
        """How much likelier shoppers type each candidate than its product count says: the type
        prior times (1 + shoppers who engaged after a query naming it with the context)^
        :data:`QUERY_LOG_WEIGHT` (the suggester's weighting of the same log)."""
        w = self.prior[cands].copy()
        if self.logged:
            need = frozenset(context)
            for k, j in enumerate(cands.tolist()):
                rows = self.logged.get(j)
                if rows:
                    n = sum(c for ids, c in rows if need <= ids)
                    w[k] *= (1.0 + n) ** QUERY_LOG_WEIGHT
        return w
