"""Chat: conversations (`messages` JSONL) for language models. One chat template renders them in training and at
serving time; by default only the answers train; conversations are packed several to a window. Evaluation scores
held-out answers; the server speaks OpenAI's /v1/chat/completions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlab.core.errors import GenlabError
from genlab.core.options import option
from genlab.core.runs import atomic_write_bytes
from genlab.core.textfiles import first_jsonl_record
from genlab.core.validate import positive


@dataclass
class ChatEval:
    n_answers: int = 50  # held-out conversations whose last answer is generated greedily and scored
    answer_tokens: int = 128  # longest generated answer, in tokens
    seed: int = 0

    def validate(self) -> None:
        positive("eval", {"n_answers": self.n_answers, "answer_tokens": self.answer_tokens})


@dataclass
class ChatSampling:
    prompt: str = option("", "the user's message each answer replies to")
    system: str = option("", "a system message before it (empty: none)")
    stop: list[str] = option([], "end an answer at this string (repeatable)", max_items=4)


class ChatModality:
    name = "chat"
    sources = ("chat",)
    folder_contents = None  # chat data is one JSONL file
    eval_options = ChatEval
    sample_options = ChatSampling
    output_suffixes = (".jsonl", ".txt")
    model_noun = "a chat model"
    endpoint = "/v1/chat/completions"

    @property
    def max_samples(self) -> int:
        from genlab.modalities.text.generate import MAX_TEXTS

        return MAX_TEXTS  # absolute: OpenAI's route, the model named in the body

    def check_data(self, data) -> None:
        if isinstance(data.path, list):
            raise GenlabError("data.source=chat reads one JSONL file (data.path), not a list")
        for key, value, default in (("token_noise", data.token_noise, 0.0), ("separator", data.separator, None),
                                    ("vocab_from", data.vocab_from, [])):
            if value != default:
                raise GenlabError(f"data.{key} applies to plain text corpora, not to chat data")
        if data.augment.active:
            raise GenlabError("data.augment applies to images")

    def load(self, data, run_dir: Path | None = None):
        from genlab.modalities.chat.data import load_chat_dataset

        return load_chat_dataset(data, run_dir)

    def infer(self, target: str) -> dict | None:
        """A .jsonl file whose first record is a conversation (`messages`, or `prompt` and `completion`)."""
        record = first_jsonl_record(target)
        if isinstance(record, dict) and ("messages" in record or {"prompt", "completion"} <= set(record)):
            return {"source": "chat", "path": str(Path(target).expanduser())}
        return None

    def audit(self, data, out: Path, eval_options: Any, quiet: bool = True) -> dict:
        from genlab.modalities.chat.audit import audit_chat

        return audit_chat(data, out)

    def clean(self, data, operations: list[str], out: Path, drop_ids: Path | None = None) -> dict:
        raise GenlabError("genlab data clean does not write chat versions yet: drop the records the audit names "
                          "from the JSONL file (its findings give their line numbers)")

    def messages(self, options: ChatSampling) -> list[dict]:
        if not options.prompt.strip():
            raise GenlabError("a chat answer needs a user message: give a prompt")
        system = [{"role": "system", "content": options.system}] if options.system.strip() else []
        return [*system, {"role": "user", "content": options.prompt}]

    def generate(self, run, n: int, seed: int, options: ChatSampling, family_options: Any) -> list[str]:
        from genlab.modalities.chat.generate import chat_answers

        return chat_answers(run, self.messages(options), n, seed, stop=options.stop, **vars(family_options))

    def print_samples(self, run, n: int, seed: int, options: ChatSampling, family_options: Any, echo) -> None:
        from genlab.modalities.chat.generate import stream_chat

        messages = self.messages(options)
        for i in range(n):
            for pieces in stream_chat(run, messages, seed + i, 1, options.stop, **vars(family_options)):
                echo(pieces[0], nl=False)
            echo("\n" + "-" * 40 if i < n - 1 else "")

    def write_samples(self, run, samples: list[str], out: Path, options: ChatSampling) -> None:
        """.jsonl: each answer as a whole conversation (chat data again); .txt: answers between '%' lines."""
        if out.suffix == ".jsonl":
            body = "".join(json.dumps({"messages": [*self.messages(options), {"role": "assistant", "content": t}]},
                                      ensure_ascii=False) + "\n" for t in samples)
        elif out.suffix == ".txt":
            body = "\n%\n".join(samples) + "\n"
        else:
            raise GenlabError(f"--out must end in .jsonl or .txt for chat, got {out.name}")
        atomic_write_bytes(out, body.encode())

    def evaluate(self, run, options: ChatEval, quiet: bool = True) -> dict:
        from genlab.modalities.chat.evaluate import evaluate_chat_run

        return evaluate_chat_run(run, options, quiet)

    def headline(self, metrics: dict) -> dict:
        from genlab.modalities.chat.evaluate import chat_headline

        return chat_headline(metrics)

    def add_routes(self, app, server) -> None:
        from genlab.modalities.chat.routes import add_chat_routes

        add_chat_routes(app, server, self)
