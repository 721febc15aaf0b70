"""`genlab serve` speaks OpenAI's API: the official `openai` client against a live server (uvicorn in a thread)
serving a tiny chat run and a tiny text run."""

import pytest
from conftest import serve_in_thread, tiny_chat_config

from genlab.config import config_from_dict
from genlab.pipeline import open_run, train_config
from genlab.serve.app import create_app
from genlab.serve.keys import KeyStore
from genlab.serve.limits import Limits

openai = pytest.importorskip("openai")
ASK = [{"role": "user", "content": "Add 1 and 2."}]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("openai")
    chat, _ = train_config(tiny_chat_config(root, "talk", steps=60), root)
    corpus = root / "corpus"
    corpus.write_text("\n%\n".join(f"The quick brown fox {i} jumps." for i in range(40)) + "\n")
    text, _ = train_config(config_from_dict({"name": "fox", "family": "gpt", "model": {"layers": 1, "heads": 2,
                                                                                         "width": 16},
                                             "data": {"source": "fortune", "path": str(corpus), "block_size": 16},
                                             "train": {"steps": 100, "batch_size": 8, "lr": 1e-2, "val_every": 0,
                                                       "checkpoint_every": 0}}), root)
    return chat.root, text.root, root


@pytest.fixture(scope="module")
def live(runs):
    """(an openai client with a valid key, the base URL, the key)."""
    chat, text, root = runs
    token = KeyStore(root / "keys.json").add("openai")[1]
    app = create_app([chat, text], KeyStore(root / "keys.json"), Limits(requests_per_minute=6000, burst=1000))
    with serve_in_thread(app) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0, timeout=60), url, token


def test_chat_completion_answers_with_usage_and_is_seeded(live, runs):
    from genlab.modalities.chat.generate import prompt_ids

    client, _, _ = live
    r = client.chat.completions.create(model="talk", messages=ASK, max_tokens=30, n=3, seed=5, temperature=0.9)
    assert r.object == "chat.completion" and r.model == "talk" and r.id.startswith("chatcmpl-") and r.created > 0
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(c.message.role == "assistant" and c.finish_reason in ("stop", "length") for c in r.choices)
    dataset = open_run(runs[0]).dataset
    assert r.usage.prompt_tokens == len(prompt_ids(dataset, ASK))  # the rendered, tokenised conversation
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    shown = sum(len(dataset.tokenizer.encode(c.message.content)) for c in r.choices)
    assert shown <= r.usage.completion_tokens <= 3 * 30  # the end-of-turn token counts, and is not shown
    again = client.chat.completions.create(model="talk", messages=ASK, max_tokens=30, n=3, seed=5, temperature=0.9)
    assert [c.message.content for c in again.choices] == [c.message.content for c in r.choices]
    other = client.chat.completions.create(model="talk", messages=ASK, max_tokens=30, n=3, seed=6, temperature=0.9)
    assert [c.message.content for c in other.choices] != [c.message.content for c in r.choices]


def test_finish_reasons_and_stop(live):
    client, _, _ = live
    short = client.chat.completions.create(model="talk", messages=ASK, max_tokens=3, temperature=0)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3
    full = client.chat.completions.create(model="talk", messages=ASK, max_tokens=60, temperature=0)
    answer = full.choices[0].message.content
    assert full.choices[0].finish_reason == "stop" and len(answer) >= 4, answer  # the end-of-turn marker
    stop = answer[2:4]
    cut = client.chat.completions.create(model="talk", messages=ASK, max_tokens=60, temperature=0, stop=stop)
    assert cut.choices[0].message.content == answer[:answer.find(stop)] and cut.choices[0].finish_reason == "stop"
    listed = client.chat.completions.create(model="talk", messages=ASK, max_tokens=60, temperature=0,
                                            stop=["\x07", stop])
    assert listed.choices[0].message.content == cut.choices[0].message.content


