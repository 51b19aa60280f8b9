"""A Runner hook that initialises the backbone from the config's ``pretrained`` variable."""
import functools
from typing import Optional, Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from saip_mm.models.utils.pretrained import PretrainedCheckpointError, load_pretrained_backbone


# Registered in MMEngine's root registry, so mmpose, mmdet, mmseg and mmpretrain configs all find
# it under their own default scope.
@HOOKS.register_module()
class SAIPPretrainedHook(Hook):
    """Load the checkpoint named by the config's top-level ``pretrained`` into the backbone.

    Why a hook rather than ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``:

    - MMEngine substitutes ``pretrained`` into ``init_cfg`` when it parses the file, so
      ``--cfg-options pretrained=X`` would not reach the model. This hook reads
      ``runner.cfg.pretrained`` when the run starts, after every override.
    - The load is strict (:func:`~saip_mm.models.utils.pretrained.load_pretrained_backbone`): a
      wrong file is an error that says what is wrong, never random weights and a warning, and
      position embeddings are resized in 2-D from the checkpoint's (possibly non-square) grid.

    Weights are loaded where ``init_cfg`` would load them: inside the Runner's weight
    initialisation, which only training runs, before ``load_from`` / ``resume`` (those still
    win). ``tools/test.py`` runs never read ``pretrained``.

    Args:
        cfg_key (str): top-level config variable holding the checkpoint path or URL; ``None``
            there means train from scratch (logged). Defaults to 'pretrained'.
        module (str): dotted attribute path of the module to initialise inside the model.
            Defaults to 'backbone'.
        prefix (str): key prefix of that module in the checkpoint. Defaults to 'backbone.'
            (what ``tools/model_converters/saip_to_backbone.py`` writes).
        src_grid (Sequence[int], optional): (h, w) patch grid of the checkpoint's position
            embeddings, used when its meta has no ``pos_embed_grid``; must agree with it
            otherwise. SAIP configs set (16, 8), the 256×128 anchor. Defaults to None.
        keep_init (Sequence[str]): key prefixes of backbone tensors that are not pretrained by
            design and keep their own initialisation (a multi-stage ``TinyViT``'s extra output
            norms, e.g. ``('norm0.', 'norm1.', 'norm2.')``). Defaults to ().
    """
    priority = 'VERY_HIGH'

    def __init__(self,
                 cfg_key: str = 'pretrained',
                 module: str = 'backbone',
                 prefix: str = 'backbone.',
                 src_grid: Optional[Sequence[int]] = None,
                 keep_init: Sequence[str] = ()) -> None:
        self.cfg_key = cfg_key
        self.module = module
        self.prefix = prefix
        self.src_grid = tuple(src_grid) if src_grid is not None else None
        self.keep_init = tuple(keep_init)
        self.checkpoint: Optional[str] = None
        self.report: Optional[dict] = None  # filled once the weights are loaded
        self._own_loader = None  # a backbone that loads model.pretrained itself

    def _target(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        target = model
        for name in self.module.split('.'):
            if not hasattr(target, name):
                raise AttributeError(f'SAIPPretrainedHook: the model has no `{self.module}` '
                                     f'({type(model).__name__} lacks `{name}`)')
            target = getattr(target, name)
        return target

    def before_run(self, runner) -> None:
        missing = object()
        checkpoint = runner.cfg.get(self.cfg_key, missing)
        if checkpoint is missing:
            raise KeyError(f'SAIPPretrainedHook: the config has no top-level `{self.cfg_key}` '
                           f'variable naming the backbone checkpoint')
        self.checkpoint = checkpoint
        target = self._target(runner)
        own = getattr(target, 'pretrained', None)
        if isinstance(own, str):
            # mmseg's `model.pretrained=PATH` (PretrainedVisionTransformer loads it): the more
            # specific setting wins over the config-wide default, and the log says so.
            runner.logger.info(f'model.{self.module} loads its own pretrained={own} '
                               f'(model.pretrained); `{self.cfg_key}` ({checkpoint}) is not used')
            self.checkpoint, self._own_loader = own, target
            return
        if self.checkpoint is None:
            runner.logger.warning(f'`{self.cfg_key}` is None: model.{self.module} starts from '
                                  f'random weights')
            return
        init_cfg = getattr(target, 'init_cfg', None)
        init_cfgs = init_cfg if isinstance(init_cfg, list) else [init_cfg]
        if any(isinstance(c, dict) and c.get('type') == 'Pretrained' for c in init_cfgs):
            raise PretrainedCheckpointError(
                f'model.{self.module}.init_cfg loads a checkpoint too; remove it: '
                f'SAIPPretrainedHook loads `{self.cfg_key}` ({self.checkpoint})')
        if not getattr(target, 'is_init', False):
            # Run the module's own init first (what BaseModule does before a Pretrained load),
            # then overwrite every tensor from the checkpoint.
            own_init = target.init_weights

            @functools.wraps(own_init)
            def init_then_load():
                own_init()
                self.report = load_pretrained_backbone(
                    target, self.checkpoint, prefix=self.prefix, src_grid=self.src_grid,
                    module_name=f'model.{self.module}', keep_init=self.keep_init)

            target.init_weights = init_then_load

    def before_train(self, runner) -> None:
        # Guards against a model whose init_weights skips its children: never train a config
        # that names a checkpoint without having loaded it.
        if self._own_loader is not None and self.report is None:
            self.report = self._own_loader.pretrained_report
        if self.checkpoint is not None and self.report is None:
            raise RuntimeError(
                f'SAIPPretrainedHook: model.{self.module} was never initialised, so '
                f'{self.checkpoint} was not loaded (does the model call init_weights of its '
                f'children?)')
