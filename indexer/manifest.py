"""Manifests: every saved index and model says what it was built from, and is checked at load."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from indexer.errors import IndexMismatchError

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Manifest:
    kind: str
    model_id: str
    dimension: int
    catalog_hash: str
    documents: int
    analyzer_version: int
    schema_version: int = SCHEMA_VERSION
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "index") -> Manifest:
        try:
            return cls(
                kind=str(d["kind"]),
                model_id=str(d["model_id"]),
                dimension=int(d["dimension"]),
                catalog_hash=str(d["catalog_hash"]),
                documents=int(d["documents"]),
                analyzer_version=int(d["analyzer_version"]),
                schema_version=int(d["schema_version"]),
                created_at=str(d.get("created_at", "")),
                extra=dict(d.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexMismatchError(
                f"the manifest of {where} is incomplete or corrupt ({exc!r}); rebuild it with `shoprank index`"
            ) from exc

    def check(self, *, model_id: str, dimension: int, analyzer_version: int, where: str = "index") -> None:
        """Refuse an index built by another schema, model, dimension or analyzer, saying how to fix it."""
        if self.schema_version != SCHEMA_VERSION:
            raise IndexMismatchError(
                f"{where} has schema version {self.schema_version}, this shoprank reads {SCHEMA_VERSION}; "
                "rebuild it with `shoprank index`"
            )
        if self.model_id != model_id or self.dimension != dimension:
            raise IndexMismatchError(
                f"{where} was built with model {self.model_id!r} ({self.dimension}-d) but the configured model "
                f"is {model_id!r} ({dimension}-d); re-index with `shoprank index` or configure the index's model"
            )
        if self.analyzer_version != analyzer_version:
            raise IndexMismatchError(
                f"{where} was built with analyzer version {self.analyzer_version}, this shoprank uses "
                f"{analyzer_version}; rebuild it with `shoprank index`"
            )

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        if not path.exists():
            raise IndexMismatchError(
                f"no manifest at {path}; this is not a shoprank index, build one with `shoprank index`"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise IndexMismatchError(
                f"corrupt manifest {path}: {exc}; rebuild with `shoprank index`"
            ) from exc
        return cls.from_dict(data, where=str(path))


@dataclass(frozen=True)
class ModelManifest:
    """What a trained model folder was made from; checked before the model is served."""

    kind: str
    name: str
    base_model: str
    max_length: int
    data_hash: str
    data_sources: dict[str, int] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    folds: list[dict[str, Any]] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    FILE = "manifest.json"

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (self.FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(folder / self.FILE)

    @classmethod
    def load(cls, folder: Path, *, kind: str) -> ModelManifest:
        path = Path(folder) / cls.FILE
        if not path.exists():
            raise IndexMismatchError(
                f"no {cls.FILE} in {folder}: not a shoprank {kind} model; train one with `shoprank train`"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            m = cls(**data)
        except (json.JSONDecodeError, TypeError) as exc:
            raise IndexMismatchError(
                f"corrupt model manifest {path} ({exc}); retrain with `shoprank train`"
            ) from exc
        if m.schema_version != SCHEMA_VERSION:
            raise IndexMismatchError(
                f"{path} has schema version {m.schema_version}, this shoprank reads {SCHEMA_VERSION}; retrain it"
            )
        if m.kind != kind:
            raise IndexMismatchError(
                f"{folder} holds a {m.kind!r} model, not a {kind!r} model; point to the right folder"
            )
        return m


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file (model files named in export manifests are checked with it)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
