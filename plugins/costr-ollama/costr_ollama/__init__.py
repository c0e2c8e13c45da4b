"""Costr plugin: provider type `ollama`, for Ollama's native API (/api/chat, /api/embed)."""
from costr import hookimpl

from .provider import OllamaProvider

__all__ = ["OllamaProvider"]


@hookimpl
def register_provider_types(register):
    register("ollama", OllamaProvider)
