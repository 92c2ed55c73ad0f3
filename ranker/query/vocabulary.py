"""The catalog's vocabulary as the service holds it: one lexicon behind the rewriter and the
suggester, rebuilt from the live index (and the shop's query log) on :meth:`Vocabulary.refresh`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from indexer.analysis import minimal_english_stem
from ranker.query.lexicon import Lexicon, LexiconSource
from ranker.query.rewrite import QueryRewriter
from ranker.query.suggest import Suggester, catalog_phrases
from ranker.query.types import TypeModel

log = logging.getLogger(__name__)

ShopQueries = Callable[[], Mapping[str, int]]  # analyzed query text → distinct engaged shoppers


class Vocabulary:
    def __init__(
        self,
        source: LexiconSource,
        *,
        confirm: Callable[[str], bool] | None = None,
        shop_queries: ShopQueries | None = None,
    ):
        self.source = source
        self.shop_queries = shop_queries
        self._generation = self._source_generation()
        self.generation = 0  # rebuilds so far: what a rewrite reads changed when this moved
        lexicon, suggester, types, queries = self._build(None, self._queries())
        self.rewriter = QueryRewriter(lexicon, confirm, types=types, queries=queries)
        self.suggester = suggester

    def _queries(self) -> dict[str, int]:
        return dict(self.shop_queries()) if self.shop_queries else {}

    def _source_generation(self) -> object | None:
        """The source's state (``ranking_generation()``, which a price or stock update leaves, or
        else ``generation()``: changes with every product write), or None when it cannot say."""
        gen = getattr(self.source, "ranking_generation", None) or getattr(self.source, "generation", None)
        return gen() if callable(gen) else None

    def _build(
        self, types: TypeModel | None, queries: dict[str, int]
    ) -> tuple[Lexicon, Suggester, TypeModel, dict[str, int]]:
        t = time.perf_counter()
        docs = list(self.source.naming_documents())
        lexicon = Lexicon.from_documents(docs)
        # refitted only when some product's title or category changed
        types = TypeModel.fit((d[2] for d in docs if len(d) > 2), previous=types)
        # phrases from titles (NAMING_FIELDS order: title, name, brand, category), whole brands and categories
        titles = [[minimal_english_stem(w) for w in naming[0]] for naming, *_ in docs if naming]
        extra = {" ".join(naming[i]) for naming, *_ in docs for i in (2, 3) if len(naming) > i and naming[i]}
        suggester = Suggester(lexicon, catalog_phrases(titles, extra), queries)
        log.info(
            "vocabulary: %d terms, %d suggestions (%d from the query log), %d product types in %.1f s",
            len(lexicon),
            len(suggester),
            len(queries),
            len(types),
            time.perf_counter() - t,
        )
        return lexicon, suggester, types, queries

    def refresh(self) -> bool:
        """Rebuild from the live index and query log, then swap both in; skipped (False) when
        neither moved since the last build (the source says its generation; one that cannot is
        always rebuilt)."""
        gen, queries = self._source_generation(), self._queries()
        if gen is not None and gen == self._generation and queries == self.rewriter.queries:
            return False
        lexicon, suggester, types, queries = self._build(self.rewriter.types, queries)
        self.rewriter.use(lexicon, types, queries)
        self.suggester = suggester
        self._generation = gen
        self.generation += 1
        return True
