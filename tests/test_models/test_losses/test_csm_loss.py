import math

import torch

from saip_mm.models import CSMLoss


def _hand_ce(t_logits, s_logits, center, tau_t, tau_s):
    # -sum_k p_t(k) log p_s(k) for one sample, written out element by element.
    t = [math.exp((x - c) / tau_t) for x, c in zip(t_logits, center)]
    zt = sum(t)
    s = [math.exp(x / tau_s) for x in s_logits]
    zs = sum(s)
    return -sum((ti / zt) * math.log(si / zs) for ti, si in zip(t, s))


def test_csm_loss_matches_hand_computation_and_skips_same_view():
    torch.manual_seed(0)
    K, B = 5, 2
    loss = CSMLoss(out_dim=K)
    loss.center.copy_(torch.tensor([[0.1, -0.2, 0.0, 0.3, 0.05]]))
    teacher = [torch.randn(B, K) for _ in range(2)]
    student = [torch.randn(B, K) for _ in range(3)]
    value = loss(student, teacher)

    center = loss.center[0].tolist()
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2)]  # (0, 0) and (1, 1) are the same view: skipped
    expected = sum(
        sum(_hand_ce(teacher[i][b].tolist(), student[v][b].tolist(), center, 0.04, 0.1)
            for b in range(B)) / B for i, v in pairs) / len(pairs)
    assert math.isclose(value.item(), expected, rel_tol=1e-5)


def test_loss_weight_and_teacher_gets_no_gradient():
    teacher = [torch.randn(2, 4, requires_grad=True) for _ in range(2)]
    student = [torch.randn(2, 4, requires_grad=True) for _ in range(3)]
    base = CSMLoss(out_dim=4)(student, teacher)
    doubled = CSMLoss(out_dim=4, loss_weight=2.0)(student, teacher)
    assert torch.allclose(doubled, 2 * base)
    base.backward()
    assert all(t.grad is None for t in teacher)
    assert all(s.grad is not None for s in student)


def test_center_update_is_ema_of_batch_mean():
    loss = CSMLoss(out_dim=3, center_momentum=0.9)
    loss.center.fill_(1.0)
    t1 = torch.tensor([[1., 2., 3.], [3., 2., 1.]])
    t2 = torch.tensor([[0., 0., 0.], [4., 4., 4.]])
    loss.update_center([t1, t2])
    mean = torch.tensor([2., 2., 2.])  # mean of the four rows
    torch.testing.assert_close(loss.center[0], 0.9 * torch.ones(3) + 0.1 * mean)


def test_non_finite_teacher_batch_leaves_the_center_unchanged():
    loss = CSMLoss(out_dim=4, center_momentum=0.5)
    loss.update_center([torch.tensor([[2., 0., 0., 0.]])])
    good = loss.center.clone()
    torch.testing.assert_close(good, torch.tensor([[1., 0., 0., 0.]]))
    for bad in (float('nan'), float('inf')):
        loss.update_center([torch.tensor([[bad, 1., 1., 1.]])])
        assert torch.equal(loss.center, good)  # the last good centre, not NaN / inf
    loss.update_center([torch.tensor([[0., 2., 0., 0.]])])  # and updates resume after
    torch.testing.assert_close(loss.center, torch.tensor([[0.5, 1., 0., 0.]]))


def test_teacher_temperature_warmup():
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('test_csm_warmup')
    loss = CSMLoss(out_dim=3, warmup_teacher_temp=0.07, teacher_temp=0.04,
                   warmup_teacher_temp_epochs=10)
    hub.update_info('epoch', 0)
    assert math.isclose(loss.current_teacher_temp(), 0.07)
    hub.update_info('epoch', 5)
    assert math.isclose(loss.current_teacher_temp(), 0.055)
    hub.update_info('epoch', 12)
    assert math.isclose(loss.current_teacher_temp(), 0.04)
    assert CSMLoss(out_dim=3).current_teacher_temp() == 0.04  # no warm-up by default


def test_attention_loss_is_kl_teacher_student():
    t = torch.tensor([[[[0.5, 0.5], [0.9, 0.1]]]])  # (1 view*B, 1 head, 2, 2)
    s = torch.tensor([[[[0.25, 0.75], [0.5, 0.5]]]])
    loss = CSMLoss(out_dim=3)
    value = loss.attention_loss(dict(qk=s, vv=t), dict(qk=t, vv=t))

    def kl(p, q):
        return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))

    expected = (kl([0.5, 0.5], [0.25, 0.75]) + kl([0.9, 0.1], [0.5, 0.5])) / 2  # mean over queries
    assert math.isclose(value.item(), expected, rel_tol=1e-5)  # vv term is KL(t||t) = 0


def _center_worker(rank, init_file, out_dir):
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    try:
        loss = CSMLoss(out_dim=3, center_momentum=0.9)
        loss.center.fill_(0.5)
        # rank 0: 2 + 2 rows, rank 1: 1 + 1 rows: unequal counts, so a mean of the two ranks'
        # means would differ from the global mean
        g = torch.Generator().manual_seed(rank)
        n = 2 if rank == 0 else 1
        teacher = [torch.randn(n, 3, generator=g) for _ in range(2)]
        loss.update_center(teacher)
        torch.save(dict(teacher=teacher, center=loss.center.clone()),
                   f'{out_dir}/rank{rank}.pt')
    finally:
        dist.destroy_process_group()


def test_two_process_center_is_ema_of_the_global_mean(tmp_path):
    import torch.multiprocessing as mp
    mp.spawn(_center_worker, args=(str(tmp_path / 'init'), str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pt') for r in (0, 1))
    every_row = torch.cat(r0['teacher'] + r1['teacher'])  # 6 rows from both ranks
    expected = 0.9 * torch.full((1, 3), 0.5) + 0.1 * every_row.mean(0, keepdim=True)
    torch.testing.assert_close(r0['center'], expected)
    torch.testing.assert_close(r1['center'], expected)
    means_of_means = (torch.cat(r0['teacher']).mean(0) + torch.cat(r1['teacher']).mean(0)) / 2
    assert (0.9 * 0.5 + 0.1 * means_of_means - expected[0]).abs().max() > 1e-3


def test_lean_form_equals_pairwise_cross_entropy_and_its_gradient():
    torch.manual_seed(0)
    V, B, K = 10, 4, 512
    loss = CSMLoss(out_dim=K)
    loss.center.normal_(std=0.1)
    teacher = [torch.randn(B, K) for _ in range(2)]
    student = torch.randn(V * B, K, requires_grad=True)
    value = loss(student, teacher)
    g_lean, = torch.autograd.grad(value, student)

    total = 0.
    views = student.chunk(V)
    for i, t in enumerate(teacher):
        p = torch.softmax((t - loss.center) / 0.04, dim=-1)
        for v in range(V):
            if v != i:
                total = total - (p * torch.log_softmax(views[v] / 0.1, dim=-1)).sum(-1).mean()
    ref = total / (2 * (V - 1))
    g_ref, = torch.autograd.grad(ref, student)
    torch.testing.assert_close(value, ref, rtol=1e-5, atol=0)
    torch.testing.assert_close(g_lean, g_ref, rtol=1e-4, atol=1e-7)
    # a list of per-view tensors gives the same value
    torch.testing.assert_close(loss(list(views), teacher), value)
