"""Retrieval index: chunk spans, document-level metrics on a hand-computed case, save/load, incremental add vs a
rebuild, damaged index files, hostile queries, and the `genlab index` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_error

from genlab.core.errors import GenlabError
from genlab.retrieval import Document, Index, IndexSettings, chunk_document, evaluate_rankings, read_documents
from genlab.retrieval.dense import EncoderConfig
from genlab.retrieval.metrics import ndcg_at, recall_at, reciprocal_rank_at

TOPICS = {
    "apt": "apt installs packages from the archive and resolves dependencies for the system",
    "kernel": "the kernel boots the machine and loads modules for devices and drivers",
    "mail": "mail servers deliver messages and spam filters reject unwanted email",
    "python": "python scripts run in an interpreter and import libraries from modules",
    "network": "network interfaces get addresses from dhcp and routes send packets onward",
    "printer": "printers print pages from queues and cups manages print jobs",
}


def corpus() -> list[Document]:
    """Two documents per topic, several paragraphs each, one long paragraph that must be windowed."""
    docs = []
    for n, (topic, sentence) in enumerate(TOPICS.items()):
        for part in range(2):
            paragraphs = [f"{sentence.capitalize()}. Part {part} of the {topic} notes." for _ in range(3)]
            if part == 1:
                paragraphs.append(" ".join([f"{topic}{i % 7} {sentence}." for i in range(12)]))  # ~150 tokens
            docs.append(Document(f"{topic}-{part}", "\n\n".join(paragraphs), f"notes/{topic}.txt"))
        assert n < 10
    return docs


SMALL = IndexSettings(budget=40, overlap=8, encoder=EncoderConfig(buckets=4096, dim=16, epochs=3, max_steps=30,
                                                                  batch_size=8))


@pytest.fixture(scope="module")
def built() -> Index:
    return Index.build(corpus(), SMALL)


def test_chunks_are_spans_of_their_document_within_the_budget():
    text = "First paragraph here.\n\nSecond one,\nstill second.\n\n  \n" + " ".join(f"w{i}" for i in range(25))
    chunks = chunk_document("doc", text, budget=10, overlap=3)
    for c in chunks:
        assert c.doc_id == "doc" and text[c.start:c.end] == c.text and len(c.text.split()) <= 10
    assert chunks[0].text == "First paragraph here.\n\nSecond one,\nstill second."  # paragraphs packed, cut at a break
    windows = [c.text.split() for c in chunks[1:]]
    assert windows[0][0] == "w0" and windows[1][:3] == windows[0][-3:]  # a long paragraph: windows overlap by 3
    assert windows[-1][-1] == "w24" and [c.id for c in chunks] == list(range(len(chunks)))
    assert chunk_document("empty", "  \n\n ") == []
    with pytest.raises(GenlabError, match="overlap < budget"):
        chunk_document("doc", text, budget=5, overlap=5)


def test_every_chunk_of_an_index_maps_back_to_its_document(built):
    docs = {d.id: d for d in corpus()}
    assert {c.doc_id for c in built.chunks} == set(docs)
    for c in built.chunks:
        assert docs[c.doc_id].text[c.start:c.end] == c.text
    hit = built.search("cups print jobs", k=1)[0]
    assert hit.doc_id.startswith("printer") and hit.source == "notes/printer.txt"
    assert docs[hit.doc_id].text[hit.span[0]:hit.span[1]] == hit.text


def test_metrics_on_a_hand_computed_case():
    rankings = [["d1", "d1", "d2", "d3"],  # relevant d2: 2nd distinct document (3rd chunk)
                ["d5", "d4", "d5", "d6"],  # relevant d4, d6: distinct ranks 2 and 3
                ["d7"],  # relevant d8: never found
                ["d9", "d9"]]  # relevant d9: first
    relevant = [{"d2"}, {"d4", "d6"}, {"d8"}, {"d9"}]
    # by hand: nDCG q1 = (1/log2 3) / 1 = 0.63093; q2 = (1/log2 3 + 1/log2 4) / (1 + 1/log2 3) = 1.13093 / 1.63093
    # = 0.69343; q3 = 0; q4 = 1; mean = 2.32436 / 4 = 0.58109. MRR = (1/2 + 1/2 + 0 + 1) / 4 = 0.5.
    m = evaluate_rankings(rankings, relevant)
    assert m["queries"] == 4
    assert m["recall@1"] == 0.25 and m["recall@5"] == 0.75 and m["recall@10"] == 0.75
    assert m["mrr@10"] == pytest.approx(0.5)
    assert m["ndcg@10"] == pytest.approx(0.58109, abs=1e-5)
    assert ndcg_at(rankings[1], relevant[1], 10) == pytest.approx(0.69343, abs=1e-5)
    # dedupe happens before the cut: five chunks of one document do not push the second document out of the top 2
    assert recall_at(["a"] * 5 + ["b"], {"b"}, 2) == 1.0 and reciprocal_rank_at(["a"] * 5 + ["b"], {"b"}, 10) == 0.5
    assert reciprocal_rank_at(["a"] * 11 + ["b"], {"b"}, 1) == 0.0
    with pytest.raises(ValueError):
        evaluate_rankings([["a"]], [])


@pytest.mark.parametrize("method", ["bm25", "dense", "hybrid"])
def test_save_and_load_give_identical_results(built, tmp_path, method):
    manifest = built.save(tmp_path / "ix")
    assert manifest["chunks"] == len(built.chunks) and manifest["build"]["peak_memory_mib"] > 0
    assert manifest["build"]["seconds"] >= 0 and not list(tmp_path.glob("ix/*.pkl"))
    loaded = Index.load(tmp_path / "ix")
    for query in ("install packages with apt", "kernel modules", "printer3 queues", "spam email"):
        assert loaded.search(query, 5, method) == built.search(query, 5, method)


def test_incremental_add_equals_a_rebuild(tmp_path):
    docs = corpus()
    grown = Index.build(docs[:5], SMALL)
    grown.save(tmp_path / "ix")
    grown = Index.load(tmp_path / "ix")
    grown.add(docs[5:])
    grown.save(tmp_path / "ix")
    grown = Index.load(tmp_path / "ix")
    rebuilt = Index.build(docs, SMALL, encoder=grown.encoder)  # the same encoder: dense must match too
    assert [c.text for c in grown.chunks] == [c.text for c in rebuilt.chunks]
    np.testing.assert_array_equal(grown.embeddings, rebuilt.embeddings)
    for query in ("python interpreter modules", "dhcp addresses", "mail0 spam", "notes part 1"):
        for method in ("bm25", "dense", "hybrid"):
            assert grown.rank(query, 10, method) == rebuilt.rank(query, 10, method), (query, method)
    assert len(grown.info["adds"]) == 1 and grown.info["adds"][0]["documents"] == len(docs) - 5
    with pytest.raises(GenlabError, match="already in the index"):
        grown.add(docs[:1])


def test_training_is_deterministic_with_a_seed():
    a, b = Index.build(corpus(), SMALL), Index.build(corpus(), SMALL)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    assert a.info["build"]["encoder_training"]["steps"] > 0


@pytest.mark.parametrize("damage", ["missing", "corrupt", "manifest"])
def test_a_damaged_index_is_one_clear_error(built, tmp_path, run_cli, damage):
    folder = tmp_path / "ix"
    built.save(folder)
    if damage == "missing":
        (folder / "bm25.npz").unlink()
        needle = "index file missing"
    elif damage == "corrupt":
        data = bytearray((folder / "embeddings.safetensors").read_bytes())
        data[-3] ^= 0xFF
        (folder / "embeddings.safetensors").write_bytes(bytes(data))
        needle = "is corrupt"
    else:
        (folder / "manifest.json").write_text("{not json")
        needle = "manifest"
    with pytest.raises(GenlabError, match=needle):
        Index.load(folder)
    code, _, err = run_cli("index", "search", folder, "apt")
    assert_one_line_error(code, err, needle)


def test_hostile_queries(built):
    assert built.search("", 5) == [] and built.search("   \n", 5, "dense") == []
    assert built.search("apt", 0) == []
    assert built.search("?!", 5, "dense") == [] and built.search("zzzqqq", 5, "bm25") == []
    assert len(built.search("zzzqqq", 3, "dense")) == 3  # trigrams still place an unknown word somewhere
    assert len(built.search("apt", 10_000, "hybrid")) <= len(built.chunks)
    for bad, needle in (({"k": -1}, "k must be"), ({"method": "magic"}, "unknown search method")):
        with pytest.raises(GenlabError, match=needle):
            built.search("apt", **bad)
    with pytest.raises(GenlabError, match="a query is text"):
        built.search(None)


def test_reading_folders_jsonl_html_and_fortunes(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("plain text")
    (folder / "b.md").write_text("# Title B\n\nbody")
    (folder / "sub" / "c.html").write_text("<html><head><title>C</title><style>p{}</style><script>x()</script>"
                                           "</head><body><p>one &amp; two</p><div>three</div></body></html>")
    (folder / "d.jsonl").write_text('{"text": "first", "id": "x1", "source": "s"}\n\n{"text": "second"}\n')
    (folder / "quotes").write_text("one quote\n%\nanother\nquote\n%\n")
    (folder / "ignored.bin").write_bytes(b"\x00\x01")
    docs = {d.id: d for d in read_documents(folder)}
    assert set(docs) == {"a.txt", "b.md", "sub/c.html", "x1", "d.jsonl:3", "quotes#0", "quotes#1"}
    assert docs["sub/c.html"].text == "one & two\n\nthree" and docs["sub/c.html"].title == "C"
    assert docs["b.md"].title == "Title B" and docs["x1"].source == "s" and docs["quotes#1"].text == "another\nquote"
    (folder / "e.jsonl").write_text('{"id": "x1", "text": "again"}\n')
    with pytest.raises(GenlabError, match="'x1' appears twice"):
        read_documents(folder)
    (tmp_path / "bad.jsonl").write_text('{"txt": 1}\n')
    with pytest.raises(GenlabError, match="line 1 has no string field 'text'"):
        read_documents(tmp_path / "bad.jsonl")
    with pytest.raises(GenlabError, match="not found"):
        read_documents(tmp_path / "nowhere")


def test_index_commands(tmp_path, run_cli):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": d.id, "text": d.text, "source": d.source}) + "\n"
                            for d in corpus()[:8]))
    more = tmp_path / "more.jsonl"
    more.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in corpus()[8:]))
    ix = tmp_path / "ix"
    code, out, err = run_cli("index", "build", docs, "--out", ix, "--chunk-tokens", "40", "--overlap", "8")
    assert code == 0, err
    assert "indexed 8 documents" in out and "peak memory" in out and "on disk" in out
    code, out, err = run_cli("index", "build", docs, "--out", ix)
    assert_one_line_error(code, err, "already holds an index")
    code, out, err = run_cli("index", "add", ix, more)
    assert code == 0 and "added 4 documents" in out and "now holds 12 documents" in out, err
    code, out, err = run_cli("index", "search", ix, "cups print jobs", "-k", "2", "--method", "bm25")
    assert code == 0 and out.startswith("1. [") and "printer-" in out and out.count("\n") == 4, err
    code, out, err = run_cli("index", "search", ix, "spam", "-k", "1", "--json")
    assert code == 0 and json.loads(out)["doc_id"].startswith("mail")
    code, out, err = run_cli("index", "search", ix, "", "-k", "0")
    assert code == 0 and out == ""
    code, out, err = run_cli("index", "search", ix, "x", "--method", "magic")
    assert_one_line_error(code, err, "magic")
