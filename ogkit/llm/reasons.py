"""The reasons a chat batch's verdict can give besides the tabular ones (stable strings)."""

CHAT_REASONS = {
    "prompt-mismatch": "a call's prompt token ids are not its request rendered with the "
    "model's chat template and tokenized with the model's tokenizer",
    "usage-mismatch": "a call's stated usage differs from its token counts",
    "completion-malformed": "a completion is empty, longer than max_tokens, goes on after a "
    "stop token, or its finish reason does not fit its tokens",
    "request-mismatch": "a call's request is not the one the requester sent",
}
