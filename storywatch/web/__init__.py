"""The read-only web dashboard (``storywatch web``): :func:`create_app` and :func:`serve`."""

from storywatch.web.app import create_app, safe_url
from storywatch.web.server import WebServer, serve

__all__ = ["WebServer", "create_app", "safe_url", "serve"]
