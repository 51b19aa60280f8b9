"""Let ``--launcher pytorch`` run on machines without an accelerator (gloo, CPU DDP).

MMEngine 0.10.7's pytorch launcher always calls ``torch.cuda.set_device`` and wraps the model
in DDP with ``device_ids=[LOCAL_RANK]``; both fail on a CPU-only machine. Multi-process CPU runs
are how the distributed paths (EMA teacher sync, centering all-reduce, samplers) get tested
without a GPU, so ``tools/train.py`` and ``tools/test.py`` call :func:`setup_cpu_distributed`
before building the Runner. On machines with an accelerator it does nothing.
"""
import datetime
import os

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.device import get_device
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


# mmengine's root registry: Runner.wrap_model looks wrappers up there, not in mmpretrain's.
@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` for CPU modules, which DDP requires ``device_ids=None`` for.

    The Runner always passes ``device_ids=[LOCAL_RANK]``; this wrapper drops it.
    """

    def __init__(self, module: torch.nn.Module, device_ids=None, **kwargs) -> None:
        super().__init__(module=module, device_ids=None, **kwargs)


def setup_cpu_distributed(cfg: Config) -> None:
    """Initialise gloo and a CPU DDP wrapper when ``cfg.launcher`` is set but no GPU exists.

    Must run before the Runner is built: the Runner then finds the process group already
    initialised and skips its own (CUDA-only) initialisation.

    Args:
        cfg (Config): the merged config; ``cfg.launcher`` comes from ``--launcher``.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or get_device() != 'cpu':
        return
    if launcher != 'pytorch':
        raise ValueError(f'--launcher {launcher} needs GPUs here; on a CPU-only machine use '
                         '--launcher pytorch (torchrun / tools/dist_train.sh).')
    if not torch_dist.is_initialized():
        # torchrun sets MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE; env:// reads them.
        timeout = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('timeout', None)
        # mmengine's dist_cfg gives the timeout in seconds, torch wants a timedelta.
        kwargs = {} if timeout is None else dict(timeout=datetime.timedelta(seconds=timeout))
        torch_dist.init_process_group(
            backend='gloo', rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']), **kwargs)
    wrapper_cfg = cfg.get('model_wrapper_cfg', None)
    if wrapper_cfg is None:
        # What the Runner would build by default, minus the CUDA device.
        cfg.model_wrapper_cfg = dict(
            type='CPUDistributedDataParallel', broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    elif wrapper_cfg.get('type', 'MMDistributedDataParallel') in (
            'MMDistributedDataParallel', 'mmengine.MMDistributedDataParallel'):
        wrapper_cfg.type = 'CPUDistributedDataParallel'
