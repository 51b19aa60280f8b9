# Online frozen-feature evaluation during pretraining: every `train_cfg.val_interval`, MMEngine's
# validation loop embeds the query and gallery images of a Market-1501-layout folder (query/,
# bounding_box_test/) with the EMA teacher's final cls token (`model.val_feature`) and ranks the
# gallery by cosine distance (mAP, rank-1/5/10; saip_mm.evaluation.ReIDMetric). Training is not
# changed by it (RandomStateHook keeps validation's random draws out of the training stream).
# Point it elsewhere with --cfg-options val_dataloader.dataset.data_root=DIR; switch it off with
# --cfg-options val_cfg=None val_dataloader=None val_evaluator=None
# (and default_hooks.checkpoint.save_best=None).
# Cross-resolution evaluation (off here, on in the demo config): queries down-sampled by r from
# their recorded size (area interpolation), then resized like every image, the gallery as
# recorded; reid/mAP is r = 1, reid/mAP_r2 ... reid/mAP_mixed the others. Switch it on with
# --cfg-options "val_dataloader.dataset.query_downsample=[1,2,3,4,mixed]" (the dataset emits each
# query once per setting; QueryDownsample below shrinks it; ReIDMetric groups by query_setting).
val_data_root = 'data/market1501/'
val_meta_keys = ('sample_idx', 'img_path', 'pid', 'camid', 'split', 'query_setting')
val_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='QueryDownsample'),  # a no-op unless the dataset sets query_downsample
    dict(type='Resize', scale=(128, 256), interpolation='bicubic'),  # scale is (w, h)
    dict(type='PackInputs', meta_keys=val_meta_keys),
]
val_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=False,
    # A seed of its own: without one MMEngine draws the sampler's seed from NumPy's global
    # generator when it builds the loop (randomness.diff_rank_seed), before the weights are
    # initialised, so turning validation on would change the initial weights.
    sampler=dict(type='DefaultSampler', shuffle=False, seed=0),
    dataset=dict(type='Market1501Dataset', data_root=val_data_root, split='test',
                 pipeline=val_pipeline))  # query + gallery
val_evaluator = dict(type='ReIDMetric', dist='cosine', topk=(1, 5, 10))
val_cfg = dict(type='ValLoop')
