"""First stage: a request's candidates from BM25, vectors or both, fused; one backend per engine (embedded in memory, OpenSearch)."""
