"""The check every metric runs before ranking or scoring: no non-finite feature gets a number."""
from typing import Tuple

import torch

#: What usually makes a model's outputs non-finite, for the error messages.
LIKELY_CAUSES = ('Likely causes: a std of 0 (or a tiny one) in the normalisation of the '
                 'evaluation images (model.data_preprocessor.std, or the pipeline\'s '
                 'mean/std), or a diverged model (NaN/inf weights: look for a non-finite loss '
                 'in the training log, or evaluate an earlier checkpoint).')


def non_finite_rows(values: torch.Tensor) -> int:
    """The number of rows of ``values`` (N, ...) holding a NaN or an infinity."""
    if values.numel() == 0:
        return 0
    return int((~torch.isfinite(values.reshape(len(values), -1))).any(dim=1).sum())


def check_finite(metric: str, *named_rows: Tuple[str, torch.Tensor]) -> None:
    """Raise when a row of features or scores is not finite, before any metric is computed.

    A ranking of NaN/inf features is arbitrary and yields a number (the demo with a zero std
    once reported mAP 9.46), which ``save_best`` would then keep as the best checkpoint.

    Args:
        metric (str): the metric's name for the message (``'ReIDMetric'``).
        *named_rows (tuple[str, Tensor]): (what, (N, ...) tensor) pairs, e.g.
            ``('query features', qf)``.

    Raises:
        ValueError: naming the metric, how many rows of each set are not finite, and the
            likely causes.
    """
    counts = [(what, non_finite_rows(rows), len(rows)) for what, rows in named_rows]
    if not any(bad for _, bad, _ in counts):
        return
    detail = ' and '.join(f'{bad} of {total} {what}' for what, bad, total in counts)
    raise non_finite_error(f'{metric}: {detail} are not finite (NaN or inf)')


def non_finite_error(what: str) -> ValueError:
    """The error a metric raises for non-finite inputs: ``what`` (the metric's name and
    counts, e.g. ``'ReIDMetric: 1 of 3 query features are not finite (NaN or inf)'``), why
    no number is given, and the likely causes."""
    return ValueError(f'{what}; no metric is computed from them (a number would be '
                      f'meaningless, and save_best could keep it as the best checkpoint). '
                      f'{LIKELY_CAUSES}')
