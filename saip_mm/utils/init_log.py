"""One log line per module group for weight initialisation, instead of one per tensor.

MMEngine's ``BaseModule.init_weights`` ends by writing, for every parameter tensor of the
model, its name, shape and how it was initialised: about 1,000 lines for SAIP (student and
teacher) and as many for a downstream detector. :func:`install_init_log_summary` replaces that
dump with one line per top-level sub-module (``backbone``, ``csm_head``, ``teacher`` …) that
counts its tensors by how they were initialised. The per-tensor dump is kept when the log level
is ``DEBUG`` (``log_level = 'DEBUG'`` in a config).
"""
import logging
import re
from collections import Counter, OrderedDict
from typing import Dict, List

import torch.nn as nn
from mmengine.dist import master_only
from mmengine.logging import MMLogger
from mmengine.model import BaseModule

# the stock method, kept across re-imports of this module (never our own replacement)
_STOCK_DUMP = getattr(BaseModule, '_stock_dump_init_info', BaseModule._dump_init_info)


def init_kind(info: str) -> str:
    """A short name for one of MMEngine's init-info strings.

    ``'TruncNormalInit: a=-2, b=2, mean=0, std=0.02, bias=0'`` → ``'TruncNormalInit'``;
    ``'Initialized by user-defined `init_weights` in SAIPViT '`` → ``'SAIPViT.init_weights'``;
    ``'The value is the same before and after calling `init_weights` of SAIP '`` →
    ``'unchanged'`` (the tensor keeps the value it was constructed with).
    """
    info = info.strip()
    if info.startswith('The value is the same before and after'):
        return 'unchanged'
    user = re.match(r'Initialized by user-defined `init_weights` in (\S+)', info)
    if user:
        return f'{user.group(1)}.init_weights'
    return info.split(':', 1)[0].strip()


def summarize_init_info(module: nn.Module, params_init_info: Dict) -> List[str]:
    """One line per top-level sub-module of ``module``: tensors, parameters, init kinds.

    Args:
        module (nn.Module): the module whose ``init_weights`` ran (the top-level one).
        params_init_info (dict): MMEngine's ``_params_init_info`` (parameter → dict with
            ``'init_info'``).

    Returns:
        list[str]: e.g. ``'init backbone (SAIPViT): 152 tensors, 5.53M parameters;
        TruncNormalInit 50, unchanged 102'``.
    """
    groups: 'OrderedDict[str, list]' = OrderedDict()
    for name, param in module.named_parameters():
        groups.setdefault(name.split('.', 1)[0] if '.' in name else '(own)', []).append(param)
    children = dict(module.named_children())
    lines = []
    for group, params in groups.items():
        kinds = Counter(init_kind(params_init_info.get(p, {}).get('init_info', 'unknown'))
                        for p in params)
        cls = type(children[group]).__name__ if group in children else type(module).__name__
        counts = ', '.join(f'{kind} {n}' for kind, n in kinds.most_common())
        lines.append(f'init {group} ({cls}): {len(params)} tensors, '
                     f'{sum(p.numel() for p in params) / 1e6:.2f}M parameters; {counts}')
    return lines


@master_only
def _dump_init_summary(self: BaseModule) -> None:
    logger = MMLogger.get_current_instance()
    if any(h.level <= logging.DEBUG for h in logger.handlers):
        return _STOCK_DUMP(self)  # the full per-tensor table was asked for
    for line in summarize_init_info(self, self._params_init_info):
        logger.info(line)


def install_init_log_summary() -> None:
    """Make every ``BaseModule.init_weights`` log the per-group summary (idempotent)."""
    BaseModule._stock_dump_init_info = _STOCK_DUMP
    BaseModule._dump_init_info = _dump_init_summary
