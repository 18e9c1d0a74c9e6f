"""PtTrust core: code-LLM line states, sparse autoencoder, risk probe, training and evaluation.

Nothing here talks to GitHub or parses command lines; the ``bot`` package does that.
"""

__version__ = "0.2.0"
