from .cpu_amp_optim_wrapper import (CPUAmpOptimWrapper, amp_on_cpu, cpu_bf16_feature,
                                    native_amp_available)
from .saip_optim_constructor import SAIPOptimWrapperConstructor

__all__ = ['CPUAmpOptimWrapper', 'SAIPOptimWrapperConstructor', 'amp_on_cpu',
           'cpu_bf16_feature', 'native_amp_available']
