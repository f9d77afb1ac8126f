"""edgekd: distil a big model into a small, fast one that provably fits an edge device.

Importing the package stays cheap (no torch, no runtimes): the CLI, the memory probe and remote
runners import only what they use.
"""

__version__ = "0.1.0"
