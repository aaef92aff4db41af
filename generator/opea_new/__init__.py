"""opea-new: scaffold OPEA GenAI pipelines from one spec."""

__version__ = "0.9.0"
