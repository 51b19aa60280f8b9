from .saip_optim_constructor import SAIPOptimWrapperConstructor

__all__ = ['SAIPOptimWrapperConstructor']
