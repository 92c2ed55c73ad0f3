"""Readers for the review-sentiment corpora in ``shared/data`` and a product-disjoint split.

Every reader keeps the good records and reports each bad one with source, line and reason (as
:mod:`indexer.catalog` does), so one broken record never stops a read. Labels: 1 = positive, 0 = negative.

* :func:`read_blitzer` — Multi-Domain Sentiment (Blitzer et al. 2007), ``{domain}_{positive|negative}.review``
  (label from the file name). Pseudo-XML, *not* valid XML: ``<review>`` blocks with one
  ``<tag>`` … ``</tag>`` per field (``unique_id``, ``asin``, ``product_name``, ``rating``, ``title``,
  ``review_text``, …) and entities escaped twice (``&amp;lt;`` means ``<``). Parsed per block by regex.
* :func:`read_uci_sentences` — UCI "Sentiment Labelled Sentences" ``{source}_labelled.txt``:
  ``sentence<TAB>label`` per line, CR (``\\r``) line endings.
* :func:`read_hu_liu` — Hu & Liu aspect annotations as packed by NLTK (``product_reviews_1.zip``,
  ``_2.zip``), one product per ``.txt`` member, one sentence per line::

      [t]review title                      a title line: starts a review (skipped)
      battery life[-2], screen[+1]##text   aspect[sign strength] annotations, "##", the sentence
      ##text                               a sentence without aspect annotations
      *  ...                               header lines (skipped)

  Strength is 1..3 (``[+]`` alone counts 1); tags ``[u]`` (aspect not named in the sentence),
  ``[p]`` (pronoun), ``[s]`` (suggestion), ``[cc]``/``[cs]`` (comparison) are ignored; an aspect
  without a signed tag (``zoom[u]``, ``zoom[2]``) is dropped; names are lower-cased; an aspect
  named twice in a sentence gets the sum. Other lines without ``##`` are skipped and reported.
* :func:`read_chinese_shopping` — ``online_shopping_10_cats.zip``: one CSV ``cat,label,review``;
  empty / ``NaN`` reviews are skipped and reported.
"""

from __future__ import annotations

import csv
import html
import io
import logging
import random
import re
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Generic, NamedTuple, TypeVar

from indexer.catalog import RowError
from indexer.errors import BadInputError

log = logging.getLogger(__name__)

BLITZER_DOMAINS = ("books", "dvd", "electronics", "kitchen")
_LABELS: Mapping[str, int] = MappingProxyType({"positive": 1, "negative": 0})
_WS = re.compile(r"\s+")
_BLOCK_START = re.compile(r"<review>")
_BLOCK_END = "</review>"
_ASPECT = re.compile(r"\s*([^,\[\]{}]+?)\s*((?:[\[{][^\[\]{}]*[\]}])+)")  # tolerates "look{+1]"
_SIGNED = re.compile(r"[\[{]([+-])(\d?)[\]}]")
T = TypeVar("T")


class ReviewDataError(BadInputError):
    """A review corpus file or folder is missing, unreadable or not in the expected format."""


@dataclass(frozen=True)
class Review:
    text: str
    label: int  # 1 = positive, 0 = negative
    product: str  # product id (Blitzer: asin); "" when the corpus has none
    domain: str
    rating: float | None = None
    lang: str = "en"


@dataclass(frozen=True)
class AspectSentence:
    text: str
    aspects: dict[str, int]  # aspect -> signed strength (-3..+3)
    product: str


@dataclass
class ReadResult(Generic[T]):
    """Records read plus the rows skipped (``errors``); iterating yields the records."""

    items: list[T] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def _log(self, what: str) -> None:
        log.info("%s: %d records from %d files", what, len(self.items), len(self.files))
        if self.errors:
            log.warning("%s: %d rows skipped (first: %s)", what, len(self.errors), self.errors[0])


def normalize(text: str) -> str:
    """Unescape HTML entities (twice: Blitzer escapes them twice) and collapse whitespace."""
    for _ in range(2):
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    return _WS.sub(" ", text).strip()


# --- Blitzer Multi-Domain Sentiment ------------------------------------------------------------


def read_blitzer(folder: str | Path, domains: Sequence[str] = BLITZER_DOMAINS) -> ReadResult[Review]:
    """Read ``{domain}_positive.review`` and ``{domain}_negative.review`` for each domain."""
    root = _existing_dir(folder, "Blitzer Multi-Domain Sentiment folder (*.review files)")
    result: ReadResult[Review] = ReadResult()
    for domain in domains:
        for polarity, label in _LABELS.items():
            f = root / f"{domain}_{polarity}.review"
            if not f.is_file():
                have = sorted(p.name for p in root.glob("*.review"))
                raise ReviewDataError(f"missing {f.name} in {root} (domain {domain!r}); found {have}")
            result.files.append(str(f))
            text = _read_text(f)
            result.items.extend(parse_blitzer(text, f.name, domain, label, result.errors))
    result._log(f"blitzer {','.join(domains)}")
    return result


