"""A dataset in another folder: the keys each project README lists are all it takes."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config

from projects_testlib import (HERE, ROOT, assert_trained_and_evaluated, probe_results,
                              write_derived_config)
from test_pose import write_coco_keypoints

POSE = ROOT / 'projects' / 'pose'
DETECTION = ROOT / 'projects' / 'detection'
COCO = 'td-hm_saip-vit-tiny_8xb64-210e_coco-256x192.py'
WHOLEBODY = 'td-hm_saip-vit-tiny_8xb64-210e_coco-wholebody-256x192.py'
CROWDHUMAN = 'faster-rcnn_saip-vit-tiny_sfp_8xb2-30e_crowdhuman.py'
FASHIONPEDIA = 'mask-rcnn_saip-vit-tiny_sfp_8xb2-12e_fashionpedia.py'
BBOX_FILE = 'person_detection_results/COCO_val2017_detections_AP_H_56_person.json'


def readme_cfg_options(readme: Path, config_name: str, data_dir: str) -> dict:
    """The ``--cfg-options`` of the README command that runs ``config_name`` on a dataset in
    ``DIR`` (the command with ``data_root`` keys), DIR filled in."""
    text = readme.read_text().replace('\\\n', ' ')
    for line in text.splitlines():
        if config_name in line and '--cfg-options' in line and 'data_root=DIR' in line:
            tokens = line.split('--cfg-options', 1)[1].split()
            pairs = [t.split('=', 1) for t in tokens if '=' in t]
            return {k: v.replace('DIR', data_dir) for k, v in pairs}
    raise AssertionError(f'{readme} has no --cfg-options command for {config_name}')


def strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


@pytest.mark.parametrize('folder,config,command_of,default_root', [
    (POSE, COCO, COCO, 'data/coco'),
    (POSE, WHOLEBODY, COCO, 'data/coco'),  # the README: "the same keys serve" it
    (DETECTION, CROWDHUMAN, CROWDHUMAN, 'data/CrowdHuman'),
    (DETECTION, FASHIONPEDIA, FASHIONPEDIA, 'data/fashionpedia'),
])
def test_readme_keys_move_every_data_path(folder, config, command_of, default_root):
    data_dir = '/elsewhere/dataset'
    cfg = Config.fromfile(str(folder / 'configs' / config))
    options = readme_cfg_options(folder / 'README.md', command_of, data_dir)
    cfg.merge_from_dict(options)
    for split in ('train', 'val', 'test'):
        assert cfg[f'{split}_dataloader'].dataset.data_root == data_dir, split
    merged = cfg.to_dict()
    merged.pop('data_root', None)  # the file's variable, already substituted everywhere
    stale = [s for s in strings(merged) if default_root in s]
    assert not stale, f'{config}: still under {default_root} after the README keys: {stale}'
    if folder == POSE:  # the evaluator follows the dataset (no ann_file of its own)
        assert 'ann_file' not in cfg.val_evaluator and 'ann_file' not in cfg.test_evaluator


def write_coco_elsewhere(data_dir: Path) -> None:
    """COCO keypoints in its released layout: train2017/, val2017/, annotations/, detections."""
    scratch = data_dir / 'scratch'
    ann = write_coco_keypoints(scratch)
    for split in ('train2017', 'val2017'):
        shutil.copytree(scratch / 'images', data_dir / split)
        (data_dir / 'annotations').mkdir(exist_ok=True)
        shutil.copy(scratch / ann, data_dir / 'annotations' / f'person_keypoints_{split}.json')
    images = json.loads((scratch / ann).read_text())['images']
    detections = [dict(image_id=img['id'], category_id=1, bbox=[8.0, 6.0, 44.0, 80.0],
                       score=0.9) for img in images]
    (data_dir / BBOX_FILE).parent.mkdir(parents=True)
    (data_dir / BBOX_FILE).write_text(json.dumps(detections))
    shutil.rmtree(scratch)


def test_pose_runs_from_another_folder_through_mim(tmp_path, saip_checkpoints):
    """`mim train mmpose <project config>` from a folder without data/, with the checkpoint
    and only the README's data keys overridden: trains, then evaluates on the detector boxes
    with the annotations of the moved dataset."""
    data_dir = tmp_path / 'datasets' / 'coco'
    write_coco_elsewhere(data_dir)
    # tiny run: 1 iteration, batch 2, no workers; nothing about data paths
    loader = 'dict(batch_size=2, num_workers=0, persistent_workers=False)'
    config = write_derived_config(
        tmp_path / 'pose_elsewhere.py', POSE / 'configs' / COCO,
        f'train_dataloader = {loader}\nval_dataloader = {loader}\ntest_dataloader = {loader}\n')
    workdir = tmp_path / 'somewhere_else'
    workdir.mkdir()
    options = readme_cfg_options(POSE / 'README.md', COCO, str(data_dir))
    # the probe hook of the derived config lives with the tests; saip_mm comes from the install
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(HERE)] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    proc = subprocess.run(
        [sys.executable, '-m', 'mim', 'train', 'mmpose', str(config), '--work-dir', 'work',
         '--cfg-options', f'pretrained={saip_checkpoints.tiny}',
         *[f'{k}={v}' for k, v in options.items()]],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=400)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    assert 'Training finished successfully' in log
    assert f'loaded all 150 tensors of model.backbone from {saip_checkpoints.tiny}' in log
    ann = data_dir / 'annotations' / 'person_keypoints_val2017.json'
    assert re.search(rf'CocoMetric .* loaded the annotation file from {re.escape(str(ann))}', log)
    assert_trained_and_evaluated(probe_results(workdir / 'work'), ['coco/AP'])
