"""The cage-side agent (``amgs device run``): capture, frame selection, scoring, durable no-loss MQTT delivery.

See ``docs/device.md``. Modules: config, sources, selection, detector, outbox, delivery, crops, health,
agent, cli (sd_notify is ``amgs.sdnotify``, shared with the collector). Heavy packages (OpenCV, paho, the
interpreter) are imported by the modules that need them, never by this package, so ``amgs --help`` stays fast.
"""
