"""OpenAI Chat Completions: the `openai` provider type and the client-facing format."""
from costr import hookimpl

from .api_format import OpenAIChatFormat
from .provider import OpenAIProvider


@hookimpl
def register_provider_types(register):
    register("openai", OpenAIProvider)


@hookimpl
def register_api_formats(register):
    register(OpenAIChatFormat())
