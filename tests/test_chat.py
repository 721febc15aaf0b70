"""Chat fine-tuning: which tokens train (genlab's template and a ChatML template of a Hugging Face tokenizer),
packing that keeps conversations apart, exact resume, fine-tuning a text run and an HF model on chats, and
answers generated through the same template."""

import json

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error
from test_trainer import check_resume_is_bit_identical

from genlab.config import config_from_dict
from genlab.core.errors import GenlabError
from genlab.modalities import infer_data, load_dataset
from genlab.modalities.chat.data import as_messages, conversation_problem, pack_rows, row_batch
from genlab.modalities.chat.generate import chat_answers, prompt_ids
from genlab.modalities.chat.template import GENLAB_TEMPLATE, ChatTemplate, encode_conversation, load_template
from genlab.modalities.text.tokenizers import BPETokenizer, CharTokenizer
from genlab.nn.gpt import GPT, segment_positions
from genlab.pipeline import finetune, open_run, train_config

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
QA = [("What is Debian?", "A free operating system."), ("How do I install a package?", "Use apt install NAME."),
      ("Who maintains it?", "Volunteers around the world."), ("Is it free?", "Yes, free as in freedom.")]
CONVERSATION = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is Debian?"}, {"role": "assistant", "content": "An OS."},
                {"role": "user", "content": "Free?"}, {"role": "assistant", "content": "Yes, free."}]


def chats(n: int = 60) -> list[dict]:
    out = []
    for i in range(n):
        q, a = QA[i % len(QA)]
        messages = [{"role": "user", "content": f"{q} #{i}"}, {"role": "assistant", "content": a}]
        if i % 3 == 0:
            q2, a2 = QA[(i + 1) % len(QA)]
            messages += [{"role": "user", "content": q2}, {"role": "assistant", "content": a2}]
        out.append({"messages": messages})
    return out


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def chat_cfg(path, name="chat", **data):
    return config_from_dict({
        "name": name, "family": "gpt",
        "data": {"source": "chat", "path": str(path), "block_size": 96, **data},
        "model": {"layers": 1, "heads": 2, "width": 32},
        "train": {"steps": 12, "batch_size": 4, "lr": 3e-3, "val_every": 6, "checkpoint_every": 5},
    })


def trained_text(tokenizer, ids, weights) -> str:
    return tokenizer.decode(ids[weights > 0]) if tokenizer.kind == "bpe" else "".join(
        tokenizer.chars[i] if i < len(tokenizer.chars) else f"#{i}" for i in ids[weights > 0])


def test_genlab_template_trains_exactly_the_answers_and_end_tokens():
    template = ChatTemplate(GENLAB_TEMPLATE)
    tok = CharTokenizer.train([template.render(CONVERSATION)])
    ids, weights = encode_conversation(template, tok, CONVERSATION)
    end = tok.token_id("<|end|>")
    trained = ids[weights > 0].tolist()
    expected = [*tok.encode("An OS.").tolist(), end, *tok.encode("Yes, free.").tolist(), end]
    assert trained == expected
    assert ids[0] == tok.eot_id and weights[0] == 0  # a conversation starts like a sample at serving time
    # the rendered text is the template's, with role tokens as single ids
    assert tok.decode(ids) == "Be brief.What is Debian?An OS.Free?Yes, free."
    assert (ids == tok.token_id("<|assistant|>")).sum() == 2
    all_ids, all_weights = encode_conversation(template, tok, CONVERSATION, train_on="all")
    assert np.array_equal(all_ids, ids) and all_weights[1:].all() and all_weights[0] == 0


