"""Reference-free text metrics against brute force."""

import random

from genlab.metrics.text import SubstringIndex, distinct_n, memorisation_report


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
