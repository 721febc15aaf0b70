"""POST /v1/chat/completions: OpenAI's chat format for chat runs (what it accepts and refuses, errors, streaming:
genlab.serve.openai). The conversation is rendered by the run's own template, as in training."""


from typing import Annotated, Literal

from fastapi import Depends
from pydantic import BaseModel, ConfigDict, Field


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    """One turn. `developer` is OpenAI's newer name for `system`; other keys a client echoes back with an
    assistant turn (name, refusal, tool_calls: null ...) are ignored."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | Annotated[list[TextPart], Field(min_length=1)]

    def as_turn(self) -> dict:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


def add_chat_routes(app, server, modality) -> None:
    from genlab.modalities.chat.generate import prompt_ids, stream_chat
    from genlab.serve.openai import CHAT, check_neutral, complete, openai_router, request_body

    router = openai_router()
    peers = server.served(modality)
    ChatCompletionRequest = request_body("ChatCompletionRequest", {  # noqa: N806
        "messages": (list[Message], Field(..., min_length=1, description="the conversation, ending with a user turn")),
    }, peers)

    @router.post("/v1/chat/completions")
    def chat_completions(req: ChatCompletionRequest, key_id: str = Depends(server.caller)):  # type: ignore[valid-type]
        check_neutral(req)
        served = server.model(req.model, modality)
        messages = [m.as_turn() for m in req.messages]
        prompt_ids(served.run.dataset, messages)  # a bad conversation or an unknown character: 400 before a stream

        def produce(**kw):
            return stream_chat(served.run, messages, **kw)

        return complete(server, served, key_id, req, peers, sum(len(m["content"]) for m in messages), CHAT, produce)

    app.include_router(router)
