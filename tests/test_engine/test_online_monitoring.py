"""Seeing what a run learns: online validation, health metrics, the collapse alarm, curves.

All runs use the micro SAIP model (tests/data/configs/saip_micro_toy.py) on generated crops,
in this process (no interpreter start per run).
"""
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import MessageHub, MMLogger
from mmengine.visualization import LocalVisBackend
from mmpretrain.registry import HOOKS, VISBACKENDS

from saip_mm.engine.hooks import CollapseError, SAIPHealthHook, TrainingCurvesHook
from saip_testlib import MICRO_CONFIG, LogRecords, micro_runner  # also registers _CrashHook

ROOT = Path(__file__).resolve().parents[2]
MICRO_ARCH = dict(embed_dims=32, num_layers=8, num_heads=2, feedforward_channels=64)
sys.path.insert(0, str(ROOT / 'tools' / 'analysis_tools'))
sys.path.insert(0, str(ROOT / 'tools' / 'model_converters'))


@HOOKS.register_module()
class _ModeProbeHook(Hook):
    """Records whether the student is in train mode at the start of every iteration."""
    modes = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        model = runner.model
        _ModeProbeHook.modes.append((runner.iter + 1, model.training, model.teacher.training))


@HOOKS.register_module()
class _ForceCollapseHook(Hook):
    """Every image gets the same final feature: the backbones' last LayerNorm outputs its bias."""

    def before_train(self, runner):
        bias = torch.randn(runner.model.backbone.ln1.bias.shape)
        for vit in (runner.model.backbone, runner.model.teacher['backbone']):
            with torch.no_grad():
                vit.ln1.weight.zero_()
                vit.ln1.bias.copy_(bias)


@VISBACKENDS.register_module()
class _CloseProbeVisBackend(LocalVisBackend):
    """A LocalVisBackend that records the steps of its scalars and whether it was closed."""
    steps, closed = [], []

    def add_scalars(self, scalar_dict, step=0, file_path=None, **kwargs):
        _CloseProbeVisBackend.steps.append(step)
        super().add_scalars(scalar_dict, step, file_path, **kwargs)

    def close(self):
        _CloseProbeVisBackend.closed.append(True)
        super().close()


def _state(path: Path) -> dict:
    return torch.load(path, map_location='cpu')['state_dict']


def _scalars(work: Path) -> list:
    files = sorted(work.glob('*/vis_data/scalars.json'))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


MONITORS = (dict(type='SAIPHealthHook', interval=1), dict(type='TrainingCurvesHook',
                                                          loss_interval=1))


def test_validation_and_monitors_leave_training_bit_identical(person_folder, market1501_split,
                                                              tmp_path):
    """4 iterations with validation at 2 and 4, health metrics and curves every iteration, give
    the weights, teacher and centre of 4 plain iterations, bit for bit; the student is back in
    train mode after each validation; the best checkpoint, curves.json and curves.png exist.
    Without RandomStateHook's save/restore around validation this fails (the validation
    DataLoader draws its base seed from torch's generator)."""
    _ModeProbeHook.modes = []
    with_val = tmp_path / 'val'
    micro_runner(with_val, person_folder, market1501_split,
            hooks=MONITORS + (dict(type='_ModeProbeHook'), )).train()
    plain = tmp_path / 'plain'
    micro_runner(plain, person_folder).train()
    a, b = _state(with_val / 'iter_4.pth'), _state(plain / 'iter_4.pth')
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [m for m in _ModeProbeHook.modes] == [(i, True, False) for i in (1, 2, 3, 4)]

    rows = _scalars(with_val)
    val_steps = [r['step'] for r in rows if 'reid/mAP' in r]
    assert val_steps == [2, 4]
    health = [r for r in rows if 'health/rankme_student' in r]
    assert [r['step'] for r in health] == [1, 2, 3, 4]
    for r in health:
        assert 1 <= r['health/rankme_student'] <= 2  # batch 2: at most min(B, C) = 2
        assert -1 <= r['health/cosine_teacher'] <= 1 and 0 <= r['health/csm_entropy'] <= 1
        assert r['health/agreement'] in (0, 0.25, 0.5, 0.75, 1)  # 4 cross-view pairs
    curves = json.loads((with_val / 'curves.json').read_text())
    assert [p[0] for p in curves['val/reid/mAP']] == [2, 4]
    assert [p[1] for p in curves['val/reid/mAP']] == [
        r['reid/mAP'] for r in rows if 'reid/mAP' in r]
    assert [p[0] for p in curves['health/rankme_teacher']] == [1, 2, 3, 4]
    assert [p[0] for p in curves['loss_csm']] == [1, 2, 3, 4]
    assert (with_val / 'curves.png').stat().st_size > 1000
    assert len(list(with_val.glob('best_reid_mAP_iter_*.pth'))) == 1
    assert not list(with_val.glob('*.partial'))


