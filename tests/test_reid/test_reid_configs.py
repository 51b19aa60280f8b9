"""The ReID configs end to end: tiny datasets in the real layouts, a converted SAIP backbone,
one training iteration, validation through ReIDMetric; and the strict pretrained loading."""
import importlib.util
import math
import os.path as osp
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / 'projects' / 'reid' / 'configs'
MARKET = CONFIGS / 'reid_saip-vit-tiny-p16_1xb64-pk16x4-120e_market1501-256x128.py'
MSMT17 = CONFIGS / 'reid_saip-vit-tiny-p16_1xb64-pk16x4-120e_msmt17-256x128.py'


@pytest.fixture(scope='module')
def market_root(tmp_path_factory, write_image):
    """Market-1501 layout: 2 training identities x 2 images (one P x K batch with P = K = 2);
    2 queries whose identities are in the gallery under other cameras, plus a same-camera
    image, a distractor and a junk image."""
    root = tmp_path_factory.mktemp('market1501')
    names = dict(
        bounding_box_train=['0002_c1s1_000451_03.jpg', '0002_c2s1_000551_01.jpg',
                            '0007_c3s1_000101_02.jpg', '0007_c4s1_000201_01.jpg'],
        query=['0001_c1s1_001051_00.jpg', '0003_c2s1_000101_00.jpg'],
        bounding_box_test=['0001_c2s1_000301_01.jpg', '0001_c1s1_000901_02.jpg',
                           '0003_c5s1_000201_01.jpg', '0000_c1s1_000151_01.jpg',
                           '-1_c1s1_000401_03.jpg'])
    for folder, files in names.items():
        for i, name in enumerate(files):
            write_image(osp.join(root, folder, name), seed=i)
    return str(root)


@pytest.fixture(scope='module')
def msmt17_root(tmp_path_factory, write_image):
    """MSMT17_V1 layout: list_train + list_val give the 2 x 2 training batch."""
    root = tmp_path_factory.mktemp('MSMT17_V1')
    lists = dict(
        train=[('0000/0000_000_01_0303morning_0015_0.jpg', 0),
               ('0000/0000_001_05_0303noon_0031_1.jpg', 0),
               ('0001/0001_000_12_0303afternoon_0100_0.jpg', 1)],
        val=[('0001/0001_003_07_0303afternoon_0200_0.jpg', 1)],
        query=[('0000/0000_000_01_0303morning_0008_0.jpg', 0),
               ('0001/0001_000_02_0303noon_0010_0.jpg', 1)],
        gallery=[('0000/0000_004_15_0303morning_0150_1.jpg', 0),
                 ('0001/0001_002_03_0303noon_0090_0.jpg', 1),
                 ('0002/0002_000_01_0303noon_0009_0.jpg', 2)])
    for list_name, entries in lists.items():
        folder = 'train' if list_name in ('train', 'val') else 'test'
        with open(osp.join(root, f'list_{list_name}.txt'), 'w') as f:
            for i, (rel, pid) in enumerate(entries):
                write_image(osp.join(root, folder, rel), seed=i)
                f.write(f'{rel} {pid}\n')
    return str(root)


def tiny_cfg(config, tmp_path, data_root, shrink_config, tiny_model=True):
    cfg = Config.fromfile(str(config))
    return shrink_config(cfg, str(tmp_path / 'work'), data_root, batch_size=4, num_identities=2,
                         tiny_model=tiny_model)


@pytest.mark.parametrize('config,root_fixture', [(MARKET, 'market_root'), (MSMT17, 'msmt17_root')])
def test_config_trains_and_evaluates(config, root_fixture, request, tmp_path, saip_checkpoints,
                                     shrink_config, run_train):
    cfg = tiny_cfg(config, tmp_path, request.getfixturevalue(root_fixture), shrink_config)
    cfg.merge_from_dict(dict(pretrained=saip_checkpoints['backbone']))  # --cfg-options pretrained=
    runner = run_train(cfg)
    assert runner.iter == 1
    hub = runner.message_hub
    assert hub.get_scalar('val/reid/num_valid_queries').current() == 2
    assert hub.get_scalar('val/reid/num_invalid_queries').current() == 0
    for key in ('mAP', 'rank-1', 'rank-5', 'rank-10'):
        value = hub.get_scalar(f'val/reid/{key}').current()
        assert 0 <= value <= 100 and not math.isnan(value)
    assert list((tmp_path / 'work').glob('best_reid_mAP_epoch_1.pth'))  # save_best key exists


