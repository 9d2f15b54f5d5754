"""The shipped configs, installed as ``samplernn_jax.configs``: ``--config=NAME`` reads NAME.py.

Each file is loaded by path (``get_config()``), never imported by the library.
"""