def test_resume_with_validation_is_bit_exact_and_keeps_the_curves(person_folder,
                                                                   market1501_split, tmp_path):
    """A run killed after iteration 2 and its validation, then resumed (--resume) to 4,
    equals 4 straight iterations bit for bit, and its curves hold both validations (the one
    at 2 came after the iteration-2 checkpoint: it is taken from the work dir's curves.json)."""
    straight = tmp_path / 'straight'
    micro_runner(straight, person_folder, market1501_split, hooks=MONITORS).train()
    work = tmp_path / 'resumed'
    with pytest.raises(KeyboardInterrupt):
        micro_runner(work, person_folder, market1501_split,
                hooks=MONITORS + (dict(type='_CrashHook', at_iter=2), )).train()
    assert (work / 'iter_2.pth').is_file() and not (work / 'iter_3.pth').exists()
    micro_runner(work, person_folder, market1501_split, hooks=MONITORS, resume=True).train()
    a, b = _state(straight / 'iter_4.pth'), _state(work / 'iter_4.pth')
    for key in a:
        assert torch.equal(a[key], b[key]), key
    curves = json.loads((work / 'curves.json').read_text())
    expected = json.loads((straight / 'curves.json').read_text())
    assert [p[0] for p in curves['val/reid/mAP']] == [2, 4]
    assert curves['val/reid/mAP'] == expected['val/reid/mAP']
    assert curves['health/rankme_student'] == expected['health/rankme_student']


def test_online_metric_equals_reid_frozen_eval_on_the_exported_weights(person_folder,
                                                                       market1501_split,
                                                                       tmp_path):
    """The validation at the last iteration ranks with the EMA teacher's cls token: exporting
    that teacher and running reid_frozen_eval gives the same mAP and rank-k."""
    from reid_frozen_eval import evaluate_backbones
    from saip_to_backbone import convert
    work = tmp_path / 'work'
    micro_runner(work, person_folder, market1501_split, iters=2).train()
    online = [r for r in _scalars(work) if 'reid/mAP' in r][-1]
    convert(str(work / 'iter_2.pth'), str(tmp_path / 'backbone.pth'))
    report = evaluate_backbones(str(market1501_split), {'exported': str(tmp_path / 'backbone.pth'),
                                                         'random': None},
                                arch=MICRO_ARCH, batch_size=4)
    offline = report['results']['exported']
    for metric in ('mAP', 'rank-1', 'rank-5', 'rank-10'):
        assert online[f'reid/{metric}'] == pytest.approx(offline[metric], abs=1e-3), metric
    # and the comparison is not vacuous: random weights rank differently
    assert report['results']['random']['mAP'] != pytest.approx(offline['mAP'], abs=1e-3)


COLLAPSE = (dict(type='_ForceCollapseHook'),
            dict(type='SAIPHealthHook', interval=1, patience=3, on_collapse='stop'))


