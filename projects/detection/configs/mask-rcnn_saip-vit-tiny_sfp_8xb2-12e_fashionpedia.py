# Fashion instance segmentation on Fashionpedia (46 apparel classes, COCO-format annotations)
# with a SAIP ViT-Tiny backbone, ViTDet's simple feature pyramid and Mask R-CNN; mmdet's
# CocoDataset and CocoMetric (bbox and segm AP). Attribute annotations are not used.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py', 'mmdet::_base_/default_runtime.py',
    'mmdet::_base_/schedules/schedule_1x.py'
]

# The SAIP backbone checkpoint: the output of tools/model_converters/saip_to_backbone.py.
# Switch it here or with `--cfg-options pretrained=PATH`; SAIPPretrainedHook loads it strictly.
pretrained = 'checkpoints/saip_vit-tiny_lup1m.pth'

custom_imports = dict(
    imports=['saip_mm', 'saip_mm.engine.hooks.pretrained_hook', 'saip_mm.models.necks'],
    allow_failed_imports=False)
custom_hooks = [dict(type='SAIPPretrainedHook', src_grid=(16, 8))]

# The 46 categories of Fashionpedia's instances_attributes_*2020.json, in id order (ids 0-45).
classes = (
    'shirt, blouse', 'top, t-shirt, sweatshirt', 'sweater', 'cardigan', 'jacket', 'vest',
    'pants', 'shorts', 'skirt', 'coat', 'dress', 'jumpsuit', 'cape', 'glasses', 'hat',
    'headband, head covering, hair accessory', 'tie', 'glove', 'watch', 'belt', 'leg warmer',
    'tights, stockings', 'sock', 'shoe', 'bag, wallet', 'scarf', 'umbrella', 'hood', 'collar',
    'lapel', 'epaulette', 'sleeve', 'pocket', 'neckline', 'buckle', 'zipper', 'applique',
    'bead', 'bow', 'flower', 'fringe', 'ribbon', 'rivet', 'ruffle', 'sequin', 'tassel')
metainfo = dict(classes=classes)

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.VisionTransformer',
        arch='deit-tiny',  # 192 wide, 12 blocks, 3 heads
        # The pretraining anchor: as in ViTDet, the position embeddings keep the pretraining
        # grid and are resized in 2-D (bicubic) to each input's grid in forward.
        img_size=(256, 128),
        patch_size=16,
        qkv_bias=True,
        norm_cfg=dict(type='LN', eps=1e-6),
        drop_path_rate=0.1,
        out_type='featmap'),  # (B, 192, H/16, W/16)
    neck=dict(
        _delete_=True,
        type='SimpleFeaturePyramid',  # strides 4, 8, 16, 32 (+ 64 pooled)
        in_channels=192,
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        num_outs=5),
    roi_head=dict(
        bbox_head=dict(num_classes=len(classes)), mask_head=dict(num_classes=len(classes))))

dataset_type = 'CocoDataset'
data_root = 'data/fashionpedia/'
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),  # polygons and RLE
    dict(type='Resize', scale=(1024, 1024), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1024, 1024), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=2,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        metainfo=metainfo,
        data_root=data_root,
        ann_file='instances_attributes_train2020.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        metainfo=metainfo,
        data_root=data_root,
        ann_file='instances_attributes_val2020.json',
        data_prefix=dict(img='test/'),  # the released val images unpack into test/
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'instances_attributes_val2020.json',
    metric=['bbox', 'segm'],
    format_only=False,
    backend_args=backend_args)
test_evaluator = val_evaluator

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    # no weight decay on norms, biases, position embeddings and the cls token
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.)
        }),
    clip_grad=dict(max_norm=1., norm_type=2))
auto_scale_lr = dict(base_batch_size=16)
