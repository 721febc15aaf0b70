"""Chat templates: one Jinja template renders a conversation to the text a language model reads, in training and
at serving time. A Hugging Face model brings its tokenizer's own `chat_template`; genlab's GPT and LSTM use
GENLAB_TEMPLATE with the role tokens every genlab tokenizer reserves.

Which tokens train (data.train_on=assistant) is found by rendering the conversation turn by turn, never from a
`{% generation %}` block (most templates lack one): the text between "the conversation so far plus the generation
prompt" and "the conversation through this answer" is the answer and its end-of-turn marker. Each piece is
tokenised on its own, exactly as at serving time, where the prompt is tokenised and the answer generated.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genlab.core.errors import GenlabError

# Role tokens and contents only: no literal character a char tokenizer pretrained on plain text could lack.
GENLAB_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
TEMPLATE_FILE = "chat_template.jinja"  # saved in every chat run (the name transformers uses too)
GENERATION_TAGS = re.compile(r"{%-?\s*(end)?generation\s*-?%}")  # transformers' answer markers: not needed here
PROBE = [{"role": "user", "content": "\x00q\x00"}, {"role": "assistant", "content": "\x00a\x00"}]


def _raise(message: str):
    raise GenlabError(f"the chat template refused the conversation: {message}")


@dataclass
class ChatTemplate:
    source: str  # Jinja text
    bos_token: str = ""
    eos_token: str = ""

    def __post_init__(self):
        from jinja2 import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=["jinja2.ext.loopcontrols"])
        env.globals["raise_exception"] = _raise
        env.filters["tojson"] = lambda x, **kw: json.dumps(x, ensure_ascii=False, **kw)
        try:
            self._template = env.from_string(GENERATION_TAGS.sub("", self.source))
        except TemplateError as exc:
            raise GenlabError(f"the chat template is not valid Jinja: {exc}") from None

    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        from jinja2 import TemplateError

        try:
            return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                         bos_token=self.bos_token, eos_token=self.eos_token)
        except TemplateError as exc:
            raise GenlabError(f"the chat template failed: {exc}") from None

    def end_of_turn(self) -> str:
        """The marker the template puts after an answer (`<|end|>`, `<|im_end|>`, an eos token): where
        generation stops."""
        full = self.render(PROBE)
        at = full.find("\x00a\x00")
        if at < 0:
            raise GenlabError("the chat template does not show the assistant's content")
        return full[at + 3:].strip() or self.eos_token

    def pieces(self, messages: list[dict]) -> list[tuple[str, bool]]:
        """The rendered conversation cut into (text, is_answer) pieces: each assistant turn's content plus its
        end-of-turn marker is an answer piece; trailing whitespace after the marker is not."""
        out, done = [], ""
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before = self.render(messages[:i], add_generation_prompt=True)
            through = self.render(messages[: i + 1])
            if not before.startswith(done) or not through.startswith(before):
                raise GenlabError("the chat template does not render a conversation as a prefix of its longer "
                                  "versions, so answer tokens cannot be located; use another template "
                                  "(data.chat_template)")
            answer = through[len(before):].rstrip()
            out += [(before[len(done):], False), (answer, True)]
            done = before + answer
        full = self.render(messages)
        if not full.startswith(done):
            raise GenlabError("the chat template renders the whole conversation differently from its turns")
        out.append((full[len(done):], False))
        return [(t, a) for t, a in out if t]

    def save(self, folder: Path) -> None:
        (Path(folder) / TEMPLATE_FILE).write_text(self.source, encoding="utf-8")


def encode_conversation(template: ChatTemplate, tokenizer, messages: list[dict],
                        train_on: str = "assistant") -> tuple[np.ndarray, np.ndarray]:
    """(token ids, 0/1 weight of each token as a target): EOT first (a conversation begins, as at serving
    time), then each piece tokenised on its own; `train_on=all` trains every token after the first."""
    ids, weights = [np.array([tokenizer.eot_id], np.int32)], [np.zeros(1, np.float32)]
    for text, answer in template.pieces(messages):
        piece = tokenizer.encode(text)
        ids.append(piece)
        weights.append(np.full(len(piece), 1.0 if (answer or train_on == "all") else 0.0, np.float32))
    return np.concatenate(ids), np.concatenate(weights)


def load_template(folder: Path | str | None, tokenizer, path: str | None = None) -> ChatTemplate:
    """The template of a run or a base model: `path` (data.chat_template) when given, else the folder's
    chat_template.jinja, else a Hugging Face tokenizer_config.json's `chat_template`, else genlab's own (which
    needs the role tokens in the tokenizer)."""
    bos = eos = ""
    source = None
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise GenlabError(f"data.chat_template: no such file {file}")
        source = file.read_text(encoding="utf-8")
    elif folder is not None and (Path(folder) / TEMPLATE_FILE).is_file():
        source = (Path(folder) / TEMPLATE_FILE).read_text(encoding="utf-8")
    if folder is not None and (Path(folder) / "tokenizer_config.json").is_file():
        config_file = Path(folder) / "tokenizer_config.json"
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise GenlabError(f"{config_file} is not valid JSON") from None
        bos, eos = _token_text(config.get("bos_token")), _token_text(config.get("eos_token"))
        found = config.get("chat_template")
        if isinstance(found, list):  # named templates: the default one
            found = next((t.get("template") for t in found if t.get("name") == "default"), None)
        source = source or found
    if source is None:
        missing = [t for t in ("<|user|>", "<|assistant|>", "<|end|>") if tokenizer.token_id(t) is None]
        if missing:
            raise GenlabError(f"the tokenizer has no chat role tokens ({', '.join(missing)}) and the model no "
                              "chat_template: give one with data.chat_template=FILE.jinja, or train the base "
                              "again (genlab tokenizers reserve the role tokens)")
        source = GENLAB_TEMPLATE
    return ChatTemplate(source, bos, eos)


def _token_text(token) -> str:
    if isinstance(token, dict):  # AddedToken serialised
        token = token.get("content")
    return token if isinstance(token, str) else ""
