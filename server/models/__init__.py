"""The collector's model registry, roll-out to devices and shadow-score comparison."""
