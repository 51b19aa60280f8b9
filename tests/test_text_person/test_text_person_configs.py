"""The text-person configs end to end on tiny datasets in the released formats: a converted
SAIP backbone passed with pretrained=, one training iteration, text -> image evaluation.

On CPU the configs' ViT-Tiny and 4-layer text tower are swapped for a 2-block 32-wide ViT (the
SAIP checkpoint has that backbone) and a 1-layer text encoder; everything else is the config's.
"""
import importlib.util
import json
import os.path as osp
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / 'projects' / 'text_person' / 'configs'
NAME = 'tpr_saip-vit-tiny-p16_txt-4l_1xb64-60e-384x128_{}.py'
CONFIG = dict(cuhk=CONFIGS / NAME.format('cuhk-pedes'), icfg=CONFIGS / NAME.format('icfg-pedes'),
              rstp=CONFIGS / NAME.format('rstpreid'))
TRAIN_SAMPLES = dict(cuhk=8, icfg=4, rstp=8)  # 4 training images x captions per image
TEXT_ENCODER = dict(vocab_size=64, max_length=32, width=32, num_layers=1, num_heads=2,
                    dropout=0.0)


def tiny_model_overrides(tiny_arch):
    return dict(backbone=dict(arch=dict(_delete_=True, **tiny_arch), drop_path_rate=0.0),
                text_encoder=TEXT_ENCODER, embed_dims=32, num_classes=2)


def data_overrides(root, train_batch):
    """Config overrides for the tiny dataset at ``root``: no worker processes, gloo."""
    overrides = {'env_cfg.dist_cfg.backend': 'gloo', 'train_dataloader.batch_size': train_batch}
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        overrides.update({f'{loader}.dataset.data_root': root, f'{loader}.num_workers': 0,
                          f'{loader}.persistent_workers': False})
    return overrides


def data_options(root, train_batch):
    """The same as --cfg-options arguments."""
    return [f'{k}={v}' for k, v in data_overrides(root, train_batch).items()]


def tiny_config(kind, tmp_path, root, tiny_arch, pretrained):
    """The real config of ``kind`` with the small test model, one epoch of one iteration."""
    cfg = Config.fromfile(str(CONFIG[kind]))
    cfg.merge_from_dict(dict(model=tiny_model_overrides(tiny_arch)))
    cfg.merge_from_dict(data_overrides(root, TRAIN_SAMPLES[kind]))
    cfg.pretrained = pretrained  # as --cfg-options pretrained=... does
    cfg.work_dir = str(tmp_path / 'work')
    cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.val_interval = 1
    cfg.default_hooks.checkpoint.interval = -1
    cfg.default_hooks.checkpoint.save_last = False
    return cfg


def recomputed_t2i_metrics(model, dataloader, topk=(1, 5, 10)) -> dict:
    """The text -> image metrics recomputed outside ``predict`` and the metric class: every
    image through the image tower, every caption through the text tower on its own, ranked by
    :func:`text_to_image_metrics`. A pipeline that embeds or pairs anything differently
    (captions given to another image, images normalised otherwise) disagrees with it."""
    import torch.nn.functional as F
    from saip_mm.evaluation import text_to_image_metrics
    model.eval()
    images, image_pids, queries, query_pids = [], [], [], []
    with torch.no_grad():
        for batch in dataloader:
            data = model.data_preprocessor(batch, False)
            feats = F.normalize(model.extract_image_feat(data['inputs']), dim=1)
            for sample, feat in zip(data['data_samples'], feats):
                images.append(feat)
                image_pids.append(int(sample.pid))
                for caption in sample.captions:
                    queries.append(F.normalize(model.extract_text_feat([caption]), dim=1)[0])
                    query_pids.append(int(sample.pid))
    return text_to_image_metrics(torch.stack(queries) @ torch.stack(images).t(), query_pids,
                                 image_pids, topk)


