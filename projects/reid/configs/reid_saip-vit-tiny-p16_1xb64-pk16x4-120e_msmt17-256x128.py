# MSMT17 (V1 layout) ReID, ViT-Tiny/16 initialised from a SAIP backbone, 256x128.
#   python tools/train.py projects/reid/configs/THIS.py --cfg-options pretrained=BACKBONE.pth
# BACKBONE.pth comes from tools/model_converters/saip_to_backbone.py; SAIPPretrainedHook loads
# it strictly (a full SAIP checkpoint or another architecture is an error).
# Override the data folder with
#   train_dataloader.dataset.data_root=DIR val_dataloader.dataset.data_root=DIR
#   test_dataloader.dataset.data_root=DIR
_base_ = ['./_base_/reid_vit-tiny-p16_1xb64-pk16x4-sgd-120e-256x128.py']

pretrained = 'checkpoints/saip_vit-tiny-p16_lup1m-256x128_backbone.pth'
data_root = 'data/MSMT17_V1'

model = dict(head=dict(num_classes=1041))  # training identities (list_train + list_val)
# Loads `pretrained` into model.backbone, strictly (SAIP position embeddings: 16x8 grid).
custom_hooks = [dict(type='SAIPPretrainedHook', src_grid=(16, 8))]

train_dataloader = dict(dataset=dict(type='MSMT17Dataset', data_root=data_root, with_val=True))
val_dataloader = dict(dataset=dict(type='MSMT17Dataset', data_root=data_root))
test_dataloader = val_dataloader
