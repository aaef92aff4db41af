"""Words and hashed embeddings, as every stub of an opea-new project sees texts.

The embedding, retriever, rerank and llm stubs compare texts by their
meaningful words (`words`); the embedding and retriever stubs embed them with
`hashed_embedding`, so the retriever embeds its corpus exactly as the
embedding service embeds a query; the llm stub answers with `best_sentence`, the
rerank stub scores with `bm25_scores`, and so do the model servers' stand-ins
(opea_new_runtime.model_servers), so a pipeline answers alike with either.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter

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


SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
BM25_K1 = 1.2
BM25_B = 0.75


def best_sentence(query: str, documents: list[str]) -> str | None:
    """The sentence of `documents` sharing the most words with `query` (the earliest on a tie); None if none."""
    sentences = [sentence.strip() for document in documents for sentence in SENTENCE_END.split(document)
                 if sentence.strip()]
    if not sentences:
        return None
    question = set(words(query))
    best = max(range(len(sentences)), key=lambda index: (len(question & set(words(sentences[index]))), -index))
    return sentences[best]


def bm25_scores(query: str, documents: list[str]) -> list[float]:
    """Okapi BM25 (k1 1.2, b 0.75) of each document for `query`, the documents themselves being the collection."""
    query_words = set(words(query))
    counts = [Counter(words(document)) for document in documents]
    lengths = [sum(count.values()) for count in counts]
    average_length = (sum(lengths) / len(lengths)) if lengths else 0.0
    scores = []
    for count, length in zip(counts, lengths, strict=True):
        score = 0.0
        for word in query_words:
            frequency = count[word]
            if not frequency:
                continue
            containing = sum(1 for other in counts if other[word])
            idf = math.log(1 + (len(documents) - containing + 0.5) / (containing + 0.5))
            damping = BM25_K1 * (1 - BM25_B + BM25_B * length / average_length) if average_length else BM25_K1
            score += idf * frequency * (BM25_K1 + 1) / (frequency + damping)
        scores.append(round(score, 6))
    return scores
