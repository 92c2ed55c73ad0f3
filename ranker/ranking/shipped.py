"""Fusion weights shipped with shoprank, read from package resources.

``resources/text_fusion.json`` is the fusion ``full`` runs without a cross-encoder: the text
weights `shoprank train fusion --resource` learned on the dev judgments, written by that command
with its provenance (``meta.provenance``: the command, the judgments' sha256, date, commit,
held-out nDCG@10, and the tolerance a re-run must meet, checked by a model-tier test). Nothing
here is hand-edited: regenerate the file with the command recorded in it.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from indexer.errors import IndexMismatchError
from ranker.ranking.features import FEATURES
from ranker.ranking.full import QUERY_SIGNAL_WEIGHTS, SHOP_SIGNAL_WEIGHTS
from ranker.ranking.linear_fusion import KIND, LinearFusion

TEXT_FUSION_RESOURCE = "text_fusion.json"
PROVENANCE_KEYS = ("command", "judgments_sha256", "date", "commit", "held_out", "tolerance")
_REGENERATE = (
    "regenerate it with `shoprank train fusion --judgments ../shared/data/chorus_icecat/judgments_dev.csv "
    "--resource ranker/ranking/resources/text_fusion.json` over an index of the Chorus catalog "
    "(`shoprank index --catalog ../shared/data/chorus_icecat`), or reinstall shoprank"
)


def learned_text_fusion(path: str | Path | None = None) -> LinearFusion:
    """The text fusion as ``train fusion`` wrote it (shop signals at 0), from ``path`` or, when
    None, the packaged resource; :class:`IndexMismatchError` if it is missing or not one."""
    if path is not None:
        return _parse(Path(path).read_text() if Path(path).is_file() else None, str(path))
    res = resources.files("ranker.ranking") / "resources" / TEXT_FUSION_RESOURCE
    return _parse(
        res.read_text() if res.is_file() else None, f"ranker/ranking/resources/{TEXT_FUSION_RESOURCE}"
    )


def text_fusion(path: str | Path | None = None) -> LinearFusion:
    """The fusion ``full`` uses without a cross-encoder: the learned text weights (the features the
    fit left at 0, the cross-encoder's among them, dropped) plus the hand-set
    :data:`~ranker.ranking.full.SHOP_SIGNAL_WEIGHTS` and ``QUERY_SIGNAL_WEIGHTS`` (the judgments
    cannot teach those)."""
    learned = learned_text_fusion(path)
    weights = {f: w for f, w in learned.weights.items() if w != 0.0}  # the features it learned
    return LinearFusion(
        {**weights, **SHOP_SIGNAL_WEIGHTS, **QUERY_SIGNAL_WEIGHTS}, learned.bias, learned.meta
    )


def provenance(fusion: LinearFusion) -> dict[str, Any]:
    prov = fusion.meta.get("provenance")
    return dict(prov) if isinstance(prov, dict) else {}


def _parse(text: str | None, where: str) -> LinearFusion:
    if text is None:
        raise IndexMismatchError(f"the shipped text fusion {where} is missing; {_REGENERATE}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IndexMismatchError(
            f"the shipped text fusion {where} is not JSON ({exc}); {_REGENERATE}"
        ) from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        kind = data.get("kind") if isinstance(data, dict) else None
        raise IndexMismatchError(
            f"the shipped text fusion {where} has kind {kind!r}, not {KIND!r}; {_REGENERATE}"
        )
    saved = data.get("features")
    weights, meta = data.get("weights"), data.get("meta")
    if not isinstance(saved, list) or not isinstance(weights, dict) or not isinstance(meta, dict):
        raise IndexMismatchError(
            f"the shipped text fusion {where} lacks features, weights or meta; {_REGENERATE}"
        )
    if not set(saved) <= set(FEATURES):
        raise IndexMismatchError(
            f"the shipped text fusion {where} was trained on features {saved}; this shoprank uses "
            f"{list(FEATURES)}: {_REGENERATE}"
        )
    prov = meta.get("provenance")
    missing = [k for k in PROVENANCE_KEYS if not isinstance(prov, dict) or k not in prov]
    if missing:
        raise IndexMismatchError(f"the shipped text fusion {where} lacks provenance {missing}; {_REGENERATE}")
    try:
        fusion = LinearFusion({k: float(v) for k, v in weights.items()}, float(data.get("bias", 0.0)), meta)
    except (TypeError, ValueError) as exc:
        raise IndexMismatchError(
            f"the shipped text fusion {where} does not fit this shoprank: {exc}; {_REGENERATE}"
        ) from None
    if meta.get("reranker") is not None or fusion.weights.get("cross_encoder", 0.0) != 0.0:
        raise IndexMismatchError(
            f"the shipped text fusion {where} was trained with a cross-encoder; {_REGENERATE}"
        )
    return fusion
