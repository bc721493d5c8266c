"""The LangChain chat model in a minimal chain (``prompt | model``): the answer, its
receipt in the message metadata, token usage, streaming, and batched sessions."""

from __future__ import annotations

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from ogkit.llm.langchain import OgkitChatModel
from ogkit.llm.session import ChatSession
from ogkit.llm.verify import verify_chat_batch
from ogkit.verify import verify_receipt


def test_prompt_pipe_model(model, llm_hub, node_attester, requester_address, policy):
    session = ChatSession(
        model, attester=node_attester, requester=requester_address, store=llm_hub.store
    )
    llm = OgkitChatModel(session=session, max_tokens=8)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You answer about {topic}."), ("human", "{question}")]
    )
    message = (prompt | llm).invoke({"topic": "trains", "question": "How fast?"})
    meta = message.response_metadata
    assert verify_receipt(meta["receipt"], policy.allowlist).ok
    assert message.usage_metadata["output_tokens"] == len(meta["completion_ids"]) == 8
    assert message.content == model.decode_text(meta["completion_ids"])
    # The call is exactly what the template rendered: system then user.
    call = session.batches[-1].calls[0]
    assert call.request.message_dicts() == [
        {"role": "system", "content": "You answer about trains."},
        {"role": "user", "content": "How fast?"},
    ]
    assert verify_chat_batch(
        session.batches[-1], policy, progress=False, requests=[call.request]
    ).passed

    text = (prompt | llm | StrOutputParser()).invoke({"topic": "trains", "question": "How fast?"})
    assert text == message.content
    chunks = list((prompt | llm).stream({"topic": "trains", "question": "How fast?"}))
    assert len(chunks) > 8
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert total.response_metadata["completion_ids"] == meta["completion_ids"]
    streamed = total.response_metadata["receipt"]["leaf_values"]
    assert streamed["outputHash"] == meta["receipt"]["leaf_values"]["outputHash"]
    assert total.usage_metadata["output_tokens"] == 8


def test_a_batching_session_gives_receipts_when_sealed(
    model, llm_hub, node_attester, requester_address
):
    session = ChatSession(
        model,
        attester=node_attester,
        requester=requester_address,
        store=llm_hub.store,
        batch_size=3,
    )
    llm = OgkitChatModel(session=session, max_tokens=4, temperature=0.5, seed=9)
    messages = [llm.invoke(f"question {i}") for i in range(3)]
    assert len(session.batches) == 1 and session.batches[0].row_count == 3
    # The first two calls were answered before their batch was sealed.
    assert messages[0].response_metadata["receipt"] is None
    assert messages[2].response_metadata["receipt"]["leaf_values"]["rowIndex"] == "2"
