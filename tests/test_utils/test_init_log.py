"""saip_mm.utils.init_log: one line per module group instead of one entry per tensor."""
import logging
import uuid

import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.model import BaseModule

import saip_mm  # noqa: F401  (installs the summary)
from saip_mm.utils.init_log import init_kind


class Net(BaseModule):
    def __init__(self):
        super().__init__()
        self.backbone = BaseModule(init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02))
        self.backbone.fc = nn.Linear(3, 4)  # weight and bias: TruncNormalInit
        self.head = nn.Linear(4, 2)  # untouched: 'unchanged'


class Records(logging.Handler):
    def __init__(self, level):
        super().__init__(level)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _init_messages(level):
    logger = MMLogger.get_instance(f'test_init_log_{uuid.uuid4().hex}', log_level='INFO')
    records = Records(level)
    logger.handlers = [records]
    Net().init_weights()
    return records.messages


def test_one_line_per_group_with_counts():
    assert _init_messages(logging.INFO) == [
        'init backbone (BaseModule): 2 tensors, 0.00M parameters; TruncNormalInit 2',
        'init head (Linear): 2 tensors, 0.00M parameters; unchanged 2']


def test_debug_level_keeps_the_per_tensor_entries():
    messages = _init_messages(logging.DEBUG)
    assert sum('torch.Size(' in m for m in messages) == 4  # the stock per-tensor dump


def test_init_kind_names():
    assert init_kind('TruncNormalInit: a=-2, b=2, mean=0, std=0.02, bias=0') == 'TruncNormalInit'
    assert init_kind('Initialized by user-defined `init_weights` in SAIPViT ') == \
        'SAIPViT.init_weights'
    assert init_kind('The value is the same before and after calling `init_weights` of SAIP ') \
        == 'unchanged'