def test_alarm_fires_on_a_forced_collapse_and_stops(person_folder, tmp_path):
    """Every image mapped to one feature (lr 0 keeps it so): RankMe 1 and cosine 1 at every
    check; after `patience` checks the run stops with CollapseError before that iteration's
    checkpoint, and the warning names the metric, its value, the limit and the iteration.
    On the way out the curves are written with every point up to the stop (the alarm's own
    iteration included), and the visualizer's backends are closed."""
    _CloseProbeVisBackend.steps, _CloseProbeVisBackend.closed = [], []
    work = tmp_path / 'collapsed'
    runner = micro_runner(work, person_folder, iters=6, hooks=COLLAPSE + (
        dict(type='TrainingCurvesHook', loss_interval=1), ),
        visualizer=dict(vis_backends=[dict(type='_CloseProbeVisBackend')]),
        **{'optim_wrapper.optimizer.lr': 0.0})
    with pytest.raises(CollapseError) as err:
        runner.train()
    msg = str(err.value)
    assert 'collapse' in msg and 'iteration 3' in msg and 'since iteration 1' in msg
    assert 'cosine_student=1.0000 > 0.99' in msg
    # last_checkpoint names iteration 2's, newer than the weights the first unhealthy check
    # measured (those after iteration 0): said so
    assert 'iter_2.pth (after iteration 2), does not predate the unhealthy checks' in msg
    assert not (work / 'iter_3.pth').exists()
    log = next(work.glob('*/*.log')).read_text()
    assert 'WARNING' in log and 'representation collapse suspected at iteration 3' in log

    curves = json.loads((work / 'curves.json').read_text())
    for key in ('health/cosine_student', 'health/rankme_teacher', 'loss_csm', 'loss_csr'):
        assert [p[0] for p in curves[key]] == [1, 2, 3], key
    assert curves['health/cosine_student'][-1][1] == pytest.approx(1.0, abs=1e-4)
    assert (work / 'curves.png').stat().st_size > 1000
    assert 3 in _CloseProbeVisBackend.steps and _CloseProbeVisBackend.closed == [True]


def test_the_alarm_streak_survives_a_resume(person_folder, tmp_path):
    """Two unhealthy checks, then the run ends (as a kill would after its checkpoint); the
    resumed run's first check is the third consecutive one: the alarm fires there, counting
    from iteration 1, not three checks later."""
    work = tmp_path / 'collapsed'
    options = {'optim_wrapper.optimizer.lr': 0.0}
    micro_runner(work, person_folder, iters=2, hooks=COLLAPSE, **options).train()
    saved = torch.load(work / 'iter_2.pth', map_location='cpu')['saip_health']
    assert saved == dict(streak={'cosine_student': 2}, first_bad={'cosine_student': 1})
    resumed = micro_runner(work, person_folder, iters=3, hooks=COLLAPSE, resume=True, **options)
    with pytest.raises(CollapseError) as err:
        resumed.train()
    assert 'collapse suspected at iteration 3' in str(err.value)
    assert 'since iteration 1' in str(err.value)
    # weights loaded with load_from start a new count: three more checks
    fresh = micro_runner(tmp_path / 'fresh', person_folder, iters=3, hooks=COLLAPSE,
                         load_from=str(work / 'iter_2.pth'), **options)
    with pytest.raises(CollapseError, match='at iteration 3: .* since iteration 1'):
        fresh.train()


@pytest.mark.parametrize('ckpt_iter, predates', [(3, True), (4, False), (5, False)])
def test_the_stop_judges_the_last_checkpoint_by_its_iteration(tmp_path, ckpt_iter, predates):
    """First unhealthy check at iteration 5: it measured the weights after iteration 4, so the
    checkpoint of iteration 4 (meta iter 4) is already unhealthy, that of 3 predates it. A
    newer best checkpoint does not count: only the one `last_checkpoint` names."""
    ckpt = tmp_path / f'iter_{ckpt_iter}.pth'
    torch.save(dict(meta=dict(iter=ckpt_iter)), ckpt)
    torch.save(dict(meta=dict(iter=9)), tmp_path / 'best_reid_mAP_iter_9.pth')
    runner = SimpleNamespace(work_dir=str(tmp_path))
    assert SAIPHealthHook._newest_checkpoint(runner, 5) == \
        'No checkpoint was written before the alarm.'
    (tmp_path / 'last_checkpoint').write_text(str(ckpt))
    where = SAIPHealthHook._newest_checkpoint(runner, 5)
    assert f'{ckpt} (after iteration {ckpt_iter}), ' in where
    if predates:
        assert 'predates the unhealthy checks' in where and 'does not' not in where
    else:
        assert 'does not predate the unhealthy checks' in where
    assert 'the first, at iteration 5, measured the weights after iteration 4' in where
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'gone.pth'))
    assert 'could not be read' in SAIPHealthHook._newest_checkpoint(runner, 5)


