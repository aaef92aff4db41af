"""ChatQnA's retrieval-augmented prompt: what an llm is asked when documents come with the question.

The megaservice writes it itself for a model-server llm node (vLLM, TGI), as ChatQnA's
megaservice does; a generated llm service builds the same prompt in its prompts.py.
"""

from __future__ import annotations

RAG_TEMPLATE = """\
### You are a helpful, respectful and honest assistant to help the user with questions. \
Please refer to the search results obtained from the local knowledge base. \
But be careful to not incorporate the information that you think is not relevant to the question. \
If you don't know the answer to a question, please don't share false information.
### Search results: {context}
### Question: {question}
### Answer:
"""


def rag_prompt(question: str, documents: list[str], template: str | None = None) -> str:
    """The question alone without documents (and no template), else the template filled in."""
    if not documents and not template:
        return question
    template = template or RAG_TEMPLATE
    context = "\n".join(documents)
    # replace(), not format(): braces in the documents or the question are text
    return template.replace("{context}", context).replace("{question}", question)
