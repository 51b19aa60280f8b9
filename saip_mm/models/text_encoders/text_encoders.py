"""Text towers of the text-based person retrieval model: captions in, one vector per caption."""
import os.path as osp
from typing import Optional, Sequence

import torch
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch import nn

from mmpretrain.registry import MODELS

from .word_tokenizer import WordTokenizer


@MODELS.register_module()
class TransformerTextEncoder(BaseModule):
    """A small Transformer encoder trained from scratch, with a word-level tokenizer.

    Captions → ``<cls> words <eos>`` ids (:class:`WordTokenizer`) → token + learned position
    embeddings → ``num_layers`` pre-norm Transformer layers (GELU, padding masked) → final
    LayerNorm → the ``<cls>`` output, (B, width).

    The vocabulary is not known when the model is built: ``TextVocabularyHook`` builds it from
    the training captions when training starts (and writes it to the work dir). It is part of
    the module's state dict (``text_encoder._extra_state``), so a checkpoint carries the
    vocabulary its embeddings were trained with and ``tools/test.py`` needs nothing else.

    Args:
        vocab_size (int): rows of the embedding table = the largest vocabulary, special tokens
            included. Defaults to 10000.
        min_freq (int): least number of occurrences of a training word to enter the vocabulary
            (rarer words become ``<unk>``). Defaults to 2.
        max_length (int): longest token sequence, ``<cls>`` and ``<eos>`` included; longer
            captions are cut. Defaults to 77 (as CLIP's text tower).
        width (int): embedding width. Defaults to 256.
        num_layers (int): Transformer layers. Defaults to 4.
        num_heads (int): attention heads. Defaults to 4.
        ffn_ratio (int): hidden width of the MLP / ``width``. Defaults to 4.
        dropout (float): dropout in the layers. Defaults to 0.1.
        init_cfg (dict, optional): MMEngine initialisation config. Defaults to None.
    """

    def __init__(self,
                 vocab_size: int = 10000,
                 min_freq: int = 2,
                 max_length: int = 77,
                 width: int = 256,
                 num_layers: int = 4,
                 num_heads: int = 4,
                 ffn_ratio: int = 4,
                 dropout: float = 0.1,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.tokenizer = WordTokenizer(max_size=vocab_size, min_freq=min_freq)
        self.max_length = max_length
        self.width = width
        self.token_embed = nn.Embedding(vocab_size, width, padding_idx=0)
        self.pos_embed = nn.Parameter(torch.zeros(1, max_length, width))
        layer = nn.TransformerEncoderLayer(
            width, num_heads, width * ffn_ratio, dropout=dropout, activation='gelu',
            batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.ln_final = nn.LayerNorm(width)

    def init_weights(self) -> None:
        """Truncated-normal (std 0.02) embeddings and linear weights, zero biases."""
        super().init_weights()
        if self.init_cfg is not None:
            return
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.token_embed.weight, std=0.02)
        with torch.no_grad():
            self.token_embed.weight[0].zero_()  # <pad>
        for m in self.layers.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def tokenize(self, captions: Sequence[str]) -> torch.Tensor:
        """Padded token ids of ``captions``, (B, L) with L = the longest, at most max_length."""
        ids = [self.tokenizer.encode(c, self.max_length) for c in captions]
        out = torch.full((len(ids), max(len(i) for i in ids)), self.tokenizer.pad_id,
                         dtype=torch.long)
        for row, seq in enumerate(ids):
            out[row, :len(seq)] = torch.as_tensor(seq)
        return out.to(self.pos_embed.device)

    def forward(self, captions: Sequence[str]) -> torch.Tensor:
        """Encode captions; returns (B, width)."""
        if not self.tokenizer.is_built:
            raise RuntimeError(
                'TransformerTextEncoder has no vocabulary: train with '
                "custom_hooks=[dict(type='TextVocabularyHook')] (it builds one from the "
                'training captions) or load a checkpoint of a trained model')
        ids = self.tokenize(captions)  # (B, L)
        x = self.token_embed(ids) + self.pos_embed[:, :ids.size(1)]  # (B, L, width)
        x = self.layers(x, src_key_padding_mask=ids == self.tokenizer.pad_id)
        return self.ln_final(x[:, 0])  # the <cls> token

    # The vocabulary travels in the state dict (torch's extra-state mechanism).
    def get_extra_state(self) -> dict:
        return self.tokenizer.state_dict()

    def set_extra_state(self, state: dict) -> None:
        if state and state.get('tokens'):
            self.tokenizer.load_state_dict(state, source='the checkpoint\'s text_encoder '
                                                         'vocabulary')


@MODELS.register_module()
class HFTextEncoder(BaseModule):
    """A Hugging Face text model from a local directory (``transformers``), never downloaded.

    ``model_dir`` must be a folder written by ``save_pretrained`` (config, weights and
    tokenizer files), e.g. a BERT or the text tower of a CLIP model the user already has. It is
    opened with ``local_files_only=True``: a hub name or a missing folder is an error, and no
    network access happens. The weights are the folder's: :meth:`init_weights` leaves them as
    loaded.

    Output, (B, hidden_size): the first token's last hidden state (``pooling='cls'``, BERT), the
    mean over the non-padding tokens (``'mean'``) or the model's ``pooler_output``
    (``'pooler'``; for a CLIP text tower saved as ``CLIPTextModel``, its end-of-text token).

    Args:
        model_dir (str): the local model folder.
        pooling (str): ``'cls'``, ``'mean'`` or ``'pooler'``. Defaults to 'cls'.
        max_length (int): longest token sequence; longer captions are cut. Defaults to 77.
        init_cfg (dict, optional): MMEngine initialisation config. Defaults to None.
    """

    def __init__(self,
                 model_dir: str,
                 pooling: str = 'cls',
                 max_length: int = 77,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not osp.isdir(model_dir):
            raise FileNotFoundError(
                f'HFTextEncoder: model_dir {model_dir!r} is not a local folder. saip_mm never '
                f'downloads models: save one with `save_pretrained(folder)` (model and '
                f'tokenizer) and pass that folder')
        if pooling not in ('cls', 'mean', 'pooler'):
            raise ValueError(f"pooling must be 'cls', 'mean' or 'pooler', got {pooling!r}")
        from transformers import AutoModel, AutoTokenizer
        self.model = AutoModel.from_pretrained(model_dir, local_files_only=True)
        self.hf_tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model_dir = model_dir
        self.pooling = pooling
        self.max_length = max_length
        self.width = self.model.config.hidden_size

    def init_weights(self) -> None:
        """Keep the weights read from ``model_dir`` (no re-initialisation)."""
        self._is_init = True

    def forward(self, captions: Sequence[str]) -> torch.Tensor:
        """Encode captions; returns (B, hidden_size)."""
        device = next(self.model.parameters()).device
        batch = self.hf_tokenizer(list(captions), padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors='pt')
        batch = {k: v.to(device) for k, v in batch.items()}
        outputs = self.model(**batch)
        if self.pooling == 'pooler':
            return outputs.pooler_output
        hidden = outputs.last_hidden_state  # (B, L, hidden)
        if self.pooling == 'cls':
            return hidden[:, 0]
        mask = batch['attention_mask'].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)

