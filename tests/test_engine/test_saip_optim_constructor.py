"""SAIPOptimWrapperConstructor: the default constructor's groups, without the frozen teacher."""
import logging
import uuid

import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor

from saip_mm.engine.optimizers import SAIPOptimWrapperConstructor
from saip_mm.engine.optimizers.saip_optim_constructor import outermost_frozen

OPTIM = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))
PARAMWISE = dict(norm_decay_mult=0.0, bias_decay_mult=0.0)


class StudentTeacher(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8))
        self.head = nn.Linear(8, 2)
        self.teacher = nn.ModuleDict(dict(backbone=nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8)),
                                          head=nn.Linear(8, 2)))
        self.teacher.requires_grad_(False)


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _build(constructor_cls, paramwise_cfg):
    model = StudentTeacher()
    # a new instance becomes the 'current' logger that print_log(logger='current') uses
    logger = MMLogger.get_instance(f'test_optim_{uuid.uuid4().hex}', log_level='DEBUG')
    records = Records()
    logger.addHandler(records)
    try:
        wrapper = constructor_cls(dict(OPTIM), paramwise_cfg)(model)
    finally:
        logger.removeHandler(records)
    return model, wrapper, records.messages


def _groups(wrapper):
    return [(tuple(p.shape for p in g['params']), g['weight_decay'])
            for g in wrapper.optimizer.param_groups]


def test_paramwise_groups_equal_the_default_minus_teacher_and_no_warning_per_tensor():
    model, wrapper, messages = _build(SAIPOptimWrapperConstructor, PARAMWISE)
    _, default, default_messages = _build(DefaultOptimWrapperConstructor, PARAMWISE)
    assert _groups(wrapper) == _groups(default)  # same groups, same order, same decay
    # backbone Linear w/b, LayerNorm w/b, head w/b: 6 tensors; wd 0 on biases and norms
    assert [wd for _, wd in _groups(wrapper)] == [0.05, 0.0, 0.0, 0.0, 0.05, 0.0]
    teacher = {id(p) for p in model.teacher.parameters()}
    assert not any(id(p) in teacher for g in wrapper.optimizer.param_groups for p in g['params'])
    # the default warns once per teacher tensor (6); this one writes one line for the module
    assert sum('requires_grad=False' in m for m in default_messages) == 6
    assert [m for m in messages if 'requires_grad=False' in m] == [
        'teacher: 0.00M frozen parameters (requires_grad=False), not given to the optimizer']


def test_without_paramwise_cfg_the_optimizer_gets_the_trainable_tensors_in_one_group():
    model, wrapper, messages = _build(SAIPOptimWrapperConstructor, None)
    (group, ) = wrapper.optimizer.param_groups
    student = [p for n, p in model.named_parameters() if not n.startswith('teacher.')]
    assert [id(p) for p in group['params']] == [id(p) for p in student]  # the same tensors
    assert sum('teacher: ' in m for m in messages) == 1


def test_outermost_frozen_names_the_frozen_subtree_once():
    model = StudentTeacher()
    assert outermost_frozen(model) == ['teacher']
    model.backbone[1].requires_grad_(False)  # a frozen norm inside a trainable backbone
    assert outermost_frozen(model) == ['backbone.1', 'teacher']
