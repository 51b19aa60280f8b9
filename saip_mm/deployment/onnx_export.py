"""Export a SAIP backbone or a trained downstream model to ONNX and run it in onnxruntime.

Four kinds of graph, each ``image (B, 3, H, W) -> one tensor`` with a dynamic batch axis:

=========  ===================================================  ==============================
kind       built from                                           output
=========  ===================================================  ==============================
backbone   any config's ``model.backbone`` (a SAIP pretraining  ``embedding`` (B, C): the final
           config's ``SAIPViT`` becomes the stock ViT it        cls token, or ``featmap``
           exports to) + a backbone checkpoint                  (B, C, H/16, W/16)
reid       ``ImageClassifier`` + ``ReIDHead`` (projects/reid)   ``embedding`` (B, C),
                                                                L2-normalised
pose       mmpose ``TopdownPoseEstimator`` (projects/pose)      ``heatmaps`` (B, K, H/4, W/4)
parsing    mmseg ``EncoderDecoder`` (projects/parsing)          ``logits`` (B, classes, H, W)
=========  ===================================================  ==============================

The input is, by default, what the model's data preprocessor hands the network: RGB, normalised
with the config's mean and std. ``bake_normalization=True`` puts that normalisation into the
graph, which then takes RGB values in [0, 255]. Both are recorded in the ONNX metadata.

``onnx``, ``onnxscript`` (torch's exporter) and ``onnxruntime`` are optional dependencies
(``requirements/deploy.txt``): they are imported inside the functions that need them.
"""
import copy
import os.path as osp
import warnings
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from torch import Tensor, nn

EXPORT_KINDS = ('backbone', 'reid', 'pose', 'parsing')
# Model type of a config -> the kind it exports to by default.
MODEL_KINDS = {
    'SAIP': 'backbone',
    'ImageClassifier': 'reid',
    'TopdownPoseEstimator': 'pose',
    'EncoderDecoder': 'parsing'
}
OUTPUT_NAMES = {'reid': 'embedding', 'pose': 'heatmaps', 'parsing': 'logits'}
# ImageNet statistics in RGB order: the data preprocessors of every SAIP config use them.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
# The backbone the SAIP checkpoints fit when no config is given: ViT-Tiny/16 at the 256x128
# anchor, as tools/analysis_tools/reid_frozen_eval.py builds it.
DEFAULT_BACKBONE = dict(
    type='VisionTransformer', arch='deit-tiny', img_size=(256, 128), patch_size=16,
    norm_cfg=dict(type='LN', eps=1e-6))
MIN_OPSET = 17


@dataclass
class ExportSpec:
    """What an exported graph takes and returns (also written to the ONNX metadata).

    Args:
        kind (str): one of :data:`EXPORT_KINDS`.
        input_size (tuple): (H, W) of the input the graph is exported for.
        output_name (str): name of the graph output.
        output_desc (str): what the output holds.
        mean (tuple): RGB mean of the model's normalisation.
        std (tuple): RGB std of the model's normalisation.
        bake_normalization (bool): whether the graph normalises its input itself.
    """
    kind: str
    input_size: Tuple[int, int]
    output_name: str
    output_desc: str
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    bake_normalization: bool = False

    @property
    def input_desc(self) -> str:
        if self.bake_normalization:
            return 'float32 (B, 3, H, W), RGB in [0, 255] (normalised inside the graph)'
        return (f'float32 (B, 3, H, W), RGB normalised as (x - mean) / std with '
                f'mean={list(self.mean)}, std={list(self.std)}')

    def metadata(self) -> Dict[str, str]:
        """String key/values for the ONNX ``metadata_props``."""
        meta = {k: str(v) for k, v in asdict(self).items()}
        meta['input_size'] = f'{self.input_size[0]}x{self.input_size[1]}'
        meta['input'] = self.input_desc
        return meta


