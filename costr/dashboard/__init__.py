"""The dashboard: server-rendered pages (jinja2) over the ledger and the accounts, signed in
with a Costr key; mounted at /dashboard by the server unless turned off. Imports accounts,
routing, config, wire and errors; never the server (it reaches the gateway through
`request.app.state`)."""