def test_nan_health_values_are_logged_drawn_and_leave_the_streak_alone(tmp_path):
    """NaN checks (non-finite features) neither extend nor end a streak; the log, the
    visualizer and the curves take them without an error."""
    logged, closed = [], []
    runner = SimpleNamespace(
        model=SimpleNamespace(health=None), iter=0, work_dir=str(tmp_path),
        message_hub=MessageHub.get_instance('nan_health_test'),
        logger=MMLogger.get_instance('nan_health_test'),
        visualizer=SimpleNamespace(add_scalars=lambda scalars, step: logged.append(step),
                                   close=lambda: closed.append(True)))
    records = LogRecords()
    runner.logger.addHandler(records)
    hook = SAIPHealthHook(interval=1, patience=2, on_collapse='stop')
    curves = TrainingCurvesHook(loss_interval=100)
    hook.before_train(runner)
    values = [0.995, math.nan, 0.5, 0.995, math.nan, 0.999]
    with pytest.raises(CollapseError, match='at iteration 6: cosine_student=0.9990 > 0.99 at 2 '
                                            'consecutive checks .* since iteration 4'):
        for i, value in enumerate(values):
            runner.iter = i
            runner.model.health = dict(cosine_student=value, rankme_student=math.nan)
            hook.after_train_iter(runner, i)
            curves.record(runner, i + 1)
    assert logged == [1, 2, 3, 4, 5, 6] and closed == [True]
    assert sum('not finite' in m and 'cosine_student' in m for m in records.messages) == 2
    assert 'Health(iter 2): cosine_student: nan' in '\n'.join(records.messages)
    curves.write(runner)
    saved = json.loads((tmp_path / 'curves.json').read_text())
    assert [p[0] for p in saved['health/cosine_student']] == [1, 2, 3, 4, 5]
    assert math.isnan(saved['health/cosine_student'][1][1])
    assert (tmp_path / 'curves.png').stat().st_size > 1000


def test_nan_at_a_health_check_ends_in_the_named_nan_stop(person_folder, tmp_path):
    """A health check due at the step whose inputs are infinite (a pipeline std of 1e-30):
    the health metrics give NaN instead of raising torch's LinAlgError from the SVD, and the
    NaN stop of SAIP.parse_losses names the loss terms (the check that every rank reaches, so
    a distributed run stops everywhere instead of hanging in the loss all-reduce)."""
    runner = micro_runner(tmp_path / 'work', person_folder, iters=2,
                          hooks=(dict(type='SAIPHealthHook', interval=1), ),
                          **{'train_dataloader.dataset.pipeline.1.std': [1e-30] * 3})
    with pytest.raises(FloatingPointError,
                       match='SAIP: non-finite loss at iteration 1: loss_csm=nan'):
        runner.train()


def test_alarm_stays_silent_on_a_healthy_micro_run(person_folder, tmp_path):
    """The same micro run without the forced collapse, default rules: no alarm."""
    work = tmp_path / 'healthy'
    micro_runner(work, person_folder, iters=6, hooks=(
        dict(type='SAIPHealthHook', interval=1, on_collapse='stop'), )).train()
    rows = [r for r in _scalars(work) if 'health/rankme_student' in r]
    assert len(rows) == 6
    log = next(work.glob('*/*.log')).read_text()
    assert 'representation collapse' not in log


def test_predict_embeds_with_the_teacher_or_the_student_and_changes_nothing():
    """`predict` sets `pred_feature` = the chosen backbone's final cls token; no state moves."""
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    cfg = Config.fromfile(str(MICRO_CONFIG))
    model = MODELS.build(cfg.model)
    model.init_weights()
    with torch.no_grad():  # make the student differ from its EMA teacher
        for p in model.backbone.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.train()
    images = torch.randn(3, 3, 256, 128)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    samples = model(images, [DataSample() for _ in range(3)], mode='predict')
    teacher = model.teacher['backbone'](images)['last'][:, 0]
    got = torch.stack([s.pred_feature for s in samples])
    assert torch.allclose(got, teacher, atol=1e-6)
    model.val_feature = 'student'
    model.eval()
    student = model.backbone(images)['last'][:, 0]
    assert torch.allclose(model(images, mode='predict'), student, atol=1e-6)
    assert not torch.allclose(student, teacher, atol=1e-3)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(ValueError, match='val_feature'):
        MODELS.build(dict(cfg.model, val_feature='ema'))


def test_health_hook_rejects_bad_settings():
    with pytest.raises(ValueError, match='on_collapse'):
        SAIPHealthHook(on_collapse='halt')
    with pytest.raises(ValueError, match=r"collapse_rules\['rankme_student'\]"):
        SAIPHealthHook(collapse_rules={'rankme_student': ('<=', 1)})
    with pytest.raises(ValueError, match='interval'):
        SAIPHealthHook(interval=0)