class Normalize(nn.Module):
    """``(x - mean) / std`` over the channel axis of RGB [0, 255] images."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, image: Tensor) -> Tensor:
        return (image - self.mean) / self.std


class BackboneExport(nn.Module):
    """image -> the backbone's last output: cls embedding (B, C) or patch-token map (B, C, h, w)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, image: Tensor) -> Tensor:
        return self.backbone(image)[-1]


class ReIDExport(nn.Module):
    """image -> L2-normalised retrieval feature of ``ReIDHead`` (what ``ReIDMetric`` ranks by
    cosine distance: the BNNeck feature by default, ``test_feature='pre_bn'`` the one before)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tensor:
        feat, feat_bn = self.model.head(self.model.extract_feat(image))  # (B, C) each
        out = feat_bn if self.model.head.test_feature == 'bn' else feat
        return F.normalize(out, dim=1)


class PoseExport(nn.Module):
    """image crop -> heatmaps (B, K, H/4, W/4) of a top-down pose model, before decoding (no
    flip test: average the flipped crop's output yourself if you want it)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tensor:
        return self.model.head.forward(self.model.extract_feat(image))


class ParsingExport(nn.Module):
    """image -> per-pixel class logits at the input size, as mmseg's ``EncoderDecoder`` infers
    them in 'whole' mode (decode head at 1/4, bilinear resize to the input)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tensor:
        logits = self.model.decode_head.forward(self.model.extract_feat(image))
        return F.interpolate(logits, size=image.shape[2:], mode='bilinear',
                             align_corners=self.model.align_corners)


def _type_name(type_: Union[str, type]) -> str:
    name = type_ if isinstance(type_, str) else type_.__name__
    return name.split('.')[-1]


def infer_kind(cfg: Config) -> str:
    """The kind of graph a config exports to by default, from its ``model.type``.

    Raises:
        ValueError: the model type is not one of :data:`MODEL_KINDS`.
    """
    model_type = _type_name(cfg.model.get('type', ''))
    kind = MODEL_KINDS.get(model_type)
    if kind == 'reid' and _type_name(cfg.model.get('head', {}).get('type', '')) != 'ReIDHead':
        kind = None  # an ImageClassifier that is not a ReID model
    if kind is None:
        raise ValueError(
            f'cannot tell what to export from {cfg.filename or "the config"}: '
            f'model.type={model_type!r} '
            f'(head {cfg.model.get("head", {}).get("type")!r}); supported: '
            f'{", ".join(f"{t} -> {k}" for t, k in MODEL_KINDS.items())} (ImageClassifier with '
            f'ReIDHead); any config with a ViT backbone exports with kind="backbone"')
    return kind


def _pair(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _normalization(cfg: Optional[Config]) -> Tuple[tuple, tuple]:
    """Mean and std of the config's data preprocessor (model's or top-level)."""
    if cfg is None:
        return IMAGENET_MEAN, IMAGENET_STD
    pre = cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor') or {}
    mean, std = pre.get('mean', IMAGENET_MEAN), pre.get('std', IMAGENET_STD)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def stock_backbone_cfg(backbone_cfg: dict, output: str) -> dict:
    """The stock ``mmpretrain.VisionTransformer`` config of a config's backbone, giving
    ``output`` ('cls' or 'featmap') as its only output.

    A ``SAIPViT`` (pretraining configs) becomes the ``VisionTransformer`` its converted
    checkpoint loads into: same architecture, no intermediate LayerNorm.
    """
    from mmpretrain.models import VisionTransformer

    from saip_mm.models.backbones import SAIPViT
    cfg = copy.deepcopy(dict(backbone_cfg))
    type_name = _type_name(cfg.get('type', ''))
    if type_name == 'SAIPViT':
        arch = cfg.get('arch', 'tiny')
        cfg['arch'] = dict(SAIPViT.arch_zoo[arch]) if isinstance(arch, str) else arch
        cfg.pop('inter_index', None)
        cfg.setdefault('img_size', (256, 128))
        cfg.setdefault('norm_cfg', dict(type='LN', eps=1e-6))
    elif not issubclass(_registered(type_name), VisionTransformer):
        raise ValueError(f'backbone export supports ViT backbones (mmpretrain VisionTransformer '
                         f'and SAIPViT), not {cfg.get("type")!r}')
    if output not in ('cls', 'featmap'):
        raise ValueError(f"backbone output must be 'cls' or 'featmap', got {output!r}")
    if output == 'cls' and cfg.get('with_cls_token', True) is False:
        raise ValueError('backbone output "cls" needs a cls token but the config builds the ViT '
                         'with with_cls_token=False; export output="featmap" instead')
    # scoped: a default scope left at mmseg or mmpose would build their own VisionTransformer
    cfg['type'] = 'mmpretrain.VisionTransformer'
    cfg['out_type'] = 'cls_token' if output == 'cls' else 'featmap'
    cfg['out_indices'] = -1
    cfg.pop('init_cfg', None)  # weights come from the checkpoint, never from init_cfg
    return cfg


def _registered(type_name: str) -> type:
    from mmpretrain.registry import MODELS
    cls = MODELS.get(type_name)
    if cls is None:
        raise ValueError(f'backbone type {type_name!r} is not registered in mmpretrain')
    return cls


def _build_full_model(cfg: Config) -> nn.Module:
    """Build ``cfg.model`` in the config's registry scope, with plain BatchNorm."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = MODELS.build(copy.deepcopy(cfg.model))
    return revert_sync_batchnorm(model)  # SyncBN (parsing configs) needs a process group


