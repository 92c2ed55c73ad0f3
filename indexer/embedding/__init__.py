"""Bi-encoder embeddings: the embedder role and registry, the packaged MiniLM (torch), the hashing embedder, the content-hash cache, and the ONNX runtime."""