def parse_blitzer(
    text: str, source: str, domain: str, label: int, errors: list[RowError]
) -> Iterator[Review]:
    """Parse the ``<review>`` blocks of one ``.review`` file; bad blocks go to ``errors``."""
    starts = [m.start() for m in _BLOCK_START.finditer(text)]
    for i, start in enumerate(starts):
        line = text.count("\n", 0, start) + 1
        chunk = text[start : starts[i + 1] if i + 1 < len(starts) else len(text)]
        end = chunk.find(_BLOCK_END)
        if end < 0:
            errors.append(
                RowError(source, line, "unterminated <review> block (no </review> before the next)")
            )
            continue
        block = chunk[len("<review>") : end]
        body = _tag(block, "review_text")
        title = _tag(block, "title")
        if body is None:
            errors.append(RowError(source, line, "no <review_text>…</review_text> in the block"))
            continue
        full = _join_title(normalize(title or ""), normalize(body))
        if not full:
            errors.append(RowError(source, line, "empty review (no title and no review_text)"))
            continue
        rating = _float_or_none(_tag(block, "rating"))
        yield Review(full, label, normalize(_tag(block, "asin") or ""), domain, rating)


def _tag(block: str, tag: str) -> str | None:
    m = re.search(rf"<{tag}>(.*?)</{tag}>", block, re.S)
    return m.group(1).strip() if m else None


def _join_title(title: str, body: str) -> str:
    if not title or not body:
        return title or body
    sep = " " if title[-1] in ".!?:;" else ". "
    return title + sep + body


def _float_or_none(value: str | None) -> float | None:
    return float(value) if value and re.fullmatch(r"\d+(\.\d*)?", value) else None


# --- UCI sentiment labelled sentences ----------------------------------------------------------


def read_uci_sentences(folder: str | Path) -> ReadResult[Review]:
    """Read every ``{source}_labelled.txt`` (domain = amazon / imdb / yelp, product = "")."""
    root = _existing_dir(folder, "UCI sentiment-labelled-sentences folder (*_labelled.txt)")
    files = sorted(root.glob("*_labelled.txt"))
    if not files:
        raise ReviewDataError(f"no *_labelled.txt files in {root}")
    result: ReadResult[Review] = ReadResult(files=[str(f) for f in files])
    for f in files:
        domain = f.name.split("_")[0]
        # splitlines() splits on \r, \n and \r\n alike: these files use bare CR.
        for n, raw in enumerate(_read_text(f).splitlines(), start=1):
            if not raw.strip():
                continue
            sentence, tab, label = raw.rpartition("\t")
            if not tab:
                result.errors.append(RowError(f.name, n, "no tab between sentence and label"))
            elif label.strip() not in ("0", "1"):
                result.errors.append(RowError(f.name, n, f"label must be 0 or 1, got {label.strip()!r}"))
            elif not normalize(sentence):
                result.errors.append(RowError(f.name, n, "empty sentence"))
            else:
                result.items.append(Review(normalize(sentence), int(label), "", domain))
    result._log("uci sentences")
    return result


# --- Hu & Liu aspect annotations ---------------------------------------------------------------


def read_hu_liu(zip_path: str | Path) -> ReadResult[AspectSentence]:
    """Read the annotated sentences of every product ``.txt`` in an NLTK ``product_reviews_*.zip``."""
    path = Path(zip_path)
    result: ReadResult[AspectSentence] = ReadResult(files=[str(path)])
    for member, text in _zip_texts(path, ".txt"):
        if Path(member).name.lower().startswith("readme"):
            continue
        product = Path(member).stem
        for n, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith(("*", "[t]")):
                continue
            if "##" not in line:
                result.errors.append(RowError(f"{path.name}:{member}", n, "no '##' before the sentence"))
                continue
            notes, _, sentence = line.partition("##")
            if normalize(sentence):
                result.items.append(AspectSentence(normalize(sentence), parse_aspects(notes), product))
    result._log(f"hu&liu {path.name}")
    return result


def parse_aspects(notes: str) -> dict[str, int]:
    """``"battery life[-2], screen[+1][u]"`` → ``{"battery life": -2, "screen": 1}``."""
    aspects: dict[str, int] = {}
    for m in _ASPECT.finditer(notes):
        name = _WS.sub(" ", m.group(1)).strip(" ,").lower()
        signed = _SIGNED.search(m.group(2))
        if not name or not signed:
            continue
        value = int(signed.group(2) or 1) * (1 if signed.group(1) == "+" else -1)
        aspects[name] = aspects.get(name, 0) + value
    return aspects


