"""Service roles and types: the same members and values as `comps.ServiceType` in opea-comps 1.5."""

from enum import Enum


class ServiceRoleType(Enum):
    """The role of a service."""

    MICROSERVICE = 0
    MEGASERVICE = 1


class ServiceType(Enum):
    """The type of a service."""

    GATEWAY = 0
    EMBEDDING = 1
    RETRIEVER = 2
    RERANK = 3
    LLM = 4
    ASR = 5
    TTS = 6
    GUARDRAIL = 7
    VECTORSTORE = 8
    DATAPREP = 9
    UNDEFINED = 10
    RAGAS = 11
    LVM = 12
    KNOWLEDGE_GRAPH = 13
    WEB_RETRIEVER = 14
    IMAGE2VIDEO = 15
    TEXT2IMAGE = 16
    ANIMATION = 17
    IMAGE2IMAGE = 18
    TEXT2SQL = 19
    TEXT2GRAPH = 20
    TEXT2CYPHER = 21
    TEXT2KG = 22
    STRUCT2GRAPH = 23
    LANGUAGE_DETECTION = 24
    PROMPT_TEMPLATE = 25
    PROMPT_REGISTRY = 26
    TEXT2QUERY = 27
    ARB_POST_HEARING_ASSISTANT = 28
