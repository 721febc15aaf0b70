"""Converters from offline dialogue sources to chat JSONL: one conversation a line, {"messages": [{"role", "content"},
...]} (the OpenAI / Hugging Face chat format), with a `source` field saying where each record came from.

Why here: the converted files ship in data/chat/ so that recipes work from a fresh clone; these functions are how
they were made (see data/chat/README.md) and how to remake them from a newer source. Pure Python, stdlib + PyYAML.

    python -m genlab.modalities.chat.convert chatterbot SRC_DIR OUT.jsonl
    python -m genlab.modalities.chat.convert debian-faq FAQ.txt.gz OUT.jsonl
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import yaml

ROLES = ("user", "assistant")


# --- chatterbot-corpus -------------------------------------------------------------------------------------------

def _chatterbot_problem(conversation) -> str | None:
    """Why a chatterbot conversation cannot become a chat record, or None when it can."""
    if not isinstance(conversation, list):
        return "not a list"
    if not conversation:
        return "empty conversation"
    if not all(isinstance(turn, str) for turn in conversation):
        return "non-string entry"
    if not all(turn.strip() for turn in conversation):
        return "empty string"
    if len(conversation) % 2:
        return "odd length (trailing user turn with no answer)"
    return None


def chatterbot_conversations(folder, skipped: list[tuple[str, str]] | None = None, dedupe: bool = True) -> list[
        dict]:
    """Chat records from every *.yml of a chatterbot-corpus language folder (e.g. chatterbot_corpus/data/english).

    Each conversation is a list of strings read as alternating user / assistant turns, the user first. Records that
    do not fit (not a list, a non-string or blank entry, an odd number of turns) are left out, not repaired: a
    trailing user turn has no answer to learn from. Exact repeats of an earlier conversation are left out too unless
    `dedupe` is False (in 1.3.3, tech_support.yml is 10 conversations repeated 105 times: kept, they would be half
    the corpus). Pass a list as `skipped` to receive (where, reason) for each record left out.
    """
    folder = Path(folder)
    files = sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])
    if not files:
        raise FileNotFoundError(f"{folder}: no chatterbot *.yml files")
    records, seen = [], set()
    for file in files:
        where = f"{folder.name}/{file.name}"
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
        conversations = doc.get("conversations") if isinstance(doc, dict) else None
        if not isinstance(conversations, list):
            if skipped is not None:
                skipped.append((where, "file without a conversations list"))
            continue
        for i, conversation in enumerate(conversations):
            problem = _chatterbot_problem(conversation)
            key = tuple(turn.strip() for turn in conversation) if not problem else None
            if key is not None and dedupe and key in seen:
                problem = "exact duplicate of an earlier conversation"
            seen.add(key)
            if problem:
                if skipped is not None:
                    skipped.append((f"{where} #{i}", problem))
                continue
            messages = [{"role": ROLES[k % 2], "content": turn.strip()} for k, turn in enumerate(conversation)]
            records.append({"messages": messages, "source": f"chatterbot-corpus {where} #{i}"})
    return records


# --- Debian FAQ (plain-text rendering) ---------------------------------------------------------------------------

HEADING = re.compile(r"^(\d+(?:\.\d+)+)\.\s+(\S.*)$")  # "2.1. What is ...?" at column 0; chapters are "Chapter N."
RULE = re.compile(r"^-{10,}$")  # separates a chapter's body from its footnotes
FOOTNOTE = re.compile(r"^\^\[(\d+)\]\s*")
BULLET = re.compile(r"^\*\s+")
WRAP = 64  # a hard-wrapped line plus the next line's first word exceeds this; the rendering is ~72 columns wide


def _join(prev: str, nxt: str) -> str:
    """Unwrap two lines of a paragraph. The renderer also breaks inside URLs and paths at '/' and '#' ("GNU/" +
    "Linux", "(https:" + "//www..."), and after a hyphen inside a word: those are joined without a space."""
    last = prev.rsplit(" ", 1)[-1]
    glued = (prev.endswith(("/", "#")) or re.search(r"[A-Za-z]-$", prev)
             or (nxt.startswith("/") and ("/" in last or ":" in last or not nxt[1:2].islower())))
    return prev + nxt if glued else f"{prev} {nxt}"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_prose(block: list[str]) -> bool:
    """A block is a hard-wrapped paragraph (or list item) when its lines share one indent (a bullet's continuation
    lines sit under its text) and every line break was forced by the width; anything else (code, control files,
    command listings) is kept line by line."""
    first = block[0].lstrip(" ")
    bullet = BULLET.match(first)
    indent = _indent(block[0]) + (bullet.end() if bullet else 0)
    for prev, nxt in zip(block[:-1], block[1:], strict=True):
        if _indent(nxt) != indent or BULLET.match(nxt.lstrip(" ")):
            return False
        if len(prev) + 1 + len(nxt.lstrip(" ").split(" ")[0]) <= WRAP:  # no-break spaces glue "Section 12.1"
            return False
    return True


def _paragraphs(lines: list[str]) -> list[str]:
    """Body lines of a section as paragraphs: prose unwrapped onto one line (a bullet keeps its "* "), other blocks
    kept line by line without the common indent."""
    blocks, block = [], []
    for line in [*lines, ""]:
        line = line.rstrip()
        if line:
            block.append(line)
        elif block:
            blocks.append(block)
            block = []
    out = []
    for block in blocks:
        if _is_prose(block):
            text = block[0].strip()
            for line in block[1:]:
                text = _join(text, line.strip())
            out.append(re.sub(r"\) ([.,;:])", r")\1", text).replace("\xa0", " "))  # it writes "(https://...) ."
        else:
            cut = min(map(_indent, block))
            out.append("\n".join(line[cut:] for line in block).replace("\xa0", " "))
    return out


def _faq_units(text: str) -> list[dict]:
    """Split the rendering into units at column-0 lines: numbered sections, chapter titles, rules (footnotes follow
    them) and front matter; body lines are indented."""
    units: list[dict] = [{"kind": "front", "title": "", "body": []}]
    in_title = False
    for line in text.splitlines():
        body = line.lstrip(" \xa0")
        line = " " * (len(line) - len(body)) + body  # some indents are no-break spaces
        if line[:1] not in ("", " ", "\t"):
            if in_title:  # a heading wrapped onto further column-0 lines
                units[-1]["title"] = _join(units[-1]["title"], line.strip().replace("\xa0", " "))
                continue
            heading = HEADING.match(line)
            if heading:
                units.append({"kind": "section", "number": heading[1], "title": heading[2].strip().replace("\xa0", " "),
                              "body": []})
            elif RULE.match(line):
                units.append({"kind": "rule", "title": "", "body": []})
            else:
                units.append({"kind": "other", "title": line.strip(), "body": []})
            in_title = units[-1]["kind"] in ("section", "other")
        else:
            in_title = False
            units[-1]["body"].append(line.expandtabs())
    return units


def _footnotes(units: list[dict]) -> dict[str, str]:
    """Footnote number -> text, from the blocks after the rules that end chapters ("^[1] The Linux ...")."""
    notes: dict[str, list[str]] = {}
    for unit in units:
        if unit["kind"] != "rule":
            continue
        current = None
        for para in _paragraphs(unit["body"]):
            mark = FOOTNOTE.match(para)
            if mark:
                current = mark[1]
                notes[current] = [para[mark.end():]]
            elif current:
                notes[current].append(para)
    return {n: "\n\n".join(paras) for n, paras in notes.items()}


def debian_faq_conversations(path, system: str | None = None, skipped: list[tuple[str, str]] | None = None) -> list[
        dict]:
    """One chat record per question of the Debian FAQ's plain-text rendering (debian-faq.en.txt[.gz]).

    A question is a numbered section heading containing '?'; its answer is the section's text up to the next
    heading, plus the text of each numbered descendant that is not a question itself, under its title (8.1's
    "8.1.1. dpkg", ...: without them 8.1 would answer with one sentence; 12.2.2 goes to 12.2 though 12.2.1.1, a
    question of its own, comes between). Footnotes the answer cites are appended.
    Paragraph breaks stay blank lines; hard-wrapped prose is unwrapped; code-like blocks keep their lines. No system
    message unless `system` is given. Each record's `source` is "debian-faq N.N". Sections that are neither
    questions nor part of one (chapters 15-16: plans, authors) are left out, and listed in `skipped` if given.
    """
    path = Path(path)
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8")
    units = _faq_units(text)
    notes = _footnotes(units)
    sections = [unit for unit in units if unit["kind"] == "section"]
    answers = {unit["number"]: _paragraphs(unit["body"]) for unit in sections if "?" in unit["title"]}
    for unit in sections:  # a non-question section joins the answer of its nearest question ancestor
        if unit["number"] in answers:
            continue
        parts = unit["number"].split(".")
        owner = next((p for p in (".".join(parts[:k]) for k in range(len(parts) - 1, 0, -1)) if p in answers), None)
        if owner:
            answers[owner] += [unit["title"], *_paragraphs(unit["body"])]
        elif skipped is not None:
            skipped.append((f"debian-faq {unit['number']}", "heading is not a question"))
    records = []
    for unit in sections:
        if unit["number"] not in answers:
            continue
        paragraphs = answers[unit["number"]]
        answer = "\n\n".join(paragraphs)
        cited = [n for n in dict.fromkeys(re.findall(r"\^\[(\d+)\]", answer)) if n in notes]
        answer = re.sub(r"\^\[(\d+)\]", r"[\1]", answer)
        answer = "\n\n".join([answer, *(f"[{n}] {notes[n]}" for n in cited)])
        if not answer.strip():
            if skipped is not None:
                skipped.append((f"debian-faq {unit['number']}", "no answer text"))
            continue
        messages = [{"role": "system", "content": system}] if system else []
        messages += [{"role": "user", "content": unit["title"]}, {"role": "assistant", "content": answer}]
        records.append({"messages": messages, "source": f"debian-faq {unit['number']}"})
    return records


# --- output and command line -------------------------------------------------------------------------------------

def write_chat_jsonl(records: Iterable[dict], out) -> int:
    """Write records as UTF-8 JSON lines (non-ASCII kept readable, '\\n' line ends on every platform); returns how
    many were written. Parent folders are created."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with out.open("w", encoding="utf-8", newline="\n") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


