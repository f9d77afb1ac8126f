"""Distillation: losses (one registry), feature taps, the trainer and the distill stage's work
(edgekd/distill/stage.py, run by edgekd/stages/distill.py).

This package's __init__ imports nothing, so `edgekd --help` (which lists the methods from catalog.py) never
imports torch.
"""
