from .teacher_hook import SAIPTeacherHook
from .visualization_hook import SAIPVisualizationHook

__all__ = ['SAIPTeacherHook', 'SAIPVisualizationHook']