def test_streamed_chat_adds_up_to_the_same_answers(live):
    client, _, _ = live
    body = {"model": "talk", "messages": ASK, "max_tokens": 30, "n": 2, "seed": 9}
    whole = client.chat.completions.create(**body)
    chunks = list(client.chat.completions.create(**body, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert {c.choices[0].delta.role for c in chunks[:1]} == {"assistant"}  # the first chunk opens the turn
    content, finish = ["", ""], [None, None]
    for c in chunks:
        for choice in c.choices:
            content[choice.index] += choice.delta.content or ""
            finish[choice.index] = choice.finish_reason or finish[choice.index]
    assert content == [c.message.content for c in whole.choices]
    assert finish == [c.finish_reason for c in whole.choices]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens


def test_completions_continue_text_and_chat_runs(live, runs):
    client, _, _ = live
    r = client.completions.create(model="fox", prompt="The quick", max_tokens=12, n=2, seed=1, temperature=0.5)
    assert r.object == "text_completion" and len(r.choices) == 2 and r.choices[0].text
    tokenizer = open_run(runs[1]).dataset.tokenizer
    assert r.usage.prompt_tokens == 1 + len(tokenizer.encode("The quick"))  # a document starts with EOT
    streamed = ["", ""]
    for chunk in client.completions.create(model="fox", prompt="The quick", max_tokens=12, n=2, seed=1,
                                           temperature=0.5, stream=True):
        for choice in chunk.choices:
            streamed[choice.index] += choice.text
    assert streamed == [c.text for c in r.choices]
    plain = client.completions.create(model="talk", prompt="Add 2", max_tokens=8, seed=0)  # a chat run, as text
    assert plain.object == "text_completion" and plain.choices[0].finish_reason in ("stop", "length")
    one = client.completions.create(model="fox", prompt=["The quick"], max_tokens=12, n=2, seed=1,
                                    temperature=0.5)  # a list of one prompt
    assert [c.text for c in one.choices] == [c.text for c in r.choices]


def test_models_are_listed_in_openai_format(live):
    client, _, _ = live
    models = {m.id: m for m in client.models.list()}
    assert set(models) == {"talk", "fox"} and models["talk"].owned_by == "genlab"
    assert models["talk"].model_extra["endpoint"] == "/v1/chat/completions"
    assert models["fox"].model_extra["modality"] == "text" and "temperature" in models["fox"].sampling_options
    assert client.models.retrieve("fox").id == "fox"


def test_errors_are_openai_exceptions(live):
    client, url, token = live
    wrong = openai.OpenAI(base_url=f"{url}/v1", api_key="gl_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        wrong.chat.completions.create(model="talk", messages=ASK)
    assert e.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=ASK)
    assert e.value.code == "model_not_found" and "gpt-4o" in e.value.message
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="The")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
    refused = [
        ({"model": "fox", "messages": ASK}, "text model"),  # not a chat run
        ({"model": "talk", "messages": ASK, "frequency_penalty": 0.5}, "frequency_penalty"),
        ({"model": "talk", "messages": ASK, "logprobs": True}, "logprobs"),
        ({"model": "talk", "messages": ASK, "extra_body": {"beam_width": 4}}, "beam_width"),
        ({"model": "talk", "messages": ASK, "n": 99}, "n must be at most"),
        ({"model": "talk", "messages": ASK, "max_tokens": 10**6}, "max_tokens"),
        ({"model": "talk", "messages": ASK, "temperature": -1}, "temperature"),
        ({"model": "talk", "messages": [{"role": "assistant", "content": "4"}]}, "expected user"),
        ({"model": "talk", "messages": [{"role": "tool", "content": "4", "tool_call_id": "x"}]}, "role"),
        ({"model": "talk", "messages": [{"role": "user", "content": "Ω"}]}, "vocabulary"),
        ({"model": "talk", "messages": ASK, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ]
    for body, needle in refused:
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(**body)
        assert needle in e.value.message, (body, e.value.message)
        assert e.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError, match="vocabulary"):  # refused before the stream starts
        client.completions.create(model="fox", prompt="Ω", stream=True)
    # what OpenAI clients send by default, or as bookkeeping, is accepted and ignored
    ok = client.chat.completions.create(model="talk", messages=[{"role": "developer", "content": "Add."}, *ASK],
                                        max_completion_tokens=5, frequency_penalty=0, presence_penalty=0, user="u1",
                                        logprobs=False, metadata={"a": "b"}, store=False,
                                        response_format={"type": "text"})
    assert ok.usage.completion_tokens <= 5
    parts = client.chat.completions.create(model="talk", max_tokens=5, seed=2,
                                           messages=[{"role": "user", "content": [{"type": "text", "text": "Add 1 "},
                                                                                  {"type": "text", "text": "and 2."}]}])
    assert parts.choices[0].message.content == client.chat.completions.create(
        model="talk", messages=ASK, max_tokens=5, seed=2).choices[0].message.content


def test_filter_limits_and_metrics_apply(runs, tmp_path):
    import httpx

    from genlab.modalities.text.safety import TextFilter

    chat, _, _ = runs
    store = KeyStore(tmp_path / "keys.json")
    token = store.add("t")[1]
    body = {"model": "talk", "messages": ASK, "max_tokens": 30, "temperature": 0}
    for mode in ("redact", "refuse"):
        app = create_app([chat], store, Limits(requests_per_minute=600, burst=2),
                         text_filter=TextFilter(["plus"], mode))
        with serve_in_thread(app) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)
            r = client.chat.completions.create(**body)
            chunks = [c.choices[0] for c in client.chat.completions.create(**body, stream=True) if c.choices]
            streamed = "".join(c.delta.content or "" for c in chunks)
            with pytest.raises(openai.RateLimitError):  # a burst of 2 for this key
                client.chat.completions.create(**body)
            text = httpx.get(f"{url}/metrics").text
        answer = r.choices[0].message.content
        assert "plus" not in answer and "plus" not in streamed
        if mode == "redact":
            assert "████" in answer and r.choices[0].finish_reason == "stop" and streamed == answer
            assert 'genlab_filtered_samples_total{action="redacted"} 2.0' in text
        else:  # a stream may have sent the text before the blocked term, never the term
            assert answer == "" and r.choices[0].finish_reason == "content_filter" and len(streamed) < 4
            assert chunks[-1].finish_reason == "content_filter"
            assert 'genlab_filtered_samples_total{action="refused"} 2.0' in text
        assert 'genlab_requests_total{endpoint="/v1/chat/completions",status="200"} 2.0' in text
        assert 'genlab_rejections_total{reason="rate_limit"} 1.0' in text
        assert float(text.split('genlab_generated_tokens_total{model="talk"} ')[1].split()[0]) >= 8


def test_a_stop_string_split_across_tokens_never_leaks(runs):
    """Text that may be the start of a stop string is held back until the sample goes on, ends, or hits
    max_new_tokens (then it is released)."""
    from genlab.modalities.text.generate import generate_text, held_back, stream_text

    assert held_back("2 p", ["pl", "x"]) == 1 and held_back("2 p", ["x"]) == 0 and held_back("ab", ["abc"]) == 2
    run = open_run(runs[1])  # the text run: a long continuation, not a short answer
    full = generate_text(run, "The quick", max_new_tokens=12, temperature=0)[0]
    assert len(full) >= 5, full
    stop = full[3:5]
    streamed = "".join(p[0] for p in stream_text(run, "The quick", stop=[stop], max_new_tokens=12, temperature=0))
    assert streamed == full[:full.find(stop)]
    never = full[-1] + "\x07"  # starts like the last character, never completes: released at max_new_tokens
    report = {}
    streamed = "".join(p[0] for p in stream_text(run, "The quick", stop=[never], report=report, max_new_tokens=12,
                                                 temperature=0))
    assert streamed == full and report["finish_reason"] == ["length"]
