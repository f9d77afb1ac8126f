"""Latency and memory prediction for devices edgekd cannot run on (see roofline.py)."""
