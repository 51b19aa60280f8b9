"""What ``tools/analysis_tools/preflight.py`` measures inside a rehearsal run, per process."""
import hashlib
import json
import os
import os.path as osp
import resource
import time
from contextlib import ExitStack
from typing import Dict, List, Optional

import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

from .random_state_hook import get_rng_state


def tensor_digest(tensors: Dict[str, torch.Tensor]) -> str:
    """SHA-1 of named tensors (names, dtypes, shapes and bytes), in name order."""
    sha = hashlib.sha1()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        sha.update(f'{name}:{t.dtype}:{tuple(t.shape)}'.encode())
        sha.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b'')
    return sha.hexdigest()


def rng_digest(state: dict) -> str:
    """SHA-1 of the generator states :func:`get_rng_state` returns."""
    flat: Dict[str, torch.Tensor] = {
        'numpy_key': state['numpy']['key'], 'torch': state['torch'],
        'python': torch.tensor(state['python'][1], dtype=torch.int64),
        'numpy_pos': torch.tensor([state['numpy']['pos']])}
    for i, s in enumerate(state.get('cuda', [])):
        flat[f'cuda{i}'] = s
    return tensor_digest(flat)


def peak_host_memory_mb() -> float:
    """This process's peak resident memory (Linux ``ru_maxrss`` is in KiB), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@HOOKS.register_module()
class PreflightProbeHook(Hook):
    """Record, per process, what a preflight rehearsal must check; write it as JSON.

    After every iteration ``<out_dir>/preflight_rank<r>.json`` is rewritten (a crash at the
    next step still leaves what the previous ones measured): step times, the loss terms,
    the trainable parameters that received no gradient in the first iteration (found with
    post-accumulate-grad hooks, which fire under DDP too), peak memory, the bytes of the
    tensors the first step saved for its backward pass (the activations, counted once per
    storage), the validation metrics, and, when training ends at ``max_iters``, digests of
    the model's and the optimizer's state and of this process's random generators (what a
    resumed run must reproduce).

    Args:
        out_dir (str): where the JSON files go.
        max_iters (int): the run's last iteration; its end is when the digests are taken.
    """
    # First at both moments, so that a step's time is the step's own (model, backward,
    # optimizer), not the checkpoint saves and pictures other hooks make after it.
    priority = 'HIGHEST'

    def __init__(self, out_dir: str, max_iters: int) -> None:
        self.out_dir = out_dir
        self.max_iters = max_iters
        self.record: dict = dict(step_time=[], losses=[], grad_missing=None, metrics=None,
                                 activation_bytes=None, digests=None, errors=[])
        self._got_grad: set = set()
        self._handles: List = []
        self._t0: Optional[float] = None
        self._stack: Optional[ExitStack] = None
        self._saved: Dict[int, int] = {}

    @staticmethod
    def _model(runner) -> torch.nn.Module:
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def _write(self, runner) -> None:
        os.makedirs(self.out_dir, exist_ok=True)
        self.record.update(rank=get_rank(), world_size=get_world_size(),
                           device=str(next(self._model(runner).parameters()).device),
                           peak_host_mb=peak_host_memory_mb())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            self.record['peak_cuda_mb'] = torch.cuda.max_memory_allocated() / 2**20
        path = osp.join(self.out_dir, f'preflight_rank{get_rank()}.json')
        with open(path + '.part', 'w') as f:
            json.dump(self.record, f)
        os.replace(path + '.part', path)

    def before_train(self, runner) -> None:
        model = self._model(runner)
        self.record['trainable_params'] = sum(p.numel() for p in model.parameters()
                                              if p.requires_grad)
        self.record['params'] = sum(p.numel() for p in model.parameters())
        # Static memory of the run in float32: every parameter, plus a gradient and two AdamW
        # moments per trainable one (the estimate preflight scales activations onto).
        self.record['static_bytes'] = 4 * (self.record['params'] +
                                           3 * self.record['trainable_params'])
        for name, p in model.named_parameters():
            if p.requires_grad:
                self._handles.append(p.register_post_accumulate_grad_hook(
                    lambda _p, name=name: self._got_grad.add(name)))

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._t0 = time.perf_counter()
        if self.record['activation_bytes'] is None:
            self._saved = {}

            def pack(t: torch.Tensor) -> torch.Tensor:
                try:  # one count per storage: views of one tensor share it
                    storage = t.untyped_storage()
                    self._saved[storage.data_ptr()] = storage.nbytes()
                except (RuntimeError, NotImplementedError):
                    pass
                return t

            self._stack = ExitStack()
            self._stack.enter_context(torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None
            self.record['activation_bytes'] = int(sum(self._saved.values()))
            self.record['batch_size'] = runner.train_dataloader.batch_size
        self.record['step_time'].append(time.perf_counter() - self._t0)
        self.record['losses'].append({k: float(v.detach().float().mean())
                                      for k, v in (outputs or {}).items()
                                      if k.startswith('loss') and torch.is_tensor(v)})
        if self.record['grad_missing'] is None:
            model = self._model(runner)
            self.record['grad_missing'] = sorted(
                name for name, p in model.named_parameters()
                if p.requires_grad and name not in self._got_grad)
            for handle in self._handles:
                handle.remove()
            self._handles = []
        self._write(runner)

    def after_train(self, runner) -> None:
        # After every hook of the last iteration (the EMA update, the checkpoint) and after a
        # final validation, which changes no state a resumed run would need.
        if runner.iter == self.max_iters:
            model = self._model(runner)
            self.record['digests'] = dict(
                model=tensor_digest(dict(model.state_dict())),
                optimizer=tensor_digest({
                    f'{i}.{k}': v for i, state in
                    enumerate(runner.optim_wrapper.optimizer.state.values())
                    for k, v in state.items() if torch.is_tensor(v)}),
                rng=rng_digest(get_rng_state()))
        self._write(runner)

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        self.record['metrics'] = {k: (float(v) if isinstance(v, (int, float)) else str(v))
                                  for k, v in (metrics or {}).items()}
        self._write(runner)
