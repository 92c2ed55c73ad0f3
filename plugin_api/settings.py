"""Settings, read only here at the edge (environment ``SHOPRANK_*`` and CLI flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ranker.retrieval.retriever import STRICT_CANDIDATES


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "shoprank"


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "shoprank"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOPRANK_", frozen=True, extra="ignore")

    backend: Literal["embedded", "opensearch"] = "embedded"
    opensearch_url: str = "http://127.0.0.1:9200"
    opensearch_timeout_s: float = Field(10.0, gt=0, le=300)
    # candidates' records and vectors kept per document version (_primary_term, _seq_no); 0: off
    opensearch_record_cache_size: int = Field(100_000, ge=0, le=10_000_000)
    index_alias: str = Field("shoprank-products", pattern=r"^[a-z0-9][a-z0-9_.-]{0,200}$")
    # OpenSearch product index built by `shoprank index`: primary shards, and replicas per shard
    # (unset: one on a cluster, none on a single node, following the node count)
    shards: int = Field(1, ge=1, le=1024)
    replicas: int | None = Field(None, ge=0, le=16)
    data_dir: Path = Field(default_factory=_default_data_dir)
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    # the public data sets (reviews for `train sentiment`); relative: from where the command runs
    shared_data_dir: Path = Path("../shared/data")
    embedder: str = "minilm"  # minilm | minilm-onnx | minilm-onnx-int8 | hashing (tests)
    # What embeds queries: "auto" = the minilm model on onnxruntime (fp32: the same vectors as
    # torch, ~5× faster; `shoprank serve`/`index` export it when missing), else the embedder
    # above; "same" = the embedder above; or any embedder name.
    query_embedder: str = "auto"
    model_path: Path | None = None
    device: str = "auto"
    batch_size: int = Field(64, ge=1, le=4096)
    candidates: int = Field(100, ge=1, le=1000)
    fusion: Literal["rrf", "minmax"] = "rrf"
    rrf_k: float = Field(60.0, gt=0)
    weight_bm25: float = Field(1.0, ge=0)
    weight_vector: float = Field(0.5, ge=0)
    # query understanding: typos corrected and the word being typed completed against the catalog's
    # vocabulary before searching (a request's exact=true searches the text as typed)
    query_understanding: bool = True
    # how often a serving process rebuilds that vocabulary and its suggestions from the live index
    # and the shop's query log (new products' words, newly engaged queries)
    vocabulary_refresh_s: float = Field(300.0, gt=0, le=86400)
    # anonymous searches' results kept per state of the shop (embedded backend; 0: off)
    result_cache_size: int = Field(10_000, ge=0, le=1_000_000)
    # how far behind the shop a cached anonymous answer may be: the cache adopts the shop's new
    # state (product writes, events, reviews) at most this often, like a search engine's refresh
    # interval (0: at every change)
    result_cache_refresh_s: float = Field(1.0, ge=0, le=60)
    reranker_path: Path | None = None
    rerank_candidates: int = Field(100, ge=1, le=1000)
    # `full` runs the cross-encoder on the top M of a first pass (the fusion without it)
    rerank_top: int = Field(30, ge=1, le=1000)
    # cross-encoder scores kept per (query, product text) (0: off)
    rerank_cache_size: int = Field(100_000, ge=0, le=10_000_000)
    # reranking candidates the strict keyword leg adds (every query term in some field); 0 = none
    strict_candidates: int = Field(STRICT_CANDIDATES, ge=0, le=1000)
    # torch (the trained weights), onnx (fp32 export) or onnx-int8 (quantized export)
    reranker_runtime: Literal["torch", "onnx", "onnx-int8"] = "torch"
    sentiment_path: Path | None = None  # a model from `shoprank train sentiment`
    review_prior_strength: float = Field(10.0, ge=0, le=10_000)  # pseudo-reviews at the prior
    fusion_path: Path | None = None  # fusion.json from `shoprank train fusion`
    # shopper events
    ubi_prefix: str = Field(
        "ubi", pattern=r"^[a-z0-9][a-z0-9_.-]{0,100}$"
    )  # <prefix>_events, <prefix>_queries
    event_half_life_days: float = Field(30.0, gt=0, le=3650)
    popularity_prior: float = Field(1.0, ge=0, le=1000)
    event_ttl_days: float = Field(365.0, ge=0, le=36500)  # events (and so profiles) older go; 0 keeps all
    # how often a serving process deletes events past event_ttl_days (a scheduled task)
    event_expiry_every_s: float = Field(3600.0, gt=0, le=86400)
    # threads of each onnxruntime session (query embedder, cross-encoder) per process; None: the machine's
    # cores (up to 4); `serve --workers N` gives each worker its share of the cores
    model_threads: int | None = Field(None, ge=1, le=256)
    event_sync_s: float = Field(10.0, ge=0, le=3600)  # OpenSearch: fold in other workers' events this often
    # embedded: fold in the events other processes (workers, `shoprank events ingest`) stored, and
    # forget the shoppers they erased, this often (a few stat calls when nothing changed)
    event_follow_s: float = Field(1.0, gt=0, le=3600)
    # OpenSearch: how often a request re-reads the live index's manifest (a rebuild for another model)
    index_check_s: float = Field(5.0, ge=0, le=3600)
    # serving
    api_keys: tuple[str, ...] = ()  # write endpoints need one of these in X-API-Key; none: writes refused
    # Browser keys for POST /v1/events (public, shown to every storefront visitor). When set, an
    # event needs one of these or an admin key; when empty, keyless events are taken as browser's.
    public_keys: tuple[str, ...] = ()
    max_inflight: int = Field(4, ge=1, le=10_000)  # requests served at once; more wait in the queue
    max_queued: int = Field(16, ge=0, le=10_000)  # requests waiting for a slot; more get 429
    queue_wait_s: float = Field(1.0, ge=0, le=60)  # the longest wait for a slot before a 429
    max_body_bytes: int = Field(1_000_000, ge=1_000, le=100_000_000)  # bytes read, chunked included
    read_timeout_s: float = Field(5.0, gt=0, le=300)  # for the request head, then for the whole body
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    @property
    def embedded_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def embedding_cache_dir(self) -> Path:
        return self.cache_dir / "embeddings"

    @property
    def onnx_embedder_dir(self) -> Path:
        """Where `shoprank export --embedder` writes and the minilm-onnx embedders read."""
        return self.cache_dir / "onnx" / "minilm"
