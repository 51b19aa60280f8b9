default_scope = 'mmpretrain'
custom_imports = dict(imports=['saip_mm'], allow_failed_imports=False)

default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Crash-safe saves (write aside, rename, then update last_checkpoint, then prune).
    checkpoint=dict(type='SafeCheckpointHook', interval=10, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # Random generator states in each checkpoint, so that --resume continues bit-exactly.
    random_state=dict(type='RandomStateHook'),
)
# The EMA teacher follows the student once per optimiser step. Health metrics (RankMe, cosine
# between images, CSM entropy, agreement) every 50 iterations with the collapse alarm (a
# warning; on_collapse='stop' raises instead), and curves.{json,png} in the work dir.
custom_hooks = [
    dict(type='SAIPTeacherHook'),
    dict(type='SAIPHealthHook', interval=50),
    dict(type='TrainingCurvesHook', loss_interval=50),
]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

log_processor = dict(window_size=10, custom_cfg=[dict(data_src='', method='mean', window_size='global')])
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, diff_rank_seed=True)
