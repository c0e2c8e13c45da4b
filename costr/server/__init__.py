"""The Starlette host a request walks through: app, endpoints, the request pipeline and the streaming relay; imports accounts, cache, routing, config and wire, never evaluation, cli or benchmark."""