def test_chatml_template_of_a_hf_tokenizer_masks_everything_but_answers(tmp_path):
    """The ChatML template of Qwen-style models, with <|im_start|>/<|im_end|> as added special tokens."""
    tok = BPETokenizer.train([m["content"] for m in CONVERSATION] * 5, 300)
    tok.tok.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    tok = BPETokenizer(tok.tok)
    tok.save(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": CHATML, "eos_token": "<|im_end|>"}))
    template = load_template(tmp_path, tok)
    assert template.end_of_turn() == "<|im_end|>"
    ids, weights = encode_conversation(template, tok, CONVERSATION)
    im_end = tok.token_id("<|im_end|>")
    trained = ids[weights > 0].tolist()
    assert trained == [*tok.encode("An OS.").tolist(), im_end, *tok.encode("Yes, free.").tolist(), im_end]
    # the whole conversation is the template's text, token for token
    assert tok.tok.decode(ids[1:].tolist(), skip_special_tokens=False) == template.render(CONVERSATION)


def test_template_with_a_generation_block_and_a_template_that_is_not_a_prefix():
    """A {% generation %} block is not needed (and does not confuse us); a template whose renders are not
    prefixes of each other is one clear error, never silently wrong masks."""
    with_block = GENLAB_TEMPLATE.replace("{{ m['content'] }}", "{% generation %}{{ m['content'] }}{% endgeneration %}")
    tok = CharTokenizer.train([ChatTemplate(GENLAB_TEMPLATE).render(CONVERSATION)])
    a = encode_conversation(ChatTemplate(with_block), tok, CONVERSATION)
    b = encode_conversation(ChatTemplate(GENLAB_TEMPLATE), tok, CONVERSATION)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    counting = "{{ messages | length }}" + GENLAB_TEMPLATE  # the first line changes with every turn
    with pytest.raises(GenlabError, match="prefix"):
        ChatTemplate(counting).pieces(CONVERSATION)


@pytest.mark.parametrize(("messages", "problem"), [
    ([], "no turns"),
    ([{"role": "bot", "content": "hi"}], "unknown role 'bot'"),
    ([{"role": "user", "content": " "}, {"role": "assistant", "content": "a"}], "turn 1 (user) is empty"),
    ([{"role": "user", "content": "q"}], "no assistant turn"),
    ([{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}], "wrong order: turn 1"),
    ([{"role": "user", "content": "q"}, {"role": "system", "content": "s"}], "wrong order: turn 2"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}],
     "ends with a user turn"),
])
def test_bad_conversations_are_named(messages, problem):
    assert problem in conversation_problem(messages)


def test_prompt_completion_pairs_and_bad_lines_in_training(tmp_path):
    assert as_messages({"prompt": "q", "completion": "a"})[0] == [{"role": "user", "content": "q"},
                                                                  {"role": "assistant", "content": "a"}]
    records = chats(10)
    records[6] = {"messages": [{"role": "user", "content": "no answer"}]}
    path = write_jsonl(tmp_path / "bad.jsonl", records)
    with pytest.raises(GenlabError, match=r"bad.jsonl line 7 has no assistant turn"):
        load_dataset(chat_cfg(path).data)
    assert infer_data(str(path)) == {"source": "chat", "path": str(path)}


def test_packed_batch_gives_the_same_losses_as_each_conversation_alone(tmp_path):
    """Attention and positions restart at each conversation in a packed row: every token's loss equals the
    loss of the same conversation run by itself (learned and rotary positions)."""
    ds = load_dataset(chat_cfg(write_jsonl(tmp_path / "c.jsonl", chats(40))).data)
    encoded = ds.encoded["train"]
    rows = pack_rows(encoded.lengths, np.arange(12), 97, packing=True)
    assert any(len(r) > 1 for r in rows)
    packed = row_batch(encoded, rows, ds.tokenizer.eot_id)
    assert packed.segments is not None
    for positions in ("learned", "rotary"):
        torch.manual_seed(0)
        net = GPT(ds.tokenizer.vocab_size, 96, 2, 2, 32, 0.0, positions).eval()
        with torch.no_grad():
            logits = net(packed.x[:, :-1], segments=packed.segments)
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), packed.x[:, 1:], reduction="none")
            for r, row in enumerate(rows):
                at = 0
                for i in row:
                    ids = torch.as_tensor(encoded.ids[i], dtype=torch.long)[None]
                    alone = torch.nn.functional.cross_entropy(net(ids[:, :-1]).transpose(1, 2), ids[:, 1:],
                                                              reduction="none")[0]
                    n = ids.shape[1]
                    torch.testing.assert_close(nll[r, at:at + n - 1], alone, rtol=1e-5, atol=1e-5)
                    at += n
    assert segment_positions(torch.tensor([[0, 0, 0, 1, 1, 2]])).tolist() == [[0, 1, 2, 0, 1, 0]]


def test_padded_rows_hold_one_conversation_and_mask_the_pads(tmp_path):
    ds = load_dataset(chat_cfg(write_jsonl(tmp_path / "c.jsonl", chats(20)), packing=False).data)
    batch = next(ds.batches("train", 4))
    assert batch.segments is None and batch.mask.shape == (4, batch.x.shape[1] - 1)
    lengths = ds.encoded["train"].lengths[:4]
    for r, n in enumerate(lengths):
        assert batch.mask[r, n - 1:].sum() == 0  # targets past the conversation never train


