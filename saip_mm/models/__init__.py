from . import algorithms, backbones, heads, losses  # noqa: F401
