"""The dashboard's pages, each a module with its routes (paths relative to the mount)."""
from costr.dashboard.pages import overview
from costr.dashboard.pages import requests
from costr.dashboard.pages import keys, connect, operator

ROUTES = [
    *overview.ROUTES,
    *requests.ROUTES,
    *keys.ROUTES, *connect.ROUTES, *operator.ROUTES,
]
