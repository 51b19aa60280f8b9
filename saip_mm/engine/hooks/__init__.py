from .attribute_pos_ratio_hook import AttributePosRatioHook
from .curves_hook import TrainingCurvesHook
from .health_hook import CollapseError, SAIPHealthHook
from .pretrained_hook import SAIPPretrainedHook
from .teacher_hook import SAIPTeacherHook
from .visualization_hook import SAIPVisualizationHook

__all__ = [
    'AttributePosRatioHook', 'CollapseError', 'SAIPHealthHook', 'SAIPPretrainedHook',
    'SAIPTeacherHook', 'SAIPVisualizationHook', 'TrainingCurvesHook'
]

from .random_state_hook import RandomStateHook  # noqa: E402
from .safe_checkpoint_hook import SafeCheckpointHook  # noqa: E402

__all__ += ['RandomStateHook', 'SafeCheckpointHook']

from .text_vocab_hook import TextVocabularyHook  # noqa: E402

__all__ += ['TextVocabularyHook']

from .preflight_hook import PreflightProbeHook  # noqa: E402

__all__ += ['PreflightProbeHook']
