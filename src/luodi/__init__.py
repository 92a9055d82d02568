"""luodi (落地): from an enterprise's raw documents to a governed, improving LLM service."""

__version__ = "0.1.0"
