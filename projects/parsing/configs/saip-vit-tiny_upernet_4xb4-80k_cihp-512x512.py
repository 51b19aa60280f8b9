# Multi-person human parsing on CIHP (20 classes) with a SAIP ViT-Tiny backbone and UperNet.
# Same model and schedule as the LIP config; the dataset is saip_mm's CIHPDataset, which reads
# the released instance-level_human_parsing/ tree as is.
_base_ = ['./saip-vit-tiny_upernet_4xb4-80k_lip-512x512.py']

# The SAIP backbone checkpoint (tools/model_converters/saip_to_backbone.py output).
# Switch it here or with `--cfg-options pretrained=PATH`.
pretrained = 'checkpoints/saip_vit-tiny_lup1m.pth'

custom_imports = dict(
    imports=['saip_mm', 'saip_mm.engine.hooks.pretrained_hook', 'saip_mm.datasets.cihp'],
    allow_failed_imports=False)

dataset_type = 'CIHPDataset'  # registered in mmseg's DATASETS by saip_mm.datasets.cihp
data_root = 'data/instance-level_human_parsing/'
train_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='Training/train_id.txt',
        data_prefix=dict(img_path='Training/Images', seg_map_path='Training/Category_ids')))
val_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='Validation/val_id.txt',
        data_prefix=dict(img_path='Validation/Images', seg_map_path='Validation/Category_ids')))
test_dataloader = val_dataloader
