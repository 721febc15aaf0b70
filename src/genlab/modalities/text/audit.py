"""Audit a text corpus before training on it: unreadable records, empty records, exact duplicates (content
hash), near duplicates (MinHash LSH over character shingles, so it works for Chinese as well as English),
boilerplate lines repeated across many records, length outliers and the mix of scripts. Every finding lists
record ids (positions in the corpus, in reading order) so they can be looked at.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from genlab.core.errors import GenlabError
from genlab.modalities.text.data import ANSI_ESCAPE, TEXT_FORMATS, jsonl_texts

SCRIPTS = (("Han", "\u3400", "\u9fff"), ("Han", "\uf900", "\ufaff"), ("Kana", "\u3040", "\u30ff"),
           ("Hangul", "\uac00", "\ud7af"), ("Cyrillic", "\u0400", "\u04ff"), ("Greek", "\u0370", "\u03ff"),
           ("Arabic", "\u0600", "\u06ff"), ("Hebrew", "\u0590", "\u05ff"), ("Devanagari", "\u0900", "\u097f"),
           ("Thai", "\u0e00", "\u0e7f"))
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def read_records(path: str | Path, fmt: str, separator: str | None = None, wheres: list[str] | None = None,
                 label: str | None = None) -> tuple[list[str], list[dict]]:
    """Every record of `path` as the training loader would cut it, empty ones included, plus the problems a
    strict reader would stop at (unreadable files, invalid UTF-8, bad JSON lines) as findings instead.
    `wheres`: a list to collect where each record is, what a person opens (`c.jsonl:4`, a folder's `a/b.txt`,
    a fortune file's `f:12`, its first line); `label`: how to call `path` there (default: its name)."""
    path = Path(path)
    if not path.exists():
        raise GenlabError(f"data path not found: {path}")
    if fmt not in TEXT_FORMATS:
        raise GenlabError(f"unknown text format {fmt!r}; choose one of: {', '.join(TEXT_FORMATS)}")
    wheres = [] if wheres is None else wheres
    problems: list[dict] = []
    if path.is_dir():
        records = []
        for file in sorted(p for p in path.rglob("*.txt") if p.is_file()):
            text = decode_file(file, problems, len(records))
            if text is not None:
                records.append(text)
                wheres.append("/".join(filter(None, [label, file.relative_to(path).as_posix()])))
        return records, problems
    label = label or path.name
    text = decode_file(path, problems, None)
    if text is None:
        return [], problems
    if fmt == "jsonl":
        records = []
        for number, doc, problem in jsonl_texts(text):
            if doc is None:
                problems.append({"id": len(records), "where": f"{path} line {number}", "reason": problem})
            records.append(doc or "")
            wheres.append(f"{label}:{number}")
        return records, problems
    if fmt == "fortune":
        starts = [0] + [m.end() for m in re.finditer(r"(?m)^%\s*$", text)]
        records = [ANSI_ESCAPE.sub("", r).strip("\n") for r in re.split(r"(?m)^%\s*$", text)]
    elif separator:
        records = text.split(separator)
        starts = list(np.cumsum([0] + [len(r) + len(separator) for r in records[:-1]]))
    else:
        wheres.append(label)
        return [text], problems
    wheres += [f"{label}:{_first_line(text, int(s))}" for s in starts]
    return records, problems


def _first_line(text: str, start: int) -> int:
    """1-based number of the first line holding text at or after offset `start` (a record's first line)."""
    while start < len(text) and text[start] == "\n":
        start += 1
    return text.count("\n", 0, start) + 1


def read_corpus(data_cfg, wheres: list[str] | None = None) -> tuple[list[str], list[dict]]:
    """read_records over every file of data.path (a path or a list), ids continuing across files; `wheres`
    collects where each record is (the file's name, or its path as given when several files share a name)."""
    records: list[str] = []
    problems: list[dict] = []
    paths = data_cfg.path if isinstance(data_cfg.path, list) else [data_cfg.path or ""]
    unique = len({Path(p).name for p in paths}) == len(paths)
    for path in paths:
        label = None if len(paths) == 1 else Path(path).name if unique else str(path)
        got, bad = read_records(path, data_cfg.source, data_cfg.separator, wheres, label)
        problems += [{**b, "id": None if b["id"] is None else b["id"] + len(records)} for b in bad]
        records += got
    if not any(r.strip() for r in records):  # nothing to measure: say why in one line instead of empty findings
        where = data_cfg.path if isinstance(data_cfg.path, str | Path) else ", ".join(map(str, data_cfg.path))
        if problems:
            first = problems[0]
            raise GenlabError(f"no record of {where} holds text ({len(problems)} unreadable; the first: "
                              f"{first['where']} {first['reason']})")
        raise GenlabError(f"{where} holds no text (it is empty or blank); point data.path at a "
                          f"non-empty {data_cfg.source} file or folder")
    return records, problems


def decode_file(file: Path, problems: list[dict], record_id: int | None) -> str | None:
    """The text of `file`; an unreadable file or invalid UTF-8 (then read with replacement characters) is
    added to `problems` instead of stopping."""
    try:
        raw = file.read_bytes()
    except OSError as exc:
        problems.append({"id": record_id, "where": str(file), "reason": f"unreadable: {exc.strerror}"})
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append({"id": record_id, "where": str(file),
                         "reason": f"invalid UTF-8 at byte {exc.start}; read with replacement characters"})
        return raw.decode("utf-8", errors="replace")


def shingles(text: str, k: int | None = None) -> set[str]:
    """Character k-grams of the whitespace-normalised text (whole text when shorter than k). By default
    k = 5 (about a word of English), or 2 when most letters are CJK ideographs (one character is roughly a
    word, so 5-grams would make a one-character edit of a short poem look like a different text)."""
    s = " ".join(text.split())
    if k is None:
        letters = script_of(s)
        k = 2 if letters and letters["Han"] + letters["Kana"] > 0.5 * sum(letters.values()) else 5
    return {s[i:i + k] for i in range(max(1, len(s) - k + 1))}


def _sketches(texts: dict[int, str], num_perm: int, seed: int) -> tuple[dict[int, set[str]], dict]:
    """Shingle sets and their MinHashes, by id."""
    from datasketch import MinHash

    sets = {i: shingles(t) for i, t in texts.items()}
    hashes = MinHash.bulk(([s.encode("utf-8") for s in sets[i]] for i in sets), num_perm=num_perm, seed=seed)
    return sets, dict(zip(sets, hashes, strict=True))


def _lsh(threshold: float, num_perm: int):
    """An LSH index tuned for a lower similarity than asked (threshold - 0.2), so that pairs just above the
    threshold are rarely missed; callers confirm each candidate with the exact Jaccard."""
    from datasketch import MinHashLSH

    return MinHashLSH(threshold=max(0.1, threshold - 0.2), num_perm=num_perm)


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def near_duplicate_pairs(records: list[str], threshold: float = 0.7, num_perm: int = 128, seed: int = 1,
                         skip: set[int] = frozenset()) -> list[tuple[int, int, float]]:
    """Pairs (i, j, Jaccard) of records whose character-5-gram sets have Jaccard similarity >= threshold.
    MinHash LSH (datasketch) proposes candidates in near-linear time; each candidate is then confirmed with the
    exact Jaccard of the two shingle sets, so no pair is reported on the sketch's word."""
    sets, hashes = _sketches({i: r for i, r in enumerate(records) if r.strip() and i not in skip}, num_perm, seed)
    lsh = _lsh(threshold, num_perm)
    pairs = {}
    for i, h in hashes.items():
        for j in lsh.query(h):
            if (similarity := jaccard(sets[i], sets[j])) >= threshold:
                pairs[(j, i)] = round(similarity, 4)
        lsh.insert(i, h)
    return [(i, j, s) for (i, j), s in sorted(pairs.items())]


def near_matches(queries: dict[int, str], corpus: dict[int, str], threshold: float = 0.7, num_perm: int = 128,
                 seed: int = 1) -> list[tuple[int, int, float]]:
    """(query id, corpus id, Jaccard) for every query and corpus text (given by id) whose shingle sets have
    Jaccard >= threshold: near_duplicate_pairs across two collections (held-out against training text)."""
    corpus_sets, corpus_hashes = _sketches({i: t for i, t in corpus.items() if t.strip()}, num_perm, seed)
    query_sets, query_hashes = _sketches({i: t for i, t in queries.items() if t.strip()}, num_perm, seed)
    lsh = _lsh(threshold, num_perm)
    for j, h in corpus_hashes.items():
        lsh.insert(j, h)
    found = []
    for i, h in query_hashes.items():
        for j in lsh.query(h):
            if (similarity := jaccard(query_sets[i], corpus_sets[j])) >= threshold:
                found.append((i, j, round(similarity, 4)))
    return sorted(found)


def script_of(text: str) -> Counter:
    """Letters per script: the blocks in SCRIPTS, Latin, or Other."""
    counts: Counter = Counter()
    for ch in text:
        if not ch.isalpha():
            continue
        name = next((s for s, lo, hi in SCRIPTS if lo <= ch <= hi), None)
        if name is None:
            name = "Latin" if unicodedata.name(ch, "").startswith("LATIN") else "Other"
        counts[name] += 1
    return counts


def boilerplate_lines(records: list[str], min_records: int) -> list[tuple[str, int]]:
    """Lines (stripped, non-empty) that occur in at least `min_records` different records."""
    seen: Counter = Counter()
    for r in records:
        seen.update({line.strip() for line in r.splitlines() if line.strip()})
    return [(line, n) for line, n in seen.most_common() if n >= min_records]


def audit_text(records: list[str], problems: list[dict] | None = None, near_threshold: float = 0.7,
               listed: int | None = 50) -> dict:
    """All findings for one corpus; each lists up to `listed` ids (None: all; counts are complete)."""
    n = len(records)
    if n == 0:
        raise GenlabError("the corpus holds no records to audit")
    empty = [i for i, r in enumerate(records) if not r.strip()]
    groups: dict[bytes, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if r.strip():
            groups[hashlib.sha256(r.encode("utf-8")).digest()].append(i)
    exact = [g for g in groups.values() if len(g) > 1]
    later_copies = {i for g in exact for i in g[1:]}
    near = near_duplicate_pairs(records, near_threshold, skip=later_copies)
    lengths = np.array([len(r) for r in records])
    nonempty = lengths[lengths > 0]
    log_len = np.log(np.maximum(lengths, 1))
    q1, q3 = np.percentile(np.log(nonempty), [25, 75]) if len(nonempty) else (0.0, 0.0)
    long_ids = np.flatnonzero((lengths > 0) & (log_len > q3 + 3 * (q3 - q1)))
    short_ids = np.flatnonzero((lengths > 0) & (log_len < q1 - 3 * (q3 - q1)))
    min_records = max(3, int(0.01 * n))
    boiler = boilerplate_lines(records, min_records)
    boiler_set = {line for line, _ in boiler}
    mostly_boiler = [i for i, r in enumerate(records) if r.strip()
                     and sum(len(x) for x in r.splitlines() if x.strip() in boiler_set) >= 0.5 * len(r.strip())]
    scripts = [script_of(r) for r in records]
    dominant = Counter(s.most_common(1)[0][0] if s else "none" for s in scripts)
    mixed = [i for i, s in enumerate(scripts) if len(s) > 1 and s.most_common(2)[1][1] >= 0.2 * sum(s.values())]
    corrupt = [i for i, r in enumerate(records) if "\ufffd" in r or CONTROL.search(r)]

    def ids(values) -> list:
        return list(values)[:listed]

    return {
        "records": n, "characters": int(lengths.sum()),
        "unreadable": {"count": len(problems or []), "items": (problems or [])[:listed]},
        "empty_records": {"count": len(empty), "ids": ids(empty)},
        "corrupt_records": {"count": len(corrupt), "ids": ids(corrupt),
                            "method": "replacement characters (invalid UTF-8) or control characters"},
        "exact_duplicates": {"groups": len(exact), "extra_copies": len(later_copies), "first_groups": ids(exact)},
        "near_duplicates": {"pairs": len(near), "first_pairs": [list(p) for p in ids(near)],
                            "method": f"MinHash LSH (128 permutations) over character 5-grams (2-grams for "
                                      f"Chinese/Japanese), confirmed by "
                                      f"exact Jaccard >= {near_threshold}; exact copies excluded"},
        "length": {"min": int(lengths.min()), "median": float(np.median(lengths)), "max": int(lengths.max()),
                   "p95": float(np.percentile(lengths, 95)),
                   "long_outliers": ids(long_ids[np.argsort(-lengths[long_ids])].tolist()),
                   "short_outliers": ids(short_ids.tolist()),
                   "method": "log length outside Q1 - 3 IQR .. Q3 + 3 IQR"},
        "boilerplate": {"lines": [{"line": line[:200], "records": k} for line, k in boiler[:20]],
                        "mostly_boilerplate_ids": ids(mostly_boiler), "mostly_boilerplate": len(mostly_boiler),
                        "method": f"lines found in >= {min_records} records; a record is mostly boilerplate "
                                  "when such lines are half its characters"},
        "scripts": {"dominant": dict(dominant.most_common()), "mixed_ids": ids(mixed), "mixed": len(mixed),
                    "method": "letters per Unicode script; mixed: the second script has >= 20% of letters"},
    }


def finding_ids(report: dict) -> list[int]:
    """Every record id a finding of `report` lists: the records whose places audit.json spells out."""
    ids = [p["id"] for p in report["unreadable"]["items"] if p["id"] is not None]
    ids += report["empty_records"]["ids"] + report["corrupt_records"]["ids"]
    ids += [i for g in report["exact_duplicates"]["first_groups"] for i in g]
    ids += [i for p in report["near_duplicates"]["first_pairs"] for i in p[:2]]
    ids += report["length"]["long_outliers"] + report["length"]["short_outliers"]
    return ids + report["boilerplate"]["mostly_boilerplate_ids"] + report["scripts"]["mixed_ids"]


def excerpts(records: list[str], ids, names: dict[str, str], shown: int = 5, chars: int = 200) -> str:
    """HTML: each record's place and its first `chars` characters, escaped."""
    return "".join(f"<div><b>{html.escape(names.get(str(i), f'#{i}'))}</b> <code>"
                   f"{html.escape(records[i][:chars])}{'...' if len(records[i]) > chars else ''}</code></div>"
                   for i in list(ids)[:shown])


def write_text_audit(report: dict, out, records: list[str] | None = None) -> None:
    """audit.json (everything) and audit.html (each finding, its count and first ids and, given the records,
    where they are and how they begin)."""
    from genlab.core.html import write_findings

    rows = [("Records", report["records"], ""),
            ("Unreadable items", report["unreadable"]["count"], report["unreadable"]["items"][:10]),
            ("Empty records", report["empty_records"]["count"], report["empty_records"]["ids"][:20]),
            ("Corrupt records", report["corrupt_records"]["count"], report["corrupt_records"]["ids"][:20]),
            ("Exact duplicate copies", report["exact_duplicates"]["extra_copies"],
             report["exact_duplicates"]["first_groups"][:20]),
            ("Near-duplicate pairs", report["near_duplicates"]["pairs"], report["near_duplicates"]["first_pairs"][:20]),
            ("Long records", len(report["length"]["long_outliers"]), report["length"]["long_outliers"][:20]),
            ("Short records", len(report["length"]["short_outliers"]), report["length"]["short_outliers"][:20]),
            ("Mostly boilerplate", report["boilerplate"]["mostly_boilerplate"],
             report["boilerplate"]["lines"][:5]),
            ("Scripts (dominant)", report["scripts"]["mixed"], report["scripts"]["dominant"])]
    note = "ids are record positions in reading order"
    if records is not None:
        names = report.get("names", {})
        shown = {"Empty records": report["empty_records"]["ids"], "Corrupt records": report["corrupt_records"]["ids"],
                 "Exact duplicate copies": [i for g in report["exact_duplicates"]["first_groups"][:3] for i in g],
                 "Near-duplicate pairs": [i for p in report["near_duplicates"]["first_pairs"][:3] for i in p[:2]],
                 "Long records": report["length"]["long_outliers"], "Short records": report["length"]["short_outliers"],
                 "Mostly boilerplate": report["boilerplate"]["mostly_boilerplate_ids"]}
        rows = [(*row, excerpts(records, shown.get(row[0], []), names)) for row in rows]
        note += "; audit.json's names maps them to file and line"
    write_findings(out, report, rows, "Corpus audit", note)
