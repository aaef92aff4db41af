"""Words and hashed embeddings, as every stub of an opea-new project sees texts.

The embedding, retriever, rerank and llm stubs compare texts by their
meaningful words (`words`); the embedding and retriever stubs embed them with
`hashed_embedding`, so the retriever embeds its corpus exactly as the
embedding service embeds a query.
"""

from __future__ import annotations

import hashlib
import math
import re

STOP_WORDS = frozenset({
    "a", "about", "an", "and", "are", "as", "at", "be", "but", "by", "can", "could", "did", "do", "does", "for",
    "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "of", "on", "or",
    "our", "so", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "was", "we",
    "were", "what", "when", "where", "which", "who", "whom", "why", "will", "with", "would", "you", "your",
})
WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """The lower-case words of `text` that carry meaning: stop words left out, a plural's `s` dropped."""
    return [singular(word) for word in WORD.findall(text.lower()) if word not in STOP_WORDS]


def singular(word: str) -> str:
    """`services` → `service`, `builds` → `build` (but `class`, `bus` stay): enough to match word forms."""
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")) else word


def hashed_embedding(text: str, dimension: int) -> list[float]:
    """A bag of words hashed into `dimension` signed buckets, L2-normalised: texts that share words point alike."""
    vector = [0.0] * dimension
    for word in words(text):
        digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        vector[digest % dimension] += -1.0 if digest >> 63 else 1.0
    norm = math.sqrt(sum(value * value for value in vector))
    return [round(value / norm, 6) for value in vector] if norm else vector