def summary(records: list[dict], skipped: list[tuple[str, str]] = ()) -> str:
    """Counts a human checks after a conversion: conversations, turns (system messages excluded) and why records
    were skipped, with where."""
    turns = sum(m["role"] != "system" for r in records for m in r["messages"])
    lines = [f"{len(records)} conversations, {turns} turns, {len(skipped)} skipped"]
    for reason, count in Counter(reason for _, reason in skipped).most_common():
        where = [w for w, r in skipped if r == reason]
        lines.append(f"  {count} {reason}: {', '.join(where[:12])}{' ...' if len(where) > 12 else ''}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: convert one source to a JSONL file and print the summary."""
    parser = argparse.ArgumentParser(prog="python -m genlab.modalities.chat.convert",
                                     description="Convert an offline dialogue source to chat JSONL.")
    sub = parser.add_subparsers(dest="source", required=True)
    cb = sub.add_parser("chatterbot", help="a chatterbot-corpus language folder of *.yml files")
    cb.add_argument("src", help="e.g. chatterbot_corpus/data/english")
    cb.add_argument("out")
    cb.add_argument("--keep-duplicates", action="store_true", help="keep exact repeats of earlier conversations")
    faq = sub.add_parser("debian-faq", help="the Debian FAQ plain-text rendering, gzipped or not")
    faq.add_argument("src", help="e.g. /usr/share/doc/debian/FAQ/debian-faq.en.txt.gz")
    faq.add_argument("out")
    faq.add_argument("--system", default=None, help="a system message to put first in every conversation")
    args = parser.parse_args(argv)
    skipped: list[tuple[str, str]] = []
    if args.source == "chatterbot":
        records = chatterbot_conversations(args.src, skipped, dedupe=not args.keep_duplicates)
    else:
        records = debian_faq_conversations(args.src, system=args.system, skipped=skipped)
    write_chat_jsonl(records, args.out)
    print(f"{args.out}: {summary(records, skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
