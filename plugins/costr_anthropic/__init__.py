"""Anthropic's Messages API (docs.anthropic.com): the built-in `anthropic` provider type, and
the client-facing format that serves Anthropic clients (`POST /v1/messages`)."""
from costr import hookimpl

from .api_format import AnthropicMessagesFormat
from .provider import AnthropicProvider


@hookimpl
def register_provider_types(register):
    register("anthropic", AnthropicProvider)


@hookimpl
def register_api_formats(register):
    register(AnthropicMessagesFormat())
