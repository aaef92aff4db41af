"""opea-new: scaffold OPEA GenAI pipelines from one spec."""

__version__ = "0.8.0"
