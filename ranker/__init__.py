"""shoprank.ranker: retrieval (BM25, vector, hybrid) over any backend, and later reranking.

Importing this package loads no model, starts nothing and touches no network.
"""
