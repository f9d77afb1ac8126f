"""edgekd: distil a big model into a small, fast one that provably fits an edge device.

Importing the package stays cheap (no torch, no runtimes): the CLI, the memory probe and remote
runners import only what they use. It does one thing first: switch off the telemetry of the libraries
edgekd drives, before any of them loads (edgekd/offline.py).
"""

from edgekd.offline import no_telemetry

no_telemetry()

__version__ = "0.1.0"
