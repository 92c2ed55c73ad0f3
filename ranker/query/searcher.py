"""Query understanding in front of any search pipeline: the rewritten query is what gets searched."""

from __future__ import annotations

import time
from dataclasses import replace

from ranker.base import Searcher, SearchOptions, SearchRequest, SearchResult
from ranker.query.rewrite import Interpretation, QueryRewriter


class UnderstandingSearcher:
    """Rewrites the request's query (typos corrected, the word being typed completed) and runs
    ``inner`` on the result; the answer carries the :class:`Interpretation`. ``exact`` requests
    are searched as typed."""

    def __init__(self, inner: Searcher, rewriter: QueryRewriter):
        self.inner = inner
        self.rewriter = rewriter

    def search(self, req: SearchRequest, options: SearchOptions | None = None) -> SearchResult:
        if req.exact:
            interp = Interpretation(req.query, req.query, exact=True, constraints=req.constraints)
            res = self.inner.search(req, options)
            return replace(res, interpretation=interp)
        t = time.perf_counter()
        interp = self.rewriter.rewrite(req.query)
        spent = round((time.perf_counter() - t) * 1000.0, 3)
        searched = replace(
            req,
            query=interp.query,
            expansions=interp.expansions,
            constraints=interp.constraints,
            intent=interp.intent,
        )
        res = self.inner.search(searched, options)
        return replace(res, interpretation=interp, timings_ms={"understand": spent, **res.timings_ms})
