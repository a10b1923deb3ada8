"""Classifier figures on the labelled corpus in ../shared/corpus/dev (read at test time).

Run with ``pytest -m corpus -s tests/test_classify_corpus.py`` to see the tables.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ndr_sweeper.classify import HEADER_FIELDS, classify, may_be_report

pytestmark = pytest.mark.corpus

LABEL_KIND = {  # corpus label -> Kind value
    "sieve_reject": "failed",
    "arf_feedback": "feedback_report",
    "dsn_success": "delivery_success",
    "forwarded_ndr": "not_ndr",
}


def corpus_dir() -> Path | None:
    env = os.environ.get("NDR_SWEEPER_CORPUS")
    d = (
        Path(env)
        if env
        else Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "dev"
    )
    return d if (d / "labels.jsonl").is_file() else None


def header_fields_only(raw: bytes) -> bytes:
    """The header block restricted to HEADER_FIELDS, as IMAP HEADER.FIELDS returns it."""
    text = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").lstrip(b" \t\n")
    end = text.find(b"\n\n")
    head = text if end < 0 else text[: end + 1]
    wanted = {f.lower().encode() for f in HEADER_FIELDS}
    out: list[bytes] = []
    keep = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line)
            continue
        keep = line.split(b":", 1)[0].strip().lower() in wanted
        if keep:
            out.append(line)
    return b"\r\n".join(out) + b"\r\n\r\n"


@dataclass
class Row:
    n: int = 0
    ndr_hit: int = 0
    exact_kind: int = 0
    false_ndr: int = 0
    with_id: int = 0
    id_ok: int = 0
    id_alt: int = 0
    misses: list[str] = field(default_factory=list)


@dataclass
class Result:
    ndr_total: int = 0
    ndr_hit: int = 0
    kind_ok: int = 0
    with_id: int = 0
    id_exact: int = 0
    id_alt: int = 0
    false_ndr: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    id_wrong: list[str] = field(default_factory=list)
    kind_wrong: list[str] = field(default_factory=list)
    pre_ndr_pass: int = 0
    pre_non_total: int = 0
    pre_non_reject: int = 0
    pre_missed: list[str] = field(default_factory=list)
    by_kind: dict[str, Row] = field(default_factory=lambda: defaultdict(Row))
    by_family: dict[str, Row] = field(default_factory=lambda: defaultdict(Row))
    lookalike_ok: int = 0
    lookalike_total: int = 0

    def table(self) -> str:
        lines = [
            f"NDR recall {self.ndr_hit}/{self.ndr_total} = {pct(self.ndr_hit, self.ndr_total)}",
            f"failed/delayed kind accuracy {self.kind_ok}/{self.ndr_total}"
            f" = {pct(self.kind_ok, self.ndr_total)}",
            f"original Message-ID {self.id_exact + self.id_alt}/{self.with_id}"
            f" = {pct(self.id_exact + self.id_alt, self.with_id)}"
            f" (exact {self.id_exact}, via alt_message_ids {self.id_alt})",
            f"false NDRs {len(self.false_ndr)}",
            f"look-alike kinds right {self.lookalike_ok}/{self.lookalike_total}",
            f"prefilter recall {self.pre_ndr_pass}/{self.ndr_total}"
            f" = {pct(self.pre_ndr_pass, self.ndr_total)};"
            f" rejects {self.pre_non_reject}/{self.pre_non_total} non-NDRs",
            "",
            f"{'kind':<22}{'n':>5}{'recall':>9}{'kind ok':>9}{'falseNDR':>9}{'ID ok':>9}",
        ]
        for name, r in sorted(self.by_kind.items()):
            lines.append(_row(name, r))
        lines.append("")
        lines.append(
            f"{'family (mta)':<22}{'n':>5}{'recall':>9}{'kind ok':>9}{'falseNDR':>9}{'ID ok':>9}"
        )
        for name, r in sorted(self.by_family.items(), key=lambda kv: (-kv[1].n, kv[0])):
            if r.misses or r.false_ndr or r.id_ok + r.id_alt < r.with_id or r.n >= 10:
                lines.append(_row(name, r))
        for title, items in (
            ("missed NDRs", self.missed),
            ("false NDRs", self.false_ndr),
            ("wrong IDs", self.id_wrong),
            ("wrong failed/delayed", self.kind_wrong),
            ("prefilter misses", self.pre_missed),
        ):
            if items:
                lines.append(f"\n{title}:")
                lines.extend(f"  {i}" for i in items)
        return "\n".join(lines)


def pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.1f}%" if b else "n/a"


def _row(name: str, r: Row) -> str:
    ids = f"{r.id_ok + r.id_alt}/{r.with_id}" if r.with_id else "-"
    rec = f"{r.ndr_hit}" if r.ndr_hit or r.with_id else "-"
    return f"{name[:21]:<22}{r.n:>5}{rec:>9}{r.exact_kind:>9}{r.false_ndr:>9}{ids:>9}"


def evaluate(d: Path) -> Result:
    res = Result()
    for line in (d / "labels.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        lab = json.loads(line)
        raw = (d / lab["path"]).read_bytes()
        v = classify(raw)
        want = LABEL_KIND.get(lab["kind"], lab["kind"])
        rows = (res.by_kind[lab["kind"]], res.by_family[lab["mta"]])
        for r in rows:
            r.n += 1
        pre = may_be_report(header_fields_only(raw))
        if lab["is_ndr"]:
            res.ndr_total += 1
            res.pre_ndr_pass += pre
            if not pre:
                res.pre_missed.append(lab["path"])
            if v.is_ndr:
                res.ndr_hit += 1
                for r in rows:
                    r.ndr_hit += 1
            else:
                res.missed.append(f"{lab['path']} -> {v.kind} ({v.detector})")
            if str(v.kind) == want:
                res.kind_ok += 1
                for r in rows:
                    r.exact_kind += 1
            elif v.is_ndr:
                res.kind_wrong.append(f"{lab['path']}: {v.kind}, want {want}")
            oid = lab["original_message_id"]
            if oid:
                res.with_id += 1
                for r in rows:
                    r.with_id += 1
                if v.original.message_id == oid:
                    res.id_exact += 1
                    for r in rows:
                        r.id_ok += 1
                elif v.original.message_id in lab["alt_message_ids"]:
                    res.id_alt += 1
                    for r in rows:
                        r.id_alt += 1
                else:
                    res.id_wrong.append(f"{lab['path']}: {v.original.message_id!r} want {oid!r}")
        else:
            res.pre_non_total += 1
            res.pre_non_reject += not pre
            res.lookalike_total += 1
            if str(v.kind) == want:
                res.lookalike_ok += 1
                for r in rows:
                    r.exact_kind += 1
            if v.is_ndr:
                res.false_ndr.append(f"{lab['path']} ({lab['kind']}) -> {v.kind} ({v.detector})")
                for r in rows:
                    r.false_ndr += 1
    return res


def test_corpus_thresholds() -> None:
    d = corpus_dir()
    if d is None:
        pytest.skip("corpus not found (../shared/corpus/dev or NDR_SWEEPER_CORPUS)")
    res = evaluate(d)
    table = res.table()
    print("\n" + table)
    assert res.ndr_hit >= 0.99 * res.ndr_total, table
    assert res.id_exact + res.id_alt >= 0.99 * res.with_id, table
    assert not res.false_ndr, table
    assert res.pre_ndr_pass >= 0.995 * res.ndr_total, table


if __name__ == "__main__":  # pragma: no cover - handy while tuning
    found = corpus_dir()
    if found is not None:
        print(evaluate(found).table())