# --- Chinese online_shopping_10_cats -----------------------------------------------------------


def read_chinese_shopping(zip_path: str | Path) -> ReadResult[Review]:
    """Read ``online_shopping_10_cats.zip`` → Review(lang="zh", domain=cat, product="")."""
    path = Path(zip_path)
    result: ReadResult[Review] = ReadResult(files=[str(path)])
    members = list(_zip_texts(path, ".csv"))
    if not members:
        raise ReviewDataError(f"no .csv file inside {path}; expected online_shopping_10_cats.csv")
    for member, text in members:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not {"cat", "label", "review"} <= set(reader.fieldnames or ()):
            raise ReviewDataError(
                f"{path.name}:{member}: header must be cat,label,review (got {reader.fieldnames})"
            )
        for row in reader:
            n = reader.line_num
            review = normalize((row["review"] or "").replace("\ufeff", ""))
            label = (row["label"] or "").strip()
            if not review or review.lower() == "nan":
                result.errors.append(RowError(member, n, "empty review"))
            elif label not in ("0", "1"):
                result.errors.append(RowError(member, n, f"label must be 0 or 1, got {label!r}"))
            else:
                cat = (row["cat"] or "").strip()
                result.items.append(Review(review, int(label), "", cat, lang="zh"))
    result._log(f"chinese shopping {path.name}")
    return result


# --- product-disjoint split --------------------------------------------------------------------


class Split(NamedTuple):
    train: list[Review]
    test: list[Review]

    def describe(self) -> str:
        n = len(self.train) + len(self.test)
        p_train = {r.product for r in self.train if r.product}
        p_test = {r.product for r in self.test if r.product}
        share = len(self.test) / n if n else 0.0
        return (
            f"train {len(self.train)} / test {len(self.test)} reviews (test share {share:.3f}); "
            f"products train {len(p_train)} / test {len(p_test)} / on both sides {len(p_train & p_test)}"
        )


def split_by_product(reviews: Iterable[Review], test_share: float = 0.2, seed: int = 13) -> Split:
    """Held-out split that keeps every product's reviews on one side.

    Per domain: the domain's products (sorted, then shuffled with ``seed``) go to the test side
    until it holds ``test_share`` of the domain's product-tagged reviews; a product seen in an
    earlier domain keeps its side. Reviews without a product id are split individually, seeded,
    ``round(test_share * n)`` per domain. Deterministic for a given input order and seed.
    """
    if not 0.0 < test_share < 1.0:
        raise BadInputError(f"test_share must be between 0 and 1 (exclusive), got {test_share}")
    rows = list(reviews)
    rng = random.Random(seed)
    by_domain: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_domain[r.domain].append(i)
    side: dict[str, bool] = {}  # product -> in test
    in_test = [False] * len(rows)
    for domain in sorted(by_domain):
        idx = by_domain[domain]
        sizes = Counter(rows[i].product for i in idx if rows[i].product)
        target = test_share * sum(sizes.values())
        taken = sum(n for p, n in sizes.items() if side.get(p))
        order = sorted(p for p in sizes if p not in side)
        rng.shuffle(order)
        for p in order:  # take a product while half of it still fits under the target
            side[p] = taken < target and taken + sizes[p] / 2 <= target
            taken += sizes[p] if side[p] else 0
        loose = [i for i in idx if not rows[i].product]
        rng.shuffle(loose)
        for i in loose[: round(test_share * len(loose))]:
            in_test[i] = True
        for i in idx:
            in_test[i] = in_test[i] or side.get(rows[i].product, False)
    test = [r for r, t in zip(rows, in_test, strict=True) if t]
    split = Split([r for r, t in zip(rows, in_test, strict=True) if not t], test)
    log.info("split_by_product(seed=%d): %s", seed, split.describe())
    return split


def _existing_dir(folder: str | Path, what: str) -> Path:
    root = Path(folder)
    if not root.is_dir():
        raise ReviewDataError(f"{what} not found: {root} (see shared/README.md for where the data lives)")
    return root


def _read_text(f: Path) -> str:
    try:
        return f.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise ReviewDataError(f"cannot read {f}: {exc}") from exc


def _zip_texts(path: Path, suffix: str) -> Iterator[tuple[str, str]]:
    if not path.is_file():
        raise ReviewDataError(f"zip not found: {path} (see shared/README.md for where the data lives)")
    try:
        with zipfile.ZipFile(path) as z:
            for m in sorted(z.namelist()):
                if m.lower().endswith(suffix) and not m.endswith("/"):
                    yield m, z.read(m).decode("utf-8-sig", errors="replace")
    except (OSError, zipfile.BadZipFile) as exc:
        raise ReviewDataError(f"cannot read {path}: {exc}") from exc
