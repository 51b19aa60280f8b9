# PETA attributes (35), ViT-Tiny/16 initialised from a SAIP backbone, 256x128. The split is the
# one chosen at conversion: a random partition of PETA.mat, or the zero-shot PETA-zs.
#   python tools/train.py projects/attributes/configs/THIS.py --cfg-options pretrained=BACKBONE.pth
# BACKBONE.pth comes from tools/model_converters/saip_to_backbone.py; SAIPPretrainedHook loads
# it strictly (a full SAIP checkpoint or another architecture is an error). Annotations come
# from tools/dataset_converters/ (see projects/attributes/README.md).
# Override the data folder with
#   train_dataloader.dataset.data_root=DIR val_dataloader.dataset.data_root=DIR
#   test_dataloader.dataset.data_root=DIR
_base_ = ['./_base_/par_vit-tiny-p16_1xb64-sgd-30e-256x128.py']

pretrained = 'checkpoints/saip_vit-tiny-p16_lup1m-256x128_backbone.pth'
data_root = 'data/peta'

model = dict(head=dict(num_classes=35))
custom_hooks = [
    # loads `pretrained` into model.backbone, strictly (SAIP position embeddings: 16x8 grid)
    dict(type='SAIPPretrainedHook', src_grid=(16, 8)),
    # the loss weights: each attribute's positive ratio in the training split
    dict(type='AttributePosRatioHook'),
]

train_dataloader = dict(dataset=dict(type='PETADataset', data_root=data_root))
val_dataloader = dict(dataset=dict(type='PETADataset', data_root=data_root))
test_dataloader = val_dataloader
