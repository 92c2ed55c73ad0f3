"""Recommendations offline: hit rate@10 and nDCG@10 of shoprank's ``user`` and ``similar`` picks
against popularity and item-kNN baselines computed in the same run (time-ordered leave-last-out,
see ``ranker/evaluation/recommendations.py``).

Datasets:
* **MovieLens-100k** (real ratings, read out of the ``recbole==1.2.1`` wheel, downloaded once into
  ``~/.cache/shoprank/recbole-1.2.1``; never copied into the repository): ratings ≥ 4 count as
  purchases, lower ones as clicks; movies are indexed as products (title, year, genres) with the
  packaged MiniLM embeddings in a temporary embedded index.
* **Chorus UBI (synthetic)**: the UBI log of ``../shared/data/chorus_icecat`` against the embedded
  Chorus index (``scripts/run`` builds it); generated shoppers, so plumbing, not a quality claim.

Merges one row per dataset (with its run's provenance) into ``OUT/recommend.json`` and renders
``OUT/recommend.md`` from it.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from bench.common import SHARED_DATA, Run, RunNotes, Table, add_out, parser, write_results
from bench.report import table
from indexer.embedded.store import EmbeddedStore
from indexer.events import Event, read_ubi_log, resolve_products
from indexer.product import Product
from plugin_api.backends import embedder_from, embedding_cache
from plugin_api.settings import Settings
from ranker.evaluation.recommendations import Case, ItemKNN, Popularity, Split, evaluate, leave_last_out
from ranker.recommend.recommender import Recommender
from ranker.retrieval.embedded import EmbeddedBackend
from ranker.signals.personalization import EventModel

RECBOLE = "recbole==1.2.1"
ML_DIR = "recbole/dataset_example/ml-100k/"


def movielens(cache: Path) -> tuple[list[Product], list[Event]]:
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("recbole-1.2.1-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", RECBOLE, "-d", str(cache)],
            check=True,
            capture_output=True,
        )
        wheels = sorted(cache.glob("recbole-1.2.1-*.whl"))
    with zipfile.ZipFile(wheels[0]) as z:
        inter = z.read(ML_DIR + "ml-100k.inter").decode("utf-8").splitlines()[1:]
        items = z.read(ML_DIR + "ml-100k.item").decode("latin-1").splitlines()[1:]
    products = []
    for line in items:
        iid, title, year, genres = (line.split("\t") + ["", "", ""])[:4]
        products.append(
            Product(
                f"ml{iid}", title or f"movie {iid}", f"{title} ({year}). Genres: {genres}", category=genres
            )
        )
    events = []
    for line in inter:
        uid, iid, rating, ts = line.split("\t")
        action = "purchase" if float(rating) >= 4 else "click"
        events.append(Event(action, f"u{uid}", float(ts), object_id=f"ml{iid}", product_id=f"ml{iid}"))
    return products, events


def _temp_backend(products: list[Product], s: Settings, root: Path) -> EmbeddedBackend:
    from indexer.pipeline import build_index

    embedder = embedder_from(s)
    store = EmbeddedStore(root)
    build_index(products, store, embedder, cache=embedding_cache(s, embedder), batch_size=s.batch_size)
    return EmbeddedBackend(store)


def chorus(s: Settings) -> tuple[EmbeddedBackend, list[Event]] | None:
    if not (s.embedded_dir / "CURRENT").exists():
        return None
    backend = EmbeddedBackend(EmbeddedStore(s.embedded_dir))
    log = read_ubi_log(SHARED_DATA / "chorus_icecat" / "ubi_events_synthetic.zip")
    eans = sorted({e.object_id for e in log.events if e.object_id})
    events = resolve_products(log.events, backend.ids_for_eans(eans), set())
    return backend, [e for e in events if e.product_id is not None]


def run_dataset(
    name: str, backend: EmbeddedBackend, events: list[Event], k: int, catalog_size: int
) -> dict[str, Any]:
    t0 = time.perf_counter()
    split: Split = leave_last_out(events)
    pop = Popularity(split.train)
    knn = ItemKNN(split.train)
    seen = backend.fetch(list({e.product_id for e in split.train if e.product_id}))
    model = EventModel(
        brand_of=lambda pid: seen[pid].brand if pid in seen else "",
        category_of=lambda pid: seen[pid].category if pid in seen else "",
    )
    model.add(split.train)
    rec = Recommender(backend, model, device="cpu")

    def ids(items: Any) -> list[str]:
        return [r.id for r in items]

    methods = {
        "popularity": (
            lambda c, n: pop.recommend(n, set(c.history)),
            lambda c, n: pop.recommend(n, {c.anchor}),
        ),
        "item-kNN": (
            lambda c, n: knn.recommend(c.history, n, set(c.history)),
            lambda c, n: knn.recommend([c.anchor], n, {c.anchor}),
        ),
        "shoprank": (
            lambda c, n: ids(rec.for_user(c.client_id, n, 0.0, exclude=c.history).items),
            lambda c, n: ids(rec.similar(c.anchor, n, 0.0).items),
        ),
    }
    metrics = evaluate(split, methods, k=k, catalog_size=catalog_size)
    cases: list[Case] = split.cases
    return {
        "dataset": name,
        "events": len(events),
        "train_events": len(split.train),
        "cases": len(cases),
        "catalog": catalog_size,
        "metrics": metrics,
        "seconds": round(time.perf_counter() - t0, 1),
        "k": k,
    }


def render(doc: dict[str, Any]) -> str:
    notes = RunNotes()
    rows = []
    for r in doc["results"]:
        mark = notes.mark(r)
        for task in ("user", "similar"):
            for method, m in r["metrics"][task].items():
                rows.append(
                    [
                        r["dataset"],
                        task,
                        method,
                        r.get("k", doc.get("k")),
                        m["hit_rate"],
                        m["ndcg"],
                        m["coverage"],
                        int(m["cases"]),
                        mark,
                    ]
                )
    lines = [
        "# Recommendations: time-ordered leave-last-out (a shopper's last purchase / add-to-cart held out)",
        "",
        *(
            f"- {r['dataset']}: {r['events']} events, {r['cases']} shoppers evaluated, catalog {r['catalog']},"
            f" {r['seconds']} s {notes.mark(r)}"
            for r in doc["results"]
        ),
        "- user: products in the shopper's history excluded for every method; similar: anchored on the "
        "shopper's last training product; HR and nDCG at the row's k",
        "",
        *table(["dataset", "task", "method", "k", "HR", "nDCG", "coverage", "cases", "run"], rows, 4),
        *notes.lines(),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = parser("recommend", __doc__)
    ap.add_argument("--datasets", default="movielens,chorus")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "shoprank" / "recbole-1.2.1")
    add_out(ap, "recommend")
    args = ap.parse_args(argv)
    run = Run.start("recommend", argv, args)
    s = Settings(device="cpu")
    results = []
    for name in args.datasets.split(","):
        if name == "movielens":
            products, events = movielens(args.cache)
            with tempfile.TemporaryDirectory() as tmp:
                backend = _temp_backend(products, s, Path(tmp))
                results.append(run_dataset("MovieLens-100k", backend, events, args.k, len(products)))
        elif name == "chorus":
            got = chorus(s)
            if got is None:
                print(f"skipping chorus: no embedded index in {s.embedded_dir} (run scripts/run first)")
                continue
            backend, events = got
            results.append(run_dataset("Chorus UBI (synthetic)", backend, events, args.k, backend.count()))
        else:
            raise SystemExit(f"unknown dataset {name!r}; choose from movielens, chorus")
    doc = write_results(
        args.out,
        "recommend",
        [Table(results, ("dataset",), at="results")],
        run=run,
        extra={"date": run.date, "machine": run.machine, "k": args.k},
        markdown=render,
    )
    print(render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
