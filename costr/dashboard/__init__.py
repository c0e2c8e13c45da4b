"""The browser dashboard, server-rendered with jinja2; imports accounts, cache, routing, config, wire, errors, plugins, never the server.

Signed in with a Costr key and mounted at /dashboard by the server unless turned off
(`costr serve --no-dashboard`); it reaches the gateway through `request.app.state.gateway`.
web.py is what every page uses, app.py the routes the server adds, pages/ the pages.
"""
