"""The attribute configs end to end: .mat annotations in the released layouts, converted, a
converted SAIP backbone, one training iteration, validation through AttributeMetric."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from test_attribute_datasets import convert, write_pa100k, write_peta

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / 'projects' / 'attributes' / 'configs'


def make_pa100k(root, write_image):
    rng = np.random.RandomState(0)
    names = [f'{i:06d}.jpg' for i in range(1, 8)]
    labels = rng.randint(0, 2, (7, 26))
    write_pa100k(root, write_image, [f'attr{j}' for j in range(26)], dict(
        train=(names[:3], labels[:3]), val=(names[3:4], labels[3:4]),
        test=(names[4:], labels[4:])))
    assert convert('pa100k_to_json.py', root).returncode == 0
    return labels[:4]  # trainval


def make_peta(root, write_image):
    rng = np.random.RandomState(1)
    labels = rng.randint(0, 2, (7, 40))  # 40 attributes in the file, the first 35 are used
    write_peta(root, write_image, [f'attr{j}' for j in range(40)], labels,
               [([0, 1, 2], [3], [4, 5, 6])] * 5)
    assert convert('peta_to_json.py', root).returncode == 0
    return labels[:4, :35]


@pytest.mark.parametrize('name,make', [('pa100k', make_pa100k), ('peta', make_peta)])
@pytest.mark.filterwarnings('ignore:attribute_metrics')  # 3 test images: some rates undefined
def test_config_trains_and_evaluates(name, make, tmp_path, write_image, saip_checkpoints,
                                     shrink_config, run_train):
    data_root = tmp_path / name
    trainval_labels = make(data_root, write_image)
    cfg = Config.fromfile(str(CONFIGS / f'par_saip-vit-tiny-p16_1xb64-30e_{name}-256x128.py'))
    cfg = shrink_config(cfg, str(tmp_path / 'work'), str(data_root), batch_size=4)
    cfg.merge_from_dict(dict(pretrained=saip_checkpoints['backbone']))  # --cfg-options pretrained=
    runner = run_train(cfg)
    assert runner.iter == 1
    # the loss weights came from the training split
    torch.testing.assert_close(runner.model.head.pos_ratio,
                               torch.tensor(trainval_labels.mean(0), dtype=torch.float32))
    hub = runner.message_hub
    for key in ('mA', 'accuracy', 'precision', 'recall', 'f1'):
        value = hub.get_scalar(f'val/attribute/{key}').current()
        assert 0 <= value <= 100 and not math.isnan(value)


def test_wrong_checkpoint_fails_clearly(tmp_path, write_image, saip_checkpoints, shrink_config):
    from mmengine.runner import Runner
    make_pa100k(tmp_path / 'pa100k', write_image)
    cfg = Config.fromfile(str(CONFIGS / 'par_saip-vit-tiny-p16_1xb64-30e_pa100k-256x128.py'))
    cfg = shrink_config(cfg, str(tmp_path / 'work'), str(tmp_path / 'pa100k'),
                        tiny_model=False)  # the config's ViT-Tiny
    cfg.merge_from_dict(dict(pretrained=saip_checkpoints['small']))
    with pytest.raises(ValueError, match=r'width 384 \(ViT-Small\) but model.backbone has width '
                                         r'192 \(ViT-Tiny\)'):
        Runner.from_cfg(cfg).train()