def test_pretrained_values_are_the_saip_teacher(tmp_path, market_root, saip_checkpoints,
                                                shrink_config):
    """Before the first step, the config's stock ViT-Tiny holds exactly the SAIP teacher's
    backbone: every tensor, unchanged (same 16x8 grid, so no resize)."""
    from mmengine.runner import Runner
    cfg = tiny_cfg(MARKET, tmp_path, market_root, shrink_config, tiny_model=False)
    cfg.merge_from_dict(dict(pretrained=saip_checkpoints['vit_tiny']))
    cfg.train_cfg.max_epochs = 0  # initialise, run the checks, no step
    runner = Runner.from_cfg(cfg)
    runner.train()
    state = runner.model.backbone.state_dict()
    teacher = saip_checkpoints['vit_tiny_teacher']
    assert set(state) == set(teacher) - {'ln_inter.weight', 'ln_inter.bias'}
    for key, value in state.items():
        torch.testing.assert_close(value, teacher[key], rtol=0, atol=0)


@pytest.mark.parametrize('which,message', [
    ('full', r'is a full SAIP pretraining checkpoint .* Convert it first'),
    ('small', r'width 384 \(ViT-Small\) but model.backbone has width 192'),
])
def test_wrong_checkpoint_fails_clearly(which, message, tmp_path, market_root, saip_checkpoints,
                                        shrink_config):
    from mmengine.runner import Runner
    cfg = tiny_cfg(MARKET, tmp_path, market_root, shrink_config, tiny_model=False)  # ViT-Tiny
    cfg.merge_from_dict(dict(pretrained=saip_checkpoints[which]))
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match=message):  # before any iteration
        runner.train()
    assert runner.iter == 0


def test_tools_train_and_test(tmp_path, market_root, saip_checkpoints, tiny_arch):
    """tools/train.py as a user runs it (a subprocess), choosing the backbone with pretrained=,
    then tools/test.py on its checkpoint (in-process: its main() takes argv). The config
    inherits the real one and only swaps in the small test backbone."""
    config = tmp_path / 'market_tiny.py'
    config.write_text(
        f'_base_ = [{str(MARKET)!r}]\n'
        f'model = dict(backbone=dict(arch=dict(_delete_=True, **{tiny_arch!r}),\n'
        f'                           drop_path_rate=0.0),\n'
        f'             head=dict(in_channels={tiny_arch["embed_dims"]}))\n')
    work = tmp_path / 'work'
    data_options = ['env_cfg.dist_cfg.backend=gloo']
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        data_options += [f'{loader}.dataset.data_root={market_root}', f'{loader}.batch_size=4',
                         f'{loader}.num_workers=0', f'{loader}.persistent_workers=False']
    options = data_options + [
        f'pretrained={saip_checkpoints["backbone"]}',
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
        'train_dataloader.sampler.num_identities=2', 'train_dataloader.sampler.num_instances=2',
        'default_hooks.logger.interval=1',
    ]
    res = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'train.py'), str(config), '--work-dir', str(work),
         '--cfg-options', *options],
        capture_output=True, text=True, timeout=300, cwd=str(ROOT))
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert re.search(r'loaded all \d+ tensors of model.backbone from .*'
                     + re.escape(osp.basename(saip_checkpoints['backbone'])), log)
    assert re.search(r'reid/mAP: \d', log) and re.search(r'reid/rank-1: \d', log)
    assert (work / 'epoch_1.pth').is_file()

    # tools/test.py never reads `pretrained` (the config's default path does not exist here)
    spec = importlib.util.spec_from_file_location('saip_tools_test', ROOT / 'tools' / 'test.py')
    tools_test = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tools_test)
    metrics = tools_test.main([str(config), str(work / 'epoch_1.pth'), '--work-dir',
                               str(tmp_path / 'test'), '--cfg-options', *data_options])
    assert metrics['reid/num_valid_queries'] == 2
    assert 0 <= metrics['reid/mAP'] <= 100 and 0 <= metrics['reid/rank-1'] <= 100
