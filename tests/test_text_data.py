"""Text corpora and tokenizers: formats, splits by document, duplicates, exact round trips."""

import json

import numpy as np
import pytest

from genlab.core.errors import GenlabError
from genlab.modalities.text.data import read_documents, split_corpus
from genlab.modalities.text.tokenizers import encode_documents, load_tokenizer, train_tokenizer

SAMPLES = ["Hello, world!", "床前明月光，疑是地上霜。", "emoji 🙂🚀 and accents: café, naïve", "tab\tand\nnewline",
           "ZWJ family 👨‍👩‍👧 and CJK ext 𠮷"]


def test_fortune_files_split_on_percent_lines_and_lose_ansi_colours(tmp_path):
    f = tmp_path / "fortunes"
    f.write_text("First one.\n%\n\x1b[1;31mRed\x1b[0m second.\n  -- someone\n%\n\n%\nThird.\n")
    assert read_documents(f, "fortune") == ["First one.", "Red second.\n  -- someone", "Third."]


def test_jsonl_and_txt_and_folders(tmp_path):
    j = tmp_path / "d.jsonl"
    j.write_text("\n".join(json.dumps({"text": t}) for t in SAMPLES) + "\n")
    assert read_documents(j, "jsonl") == SAMPLES
    t = tmp_path / "d.txt"
    t.write_text("a b\n\nc d\n\ne")
    assert read_documents(t, "txt", "\n\n") == ["a b", "c d", "e"]
    assert read_documents(t, "txt") == ["a b\n\nc d\n\ne"]
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "2.txt").write_text("two")
    (folder / "1.txt").write_text("one")
    assert read_documents(folder, "txt") == ["one", "two"]


@pytest.mark.parametrize("content, fmt, needle", [
    (b'{"text": "ok"}\n{"txt": "no"}\n', "jsonl", "line 2 has no string field 'text'"),
    (b'{"text": "ok"}\nnot json\n', "jsonl", "line 2 is not valid JSON"),
    (b"\xff\xfe\x00bad", "txt", "not UTF-8"),
    (b"%\n%\n", "fortune", "no non-empty documents"),
])
def test_bad_text_files_give_one_clear_error(tmp_path, content, fmt, needle):
    f = tmp_path / "bad"
    f.write_bytes(content)
    with pytest.raises(GenlabError, match=needle):
        read_documents(f, fmt)


def test_split_is_by_document_seeded_and_keeps_duplicates_together():
    docs = [f"doc {i}" for i in range(200)] + ["doc 5", "doc 5", "doc 17"]
    a = split_corpus(docs, 0.1, 0.1, seed=0)
    b = split_corpus(docs, 0.1, 0.1, seed=0)
    c = split_corpus(docs, 0.1, 0.1, seed=1)
    assert all(np.array_equal(a.splits[k], b.splits[k]) for k in a.splits)
    assert not np.array_equal(a.splits["train"], c.splits["train"])
    all_ids = np.concatenate(list(a.splits.values()))
    assert sorted(all_ids.tolist()) == list(range(203))
    assert a.duplicate_groups == [[5, 200, 201], [17, 202]]
    where = {int(i): k for k, v in a.splits.items() for i in v}
    assert where[5] == where[200] == where[201] and where[17] == where[202]
    assert a.describe()["exact_duplicates"]["extra_copies"] == 3
    assert a.fingerprint == b.fingerprint != split_corpus(docs[:-1], 0.1, 0.1, 0).fingerprint


