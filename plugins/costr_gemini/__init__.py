"""Built-in plugin: the `gemini` provider type, for Google's native Gemini API."""
from costr import hookimpl

from .provider import GeminiProvider

__all__ = ["GeminiProvider"]


@hookimpl
def register_provider_types(register):
    register("gemini", GeminiProvider)
