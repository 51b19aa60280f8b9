from pathlib import Path

import pytest
from mmengine.config import Config
from mmpretrain.registry import MODELS

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs' / 'saip'
REFERENCE = CONFIG_DIR / 'saip_vit-tiny-p16_8xb256-amp-coslr-300e_lup1m-256x128.py'
ABLATIONS = {
    'csm': {'csm'}, 'csr': {'csr'}, 'css': {'css'}, 'csm-csr': {'csm', 'csr'},
    'csm-css': {'csm', 'css'}, 'csr-css': {'csr', 'css'},
}


def test_reference_recipe_numbers():
    cfg = Config.fromfile(str(REFERENCE))
    assert cfg.default_scope == 'mmpretrain' and cfg.custom_imports.imports == ['saip_mm']
    opt = cfg.optim_wrapper
    assert opt.type == 'AmpOptimWrapper' and opt.accumulative_counts == 4
    assert opt.constructor == 'SAIPOptimWrapperConstructor'  # the teacher stays out
    assert opt.optimizer.type == 'AdamW' and opt.optimizer.betas == (0.9, 0.95)
    assert opt.optimizer.weight_decay == 0.05
    assert opt.optimizer.lr == pytest.approx(2.5e-4 * 2048 / 256)
    assert opt.paramwise_cfg.norm_decay_mult == 0 and opt.paramwise_cfg.bias_decay_mult == 0
    assert {'pos_embed', 'cls_token', 'mask_token'} <= set(opt.paramwise_cfg.custom_keys)
    assert cfg.train_dataloader.batch_size == 64  # x 8 GPUs x accumulation 4 = 2048
    assert cfg.train_cfg.max_epochs == 300
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and warmup.end == 10
    assert cosine.type == 'CosineAnnealingLR' and (cosine.begin, cosine.end) == (10, 300)
    assert cosine.eta_min == 0
    # MMEngine ignores accumulation when scaling: 8 GPUs x 64 per step is the base
    assert cfg.auto_scale_lr.base_batch_size == 8 * 64
    assert [h.type for h in cfg.custom_hooks] == ['SAIPTeacherHook', 'SAIPHealthHook',
                                                  'TrainingCurvesHook']
    # online validation on Market-1501 every 10 epochs, best checkpoint by its mAP
    assert cfg.train_cfg.val_interval == 10 and cfg.val_cfg.type == 'ValLoop'
    assert cfg.val_dataloader.dataset.data_root == 'data/market1501/'
    assert cfg.default_hooks.checkpoint.save_best == 'reid/mAP'
    assert cfg.default_hooks.checkpoint.rule == 'greater'
    m = cfg.model
    assert m.n_local == 8 and m.mask_ratio == 0.75 and m.csr_scale == 1.25
    assert (m.base_momentum, m.end_momentum) == (0.996, 1.0)
    assert tuple(m.rescale_factors) == (0.75, 0.875, 1.125, 1.25)
    model = MODELS.build(m)
    assert model.backbone.embed_dims == 192
    assert sum(p.numel() for p in model.backbone.parameters()) / 1e6 == pytest.approx(5.5, abs=0.3)


@pytest.mark.parametrize('name,on', sorted(ABLATIONS.items()))
def test_ablation_configs(name, on):
    path = CONFIG_DIR / f'saip-{name}_vit-tiny-p16_8xb256-amp-coslr-300e_lup1m-256x128.py'
    cfg = Config.fromfile(str(path))
    for head in ('csm', 'csr', 'css'):
        assert (cfg.model[f'{head}_head'] is not None) == (head in on), head
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(2e-3)  # only the heads change


def test_small_config_builds():
    cfg = Config.fromfile(str(CONFIG_DIR /
                              'saip_vit-small-p16_8xb256-amp-coslr-300e_lup1m-256x128.py'))
    model = MODELS.build(cfg.model)
    assert model.backbone.embed_dims == 384 and model.csm_head.mlp[0].in_features == 384
    assert model.csr_head.embed.in_features == 384 and model.css_head.query_embed.in_features == 384


def test_demo_config():
    cfg = Config.fromfile(str(CONFIG_DIR / 'saip_vit-tiny-p16_1xb32-demo_vtest-256x128.py'))
    assert cfg.model.n_local == 4
    assert cfg.train_dataloader.dataset.pipeline[2].num_views == 3
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert cfg.optim_wrapper.constructor == 'SAIPOptimWrapperConstructor'
    assert cfg.optim_wrapper.paramwise_cfg.norm_decay_mult == 0
    assert cfg.log_processor.by_epoch is False  # an iteration-based run logs [i/40]
    assert [h.type for h in cfg.custom_hooks] == ['SAIPTeacherHook', 'SAIPHealthHook',
                                                  'TrainingCurvesHook', 'SAIPVisualizationHook']
    # online validation on the video's held-out identities, every 10 of the 40 iterations,
    # logged at its iteration; the best teacher by mAP kept
    assert cfg.train_cfg.val_interval == 10
    assert cfg.val_dataloader.dataset.data_root == 'data/vtest/reid/'
    assert cfg.val_dataloader.dataset.type == 'Market1501Dataset'
    assert cfg.val_dataloader.dataset.split == 'test'
    assert cfg.val_dataloader.sampler.seed == 0  # not drawn from NumPy (tested bit-identity)
    assert cfg.val_evaluator.type == 'ReIDMetric' and cfg.val_evaluator.dist == 'cosine'
    assert cfg.default_hooks.logger.log_metric_by_epoch is False
    assert cfg.default_hooks.checkpoint.save_best == 'reid/mAP'
    assert cfg.model.get('val_feature', 'teacher') == 'teacher'
    # cross-resolution validation (issue 33): on in the demo, off in the recipe, whose pipeline
    # holds the same QueryDownsample (a no-op there) before the Resize
    assert cfg.val_dataloader.dataset.query_downsample == (1, 2, 3, 4, 'mixed')
    assert [t.type for t in cfg.val_dataloader.dataset.pipeline] == [
        'LoadImageFromFile', 'QueryDownsample', 'Resize', 'PackInputs']
    assert 'query_setting' in cfg.val_dataloader.dataset.pipeline[-1].meta_keys
    assert 'query_downsample' not in Config.fromfile(str(REFERENCE)).val_dataloader.dataset


def test_batchviews_config_is_the_recipe_with_views_on_the_device():
    name = 'saip_vit-tiny-p16_8xb256-amp-batchviews-coslr-300e_lup1m-256x128.py'
    cfg = Config.fromfile(str(CONFIG_DIR / name))
    reference = Config.fromfile(str(REFERENCE))
    assert [t.type for t in cfg.train_dataloader.dataset.pipeline] == [
        'LoadPersonImage', 'ResizeForBatchViews', 'PackSAIPImages']
    pre = cfg.model.data_preprocessor
    assert pre.type == 'SAIPBatchViewsPreprocessor' and pre.resize_mode == 'nearest'
    assert pre.local_views.num_views == cfg.model.n_local - 1 == 7
    # Everything else is the reference recipe.
    assert cfg.optim_wrapper == reference.optim_wrapper
    assert cfg.train_dataloader.batch_size == reference.train_dataloader.batch_size
    built = MODELS.build(pre)
    assert built.num_local == 7 and [a.aug.blur_prob for a in built.global_augs] == [1.0, 0.1]
    assert built.reference_aug.size == (224, 224) and built.person_weight == 0.7
