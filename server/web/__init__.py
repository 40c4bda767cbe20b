"""The dashboard: pages, JSON endpoints for the charts, staff login, CSRF protection."""
