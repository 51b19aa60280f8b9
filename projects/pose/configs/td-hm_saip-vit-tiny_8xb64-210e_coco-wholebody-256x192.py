# Top-down heatmap whole-body pose (133 keypoints) on COCO-WholeBody, 256x192, SAIP ViT-Tiny.
# Same model and schedule as the COCO config; only the keypoint set and the dataset differ.
_base_ = ['./td-hm_saip-vit-tiny_8xb64-210e_coco-256x192.py']

# The SAIP backbone checkpoint (tools/model_converters/saip_to_backbone.py output).
# Switch it here or with `--cfg-options pretrained=PATH`.
pretrained = 'checkpoints/saip_vit-tiny_lup1m.pth'

default_hooks = dict(checkpoint=dict(save_best='coco-wholebody/AP'))

model = dict(head=dict(out_channels=133))

data_root = 'data/coco/'
dataset_type = 'CocoWholeBodyDataset'

train_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/coco_wholebody_train_v1.0.json',
        data_prefix=dict(img='train2017/')))
val_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/coco_wholebody_val_v1.0.json',
        bbox_file=data_root + 'person_detection_results/'
        'COCO_val2017_detections_AP_H_56_person.json',
        data_prefix=dict(img='val2017/')))
test_dataloader = val_dataloader

# ann_file from the val dataset, as in the COCO config
val_evaluator = dict(type='CocoWholeBodyMetric')
test_evaluator = val_evaluator
