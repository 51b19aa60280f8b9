"""Placeholder; the foundation work fills it in."""


def register_checkpoint_safe_globals() -> None:
    """Allow-list the classes MMEngine writes into checkpoints (filled in later)."""
