"""Audit chat data before training on it: records training would stop at (invalid JSON, unknown role, empty turn,
wrong order, no answer), exact and near-duplicate conversations, and held-out questions that the training split
already asks (contamination: a model scored on them is partly scored on its training data). Every finding names
its line (`file:line`); ids are record positions among the file's non-blank lines.
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from genlab.core.errors import GenlabError
from genlab.core.items import names_of
from genlab.metrics.answers import normalise
from genlab.modalities.chat.data import chat_records, conversation_key, problem_kind, split_conversations
from genlab.modalities.text.audit import decode_file, excerpts, near_duplicate_pairs, near_matches

SHOWN_CHARS = 300  # characters of a question kept in audit.json


@dataclass
class ChatRecords:
    """Each non-blank line of a chat JSONL file: its messages (None when training would stop at it), its place
    (`file:line`) and raw text; the bad records and file problems a strict reader stops at, as findings."""

    conversations: list[list[dict] | None]
    wheres: list[str]
    lines: list[str]
    bad: list[dict]
    file_problems: list[dict]


def read_chat_records(path: str | Path) -> ChatRecords:
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"data path not found: {path}" if not path.exists() else f"{path} is a folder; chat "
                          "data is one JSONL file")
    file_problems: list[dict] = []
    text = decode_file(path, file_problems, None)
    if text is None:
        raise GenlabError(f"cannot audit {path}: {file_problems[0]['reason']}")
    records = ChatRecords([], [], [], [], file_problems)
    raw = text.splitlines()
    for number, messages, problem in chat_records(text):
        where = f"{path.name}:{number}"
        if messages is None:
            records.bad.append({"id": len(records.conversations), "where": where, "kind": problem_kind(problem),
                                "reason": problem})
        records.conversations.append(messages)
        records.wheres.append(where)
        records.lines.append(raw[number - 1])
    if not records.conversations:
        raise GenlabError(f"{path} holds no records (it is empty or blank); point data.path at a JSONL file of "
                          "conversations")
    return records


def conversation_text(messages: list[dict]) -> str:
    """What a conversation says, for near-duplicate search: its user and assistant turns (a system prompt many
    conversations share would make them all look alike)."""
    return "\n".join(m["content"] for m in messages if m["role"] != "system")


def contamination(conversations: list[list[dict] | None], wheres: list[str], cfg, threshold: float = 0.7,
                  listed: int | None = 50) -> dict:
    """Held-out (val, test) user turns whose normalised text (metrics.answers.normalise: case, punctuation,
    articles, whitespace) equals a training user turn's, or whose character-shingle Jaccard with one is >=
    `threshold`. The split is training's own: the valid conversations in file order (data.limit applied),
    split by data.split_conversations with the config's fractions and seed. Each held-out turn is listed once,
    with its closest training turn."""
    good = [i for i, c in enumerate(conversations) if c is not None][: cfg.limit]
    settings = {"val_fraction": cfg.val_fraction, "test_fraction": cfg.test_fraction, "split_seed": cfg.split_seed,
                "limit": cfg.limit}
    try:
        corpus = split_conversations([conversations[i] for i in good], cfg, str(cfg.path))
    except GenlabError as exc:
        return {"checked": False, "why": str(exc), "split": settings}
    turns: dict[str, list[tuple[int, int, str]]] = {}  # split -> (record id, turn number, text)
    for split, positions in corpus.splits.items():
        turns[split] = [(good[p], t, m["content"]) for p in positions.tolist()
                        for t, m in enumerate(conversations[good[p]], 1) if m["role"] == "user"]
    train = turns["train"]
    train_norm = {j: normalise(text) for j, (_, _, text) in enumerate(train)}
    first_exact: dict[str, int] = {}
    for j, key in train_norm.items():
        first_exact.setdefault(key, j)
    held = [(split, turn) for split in ("val", "test") for turn in turns[split]]
    held_norm = {q: normalise(text) for q, (_, (_, _, text)) in enumerate(held)}
    exact = {q for q, key in held_norm.items() if key and key in first_exact}  # '?' and 'The.' say nothing
    hits: dict[int, tuple[int, float]] = {q: (first_exact[held_norm[q]], 1.0) for q in exact}
    for q, j, similarity in near_matches({q: k for q, k in held_norm.items() if q not in exact}, train_norm,
                                         threshold):
        if q not in hits or similarity > hits[q][1]:
            hits[q] = (j, similarity)

    def side(turn: tuple[int, int, str]) -> dict:
        record, number, text = turn
        return {"id": record, "where": wheres[record], "turn": number,
                "text": text[:SHOWN_CHARS] + ("..." if len(text) > SHOWN_CHARS else "")}

    items = [{"split": held[q][0], "match": "exact" if q in exact else "near", "similarity": similarity,
              "held_out": side(held[q][1]), "train": side(train[j])} for q, (j, similarity) in sorted(hits.items())]
    counts = {split: {"user_turns": len(turns[split]),
                      "exact": sum(1 for i in items if i["split"] == split and i["match"] == "exact"),
                      "near": sum(1 for i in items if i["split"] == split and i["match"] == "near"),
                      "conversations": len({i["held_out"]["id"] for i in items if i["split"] == split})}
              for split in ("val", "test")}
    return {"checked": True, "split": settings, **counts, "items": items[:listed],
            "method": f"held-out user turns against the training split's, normalised (lower case, no punctuation "
                      f"or articles, whitespace collapsed): exact equality, else MinHash LSH over character "
                      f"5-grams (2-grams for Chinese/Japanese) confirmed by exact Jaccard >= {threshold}"}


def audit_conversations(records: ChatRecords, cfg, near_threshold: float = 0.7, listed: int | None = 50) -> dict:
    """All findings for one chat file; each lists up to `listed` items (None: all; counts are complete)."""
    conversations, bad, file_problems = records.conversations, records.bad, records.file_problems
    groups: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(conversations):
        if c is not None:
            groups[conversation_key(c)].append(i)
    exact = [g for g in groups.values() if len(g) > 1]
    later_copies = {i for g in exact for i in g[1:]}
    texts = [conversation_text(c) if c is not None else "" for c in conversations]
    near = near_duplicate_pairs(texts, near_threshold, skip=later_copies)
    report = {
        "records": len(conversations), "conversations": len(conversations) - len(bad),
        "unreadable": {"count": len(file_problems), "items": file_problems[:listed]},
        "bad_records": {"count": len(bad), "by_kind": dict(Counter(b["kind"] for b in bad).most_common()),
                        "items": bad[:listed]},
        "exact_duplicates": {"groups": len(exact), "extra_copies": len(later_copies), "first_groups": exact[:listed],
                             "method": "identical messages (roles and contents)"},
        "near_duplicates": {"pairs": len(near), "first_pairs": [list(p) for p in near[:listed]],
                            "method": f"user and assistant turns joined; MinHash LSH (128 permutations) over "
                                      f"character 5-grams (2-grams for Chinese/Japanese) confirmed by exact "
                                      f"Jaccard >= {near_threshold}; exact copies excluded"},
        "contamination": contamination(conversations, records.wheres, cfg, near_threshold, listed),
    }
    ids = [b["id"] for b in bad[:listed]] + [i for g in exact[:listed] for i in g]
    ids += [i for p in near[:listed] for i in p[:2]]
    ids += [i[side]["id"] for i in report["contamination"].get("items", []) for side in ("held_out", "train")]
    report["names"] = names_of(ids, records.wheres)
    return report


def _contamination_html(items: list[dict], shown: int = 5) -> str:
    def side(s: dict) -> str:
        return f"<b>{html.escape(s['where'])}</b> turn {s['turn']} <code>{html.escape(s['text'])}</code>"

    return "".join(f"<div>{side(i['held_out'])} ~ {side(i['train'])} ({i['match']}, {i['similarity']})</div>"
                   for i in items[:shown])


def write_chat_audit(report: dict, out, texts: list[str]) -> None:
    """audit.json (everything) and audit.html (each finding: its count, first items, and where they are with
    how they begin: `texts` holds each record's conversation text, or its raw line when it is bad)."""
    from genlab.core.html import write_findings

    names = report["names"]
    bad, dup, near = report["bad_records"], report["exact_duplicates"], report["near_duplicates"]
    rows = [("Records", report["records"], "", ""), ("Conversations", report["conversations"], "", ""),
            ("Unreadable (file)", report["unreadable"]["count"], report["unreadable"]["items"][:10], ""),
            ("Bad records", bad["count"], bad["by_kind"],
             "".join(f"<div><b>{html.escape(b['where'])}</b> {html.escape(b['reason'])}</div>"
                     for b in bad["items"][:10])),
            ("Exact duplicate copies", dup["extra_copies"], dup["first_groups"][:20],
             excerpts(texts, [i for g in dup["first_groups"][:3] for i in g], names)),
            ("Near-duplicate pairs", near["pairs"], near["first_pairs"][:20],
             excerpts(texts, [i for p in near["first_pairs"][:3] for i in p[:2]], names))]
    found = report["contamination"]
    if found["checked"]:
        for split in ("val", "test"):
            items = [i for i in found["items"] if i["split"] == split]
            rows.append((f"Contaminated {split} questions", found[split]["exact"] + found[split]["near"],
                         {k: found[split][k] for k in ("exact", "near", "user_turns")}, _contamination_html(items)))
    else:
        rows.append(("Contamination", "not checked", found["why"], ""))
    write_findings(out, report, rows, "Chat data audit", "ids are record positions among the file's non-blank "
                   "lines; audit.json's names maps them to file:line")


def audit_chat(data, out: Path, near_threshold: float = 0.7) -> dict:
    """Audit data.path (chat JSONL) into OUT/audit.json and OUT/audit.html; returns the headline counts."""
    if data.path is None or isinstance(data.path, list):
        raise GenlabError("data.source=chat reads one JSONL file (data.path)")
    records = read_chat_records(data.path)
    report = audit_conversations(records, data, near_threshold)
    texts = [conversation_text(c) if c is not None else line
             for c, line in zip(records.conversations, records.lines, strict=True)]
    write_chat_audit(report, out, texts)
    found = report["contamination"]
    return {"records": report["records"], "conversations": report["conversations"],
            "unreadable": report["unreadable"]["count"], "bad records": report["bad_records"]["count"],
            "bad records by kind": report["bad_records"]["by_kind"],
            "exact duplicate copies": report["exact_duplicates"]["extra_copies"],
            "near-duplicate pairs": report["near_duplicates"]["pairs"],
            "contaminated held-out questions": {s: {"exact": found[s]["exact"], "near": found[s]["near"]}
                                                for s in ("val", "test")} if found["checked"]
            else f"not checked: {found['why']}"}
