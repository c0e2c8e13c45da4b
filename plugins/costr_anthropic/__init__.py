"""The built-in `anthropic` provider type: Anthropic's Messages API (docs.anthropic.com)."""
from costr.hookspecs import hookimpl

from .provider import AnthropicProvider


@hookimpl
def register_provider_types(register):
    register("anthropic", AnthropicProvider)
