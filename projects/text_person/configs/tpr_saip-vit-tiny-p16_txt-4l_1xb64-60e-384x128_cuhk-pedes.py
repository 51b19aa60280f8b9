# Text-based person retrieval on CUHK-PEDES (reid_raw.json): ViT-Tiny/16 image tower initialised
# from a SAIP backbone, Transformer text tower from scratch, SDM + identity losses.
#   python tools/train.py projects/text_person/configs/THIS.py --cfg-options pretrained=BACKBONE.pth
# BACKBONE.pth comes from tools/model_converters/saip_to_backbone.py; SAIPPretrainedHook loads
# it strictly (a full SAIP checkpoint or another architecture is an error).
# Override the data folder with
#   train_dataloader.dataset.data_root=DIR val_dataloader.dataset.data_root=DIR
#   test_dataloader.dataset.data_root=DIR
_base_ = ['./_base_/tpr_vit-tiny-p16_txt-4l_1xb64-adamw-60e-384x128.py']

pretrained = 'checkpoints/saip_vit-tiny-p16_lup1m-256x128_backbone.pth'
data_root = 'data/CUHK-PEDES'

model = dict(num_classes=11003)  # training identities

train_dataloader = dict(dataset=dict(type='CUHKPEDESDataset', data_root=data_root))
val_dataloader = dict(dataset=dict(type='CUHKPEDESDataset', data_root=data_root, split='val'))
test_dataloader = dict(dataset=dict(type='CUHKPEDESDataset', data_root=data_root))
