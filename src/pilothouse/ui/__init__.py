"""The web console (``/ui``): server-rendered pages over the gateway's own state.

The gateway mounts :func:`pilothouse.ui.app.console_routes` with a
:class:`~pilothouse.ui.sources.ConsoleSources` it fills from its context (the endpoint
pool, the recent-decisions ring, governance, the control plane's status); this package
never imports the gateway. Pages are Jinja2 templates (autoescaped) shipped as package
data, with one small script that refreshes the live parts: no build step, no CDN.
"""