def test_tools_train_and_test(tmp_path, text_person_root, saip_checkpoints, tiny_arch):
    """tools/train.py as a user runs it, with the SAIP backbone as --cfg-options pretrained=,
    one iteration at lr 0 so the saved backbone must be exactly the loaded one; then
    tools/test.py on its checkpoint, which needs no vocabulary file."""
    root = text_person_root('cuhk')
    config = tmp_path / 'cuhk_tiny.py'
    config.write_text(f'_base_ = [{str(CONFIG["cuhk"])!r}]\n'
                      f'model = {tiny_model_overrides(tiny_arch)!r}\n')
    work = tmp_path / 'work'
    pretrained = saip_checkpoints['backbone']
    options = data_options(root, TRAIN_SAMPLES['cuhk']) + [
        f'pretrained={pretrained}', 'optim_wrapper.optimizer.lr=0.0',
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'default_hooks.logger.interval=1']
    res = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'train.py'), str(config), '--work-dir', str(work),
         '--cfg-options', *options],
        capture_output=True, text=True, timeout=300, cwd=str(ROOT))
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    assert re.search(r'loaded all \d+ tensors of model.backbone from '
                     + re.escape(pretrained) + r'; resized pos_embed \(1, 129, 32\) -> '
                     r'\(1, 193, 32\) \(grid \(16, 8\) -> \(24, 8\)', log)
    assert re.search(r'text vocabulary: \d+ tokens from 8 training captions', log)
    assert re.search(r'Epoch\(train\) \[1\]\[1/1\].* loss_sdm: \d+\.\d+ +loss_id: \d+\.\d+', log)
    for key in ('rank-1', 'rank-5', 'rank-10', 'mAP', 'mINP'):
        assert re.search(rf't2i/{key}: \d+\.\d+', log), key

    ckpt = torch.load(work / 'epoch_1.pth', map_location='cpu', weights_only=True)
    state = ckpt['state_dict']
    # the loaded SAIP backbone, unchanged by a step at lr 0; position embeddings resized in
    # 2-D from the 16x8 grid of 256x128 to the 24x8 grid of 384x128
    source = torch.load(pretrained, map_location='cpu', weights_only=True)['state_dict']
    backbone_keys = {k for k in state if k.startswith('backbone.')}
    assert backbone_keys == set(source)
    from mmpretrain.models.utils import resize_pos_embed
    for key in backbone_keys - {'backbone.pos_embed'}:
        torch.testing.assert_close(state[key], source[key], rtol=0, atol=0)
    torch.testing.assert_close(
        state['backbone.pos_embed'],
        resize_pos_embed(source['backbone.pos_embed'], (16, 8), (24, 8), 'bicubic', 1))
    # the vocabulary: written once to the work dir, and inside the checkpoint
    vocab = json.loads((work / 'text_vocab.json').read_text())
    assert vocab['tokens'][:5] == ['<pad>', '<unk>', '<cls>', '<eos>', 'a']
    assert state['text_encoder._extra_state']['tokens'] == vocab['tokens']

    spec = importlib.util.spec_from_file_location('saip_tools_test', ROOT / 'tools' / 'test.py')
    tools_test = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tools_test)
    metrics = tools_test.main([str(config), str(work / 'epoch_1.pth'), '--work-dir',
                               str(tmp_path / 'test'), '--cfg-options',
                               *data_options(root, 8)])
    assert metrics['t2i/num_valid_queries'] == 6  # 3 test images x 2 captions
    assert metrics['t2i/rank-5'] == 100  # a gallery of 3 images
    # The numbers are those of the trained checkpoint, recomputed caption by caption (with the
    # caption offset of TextPersonRetriever.predict lost, mAP reads 75.0 instead of 77.8).
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner, load_checkpoint
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict(data_overrides(root, 8))
    # The Runner gives the model the config's top-level data_preprocessor (mean/std, to_rgb).
    cfg.model.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model = MODELS.build(cfg.model)
    load_checkpoint(model, str(work / 'epoch_1.pth'), map_location='cpu', strict=True)
    expected = recomputed_t2i_metrics(model, Runner.build_dataloader(cfg.test_dataloader))
    for key in ('rank-1', 'rank-5', 'rank-10', 'mAP', 'mINP'):
        assert metrics[f't2i/{key}'] == pytest.approx(expected[key], abs=1e-4), key
    assert not (tmp_path / 'test' / 'text_vocab.json').exists()


