"""Reference-free text metrics against brute force."""

import random

import numpy as np

from genlab.metrics.text import SubstringIndex, distinct_n, memorisation_report, regular_verse


def brute_longest(a: str, b: str) -> int:
    best = 0
    for i in range(len(a)):
        for j in range(i + best + 1, len(a) + 1):
            if a[i:j] in b:
                best = j - i
            else:
                break
    return best


def test_longest_overlap_matches_brute_force():
    rng = random.Random(0)
    alphabet = "abcd床前明月🙂 "
    corpus = "".join(rng.choice(alphabet) for _ in range(3000))
    index = SubstringIndex(corpus)
    for _ in range(40):
        sample = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60)))
        if rng.random() < 0.5:  # plant a real copy
            start = rng.randrange(2900)
            sample += corpus[start: start + rng.randint(5, 80)]
        assert index.longest_overlap(sample) == brute_longest(sample, corpus)
    assert index.longest_overlap("zzz") == 0


def test_memorisation_report_flags_copies():
    train = "It was the best of times, it was the worst of times, it was the age of wisdom. " * 3
    samples = ["It was the best of times, it was the worst of times, it was the age", "A fresh line."]
    report = memorisation_report(samples, train, ["Another real line of text."], copy_length=50)
    assert report["copies"] == 1 and report["longest_overlap_chars"]["max"] >= 60
    assert report["held_out_longest_overlap_chars"]["n"] == 1


def test_distinct_n():
    assert distinct_n(["a b a b"], 1) == 0.5
    assert distinct_n(["a b a b"], 2) == 2 / 3
    assert distinct_n(["床前明月光", "床前"], 1) == 5 / 7
    assert distinct_n([""], 2) == 0.0


def _lcs(a, b):
    dp = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            dp[i + 1][j + 1] = dp[i][j] + 1 if x == y else max(dp[i][j + 1], dp[i + 1][j])
    return dp[-1][-1]


def test_reference_scores_bleu_and_cjk_rouge():
    from genlab.metrics.text import reference_scores, self_bleu

    same = reference_scores(["the cat sat on the mat ."], ["the cat sat on the mat ."])
    assert same["bleu"] > 99.9 and abs(same["rouge_l_f1"] - 1) < 1e-9
    hyp, ref = "床前明月光，疑是天上霜。", "床前看月光，疑是地上霜。"
    out = reference_scores([hyp], [ref])
    units_h, units_r = list(hyp), list(ref)
    lcs = _lcs(units_h, units_r)
    p, r = lcs / len(units_h), lcs / len(units_r)
    assert out["bleu_tokenize"] == "zh" and abs(out["rouge_l_f1"] - 2 * p * r / (p + r)) < 1e-9
    assert 0 < out["bleu"] < 100
    assert self_bleu(["a b c d e f", "a b c d e f"]) > 99.9
    assert self_bleu(["a b c d e f", "u v w x y z"]) < 1


def test_regular_verse_checks_line_shape():
    five = "《静夜思》\n作者：李白\n床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"
    seven = "《绝句》\n作者：杜甫\n两个黄鹂鸣翠柳，一行白鹭上青天。\n窗含西岭千秋雪，门泊东吴万里船。"
    assert regular_verse(five) == {"regular": True, "lines": 2, "clause_length": 5}
    assert regular_verse(seven)["clause_length"] == 7
    assert not regular_verse(five.replace("疑是地上霜", "疑是霜"))["regular"]  # unequal halves
    assert not regular_verse(five.replace("光，", "光"))["regular"]  # punctuation missing
    assert not regular_verse(five.replace("霜。", "霜，"))["regular"]  # a line must close
    assert not regular_verse("《题》\n作者：某\n床前明月光，疑是地上霜。")["regular"]  # one line is not a poem
    assert not regular_verse(five + "\n两个黄鹂鸣翠柳，一行白鹭上青天。")["regular"]  # mixed 5 and 7
    assert not regular_verse("春眠不觉晓处处闻啼鸟，夜来风雨声花落知多少。\n" * 2)["regular"]  # 10 characters


def test_suffix_array_sorts_every_suffix():
    from genlab.metrics.text import suffix_array

    rng = random.Random(2)
    texts = ["", "a", "a" * 40, "ab" * 12, "banana", "\U0010ffff\x00a", "".join(rng.choice("ab") for _ in range(500)),
             "".join(rng.choice("床前🙂 \n\x00") for _ in range(300)),
             "".join(chr(rng.randrange(0x110000)) for _ in range(200))]  # surrogates included
    for text in texts:
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        assert suffix_array(codes).tolist() == sorted(range(len(text)), key=lambda i: text[i:])


def test_longest_overlap_is_exact_on_adversarial_strings():
    rng = random.Random(1)
    period = "abcab" * 40
    corpora = ["", "a", "a" * 300, period + "x" + period, "ab" * 150 + "ba" * 150,
               "".join(rng.choice("ab") for _ in range(400)),
               "".join(rng.choice("床前明月🙂\n \x00é") for _ in range(400)),
               "\ud800lone surrogate \udfff and more"]
    for corpus in corpora:
        index = SubstringIndex(corpus)
        samples = ["", "a", "b", corpus, corpus + "a", "z" + corpus + "z", corpus * 2, corpus[::-1], "a" * 301,
                   period[:137] + "x" + period[:60], "\ud800lone", "🙂🙂"]
        samples += ["".join(rng.choice("abx床🙂") for _ in range(rng.randint(0, 40))) for _ in range(10)]
        samples += [corpus[s: s + rng.randint(0, 500)] + "q" + corpus[t: t + 30]
                    for s, t in ((rng.randrange(len(corpus) + 1), rng.randrange(len(corpus) + 1)) for _ in range(5))]
        for sample in samples:
            assert index.longest_overlap(sample) == brute_longest(sample, corpus), (corpus[:20], sample[:20])


def test_eval_steps_are_timed_and_told_unless_quiet(capsys):
    from genlab.core.progress import timed

    timings = {}
    with timed(timings, "memorisation", quiet=True):
        pass
    assert capsys.readouterr().err == "" and timings["memorisation"] >= 0
    with timed(timings, "continuations", quiet=False):
        pass
    assert capsys.readouterr().err.splitlines() == ["continuations ...", "continuations: 0.0 s"]
