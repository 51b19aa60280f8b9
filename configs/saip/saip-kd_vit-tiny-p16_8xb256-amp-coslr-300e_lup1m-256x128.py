# SAIP + cross-scale distillation from a frozen ViT-B/16 teacher (a fourth objective).
# The teacher sees the original global view at 256x128, the student the view rescaled by a
# factor of `scales`; global (cls), patch and relation alignment, weights in `loss`.
# Make the teacher file from a PATH / HAP / LUPerson-MAE / DINO / timm ViT-B checkpoint:
#   python tools/model_converters/to_mmpretrain_vit.py SRC.pth checkpoints/teacher_vit-base-p16.pth \
#       --arch base [--src-grid H W]
# It is read when the run starts (and again on resume); it is never saved in the run's
# checkpoints, the optimizer or the EMA teacher.
_base_ = './saip_vit-tiny-p16_8xb256-amp-coslr-300e_lup1m-256x128.py'
model = dict(
    distill_head=dict(
        type='DistillHead',
        teacher=dict(type='VisionTransformer', arch='base', img_size=(256, 128), patch_size=16),
        teacher_checkpoint='checkpoints/teacher_vit-base-p16.pth',
        student_channels=192,
        scales=(0.75, 0.875, 1.125, 1.25),
        mask_ratio=0.0,
        teacher_dtype='auto',  # float16 on a GPU, float32 on the CPU
        loss=dict(type='DistillLoss', global_weight=1.0, patch_weight=1.0, relation_weight=1.0,
                  relation_temperature=0.1)))
