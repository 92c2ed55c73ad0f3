"""shoprank.indexer: catalog readers, embeddings, and the index writers (embedded and OpenSearch).

Importing this package loads no model, starts nothing and touches no network.
"""

from indexer.errors import CatalogError, IndexMismatchError, ShoprankError

__all__ = ["CatalogError", "IndexMismatchError", "ShoprankError"]
