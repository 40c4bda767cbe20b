"""Access-control hooks for the JSON API. Open by default; the dashboard (server/web) replaces them.

Every read endpoint depends on :func:`require_viewer` and every state-changing one on
:func:`require_editor`. To protect them, override the dependency on the app::

    app.dependency_overrides[require_editor] = my_login_or_token_check

so the API itself stays free of any particular login scheme.
"""

from __future__ import annotations


def require_viewer() -> None:
    """Reading data: allowed unless the dashboard's login rules say otherwise."""


def require_editor() -> None:
    """Changing metadata: allowed unless the dashboard's login rules say otherwise."""
