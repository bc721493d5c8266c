"""A LangChain chat model over ogkit's verifiable chat (``langchain-core`` only).

``OgkitChatModel(session=ChatSession(...))`` is a ``BaseChatModel``: it works in any
chain (``prompt | model``), streams, and puts each call's receipt, batch id and artefact
id into the ``AIMessage``'s ``response_metadata`` (token usage into ``usage_metadata``),
so an agent gets receipts without changing its stack. With a session that batches
(``batch_size``), receipts arrive when the batch is sealed; by default every call is
sealed at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict

from ogkit.errors import ConfigError
from ogkit.llm.session import ChatCompletion, ChatSession

__all__ = ["OgkitChatModel", "to_chat_messages"]

_ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}


def to_chat_messages(messages: list[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages as ogkit's ``{"role", "content"}`` (text content only)."""
    out = []
    for m in messages:
        role = _ROLES.get(m.type)
        if role is None:
            raise ConfigError(f"a {m.type} message has no chat role ogkit knows")
        content = m.content if isinstance(m.content, str) else m.text()
        out.append({"role": role, "content": content})
    return out


def _metadata(response: ChatCompletion) -> dict[str, Any]:
    batch = response.batch
    return {
        "model_name": response.model,
        "finish_reason": response.choices[0].finish_reason,
        "receipt": response.receipt,
        "batch_id": batch.batch_id if batch is not None else None,
        "artifact_id": batch.artifact_id if batch is not None else None,
        "completion_ids": response.completion_ids,
    }


def _usage(response: ChatCompletion) -> dict[str, int]:
    u = response.usage
    return {
        "input_tokens": u.prompt_tokens,
        "output_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }


class OgkitChatModel(BaseChatModel):
    """LangChain's chat model interface over a :class:`~ogkit.llm.session.ChatSession`."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    session: ChatSession
    max_tokens: int = 64
    temperature: float = 0.0
    seed: int | None = None

    @property
    def _llm_type(self) -> str:
        return "ogkit-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_id": self.session.model.model_id,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
        }

    def _options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {
            "max_tokens": kwargs.get("max_tokens", self.max_tokens),
            "temperature": kwargs.get("temperature", self.temperature),
            "seed": kwargs.get("seed", self.seed),
        }

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if stop:
            raise ConfigError(
                "stop sequences are not supported: the model's stop tokens end a call"
            )
        response = self.session.chat(to_chat_messages(messages), **self._options(kwargs))
        if self.session.batch_size is None:
            self.session.seal()
        message = AIMessage(
            content=response.choices[0].message.content,
            response_metadata=_metadata(response),
            usage_metadata=_usage(response),
            id=response.id,
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if stop:
            raise ConfigError(
                "stop sequences are not supported: the model's stop tokens end a call"
            )
        chunks = self.session.chat(to_chat_messages(messages), stream=True, **self._options(kwargs))
        for chunk in chunks:
            if chunk.completion is None:
                piece = chunk.choices[0].delta.content
                out = ChatGenerationChunk(message=AIMessageChunk(content=piece, id=chunk.id))
                if run_manager is not None:
                    run_manager.on_llm_new_token(piece, chunk=out)
                yield out
            else:
                response = chunk.completion
                yield ChatGenerationChunk(
                    message=AIMessageChunk(
                        content="",
                        id=chunk.id,
                        response_metadata=_metadata(response),
                        usage_metadata=_usage(response),
                    )
                )