@pytest.mark.parametrize('kind,val_queries', [('icfg', 3), ('rstp', 4)])
def test_config_trains_one_iteration(kind, val_queries, tmp_path, text_person_root,
                                     saip_checkpoints, tiny_arch):
    from mmengine.runner import Runner
    cfg = tiny_config(kind, tmp_path, text_person_root(kind), tiny_arch,
                      saip_checkpoints['backbone'])
    runner = Runner.from_cfg(cfg)
    before = {k: v.clone() for k, v in runner.model.state_dict().items()
              if k.startswith('text_encoder.layers')}
    runner.train()
    assert runner.iter == 1
    pretrained_hook = [h for h in runner.hooks if type(h).__name__ == 'SAIPPretrainedHook'][0]
    assert len(pretrained_hook.report['loaded']) == len(runner.model.backbone.state_dict())
    # the text tower trained (it is not frozen)
    after = runner.model.state_dict()
    assert any(not torch.equal(v, after[k]) for k, v in before.items())
    hub = runner.message_hub
    assert hub.get_scalar('val/t2i/num_valid_queries').current() == val_queries
    # The logged metrics are those of the trained model, recomputed caption by caption.
    expected = recomputed_t2i_metrics(runner.model, runner.val_dataloader)
    for key in ('rank-1', 'rank-5', 'rank-10', 'mAP', 'mINP'):
        value = hub.get_scalar(f'val/t2i/{key}').current()
        assert value == pytest.approx(expected[key], abs=1e-4), key
    assert osp.isfile(osp.join(cfg.work_dir, 'text_vocab.json'))


def test_vocabulary_file_of_another_run_is_not_overwritten(tmp_path, text_person_root,
                                                           tiny_arch):
    from mmengine.runner import Runner
    cfg = tiny_config('rstp', tmp_path, text_person_root('rstp'), tiny_arch, None)
    (tmp_path / 'work').mkdir()
    other = tmp_path / 'work' / 'text_vocab.json'
    from saip_mm.models import WordTokenizer
    WordTokenizer(max_size=64, min_freq=1).build(['another dataset entirely']).save(str(other))
    content = other.read_text()
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match=re.escape(str(other)) + ' holds another vocabulary'):
        runner.train()
    assert runner.iter == 0 and other.read_text() == content


@pytest.mark.parametrize('kind,dataset,num_classes,val_split',
                         [('cuhk', 'CUHKPEDESDataset', 11003, 'val'),
                          ('icfg', 'ICFGPEDESDataset', 3102, 'test'),
                          ('rstp', 'RSTPReidDataset', 3701, 'val')])
def test_configs_name_their_dataset(kind, dataset, num_classes, val_split):
    cfg = Config.fromfile(str(CONFIG[kind]))
    assert cfg.model.num_classes == num_classes  # the released training identities
    assert cfg.train_dataloader.dataset.type == dataset
    assert cfg.train_dataloader.dataset.split == 'train'
    assert cfg.val_dataloader.dataset.split == val_split
    assert cfg.test_dataloader.dataset.split == 'test'
    assert cfg.test_dataloader.dataset.type == dataset
    assert [h['type'] for h in cfg.custom_hooks] == ['SAIPPretrainedHook', 'TextVocabularyHook']


def test_config_model_is_vit_tiny_and_a_4_layer_text_tower():
    import saip_mm  # noqa: F401
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(str(CONFIG['cuhk']))
    model = MODELS.build(cfg.model)
    assert model.backbone.pos_embed.shape == (1, 1 + 24 * 8, 192)  # ViT-Tiny at 384x128
    assert len(model.backbone.layers) == 12
    assert model.text_encoder.token_embed.weight.shape == (10000, 256)
    assert len(model.text_encoder.layers.layers) == 4
    assert model.image_proj.out_features == model.text_proj.out_features == 256
    assert model.classifier.out_features == 11003
