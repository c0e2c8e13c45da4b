"""OpenAI: the `openai` provider type (Chat Completions) and two client-facing formats, Chat
Completions and the Responses API."""
from costr import hookimpl

from .api_format import OpenAIChatFormat
from .provider import OpenAIProvider
from .responses_format import OpenAIResponsesFormat


@hookimpl
def register_provider_types(register):
    register("openai", OpenAIProvider)


@hookimpl
def register_api_formats(register):
    register(OpenAIChatFormat())
    register(OpenAIResponsesFormat())