def load_full_checkpoint(model: nn.Module, checkpoint: str, kind: str) -> None:
    """Load a trained model's checkpoint (as the Runner writes it) with every key or an error.

    Raises:
        FileNotFoundError: no such file.
        ValueError: keys or shapes differ; the message names the file and what differs.
    """
    from mmengine.runner.checkpoint import CheckpointLoader, load_state_dict
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
    ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f'{checkpoint} holds no state dict')
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    hint = ''
    if state and all(k.startswith('backbone.') for k in state):
        hint = (' It holds only backbone.* tensors: a backbone checkpoint, which exports with '
                'kind="backbone".')
    elif any(k.startswith('teacher.') for k in state):
        hint = ' It is a SAIP pretraining checkpoint: convert it and export kind="backbone".'
    try:  # mmengine lists missing, unexpected and mis-shaped keys
        load_state_dict(model, state, strict=True)
    except RuntimeError as e:
        raise ValueError(f'{checkpoint} does not fit the {kind} model of the config: '
                         f'{" ".join(str(e).split())}.{hint}') from None


def build_export_model(cfg: Optional[Config],
                       checkpoint: Optional[str],
                       kind: Optional[str] = None,
                       backbone_output: str = 'cls',
                       input_size: Optional[Sequence[int]] = None,
                       src_grid: Optional[Sequence[int]] = None,
                       bake_normalization: bool = False) -> Tuple[nn.Module, ExportSpec]:
    """Build the ``image -> tensor`` module of one kind from a config and a checkpoint.

    Args:
        cfg (Config, optional): the model's config. None builds the stock ViT-Tiny/16 backbone
            at 256x128 (kind 'backbone' only).
        checkpoint (str, optional): trained checkpoint (reid, pose, parsing: the Runner's file,
            loaded strictly), or for 'backbone' any file with ``backbone.*`` tensors (the output
            of ``tools/model_converters/saip_to_backbone.py`` or a trained downstream model).
            None keeps random weights (for benchmarks only).
        kind (str, optional): one of :data:`EXPORT_KINDS`; None infers it from the config.
        backbone_output (str): 'cls' (the final cls token) or 'featmap' (patch-token map) for
            kind 'backbone'. Defaults to 'cls'.
        input_size (Sequence[int], optional): (H, W) to export for. Defaults to the backbone's
            ``img_size``. For kind 'backbone' the position embeddings are resized once when
            loading; a downstream model resizes them inside the graph (mmpretrain's ViT).
        src_grid (Sequence[int], optional): patch grid of a backbone checkpoint's position
            embeddings when it differs from the model's and its meta does not say (SAIP: 16 8).
        bake_normalization (bool): put the mean/std normalisation into the graph. Defaults to
            False.

    Returns:
        tuple: the module (in eval mode) and its :class:`ExportSpec`.
    """
    if kind is None:
        if cfg is None:
            kind = 'backbone'
        else:
            kind = infer_kind(cfg)
    if kind not in EXPORT_KINDS:
        raise ValueError(f'kind must be one of {EXPORT_KINDS}, got {kind!r}')
    if cfg is None and kind != 'backbone':
        raise ValueError(f'kind {kind!r} needs the model config')
    mean, std = _normalization(cfg)

    if kind == 'backbone':
        from mmpretrain.registry import MODELS
        from saip_mm.models.utils import load_pretrained_backbone
        bb_cfg = stock_backbone_cfg(cfg.model.backbone if cfg is not None else DEFAULT_BACKBONE,
                                    backbone_output)
        if input_size is not None:
            bb_cfg['img_size'] = _pair(input_size)
        size = _pair(bb_cfg.get('img_size', 224))
        backbone = MODELS.build(bb_cfg)
        if checkpoint is None:
            backbone.init_weights()
        else:
            load_pretrained_backbone(backbone, checkpoint, prefix='backbone.', src_grid=src_grid)
        module: nn.Module = BackboneExport(backbone)
        if backbone_output == 'cls':
            name, desc = 'embedding', f'(B, {backbone.embed_dims}) final cls token'
        else:
            grid = backbone.patch_resolution
            name, desc = 'featmap', f'(B, {backbone.embed_dims}, {grid[0]}, {grid[1]}) patch tokens'
    else:
        model = _build_full_model(cfg)
        if checkpoint is None:
            model.init_weights()
        else:
            load_full_checkpoint(model, checkpoint, kind)
        size = _pair(input_size or cfg.model.backbone.get('img_size', 224))
        module = dict(reid=ReIDExport, pose=PoseExport, parsing=ParsingExport)[kind](model)
        name = OUTPUT_NAMES[kind]
        desc = dict(reid='(B, C) L2-normalised retrieval feature',
                    pose=f'(B, K, {size[0] // 4}, {size[1] // 4}) keypoint heatmaps',
                    parsing=f'(B, classes, {size[0]}, {size[1]}) class logits')[kind]
    if bake_normalization:
        module = nn.Sequential(Normalize(mean, std), module)
    module.eval()
    spec = ExportSpec(kind=kind, input_size=size, output_name=name, output_desc=desc,
                      mean=mean, std=std, bake_normalization=bake_normalization)
    return module, spec


