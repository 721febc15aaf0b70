"""Chat data audit against planted problems: each kind of bad record at its line, an exact and a near-duplicate
conversation, and held-out questions the training split already asks (exactly and nearly), on the split training
itself uses; a clean held-out question is not flagged."""

import json

import numpy as np
import pytest

from genlab.config import DataConfig
from genlab.core.errors import GenlabError
from genlab.modalities.chat.audit import audit_conversations, read_chat_records
from genlab.modalities.chat.data import load_chat_dataset, split_conversations
from genlab.modalities.text.audit import shingles

WORDS = ("river stone light garden winter letter music window market story morning paper table money voice summer "
         "kitchen forest island bridge candle harbour meadow lantern orchard pepper quarry saddle thunder velvet "
         "walnut yonder zephyr anchor basket cobalt dagger ember falcon glacier hollow ivory jasmine kettle").split()

BAD_LINES = {  # kind -> a line training would stop at
    "unknown role": {"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "yes"}]},
    "empty turn": {"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "yes"}]},
    "no assistant turn": {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]},
    "wrong order": {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                                 {"role": "assistant", "content": "c"}]},
    "invalid JSON": '{"messages": [oops',
}


def sentence(rng, n=12) -> str:
    return " ".join(rng.choice(WORDS, n))


def convo(question: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


@pytest.fixture
def planted(tmp_path):
    """40 random conversations, a copy of the first, a near copy of one in its split, and three held-out questions:
    one a training question in other case and punctuation, one a training question with a word changed, one new.
    Bad records and a blank line are interleaved; returns the file, its config and what was planted where."""
    rng = np.random.default_rng(0)
    n = 40
    cfg = DataConfig(source="chat", path=str(tmp_path / "chat.jsonl"), block_size=64)
    placeholders = [convo(f"q{i}", f"a{i}") for i in range(n)] + [convo("q0", "a0"), convo("qn", "an")]
    splits = split_conversations(placeholders, cfg, "planted").splits  # positions alone decide the split
    split_of = {int(i): k for k, v in splits.items() for i in v}
    train = [i for i in range(1, n) if split_of[i] == "train"]
    held = [i for i in range(1, n) if split_of[i] != "train"]
    near_copy = n + 1
    source = next(i for i in range(1, n) if split_of[i] == split_of[near_copy])
    good = [convo(sentence(rng), sentence(rng)) for _ in range(n)]
    good.append(good[0])
    answer = good[source][1]["content"].split()
    answer[3] = "zebra"
    good.append(convo(good[source][0]["content"], " ".join(answer)))
    exact_held, near_held, clean_held = [i for i in held if i != source][:3]
    exact_train, near_train = [i for i in train if i != source][:2]
    good[exact_held][0]["content"] = "  " + good[exact_train][0]["content"].upper().replace(" ", "  ", 2) + "?!"
    words = good[near_train][0]["content"].split()
    words[5] = "xylophone"
    good[near_held][0]["content"] = " ".join(words)
    a, b = (shingles(good[i][0]["content"]) for i in (near_held, near_train))
    assert 0.7 <= len(a & b) / len(a | b) < 1
    lines, line_of, bad_line = [], {}, {}
    for i, c in enumerate(good):
        if i == 3:
            lines.append("")  # blank lines are skipped but counted
            for kind, record in BAD_LINES.items():
                lines.append(record if isinstance(record, str) else json.dumps(record))
                bad_line[kind] = len(lines)
        lines.append(json.dumps({"messages": c}))
        line_of[i] = len(lines)
    (tmp_path / "chat.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    clean = tmp_path / "clean.jsonl"
    clean.write_text("".join(json.dumps({"messages": c}) + "\n" for c in good), encoding="utf-8")
    return {"cfg": cfg, "clean": clean, "good": good, "split_of": split_of, "line_of": line_of,
            "bad_line": bad_line, "source": source, "near_copy": near_copy, "exact": (exact_held, exact_train),
            "near": (near_held, near_train), "clean_held": clean_held}


def test_planted_problems_are_found_at_their_lines(planted, tmp_path, run_cli):
    p = planted
    code, out, err = run_cli("data", "audit", p["cfg"].path, "--out", tmp_path / "a")
    assert code == 0, err
    summary = json.loads(out[: out.rindex("}") + 1])
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    where = {b["kind"]: b["where"] for b in report["bad_records"]["items"]}
    assert where == {kind: f"chat.jsonl:{line}" for kind, line in p["bad_line"].items()}
    assert summary["bad records"] == 5 and summary["bad records by kind"] == dict.fromkeys(BAD_LINES, 1)
    names = report["names"]

    def line(record_id) -> str:
        return names[str(record_id)]

    [group] = report["exact_duplicates"]["first_groups"]
    assert [line(i) for i in group] == [f"chat.jsonl:{p['line_of'][i]}" for i in (0, len(p["good"]) - 2)]
    assert [[line(i) for i in pair[:2]] for pair in report["near_duplicates"]["first_pairs"]] == [
        [f"chat.jsonl:{p['line_of'][i]}" for i in (p["source"], p["near_copy"])]]

    found = report["contamination"]
    flagged = {(item["held_out"]["where"], item["train"]["where"], item["match"]) for item in found["items"]}
    assert flagged == {(f"chat.jsonl:{p['line_of'][h]}", f"chat.jsonl:{p['line_of'][t]}", kind)
                       for kind, (h, t) in (("exact", p["exact"]), ("near", p["near"]))}
    held_texts = {item["held_out"]["text"] for item in found["items"]}
    assert p["good"][p["clean_held"]][0]["content"] not in held_texts
    exact_item = next(i for i in found["items"] if i["match"] == "exact")
    assert exact_item["held_out"]["text"] == p["good"][p["exact"][0]][0]["content"]  # both texts, as written
    assert exact_item["train"]["text"] == p["good"][p["exact"][1]][0]["content"]
    assert 0.7 <= next(i for i in found["items"] if i["match"] == "near")["similarity"] < 1
    for kind, (h, _) in (("exact", p["exact"]), ("near", p["near"])):
        assert summary["contaminated held-out questions"][p["split_of"][h]][kind] == 1
    assert sum(found[s]["exact"] + found[s]["near"] for s in ("val", "test")) == 2

    ds = load_chat_dataset(DataConfig(source="chat", path=str(p["clean"]), block_size=512))  # training's own split
    for h, t in (p["exact"], p["near"]):
        assert p["good"][h] in ds.split_conversations(p["split_of"][h])
        assert p["good"][t] in ds.split_conversations("train")

    page = (tmp_path / "a" / "audit.html").read_text()
    assert f"chat.jsonl:{p['bad_line']['wrong order']}" in page and "Contaminated" in page


def test_contamination_is_skipped_with_a_reason_when_no_split_is_possible(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"prompt": "hi", "completion": "hello"}) + "\n{}\n", encoding="utf-8")
    records = read_chat_records(path)
    report = audit_conversations(records, DataConfig(source="chat", path=str(path)))
    assert report["bad_records"]["items"][0]["where"] == "one.jsonl:2"
    assert report["bad_records"]["items"][0]["kind"] == "not a conversation record"
    assert not report["contamination"]["checked"] and "at least two" in report["contamination"]["why"]


def test_an_empty_file_is_one_clear_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(GenlabError, match="holds no records"):
        read_chat_records(path)


def test_near_matches_finds_what_brute_force_jaccard_finds():
    from genlab.modalities.text.audit import near_matches

    rng = np.random.default_rng(1)
    corpus = {i: sentence(rng) for i in range(60)}
    queries = {}
    for q in range(40):  # half edited copies of a corpus text (one to three words changed), half new
        words = corpus[q].split() if q % 2 == 0 else sentence(rng).split()
        for k in rng.choice(len(words), 1 + q % 3, replace=False):
            words[k] = "xylophone"
        queries[q] = " ".join(words)
    found = {(q, c) for q, c, _ in near_matches(queries, corpus, threshold=0.6)}
    sets = {("q", q): shingles(t) for q, t in queries.items()} | {("c", c): shingles(t) for c, t in corpus.items()}
    brute = {(q, c) for q in queries for c in corpus
             if len(sets["q", q] & sets["c", c]) / len(sets["q", q] | sets["c", c]) >= 0.6}
    assert brute and found == brute
