"""Synthetic mouse faces (procedural, seeded) and writers for real lab label formats. Never real data."""
