"""The artist's studio: a local web page for the loop record → select → train → listen → compare → deploy.

``python -m murmur.studio`` (``make studio``, ``murmur studio``) starts it on 127.0.0.1 with a launch token; see
the README's "The studio". It drives the same trainer, engine and deploy tool as the Makefile targets.
"""
