"""Chat routes (being written): OpenAI /v1/chat/completions."""


def add_chat_routes(app, server, modality) -> None:
    return None
