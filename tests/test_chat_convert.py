"""Converters to chat JSONL (genlab.modalities.chat.convert) on small fixtures built here, and the converted files
shipped in data/chat/: they must parse and keep the user/assistant shape training relies on."""

import gzip
import json
from pathlib import Path

import pytest

from genlab.modalities.chat.convert import (
    chatterbot_conversations,
    debian_faq_conversations,
    main,
    write_chat_jsonl,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "chat"

CHATTERBOT_YML = """\
categories:
- greetings
conversations:
- - Hello
  - Hi there!
- - How are you?
  - 'Fine, and you?  '
  - Good.
  - Glad to hear it.
- - Nobody answers this?
  - Yes.
  - Really?
- - ''
  - an answer to nothing
- - 42
  - a number is not a turn
- - []
- just a string, not a list
- - Hello
  - 'Hi there! '
"""

# The rendering's layout: headings at column 0 (wrapped at column 0), bodies indented, ~72 columns, URLs broken at
# '/', a no-break space indent and "Section\xa01.1", a footnote after the rule that ends a chapter.
FAQ_TXT = """\
The Frobnicator FAQ

Chapter\xa01.\xa0Basics

1.1. What is the frobnicator, and why would anyone want one on a
Debian system?

    The frobnicator is a small tool that turns widgets into gadgets;
    see the home page of the project for the details (https://example.org/
    frob) .

    Install it with:

    apt install frob
    frob --help

      * fast: it frobnicates a thousand widgets every second on an old
        laptop.

      * free: it is free software and runs on every port, from Debian GNU/
        Linux to Debian GNU/Hurd.

1.1.1. Details

\xa0\xa0\xa0 Details are in the manual page frob(1), see also the question in
    Section\xa02.1, "Does it break?".

---------------------------------------------------------------------

    ^[1] Only on Tuesdays.

Chapter\xa02.\xa0Trouble

2.1. Does it break?

    Rarely.^[1]

2.2. Plans

    None.
"""


def test_chatterbot_alternates_turns_and_skips_odd_records(tmp_path):
    folder = tmp_path / "english"
    folder.mkdir()
    (folder / "greetings.yml").write_text(CHATTERBOT_YML, encoding="utf-8")
    skipped = []
    records = chatterbot_conversations(folder, skipped)
    assert records == [
        {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there!"}],
         "source": "chatterbot-corpus english/greetings.yml #0"},
        {"messages": [{"role": "user", "content": "How are you?"},
                      {"role": "assistant", "content": "Fine, and you?"},
                      {"role": "user", "content": "Good."},
                      {"role": "assistant", "content": "Glad to hear it."}],
         "source": "chatterbot-corpus english/greetings.yml #1"},
    ]
    assert skipped == [
        ("english/greetings.yml #2", "odd length (trailing user turn with no answer)"),
        ("english/greetings.yml #3", "empty string"),
        ("english/greetings.yml #4", "non-string entry"),
        ("english/greetings.yml #5", "non-string entry"),
        ("english/greetings.yml #6", "not a list"),
        ("english/greetings.yml #7", "exact duplicate of an earlier conversation"),
    ]
    assert chatterbot_conversations(folder) == records  # `skipped` is optional
    kept = chatterbot_conversations(folder, dedupe=False)
    assert kept == [*records, dict(records[0], source="chatterbot-corpus english/greetings.yml #7")]


def test_chatterbot_folder_without_yaml_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        chatterbot_conversations(tmp_path)


FAQ_ANSWER_1_1 = """\
The frobnicator is a small tool that turns widgets into gadgets; see the home page of the project for the details \
(https://example.org/frob).

Install it with:

apt install frob
frob --help

* fast: it frobnicates a thousand widgets every second on an old laptop.

* free: it is free software and runs on every port, from Debian GNU/Linux to Debian GNU/Hurd.

Details

Details are in the manual page frob(1), see also the question in Section 2.1, "Does it break?"."""


def test_debian_faq_questions_answers_footnotes(tmp_path):
    path = tmp_path / "faq.en.txt.gz"
    path.write_bytes(gzip.compress(FAQ_TXT.encode()))
    skipped = []
    records = debian_faq_conversations(path, skipped=skipped)
    assert records == [
        {"messages": [{"role": "user", "content": "What is the frobnicator, and why would anyone want one on a "
                                                  "Debian system?"},
                      {"role": "assistant", "content": FAQ_ANSWER_1_1}],
         "source": "debian-faq 1.1"},
        {"messages": [{"role": "user", "content": "Does it break?"},
                      {"role": "assistant", "content": "Rarely.[1]\n\n[1] Only on Tuesdays."}],
         "source": "debian-faq 2.1"},
    ]
    assert skipped == [("debian-faq 2.2", "heading is not a question")]
    plain = tmp_path / "faq.en.txt"  # not gzipped: same records; a system message only when asked
    plain.write_text(FAQ_TXT, encoding="utf-8")
    with_system = debian_faq_conversations(plain, system="You answer questions about Debian.")
    assert [r["messages"][0] for r in with_system] == [{"role": "system",
                                                        "content": "You answer questions about Debian."}] * 2
    assert [dict(r, messages=r["messages"][1:]) for r in with_system] == records


def test_write_and_command_line(tmp_path, capsys):
    records = [{"messages": [{"role": "user", "content": "Grüß dich"}, {"role": "assistant", "content": "Salut"}]}]
    out = tmp_path / "sub" / "x.jsonl"
    assert write_chat_jsonl(records, out) == 1
    assert out.read_bytes() == ('{"messages": [{"role": "user", "content": "Grüß dich"}, '
                                '{"role": "assistant", "content": "Salut"}]}\n').encode()
    folder = tmp_path / "english"
    folder.mkdir()
    (folder / "greetings.yml").write_text(CHATTERBOT_YML, encoding="utf-8")
    assert main(["chatterbot", str(folder), str(tmp_path / "cb.jsonl")]) == 0
    printed = capsys.readouterr().out
    assert "2 conversations, 6 turns, 6 skipped" in printed
    assert "2 non-string entry: english/greetings.yml #4, english/greetings.yml #5" in printed
    assert len((tmp_path / "cb.jsonl").read_text().splitlines()) == 2
    faq = tmp_path / "faq.txt"
    faq.write_text(FAQ_TXT, encoding="utf-8")
    assert main(["debian-faq", str(faq), str(tmp_path / "faq.jsonl"), "--system", "Be brief."]) == 0
    assert "2 conversations, 4 turns, 1 skipped" in capsys.readouterr().out


# name -> (conversations, user + assistant turns), as data/chat/README.md states them
SHIPPED = {"chatterbot-en.jsonl": (855, 1856), "debian-faq.jsonl": (123, 246)}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_chat_data(name):
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    turns = 0
    for record in records:
        messages = record["messages"]
        assert isinstance(record["source"], str) and record["source"]
        assert messages and len(messages) % 2 == 0, record["source"]
        for k, message in enumerate(messages):
            assert set(message) == {"role", "content"}, record["source"]
            assert message["role"] == ("user", "assistant")[k % 2], record["source"]
            assert isinstance(message["content"], str) and message["content"].strip(), record["source"]
            assert message["content"] == message["content"].strip(), record["source"]
        turns += len(messages)
    assert (len(records), turns) == SHIPPED[name]
    assert len({r["source"] for r in records}) == len(records)
    assert len({json.dumps(r["messages"]) for r in records}) == len(records)  # no exact repeats
