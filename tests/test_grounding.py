"""Answers grounded in a document index: passages placed by the template in training and serving alike, citations
in the OpenAI response, the abstention threshold, and the grounding metrics on hand-made cases."""

import json

import pytest
from fastapi.testclient import TestClient
from test_chat import chat_cfg, write_jsonl

from genlab.config import config_from_dict
from genlab.core.errors import GenlabError
from genlab.metrics.answers import grounding_scores, support_share
from genlab.modalities.chat.generate import chat_answers
from genlab.modalities.chat.grounding import ABSTAIN, HEADER
from genlab.pipeline import evaluate_run, open_run, train_config
from genlab.retrieval import Document, Index, IndexSettings
from genlab.retrieval.dense import EncoderConfig
from genlab.serve.app import create_app
from genlab.serve.keys import KeyStore

FACTS = {"apt": "Use apt install followed by the package name.", "kernel": "The kernel boots the machine.",
         "mail": "Mail servers deliver messages.", "printer": "CUPS manages the print jobs."}
QUESTIONS = {"apt": "How do I install a package with apt?", "kernel": "What does the kernel do?",
             "mail": "What do mail servers do?", "printer": "What manages print jobs?"}


@pytest.fixture(scope="module")
def grounded(tmp_path_factory):
    """An index of four facts and a chat run trained with its passages in every conversation."""
    root = tmp_path_factory.mktemp("grounded")
    settings = IndexSettings(budget=40, overlap=8, encoder=EncoderConfig(buckets=2048, dim=16, epochs=2,
                                                                         max_steps=10, batch_size=4))
    Index.build([Document(k, v, f"faq/{k}") for k, v in FACTS.items()], settings).save(root / "index")
    records = [{"messages": [{"role": "user", "content": f"{QUESTIONS[k]} ({i})"},
                             {"role": "assistant", "content": FACTS[k]}], "source": k}
               for i in range(12) for k in FACTS]
    cfg = chat_cfg(write_jsonl(root / "faq.jsonl", records), "grounded", block_size=160,
                   retrieval={"index": str(root / "index"), "k": 1})
    cfg.train.steps = 40
    run, _ = train_config(cfg, root / "runs")
    return root, run.root


def test_training_conversations_carry_the_retrieved_passage(grounded):
    root, run_dir = grounded
    run = open_run(run_dir)
    ds = run.dataset
    text = ds.tokenizer.decode(ds.encoded["train"].ids[0])
    assert text.startswith(HEADER) and "[1] " in text
    described = json.loads((run_dir / "dataset.json").read_text())
    assert described["retrieval"]["k"] == 1 and described["fingerprint"] != ds.corpus.fingerprint
    report = {}
    chat_answers(run, [{"role": "user", "content": "How do I install a package with apt?"}], report=report,
                 temperature=0.0, max_new_tokens=8)
    assert [c["document"] for c in report["citations"]] == ["apt"] and not report.get("abstained")
    metrics = evaluate_run(run, quiet=True)
    g = metrics["grounding"]
    assert g["citation_precision"] == 1.0 and g["abstention_rate"] == 0.0 and g["citation_answers"] >= 1


def test_abstains_below_the_score_threshold_and_cites_over_http(grounded, tmp_path):
    root, run_dir = grounded
    run = open_run(run_dir)
    run.dataset.grounding.min_score = 1e6  # no passage can score that high
    report = {}
    assert chat_answers(run, [{"role": "user", "content": "What do mail servers do?"}], n=2,
                        report=report) == [ABSTAIN, ABSTAIN]
    assert report["abstained"] and report["finish_reason"] == ["stop", "stop"]

    store = KeyStore(tmp_path / "keys.json")
    token = store.add("t")[1]
    client = TestClient(create_app([run_dir], store))
    body = {"model": "grounded", "messages": [{"role": "user", "content": "What manages print jobs?"}],
            "max_tokens": 6, "temperature": 0}
    r = client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.json()["citations"][0]["document"] == "printer" and r.json()["citations"][0]["source"] == "faq/printer"
    streamed = client.post("/v1/chat/completions", json={**body, "stream": True},
                           headers={"Authorization": f"Bearer {token}"}).text
    last = [json.loads(line[6:]) for line in streamed.splitlines() if line.startswith("data: {")][-1]
    assert last["citations"][0]["document"] == "printer"


def test_an_index_given_at_serving_time_and_runs_that_cannot_take_one(grounded, tmp_path):
    root, run_dir = grounded
    plain = chat_cfg(root / "faq.jsonl", "plain", tokenizer="bpe", vocab_size=300)  # bytes: any passage encodes
    plain.train.steps = 2
    plain_run, _ = train_config(plain, tmp_path / "runs")
    run = open_run(plain_run.root, index=root / "index")
    report = {}
    chat_answers(run, [{"role": "user", "content": "What does the kernel do?"}], report=report, max_new_tokens=4)
    assert report["citations"][0]["document"] == "kernel"
    text_cfg = config_from_dict({"name": "text", "family": "gpt", "data": {"source": "txt", "block_size": 32,
                                                                           "path": str(write_text(tmp_path / "t.txt"))},
                                 "model": {"layers": 1, "heads": 2, "width": 16}, "train": {"steps": 2}})
    text_run, _ = train_config(text_cfg, tmp_path / "runs")
    with pytest.raises(GenlabError, match="grounds chat answers"):
        open_run(text_run.root, index=root / "index")


def write_text(path):
    path.write_text("plain text " * 200, encoding="utf-8")
    return path


def test_grounding_metrics_on_hand_made_cases():
    # normalised (articles dropped) answer trigrams: (kernel boots machine) (boots machine fast): 1 of 2 supported
    assert support_share("The kernel boots the machine fast", ["the kernel boots the machine"]) == pytest.approx(1 / 2)
    assert support_share("too short", ["anything"]) is None
    scores = grounding_scores(
        answers=["kernel boots the machine", "x", "mail servers deliver messages"],
        citations=[[{"document": "kernel", "text": "the kernel boots the machine"},
                    {"document": "mail", "text": "mail"}], [], [{"document": "mail", "text": "mail servers"}]],
        abstained=[False, True, False], sources=["kernel", "apt", "mail"])
    assert scores["abstention_rate"] == pytest.approx(1 / 3)
    assert scores["citation_precision"] == pytest.approx((1 / 2 + 1) / 2)  # the abstention is left out
    assert scores["support_share"] == pytest.approx((1 + 0) / 2)  # the third answer goes beyond its passage
