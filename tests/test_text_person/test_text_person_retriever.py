"""TextPersonRetriever.predict gives every image its own captions' features: retrieval on a
gallery whose captions point at their images by construction."""
import re

import torch
from mmengine.evaluator import Evaluator
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import saip_mm  # noqa: F401  (registers TextPersonRetriever)
from saip_mm.evaluation import TextPersonRetrievalMetric

NUM_IMAGES = 24  # > 5 images per batch and 4 batches: rank-5 of a wrong assignment is low
DIMS = 16
# Identity i's direction in the shared space; captions and image of identity i point there.
DIRECTIONS = torch.nn.functional.normalize(
    torch.randn(NUM_IMAGES, DIMS, generator=torch.Generator().manual_seed(0)), dim=1)


@MODELS.register_module()
class _CodeImageTower(BaseModule):
    """Image tower stub: an image whose top-left pixel holds ``i`` embeds as DIRECTIONS[i]."""
    embed_dims = DIMS

    def forward(self, images):
        return (DIRECTIONS[images[:, 0, 0, 0].round().long()], )


@MODELS.register_module()
class _CodeTextTower(BaseModule):
    """Text tower stub: 'person i, caption j' embeds as DIRECTIONS[i] plus a small per-caption
    offset, so each caption has features of its own and its nearest image is image i."""
    width = DIMS

    def forward(self, captions):
        rows = []
        for caption in captions:
            i, j = (int(v) for v in re.fullmatch(r'person (\d+), caption (\d+)', caption).groups())
            offset = torch.randn(DIMS, generator=torch.Generator().manual_seed(1000 * i + j))
            rows.append(DIRECTIONS[i] + 0.05 * offset)
        return torch.stack(rows)


def retriever():
    model = MODELS.build(dict(type='TextPersonRetriever', backbone=dict(type='_CodeImageTower'),
                              text_encoder=dict(type='_CodeTextTower'), embed_dims=DIMS))
    with torch.no_grad():  # identity projections: the towers' features are the embeddings
        for proj in (model.image_proj, model.text_proj):
            proj.weight.copy_(torch.eye(DIMS))
            proj.bias.zero_()
    return model.eval()


def test_each_image_gets_its_own_captions_features():
    """Catches: the running offset over each image's captions in ``predict`` lost (every image
    of a batch then gets the first captions of the batch, most of them another image's):
    rank-1 falls from 100 to 16.7, rank-5 to 35.4, mAP to 27.8."""
    model = retriever()
    evaluator = Evaluator(TextPersonRetrievalMetric(topk=(1, 5, 10)))
    num_captions = [1 + i % 3 for i in range(NUM_IMAGES)]  # 1, 2 or 3 captions per image
    batch_size = 8
    predicted = []
    for start in range(0, NUM_IMAGES, batch_size):
        ids = range(start, min(NUM_IMAGES, start + batch_size))
        images = torch.zeros(len(ids), 3, 32, 16, dtype=torch.uint8)
        images[:, :, 0, 0] = torch.tensor(list(ids), dtype=torch.uint8)[:, None]
        samples = [DataSample(metainfo=dict(
            pid=i, captions=[f'person {i}, caption {j}' for j in range(num_captions[i])]))
            for i in ids]
        with torch.no_grad():
            preds = model.test_step(dict(inputs=list(images), data_samples=samples))
        evaluator.process(preds)
        predicted += list(zip(ids, preds))
    metrics = evaluator.evaluate(NUM_IMAGES)
    assert metrics['t2i/num_valid_queries'] == sum(num_captions) == 48
    for key in ('rank-1', 'rank-5', 'rank-10', 'mAP', 'mINP'):
        assert metrics[f't2i/{key}'] == 100.0, (key, metrics)
    with torch.no_grad():
        for i, pred in predicted:
            # Each row is the feature of that very caption, embedded on its own.
            expected = torch.nn.functional.normalize(
                model.extract_text_feat(pred.captions), dim=1)
            torch.testing.assert_close(pred.text_features, expected)
            torch.testing.assert_close(pred.image_feature, DIRECTIONS[i])