def test_one_document_is_cut_contiguously():
    text = "".join(chr(65 + i % 26) for i in range(1000))
    corpus = split_corpus([text], 0.1, 0.0, seed=3)
    train, val = corpus.split_documents("train"), corpus.split_documents("val")
    assert train == [text[:900]] and val == [text[900:]] and corpus.split_documents("test") == []


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_tokenizers_round_trip_exactly_and_reload(tmp_path, kind):
    corpus = SAMPLES * 20 + ["The quick brown fox jumps over the lazy dog. " * 5]
    tok = train_tokenizer(kind, corpus, vocab_size=400)
    for text in SAMPLES:
        ids = tok.encode(text)
        assert ids.dtype == np.int32 and tok.decode(ids) == text
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.vocab_size == tok.vocab_size and again.eot_id == tok.eot_id
    for text in SAMPLES:
        assert np.array_equal(again.encode(text), tok.encode(text))
    stream = encode_documents(tok, SAMPLES[:2])
    assert (stream == tok.eot_id).sum() == 2 and stream[-1] == tok.eot_id
    assert tok.decode(stream) == SAMPLES[0] + SAMPLES[1]


def test_bpe_round_trips_text_it_never_saw():
    tok = train_tokenizer("bpe", ["only ascii here"] * 10, vocab_size=300)
    unseen = "完全没见过的字 🙃 ∑"
    assert tok.decode(tok.encode(unseen)) == unseen  # byte level: every byte has a token


def test_char_tokenizer_names_an_unknown_character():
    tok = train_tokenizer("char", ["abc"])
    with pytest.raises(GenlabError, match="'z' is not in this tokenizer's vocabulary"):
        tok.encode("abz")


def test_corrupt_tokenizer_file_is_one_error(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(GenlabError, match="not a valid tokenizer file"):
        load_tokenizer(tmp_path)


def test_a_corpus_of_several_files_and_a_vocabulary_that_covers_another(tmp_path):
    from genlab.config import config_from_dict
    from genlab.modalities import load_dataset

    a, b, c = (tmp_path / n for n in "abc")
    a.write_text("alpha one\n%\nalpha two\n")
    b.write_text("beta 1\n%\nbeta 2\n%\nbeta 3\n")
    c.write_text("床前明月光\n")
    data = {"source": "fortune", "path": [str(a), str(b)], "val_fraction": 0.0, "test_fraction": 0.0,
            "block_size": 8}
    ds = load_dataset(config_from_dict({"family": "gpt", "data": data}).data)
    assert ds.corpus.documents == ["alpha one", "alpha two", "beta 1", "beta 2", "beta 3"]
    assert "床" not in ds.tokenizer.chars
    wide = load_dataset(config_from_dict({"family": "gpt", "data": {**data, "vocab_from": [str(c)]}}).data)
    assert set("床前明月光") <= set(wide.tokenizer.chars) and wide.fingerprint == ds.fingerprint
    with pytest.raises(GenlabError, match="only for text sources"):
        config_from_dict({"data": {"source": "idx", "path": [str(a)]}})
    with pytest.raises(GenlabError, match="vocab_from applies to the char tokenizer"):
        config_from_dict({"family": "gpt", "data": {**data, "tokenizer": "bpe", "vocab_from": [str(c)]}})


def test_token_noise_corrupts_inputs_only_at_the_set_rate_and_reproducibly():
    import torch

    from genlab.modalities.text.data import TokenStream

    tokens = torch.randint(0, 50, (20_000,))
    clean = TokenStream(tokens, 64, 32, seed=3).next()
    noisy_stream = TokenStream(tokens, 64, 32, seed=3, noise=0.2, vocab_size=60)
    noisy = noisy_stream.next()
    assert torch.equal(noisy.x, clean.x) and clean.context is None  # same windows, clean targets
    changed = (noisy.context != noisy.x[:, :-1]).float().mean().item()
    assert 0.17 < changed < 0.21  # 0.2, less the draws that hit the same token (1/50)
    assert int(noisy.context.max()) < 50  # unigram draws: only tokens of the split
    again = TokenStream(tokens, 64, 32, seed=3, noise=0.2, vocab_size=60)
    assert torch.equal(again.next().context, noisy.context)
    again.load_state(noisy_stream.state())
    assert torch.equal(again.next().context, noisy_stream.next().context)  # resumable
