"""The collector's HTTP application: JSON API, health, metrics, access hooks."""