class _Traced(nn.Module):
    """Gives the graph input its name (torch's exporter names inputs after ``forward``'s)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, image: Tensor) -> Tensor:
        return self.module(image)


def export_onnx(module: nn.Module,
                spec: ExportSpec,
                out: str,
                opset: int = 18,
                dynamic_batch: bool = True,
                metadata: Optional[Dict[str, str]] = None) -> str:
    """Export ``module`` (image -> one tensor) to ``out``; the input is named ``image``, the
    batch axis ``batch`` when dynamic.

    Opset 18 and above use torch's ``torch.export``-based exporter (its own opset is 18; onnx's
    version converter cannot bring its graphs down to 17 correctly, e.g. ReduceL2). Opset 17
    uses torch's TorchScript exporter, which targets 17 natively (deprecated by torch, and it
    cannot export adaptive pooling to sizes that do not divide the input, as UPerHead's).

    Args:
        module (nn.Module): from :func:`build_export_model`.
        spec (ExportSpec): its spec; written to the model's ``metadata_props``.
        out (str): the .onnx file (weights inside; overwritten).
        opset (int): ONNX opset, at least 17. Defaults to 18.
        dynamic_batch (bool): a symbolic batch axis. Defaults to True.
        metadata (dict, optional): more ``metadata_props`` (config, checkpoint, ...).

    Returns:
        str: ``out``.
    """
    import onnx
    if opset < MIN_OPSET:
        raise ValueError(f'opset must be >= {MIN_OPSET}, got {opset}')
    height, width = spec.input_size
    # batch 2, not 1: torch.export specialises a size-1 axis to a constant
    example = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if opset >= 18:
            program = torch.onnx.export(
                _Traced(module).eval(), (example, ), dynamo=True, opset_version=opset,
                input_names=['image'], output_names=[spec.output_name],
                dynamic_shapes={'image': {0: 'batch'}} if dynamic_batch else None,
                optimize=True, verbose=False)
            model = program.model_proto
        else:
            axes = {'image': {0: 'batch'}, spec.output_name: {0: 'batch'}}
            with warnings.catch_warnings():  # the deprecation and tracer warnings
                warnings.simplefilter('ignore')
                torch.onnx.export(module, (example, ), out, dynamo=False, opset_version=opset,
                                  input_names=['image'], output_names=[spec.output_name],
                                  dynamic_axes=axes if dynamic_batch else None)
            model = onnx.load(out)
    props = dict(spec.metadata(), producer='saip_mm', **(metadata or {}))
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=str(value))
    onnx.save_model(model, out)
    return out


def check_onnx(path: str) -> dict:
    """Run ``onnx.checker`` (full check, with shape inference) and describe the graph.

    Returns:
        dict: ``opset``, ``inputs`` and ``outputs`` (name -> shape, symbolic axes by name),
        ``metadata``.

    Raises:
        onnx.checker.ValidationError: the model is invalid.
        ValueError: its default-domain opset is below 17.
    """
    import onnx
    onnx.checker.check_model(path, full_check=True)
    model = onnx.load(path)
    opset = next(o.version for o in model.opset_import if o.domain in ('', 'ai.onnx'))
    if opset < MIN_OPSET:
        raise ValueError(f'{path}: opset {opset} < {MIN_OPSET}')

    def shapes(values) -> Dict[str, List[Union[int, str]]]:
        return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
                for v in values}

    return dict(opset=opset, inputs=shapes(model.graph.input), outputs=shapes(model.graph.output),
                metadata={p.key: p.value for p in model.metadata_props})


def simplify_onnx(path: str, out: Optional[str] = None) -> str:
    """Simplify a graph with onnxslim (constant folding, fusion, dead nodes); metadata kept.

    Args:
        path (str): the exported model.
        out (str, optional): where to write; defaults to ``path`` (replaced).

    Returns:
        str: the written path.
    """
    import onnx
    import onnxslim
    model = onnx.load(path)
    props = [(p.key, p.value) for p in model.metadata_props]
    slim = onnxslim.slim(model)
    if not slim.metadata_props:  # the metadata says what the input must be: keep it
        for key, value in props:
            slim.metadata_props.add(key=key, value=value)
    out = out or path
    onnx.save_model(slim, out)
    return out


def ort_session(path: str, threads: Optional[int] = None):
    """An onnxruntime CPU session with all graph optimisations (what a deployment runs).

    Args:
        path (str): the .onnx file.
        threads (int, optional): intra-op threads; None lets onnxruntime choose.
    """
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def run_onnx(session, images: Union[Tensor, np.ndarray]) -> np.ndarray:
    """Run a single-input, single-output session on a float32 (B, 3, H, W) batch."""
    if isinstance(images, Tensor):
        images = images.detach().cpu().numpy()
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.ascontiguousarray(images, dtype=np.float32)})[0]


def max_abs_diff(module: nn.Module, session, images: Tensor) -> float:
    """Largest absolute difference between onnxruntime's and PyTorch's outputs on ``images``."""
    with torch.no_grad():
        expected = module(images).numpy()
    got = run_onnx(session, images)
    if got.shape != expected.shape:
        raise ValueError(f'onnxruntime output {got.shape} vs PyTorch {expected.shape}')
    return float(np.abs(got - expected).max())
