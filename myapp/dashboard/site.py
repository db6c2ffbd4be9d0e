"""The Dash app as a page of this site: the site's layout around it, no version
banners in what it sends."""

from __future__ import annotations

from typing import Any

import dash
from flask import render_template

# What Dash's page config tells every visitor about the server: the exact Python
# build, Dash and Plotly versions. Only Dash's developer tools read them.
VERSION_KEYS = (
    "python_version",
    "dash_version",
    "dash_version_url",
    "ddk_version",
    "plotly_version",
)


class SiteDash(dash.Dash):
    """Dash whose index page is the site's template (`dash.html` extends
    `base.html`): one navigation bar, one stylesheet and one footer for the Flask
    pages and the Dash pages, defined once."""

    def interpolate_index(self, **parts: Any) -> str:
        # Dash's documented way to own the page around the app. The parts are HTML
        # Dash generated (its scripts, config, renderer); the template marks them
        # safe and adds the site's header and footer.
        return render_template("dash.html", **parts)

    def _config(self) -> dict[str, Any]:
        # Private, and the only place the page config is built: there is no option
        # to leave the versions out.
        config = super()._config()
        for key in VERSION_KEYS:
            config.pop(key, None)
        return config
