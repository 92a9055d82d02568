"""The serving gateway: an OpenAI-compatible API over registered model versions."""
