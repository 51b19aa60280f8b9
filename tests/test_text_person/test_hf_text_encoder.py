"""The Hugging Face text tower option: a local folder only, never a download.

A tiny BERT is created here and written with ``save_pretrained``; HF_HUB_OFFLINE=1 and a
socket that refuses to connect make any attempt to reach the network fail the test.
"""
import socket

import pytest
import torch

from saip_mm.models import HFTextEncoder

WORDS = ['a', 'woman', 'man', 'in', 'red', 'blue', 'coat', 'shirt', 'black', 'bag', '.']


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('TRANSFORMERS_OFFLINE', '1')

    def refuse(*args, **kwargs):
        raise AssertionError('network access attempted')

    monkeypatch.setattr(socket.socket, 'connect', refuse)


@pytest.fixture(scope='module')
def tiny_bert(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizer
    folder = tmp_path_factory.mktemp('tiny_bert')
    vocab = folder / 'vocab.txt'
    vocab.write_text('\n'.join(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + WORDS) + '\n')
    BertTokenizer(str(vocab)).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=40)
    BertModel(config).save_pretrained(str(folder))
    return str(folder)


def test_loads_local_folder_and_keeps_its_weights(tiny_bert, offline):
    from transformers import BertModel
    encoder = HFTextEncoder(model_dir=tiny_bert, pooling='cls', max_length=16)
    assert encoder.width == 32
    encoder.init_weights()  # what the Runner does: must not re-initialise BERT
    reference = BertModel.from_pretrained(tiny_bert, local_files_only=True).eval()
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(encoder.model.state_dict()[key], value, rtol=0, atol=0)
    encoder.eval()
    captions = ['A woman in a red coat.', 'A man in a blue shirt, black bag.']
    out = encoder(captions)
    assert out.shape == (2, 32)
    # the first ([CLS]) token of BERT's last hidden state
    batch = encoder.hf_tokenizer(captions, padding=True, return_tensors='pt')
    assert batch['input_ids'][0, 0].item() == 2  # [CLS]
    torch.testing.assert_close(out, reference(**batch).last_hidden_state[:, 0])
    mean = HFTextEncoder(model_dir=tiny_bert, pooling='mean').eval()(captions[:1])
    torch.testing.assert_close(mean[0], reference(**encoder.hf_tokenizer(
        captions[:1], return_tensors='pt')).last_hidden_state[0].mean(0))


@pytest.mark.parametrize('name', ['bert-base-uncased', '/nonexistent/bert'])
def test_anything_but_a_local_folder_is_refused(name, offline):
    with pytest.raises(FileNotFoundError, match=r'is not a local folder. saip_mm never downloads'):
        HFTextEncoder(model_dir=name)


def test_retriever_trains_with_the_local_bert(tiny_bert, tiny_arch, offline):
    """One SDM + ID step of the dual encoder with the BERT text tower: gradients reach it."""
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    model = MODELS.build(dict(
        type='TextPersonRetriever',
        backbone=dict(type='VisionTransformer', arch=tiny_arch, img_size=(64, 32),
                      patch_size=16, out_type='cls_token'),
        text_encoder=dict(type='HFTextEncoder', model_dir=tiny_bert),
        embed_dims=16, num_classes=2))
    model.init_weights()
    samples = [DataSample(metainfo=dict(caption=c, pid=p)).set_gt_label(p)
               for c, p in [('a woman in a red coat.', 0), ('a man, blue shirt.', 1),
                            ('red coat, black bag.', 0)]]
    losses = model(torch.randn(3, 3, 64, 32), samples, mode='loss')
    assert set(losses) == {'loss_sdm', 'loss_id'}
    sum(losses.values()).backward()
    assert model.text_encoder.model.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    model.eval()
    preds = model(torch.randn(2, 3, 64, 32),
                  [DataSample(metainfo=dict(captions=['a man.', 'a blue shirt.'], pid=1)),
                   DataSample(metainfo=dict(captions=['a woman.'], pid=0))], mode='predict')
    assert preds[0].text_features.shape == (2, 16) and preds[1].text_features.shape == (1, 16)
    torch.testing.assert_close(preds[0].image_feature.norm(), torch.tensor(1.0))