def test_chat_run_resumes_bit_identically(tmp_path):
    cfg = chat_cfg(write_jsonl(tmp_path / "c.jsonl", chats(40)))
    cfg.train.ema_decay = 0.9
    check_resume_is_bit_identical(cfg, tmp_path)


def test_train_sample_and_answer_through_the_template(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", chats(60))
    cfg = chat_cfg(path)
    cfg.train.steps = 150
    run_paths, _ = train_config(cfg, tmp_path / "runs")
    assert (run_paths.root / "chat_template.jinja").read_text() == GENLAB_TEMPLATE
    run = open_run(run_paths.root)
    history = [{"role": "user", "content": "What is Debian? #0"}]
    ids = prompt_ids(run.dataset, history)
    tok = run.dataset.tokenizer
    assert ids[0] == tok.eot_id and ids[-1] == tok.token_id("<|assistant|>")
    report = {}
    answers = chat_answers(run, history, n=2, seed=1, report=report, temperature=0.0, max_new_tokens=40)
    assert answers[0] == answers[1] and "<|" not in answers[0]
    assert report["prompt_tokens"] == len(ids) and all(r in ("stop", "length") for r in report["finish_reason"])
    with pytest.raises(GenlabError, match="wrong order"):
        chat_answers(run, [{"role": "assistant", "content": "hi"}])


def test_finetune_a_text_run_and_a_hugging_face_model_on_chats(tmp_path, run_cli):
    """A char GPT pretrained on plain text already holds the role tokens; a GPT-2 brings its ChatML template."""
    from transformers import GPT2Config, GPT2LMHeadModel

    chat_file = write_jsonl(tmp_path / "c.jsonl", chats(40))
    corpus = tmp_path / "english.txt"
    corpus.write_text("\n\n".join(f"{q} {a}" for q, a in QA * 10) + " #0123456789?", encoding="utf-8")
    base_cfg = config_from_dict({"name": "base", "family": "gpt",
                                 "data": {"source": "txt", "path": str(corpus), "separator": "\n\n",
                                          "block_size": 96},
                                 "model": {"layers": 1, "heads": 2, "width": 32}, "train": {"steps": 5}})
    base, _ = train_config(base_cfg, tmp_path / "runs")
    recipe = tmp_path / "chat.yaml"
    recipe.write_text(json.dumps({"name": "tuned", "data": {"source": "chat", "path": str(chat_file)},
                                  "train": {"steps": 6, "batch_size": 4, "val_every": 3}}))
    run, summary = finetune(base.root, recipe, runs_dir=tmp_path / "runs")
    assert summary["steps"] == 6 and open_run(run.root).dataset.template.source == GENLAB_TEMPLATE

    folder = tmp_path / "gpt2"
    folder.mkdir()
    tok = BPETokenizer.train([m["content"] for c in chats(40) for m in c["messages"]], 300)
    tok.tok.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    BPETokenizer(tok.tok).save(folder)
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": CHATML, "eos_token": "<|im_end|>"}))
    torch.manual_seed(0)
    eos = tok.tok.token_to_id("<|im_end|>")
    GPT2LMHeadModel(GPT2Config(vocab_size=tok.tok.get_vocab_size(), n_positions=128, n_embd=32, n_layer=1,
                               n_head=2, bos_token_id=eos, eos_token_id=eos)).save_pretrained(folder)
    code, _, err = run_cli("finetune", folder, recipe, "name=hf", "--runs-dir", tmp_path / "runs")
    tail = err.split("Writing model shards")[-1].split("\n", 1)[-1]  # after the progress of our save_pretrained
    assert_one_line_error(code, tail, "data.packing=false")  # GPT-2 cannot keep packed conversations apart
    code, out, err = run_cli("finetune", folder, recipe, "name=hf", "data.packing=false", "data.block_size=96",
                             "--runs-dir", tmp_path / "runs")
    assert code == 0, err
    hf = open_run(tmp_path / "runs" / "hf")
    assert hf.dataset.template.source == CHATML
    assert hf.dataset.template.end_of_turn() == "<|im_end|>"
    answers = chat_answers(hf, [{"role": "user", "content": "Is it free?"}], temperature=0.0, max_new_tokens=5)
    assert isinstance(answers[0], str)
