# LUP1M (1M LUPerson crops) with SAIP's multi-scale views. Point data_root / ann_file at your
# copy; `ann_file` lists one image path per line, relative to data_root (a folder also works:
# leave ann_file empty). LUPerson's LMDB (data_root holding lmdb/ + keys.pkl as LUPerson-NL
# releases it, or lup_lmdb/ + keys.pkl as LUPerson's convert_lmdb.py writes it, or lup_lmdb/
# itself) and tar shards (images_to_shards.py: data_root holding shard_index.npz) are found
# from data_root alone with ann_file='' (PersonImageDataset `source='auto'`). `background` is the image source
# of the CSS multi-person references (default: the person images themselves); its relative
# paths are relative to data_root unless it sets its own data_root.
dataset_type = 'PersonImageDataset'
data_root = 'data/lup1m/'
n_local = 8

train_pipeline = [
    dict(type='LoadPersonImage'),
    dict(type='PersonGlobalViews', size=(256, 128), scale=(0.8, 1.0), ratio=(0.4, 0.6)),
    dict(type='PersonLocalViews', num_views=n_local - 1, size=(128, 64), scale=(0.05, 0.8),
         ratio=(0.4, 0.6)),
    dict(type='RegionView', size=(128, 64), interpolation='nearest'),  # = model.resize_mode
    dict(type='MultiPersonReference', size=(224, 224), scale=(0.2, 1.0), person_weight=0.7),
    dict(type='PackSAIPInputs'),
]

train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='lup1m.txt',
        background=None,
        pipeline=train_pipeline))
