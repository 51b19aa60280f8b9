"""Keeps the SAIP teacher an EMA of the student, once per optimiser step."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class SAIPTeacherHook(Hook):
    """Update the teacher after every iteration in which the optimiser stepped.

    With gradient accumulation (``optim_wrapper.accumulative_counts > 1``) the optimiser steps
    once every few iterations; updating the teacher in between would average the same student
    weights several times, so the update follows the optimiser step, not the iteration.
    The momentum comes from :meth:`SAIP.update_teacher` (cosine over the run's iterations,
    read from the message hub) and is logged as ``teacher_momentum``.
    """
    priority = 'ABOVE_NORMAL'  # before the checkpoint hook saves the teacher

    def after_train_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        if not runner.optim_wrapper.should_update():
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        momentum = model.update_teacher()
        runner.message_hub.update_scalar('train/teacher_momentum', momentum)
