"""Deployment: provisioning of devices (broker accounts, ACLs, config bundles)."""
