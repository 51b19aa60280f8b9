"""``mmpretrain.VisionTransformer`` that also takes mmseg's ``model.pretrained=PATH`` convention."""
from typing import Optional, Sequence

from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.registry import MODELS

from ..utils.pretrained import PretrainedCheckpointError, load_pretrained_backbone


@MODELS.register_module()
class PretrainedVisionTransformer(VisionTransformer):
    """The stock mmpretrain ViT plus a ``pretrained`` argument, loaded strictly.

    mmseg's segmentors pass ``model.pretrained`` on to the backbone as ``pretrained=PATH``
    (``EncoderDecoder(pretrained=...)`` sets ``backbone.pretrained``). The stock
    ``mmpretrain.VisionTransformer`` has no such argument and stops with ``TypeError: ...
    unexpected keyword argument 'pretrained'``. This subclass accepts it and loads the file in
    :meth:`init_weights` with :func:`~saip_mm.models.utils.pretrained.load_pretrained_backbone`
    (every tensor or an error; position embeddings resized in 2-D from the checkpoint's grid).
    Parameters and outputs are exactly those of ``VisionTransformer``.

    Args:
        pretrained (str, optional): backbone checkpoint, e.g. the output of
            ``tools/model_converters/saip_to_backbone.py``. Defaults to None (nothing loaded).
        pretrained_prefix (str): key prefix of the backbone in that file. Defaults to
            'backbone.'.
        src_grid (Sequence[int], optional): (h, w) grid of the checkpoint's position
            embeddings when its meta has no ``pos_embed_grid``. Defaults to None.
        **kwargs: arguments of ``mmpretrain.VisionTransformer``.
    """

    def __init__(self,
                 *args,
                 pretrained: Optional[str] = None,
                 pretrained_prefix: str = 'backbone.',
                 src_grid: Optional[Sequence[int]] = None,
                 **kwargs) -> None:
        init_cfg = kwargs.get('init_cfg')
        if pretrained is not None and isinstance(init_cfg, dict) and (
                init_cfg.get('type') == 'Pretrained'):
            raise PretrainedCheckpointError(
                f'the backbone gets both pretrained={pretrained!r} (model.pretrained) and '
                f'init_cfg=Pretrained({init_cfg.get("checkpoint")!r}); keep one')
        super().__init__(*args, **kwargs)
        self.pretrained = pretrained
        self.pretrained_prefix = pretrained_prefix
        self.src_grid = tuple(src_grid) if src_grid is not None else None
        self.pretrained_report: Optional[dict] = None  # filled once the weights are loaded

    def init_weights(self) -> None:
        """Initialise as the stock ViT, then load ``pretrained`` (if given) over it."""
        super().init_weights()
        if self.pretrained is not None:
            self.pretrained_report = load_pretrained_backbone(
                self, self.pretrained, prefix=self.pretrained_prefix, src_grid=self.src_grid,
                module_name='model.backbone (model.pretrained)')
