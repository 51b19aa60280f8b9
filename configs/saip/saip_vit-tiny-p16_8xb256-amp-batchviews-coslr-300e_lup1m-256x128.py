# The reference recipe with batched views: the DataLoader workers only decode each image and
# place it in a fixed-size canvas (shrunk only when larger); SAIPBatchViewsPreprocessor then
# builds every view of the batch (crops, flips, jitter, grayscale, blur, solarise, region view,
# multi-person reference and its masks) with tensor ops on the GPU, with the per-image path's
# parameter distributions.
# Any SAIP config switches the same way: replace its train pipeline by these three steps and
# its data_preprocessor by SAIPBatchViewsPreprocessor with the same view arguments.
_base_ = './saip_vit-tiny-p16_8xb256-amp-coslr-300e_lup1m-256x128.py'

n_local = 8

train_pipeline = [
    # Draft-mode JPEG decoding: a file at least twice the canvas is decoded at 1/2..1/8.
    dict(type='LoadPersonImage', decode_size=(384, 384)),
    dict(type='ResizeForBatchViews', size=(384, 192), bg_size=(384, 384)),
    dict(type='PackSAIPImages'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

model = dict(
    data_preprocessor=dict(
        _delete_=True,
        type='SAIPBatchViewsPreprocessor',
        # The arguments of PersonGlobalViews / PersonLocalViews / MultiPersonReference; their
        # defaults are the reference recipe.
        global_views=dict(size=(256, 128), scale=(0.8, 1.0), ratio=(0.4, 0.6)),
        local_views=dict(num_views=n_local - 1, size=(128, 64), scale=(0.05, 0.8),
                         ratio=(0.4, 0.6)),
        region_size=(128, 64),
        resize_mode='nearest',  # the region view: g1 resized as F.interpolate's default does
        reference=dict(size=(224, 224), scale=(0.2, 1.0), person_weight=0.7)))
