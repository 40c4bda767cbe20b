"""MQTT in: the receiver process, message classification, the single writer, crop requests to devices."""
