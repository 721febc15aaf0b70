"""Answer metrics against hand-computed cases and SQuAD v1.1's official script, and the evaluation of a tiny trained
chat run end to end: metrics.json's keys, the context and reference of each answered conversation, the headline
`genlab eval` prints, and perfect answers scoring 1."""

import json
import re
import string
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genlab.config import config_from_dict
from genlab.metrics.answers import answer_scores, exact_match, normalise, token_f1
from genlab.modalities.chat import evaluate as chat_evaluate
from genlab.pipeline import open_run, train_config


def squad_normalize_answer(s):
    """SQuAD v1.1's evaluate-v1.1.py, transcribed: the independent reference for ASCII text."""
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def squad_f1(prediction, ground_truth):
    prediction_tokens = squad_normalize_answer(prediction).split()
    ground_truth_tokens = squad_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def test_hand_computed_cases():
    assert normalise("The Cat!") == "cat" and exact_match("The Cat!", "cat") == 1.0
    assert exact_match("  an   Apple.", "apple") == 1.0 and exact_match("apples", "apple") == 0.0
    assert token_f1("x b c", "b c d") == pytest.approx(2 / 3)  # 2 shared of 3 each: P = R = 2/3
    assert token_f1("a b c", "b c d") == pytest.approx(0.8)  # 'a' is an article: P = 2/2, R = 2/3
    assert token_f1("cat cat dog", "cat") == pytest.approx(0.5)  # a token counts as often as both hold it
    assert token_f1("Paris", "paris, France") == pytest.approx(2 / 3)
    assert token_f1("", "") == 1.0 and token_f1("the", "cat") == 0.0 and token_f1("", "cat") == 0.0
    assert token_f1("我爱猫", "我爱狗") == pytest.approx(2 / 3)  # each ideograph a token
    assert exact_match("你好。", "你好") == 1.0  # Unicode punctuation goes too


WORDS = ["a", "an", "the", "The", "cat", "Cat", "dog", "b", "c", "d", "x!", "a.b", "an't", "(the)", "$5", "-", "..."]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=8), st.lists(st.sampled_from(WORDS), max_size=8),
       st.sampled_from([" ", "  ", "\t", " \n"]))
def test_squad_official_script_agrees_on_ascii(pred_words, ref_words, sep):
    pred, ref = sep.join(pred_words), sep.join(ref_words)
    assert normalise(pred) == squad_normalize_answer(pred)
    assert exact_match(pred, ref) == float(squad_normalize_answer(pred) == squad_normalize_answer(ref))
    if squad_normalize_answer(pred) or squad_normalize_answer(ref):  # both empty: v1.1 says 0, SQuAD 2.0 and we 1
        assert token_f1(pred, ref) == pytest.approx(squad_f1(pred, ref))


def test_perfect_answers_score_one_and_wrong_ones_zero():
    refs = ["The cat sat on the mat.", "Paris is the capital of France.", "Forty-two."]
    perfect = answer_scores(refs, refs)
    assert perfect["token_f1"] == perfect["exact_match"] == pytest.approx(1.0)
    assert perfect["rouge_l_f1"] == pytest.approx(1.0) and perfect["bleu"] == pytest.approx(100.0)
    wrong = answer_scores(["zzz", "qqq", "www"], refs)
    assert wrong["token_f1"] == wrong["exact_match"] == wrong["rouge_l_f1"] == 0.0


def conversations():
    out = []
    for i in range(30):
        if i % 3 == 0:  # multi-turn, with a system prompt: only the last answer is the reference
            out.append([{"role": "system", "content": "be kind"}, {"role": "user", "content": f"hi {i}"},
                        {"role": "assistant", "content": f"hey {i}"}, {"role": "user", "content": f"and {i}?"},
                        {"role": "assistant", "content": f"so {i}."}])
        else:
            out.append([{"role": "user", "content": f"q {i}"}, {"role": "assistant", "content": f"the a {i}"}])
    return out


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chat")
    path = tmp / "chat.jsonl"
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations()), encoding="utf-8")
    cfg = config_from_dict({
        "name": "chat", "family": "gpt", "data": {"source": "chat", "path": str(path), "block_size": 64},
        "model": {"layers": 1, "width": 32, "heads": 2},
        "train": {"steps": 20, "batch_size": 8, "val_every": 0, "checkpoint_every": 0, "log_every": 10},
        "eval": {"n_answers": 2, "answer_tokens": 8}})
    run, _ = train_config(cfg, tmp / "runs")
    return run.root


def test_eval_of_a_chat_run_through_the_cli(chat_run, run_cli):
    code, out, err = run_cli("eval", chat_run)
    assert code == 0, err
    headline = json.loads(out[: out.rindex("}") + 1])
    metrics = json.loads((chat_run / "metrics.json").read_text())
    assert {"likelihood", "answers", "memorisation"} <= set(metrics)
    answers = metrics["answers"]
    assert {"token_f1", "exact_match", "rouge_l_f1", "bleu", "n", "split"} <= set(answers)
    assert answers["n"] == 2 and answers["split"] == metrics["likelihood"]["split"] == "test"
    assert 0 <= answers["token_f1"] <= 1 and 0 <= answers["exact_match"] <= 1
    assert metrics["memorisation"]["n_samples"] == 2 and "verdict" in metrics["memorisation"]
    assert {"answers", "answer scores", "memorisation", "likelihood"} <= set(metrics["timings_seconds"])
    assert headline["answer perplexity (test answer tokens)"] == pytest.approx(metrics["likelihood"]["perplexity"],
                                                                               abs=1e-3)
    assert headline["memorisation of training answers"] == metrics["memorisation"]["verdict"]
    assert any(k.startswith("answers token-F1 / exact match / ROUGE-L") for k in headline)

    run = open_run(chat_run)
    held = run.dataset.split_conversations("test")[:2]
    kept = [json.loads(line) for line in (chat_run / "samples" / "answers.jsonl").read_text().splitlines()]
    for record, conversation in zip(kept, held, strict=True):  # context: all but the last answer
        assert record["messages"] == conversation[:-1] and record["reference"] == conversation[-1]["content"]
        assert record["messages"][-1]["role"] == "user"


def test_perfect_answers_through_the_evaluation(chat_run, monkeypatch):
    run = open_run(chat_run)
    truth = {json.dumps(c[:-1]): c[-1]["content"] for c in run.dataset.conversations}

    def perfect(run, messages, n=1, seed=0, report=None, **sampling):
        assert sampling == {"temperature": 0.0, "max_new_tokens": 8}  # greedy, eval.answer_tokens long
        return [truth[json.dumps(messages)]]

    monkeypatch.setattr(chat_evaluate, "chat_answers", perfect)
    metrics = chat_evaluate.evaluate_chat_run(run, run.config.eval)
    answers = metrics["answers"]
    assert answers["token_f1"] == answers["exact_match"] == answers["rouge_l_f1"] == pytest.approx(1.0)
    memo = metrics["memorisation"]  # the answers are the real held-out answers: the same overlap
    assert memo["longest_overlap_chars"]["median"] == memo["held_out_longest_overlap_chars"]["median"]
