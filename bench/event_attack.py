"""Can fabricated shopper events buy a ranking? The issue-12 attacks, replayed against the service.

Builds (or reuses) an embedded index of the Chorus catalog, loads the synthetic UBI log as the
shop's trusted history (``events ingest --shift-to-now``, as ``scripts/run`` does), then runs each
attack on a fresh copy of that data through the HTTP app (FastAPI TestClient, in-process: what is
measured is the effect on rankings, not speed) and reports where the attacked product stands
before and after:

* ``fabricated``: 2,000 click/purchase events on one product from 2,000 fake shopper ids, no key,
  no real search behind them (the issue's laptop-bag attack) — its rank in ``full`` for the query
  and in trending;
* ``searched``: the strongest browser attack: each of the 2,000 fake shoppers first runs the query
  (k = 100, so the product is on the page it is shown) and then clicks and "buys" it with that
  real query id;
* ``co_interaction``: 1,000 events from 500 fake shoppers pairing a laptop bag with a staple
  cartridge — the cartridge's rank in the bag's similar items;
* ``future`` / ``nan``: one event dated three years ahead, one with ``"timestamp": "nan"`` — the
  answer, trending's top 5 and how many products' popularity changed.

Merges one row per attack (with its run's provenance) into ``OUT/event_attack.json`` and renders
``OUT/event_attack.md`` from it. Run as
``python -m bench.event_attack [--embedder minilm|hashing] [--data-dir DIR]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Run, RunNotes, add_catalog, add_out, parser, write_results
from bench.report import table

QUERY = "laptop bag"
KEY = "bench-admin-key"


def _prepare(data: Path, cache: Path, embedder: str, catalog: Path) -> None:
    from plugin_api.cli.main import main as cli

    del cache  # the CLI embeds through the settings' cache (SHOPRANK_CACHE_DIR)
    common = ["--data-dir", str(data), "--embedder", embedder]
    if not (data / "index" / "CURRENT").exists():
        assert cli(["index", "--catalog", str(catalog), "--quiet", *common]) == 0
        log = catalog / "ubi_events_synthetic.zip"
        assert cli(["events", "ingest", str(log), "--shift-to-now", *common]) == 0


def _event(client: str, pid: str, action: str, *, qid: str | None = None, ts: Any = None) -> dict[str, Any]:
    return {
        "action_name": action,
        "client_id": client,
        "query_id": qid,
        "timestamp": time.time() * 1000 if ts is None else ts,
        "event_attributes": {"object": {"object_id": pid, "object_id_field": "id"}},
    }


class Probe:
    """Reads the rankings an attack aims at."""

    def __init__(self, client: Any):
        self.c = client

    def search(self, q: str, k: int = 100, user: str = "bench-probe") -> list[str]:
        r = self.c.get("/v1/search", params={"q": q, "k": k, "user_id": user})
        r.raise_for_status()
        return [x["id"] for x in r.json()["results"]]

    def trending(self, k: int = 100) -> list[str]:
        r = self.c.get("/v1/recommend/user/bench-new-shopper", params={"k": k, "diversity": 0})
        r.raise_for_status()
        return [x["id"] for x in r.json()["results"]]

    def similar(self, pid: str, k: int = 100) -> list[str]:
        r = self.c.get(f"/v1/recommend/similar/{pid}", params={"k": k, "diversity": 0})
        r.raise_for_status()
        return [x["id"] for x in r.json()["results"]]

    def popularity(self) -> dict[str, float]:
        model = self.c.app.state.holder.get().event_model
        return dict(model.popularity(list(model._mass)))


def _rank(ids: list[str], pid: str) -> int | None:
    return ids.index(pid) + 1 if pid in ids else None


def _post(c: Any, events: list[dict[str, Any]], key: str | None = None) -> tuple[int, int]:
    """(status of the last batch, events accepted), in batches of 1,000."""
    status, accepted = 200, 0
    headers = {"X-API-Key": key} if key else {}
    for i in range(0, len(events), 1000):
        r = c.post("/v1/events", json={"events": events[i : i + 1000]}, headers=headers)
        status = r.status_code
        if r.status_code == 200:
            accepted += r.json()["accepted"]
    return status, accepted


def run(args: argparse.Namespace) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from plugin_api.http.app import create_app
    from plugin_api.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="shoprank-attack-"))
    base = args.data_dir or work / "base"
    cache = args.cache_dir
    t0 = time.perf_counter()
    _prepare(base, cache, args.embedder, args.catalog)
    prep_s = time.perf_counter() - t0

    def fresh(name: str) -> TestClient:
        d = work / name
        shutil.copytree(base, d)
        s = Settings(data_dir=d, cache_dir=cache, embedder=args.embedder, api_keys=(KEY,), device="cpu")
        return TestClient(create_app(s))

    rows: list[dict[str, Any]] = []
    with fresh("baseline") as c:
        p = Probe(c)
        results = p.search(QUERY)
        target = results[min(args.target_rank, len(results)) - 1]  # the bag sat at rank 50
        bag = results[0]
        cartridge = p.search("staple cartridge", k=1)[0]
        base_rank, base_trend = _rank(results, target), _rank(p.trending(), target)
        base_sim = _rank(p.similar(bag), cartridge)
        base_top5 = p.trending(5)

    def attack_row(name: str, what: str, status: int, accepted: int, **after: Any) -> None:
        rows.append({"attack": name, "what": what, "status": status, "accepted": accepted, **after})

    # 1. fabricated: 2,000 fake shoppers, no key, no real search
    with fresh("fabricated") as c:
        p = Probe(c)
        ev = [_event(f"fake-{i}", target, "purchase" if i % 2 else "click") for i in range(2000)]
        status, accepted = _post(c, ev)
        attack_row(
            "fabricated",
            f"2,000 events on the rank-{base_rank} product from 2,000 fake ids",
            status,
            accepted,
            full_before=base_rank,
            full_after=_rank(p.search(QUERY), target),
            trending_before=base_trend,
            trending_after=_rank(p.trending(), target),
        )

    # 2. searched: every fake shopper runs the query first, then clicks and buys with its query id
    with fresh("searched") as c:
        p = Probe(c)
        model = c.app.state.holder.get().event_model
        mass0 = model._mass.get(target, 0.0)
        ev = []
        t1 = time.perf_counter()
        for i in range(args.searchers):
            r = c.get(
                "/v1/search", params={"q": QUERY, "k": 100, "user_id": f"fake-{i}", "pipeline": "hybrid"}
            )
            qid = r.json()["query_id"]
            ev += [
                _event(f"fake-{i}", target, "click", qid=qid),
                _event(f"fake-{i}", target, "purchase", qid=qid),
            ]
        search_s = time.perf_counter() - t1
        status, accepted = _post(c, ev)
        attack_row(
            "searched",
            f"{args.searchers:,} real searches, then a click + purchase each ({search_s:.0f} s of searching)",
            status,
            accepted,
            full_before=base_rank,
            full_after=_rank(p.search(QUERY), target),
            trending_before=base_trend,
            trending_after=_rank(p.trending(), target),
            popularity_mass=f"{mass0:.2f} → {model._mass.get(target, 0.0):.2f}",
        )

    # 3. co-interaction: 500 fake shoppers engage with the bag and the cartridge
    with fresh("co") as c:
        p = Probe(c)
        ev = [
            e
            for i in range(500)
            for e in (_event(f"co-{i}", bag, "click"), _event(f"co-{i}", cartridge, "click"))
        ]
        status, accepted = _post(c, ev)
        attack_row(
            "co_interaction",
            "1,000 events pairing a laptop bag with a staple cartridge",
            status,
            accepted,
            similar_before=base_sim,
            similar_after=_rank(p.similar(bag), cartridge),
        )

    # 4./5. one event from the future, one with a NaN time
    for name, ts, what in (
        ("future", (time.time() + 3 * 365 * 86400) * 1000, "one event dated three years ahead"),
        ("nan", "nan", 'one event with "timestamp": "nan"'),
    ):
        with fresh(name) as c:
            p = Probe(c)
            pop0 = p.popularity()
            status, accepted = _post(c, [_event("fake-1", target, "purchase", ts=ts)])
            pop1 = p.popularity()
            changed = sum(1 for k in set(pop0) | set(pop1) if abs(pop0.get(k, 0) - pop1.get(k, 0)) > 1e-12)
            attack_row(
                name,
                what,
                status,
                accepted,
                trending_top5_same=p.trending(5) == base_top5,
                popularity_changed=changed,
            )

    shutil.rmtree(work, ignore_errors=True)
    products = {"target": target, "bag": bag, "cartridge": cartridge}
    return {
        "parameters": {
            "embedder": args.embedder,
            "query": QUERY,
            "target_rank": args.target_rank,
            "searchers": args.searchers,
            "catalog": str(args.catalog),
        },
        "products": products,
        "prepare_seconds": round(prep_s, 1),
        "rows": [{**r, "products": products, "embedder": args.embedder, "query": QUERY} for r in rows],
    }


def markdown(r: dict[str, Any]) -> str:
    def cell(row: dict[str, Any], a: str, b: str) -> str:
        return f"{row[a]} → {row[b]}" if a in row else ""

    notes = RunNotes()
    lines = [
        "# Fabricated events against the rankings",
        "",
        *table(
            [
                "attack",
                "what",
                "HTTP",
                "accepted",
                "full rank",
                "trending rank",
                "similar rank",
                "other",
                "embedder",
                "query",
                "run",
            ],
            [
                [
                    x["attack"],
                    x["what"],
                    x["status"],
                    x["accepted"],
                    cell(x, "full_before", "full_after"),
                    cell(x, "trending_before", "trending_after"),
                    cell(x, "similar_before", "similar_after"),
                    ", ".join(
                        f"{k} {x[k]}"
                        for k in ("popularity_mass", "trending_top5_same", "popularity_changed")
                        if k in x
                    ),
                    x.get("embedder", "–"),
                    x.get("query", "–"),
                    notes.mark(x),
                ]
                for x in r["rows"]
            ],
        ),
        "",
        "Ranks are 1-based within the top 100 (`None`: not in it). See README “Threat model”.",
        "",
        *notes.lines(),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = parser("event_attack", __doc__)
    add_catalog(ap)
    ap.add_argument("--embedder", default="minilm", help="minilm (default) or hashing (fast, no model)")
    ap.add_argument("--data-dir", type=Path, help="reuse a prepared data dir (index + trusted events)")
    ap.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "shoprank")
    ap.add_argument("--target-rank", type=int, default=50)
    ap.add_argument("--searchers", type=int, default=2000)
    add_out(ap, "event_attack")
    args = ap.parse_args(argv)
    this_run = Run.start("event_attack", argv, args)
    r = run(args)
    doc = write_results(
        args.out,
        "event_attack",
        r.pop("rows"),
        key=["attack"],
        run=this_run,
        extra=this_run.file_fields() | r,
        markdown=markdown,
    )
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
