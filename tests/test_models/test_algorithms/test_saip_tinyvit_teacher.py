"""The TinyViT teacher follows the student's BatchNorm statistics (SAIP.update_teacher)."""
import torch

from saip_testlib import tinyvit_saip

BN_STATS = ('running_mean', 'running_var', 'num_batches_tracked')


def test_update_teacher_copies_the_students_batchnorm_statistics():
    """Catches: update_teacher no longer copying the student's buffers (the loop over
    ``buffers()``): the teacher, always in eval mode, would keep normalising with the initial
    statistics (mean 0, var 1) for the whole run."""
    model = tinyvit_saip()
    student, teacher = model.backbone, model.teacher['backbone']
    initial = {k: v.clone() for k, v in teacher.named_buffers()}
    bn_keys = [k for k in initial if k.endswith(BN_STATS)]
    assert len(bn_keys) == 3 * sum(isinstance(m, torch.nn.BatchNorm2d) for m in student.modules())
    assert len(bn_keys) > 30  # the convolutional stages are full of BatchNorm
    # Train-mode forwards move the student's statistics; the teacher (eval) keeps its own.
    model.train()
    assert student.training and not teacher.training
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(2):
            student(2.0 * torch.randn(2, 3, 96, 48, generator=gen) + 0.5)
    moved = dict(student.named_buffers())
    assert all(not torch.equal(moved[k], initial[k]) for k in bn_keys)
    assert all(torch.equal(v, initial[k]) for k, v in teacher.named_buffers())

    model.update_teacher(momentum=0.5)
    for name, module in model._teacher_pairs():  # the backbone and the CSM head
        t_buffers = dict(model.teacher[name].named_buffers())
        s_buffers = dict(module.named_buffers())
        assert t_buffers.keys() == s_buffers.keys()
        for key, value in s_buffers.items():
            assert torch.equal(t_buffers[key], value), f'{name}.{key}'
    counts = [v for k, v in teacher.named_buffers() if k.endswith('num_batches_tracked')]
    assert all(int(v) == 2 for v in counts)  # the student's two forwards
    # The teacher now normalises as the student does: equal weights give equal outputs.
    model.update_teacher(momentum=0.0)  # the teacher's parameters become the student's
    model.eval()
    x = torch.randn(2, 3, 96, 48, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(teacher(x)['last'], student(x)['last'], rtol=0, atol=0)
