"""An optimizer constructor that never walks the frozen EMA teacher."""
from typing import List, Optional, Union

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPER_CONSTRUCTORS


def is_frozen(module: nn.Module) -> bool:
    """True when ``module`` has parameters and none of them requires a gradient."""
    flags = [p.requires_grad for p in module.parameters()]
    return bool(flags) and not any(flags)


def outermost_frozen(model: nn.Module) -> List[str]:
    """Names of the frozen sub-modules (see :func:`is_frozen`) whose parents are not frozen."""
    names: List[str] = []
    for name, module in model.named_modules():  # parents come before their children
        if name and is_frozen(module) and not any(name.startswith(n + '.') for n in names):
            names.append(name)
    return names


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class SAIPOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """MMEngine's default constructor, minus the modules that are frozen as a whole.

    SAIP's teacher is an EMA copy of the student (``requires_grad=False`` everywhere) that the
    optimizer must never see. The default constructor walks every parameter of the model and,
    with a ``paramwise_cfg``, logs one "is skipped since its requires_grad=False" warning per
    teacher tensor (about 200 for ViT-Tiny + heads). This constructor stops the walk at any
    sub-module whose parameters are all frozen and logs one line per such module instead (the
    teacher, and the backbone modules an ablation never uses, which SAIP freezes:
    ``SAIP.freeze_unused_modules``).
    Without a ``paramwise_cfg`` the optimizer likewise gets the trainable parameters only.
    Param-wise rules (``norm_decay_mult``, ``custom_keys`` …) apply exactly as in the default
    constructor, so the parameter groups, and therefore checkpoints, are the same.

    Args:
        optim_wrapper_cfg (dict): the ``optim_wrapper`` config, as for the default constructor.
        paramwise_cfg (dict, optional): param-wise options, as for the default constructor.
            Defaults to None.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        self.frozen_modules: List[str] = []

    def __call__(self, model: nn.Module) -> OptimWrapper:
        model = model.module if hasattr(model, 'module') else model
        self.frozen_modules = []
        if self.paramwise_cfg:
            wrapper = super().__call__(model)
        else:  # the default passes model.parameters() as one group: the trainable ones only
            self.frozen_modules = outermost_frozen(model)
            trainable = [p for p in model.parameters() if p.requires_grad]
            wrapper = super().__call__(nn.ParameterList(trainable))  # same tensors, no copy
        modules = dict(model.named_modules())
        for name in self.frozen_modules:
            count = sum(p.numel() for p in modules[name].parameters())
            print_log(f'{name}: {count / 1e6:.2f}M frozen parameters (requires_grad=False), '
                      'not given to the optimizer', logger='current')
        return wrapper

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   is_dcn_module: Optional[Union[int, float]] = None) -> None:
        """The default recursion, stopping at frozen sub-modules (see the class docstring)."""
        if prefix and is_frozen(module):
            self.frozen_modules.append(prefix)
            return
        super().add_params(params, module, prefix=prefix, is_dcn_module=is_dcn_module)
