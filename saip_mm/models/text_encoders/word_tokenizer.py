"""A word-level tokenizer whose vocabulary is built from the training captions (no download)."""
import json
import os
import os.path as osp
import re
from collections import Counter
from typing import Iterable, List, Optional, Sequence

# Words (letters/digits, with an English contraction such as "she's") and single punctuation
# marks; the captions of the three datasets are English sentences.
WORD_PATTERN = re.compile(r"\w+(?:'\w+)?|[^\w\s]")
# Punctuation written without a space before it when tokens are joined back into text.
NO_SPACE_BEFORE = set('.,;:!?)]}\'"%')
NO_SPACE_AFTER = set('([{')


class WordTokenizer:
    """Lower-cased words and punctuation marks → integer ids, from a fixed vocabulary.

    The vocabulary starts with four special tokens, ``<pad>`` (0), ``<unk>`` (1, any word not
    in the vocabulary), ``<cls>`` (2, prepended: the text encoder's output token) and ``<eos>``
    (3, appended), followed by the words of the training captions seen at least ``min_freq``
    times, most frequent first (ties in alphabetical order, so the same captions always give
    the same vocabulary), at most ``max_size`` tokens in all.

    Args:
        max_size (int): largest vocabulary, special tokens included (the text encoder's
            embedding table has this many rows). Defaults to 10000.
        min_freq (int): least number of occurrences of a word to be kept. Defaults to 2.
        tokens (Sequence[str], optional): a vocabulary to use as is (special tokens first).
            Defaults to None (empty until :meth:`build`).
    """
    PAD, UNK, CLS, EOS = '<pad>', '<unk>', '<cls>', '<eos>'
    SPECIALS = (PAD, UNK, CLS, EOS)
    FORMAT = 'saip_mm.WordTokenizer'

    def __init__(self,
                 max_size: int = 10000,
                 min_freq: int = 2,
                 tokens: Optional[Sequence[str]] = None) -> None:
        if max_size <= len(self.SPECIALS):
            raise ValueError(f'max_size must exceed the {len(self.SPECIALS)} special tokens, '
                             f'got {max_size}')
        if min_freq < 1:
            raise ValueError(f'min_freq must be >= 1, got {min_freq}')
        self.max_size = max_size
        self.min_freq = min_freq
        self.tokens: List[str] = []
        self.index = {}
        if tokens is not None:
            self.set_tokens(tokens)

    @property
    def is_built(self) -> bool:
        """Whether the tokenizer has a vocabulary."""
        return bool(self.tokens)

    @property
    def pad_id(self) -> int:
        return 0

    def __len__(self) -> int:
        return len(self.tokens)

    @staticmethod
    def split(text: str) -> List[str]:
        """Lower-case ``text`` and cut it into words and punctuation marks."""
        return WORD_PATTERN.findall(text.lower())

    def set_tokens(self, tokens: Sequence[str]) -> None:
        """Use ``tokens`` as the vocabulary (special tokens first, no duplicates)."""
        tokens = list(tokens)
        if tuple(tokens[:len(self.SPECIALS)]) != self.SPECIALS:
            raise ValueError(f'a vocabulary must start with {self.SPECIALS}, got '
                             f'{tokens[:len(self.SPECIALS)]}')
        if len(set(tokens)) != len(tokens):
            raise ValueError('the vocabulary holds duplicate tokens')
        if len(tokens) > self.max_size:
            raise ValueError(f'the vocabulary has {len(tokens)} tokens but max_size is '
                             f'{self.max_size} (the size of the embedding table)')
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}

    def build(self, captions: Iterable[str]) -> 'WordTokenizer':
        """Build the vocabulary from ``captions``; returns self."""
        counts = Counter()
        num = 0
        for caption in captions:
            counts.update(self.split(caption))
            num += 1
        if not num:
            raise ValueError('cannot build a vocabulary from no captions')
        words = sorted((w for w, c in counts.items() if c >= self.min_freq and
                        w not in self.SPECIALS), key=lambda w: (-counts[w], w))
        self.set_tokens(list(self.SPECIALS) + words[:self.max_size - len(self.SPECIALS)])
        return self

    def _require_built(self) -> None:
        if not self.is_built:
            raise RuntimeError('WordTokenizer has no vocabulary yet: build it from the training '
                               'captions (TextVocabularyHook does this when training starts) or '
                               'load one (a checkpoint of a trained model holds it)')

    def encode(self, text: str, max_length: Optional[int] = None) -> List[int]:
        """Ids of ``<cls>``, the words of ``text``, ``<eos>``; words beyond ``max_length - 2``
        are cut (``<eos>`` is kept)."""
        self._require_built()
        unk = self.index[self.UNK]
        ids = [self.index.get(w, unk) for w in self.split(text)]
        if max_length is not None:
            if max_length < 3:
                raise ValueError(f'max_length must be >= 3 (<cls>, a word, <eos>), got '
                                 f'{max_length}')
            ids = ids[:max_length - 2]
        return [self.index[self.CLS]] + ids + [self.index[self.EOS]]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` without ``<pad>``/``<cls>``/``<eos>``; punctuation is attached to
        the previous word, so ``decode(encode(s))`` gives ``s`` lower-cased with unknown words
        replaced by ``<unk>``."""
        self._require_built()
        skip = {self.index[self.PAD], self.index[self.CLS], self.index[self.EOS]}
        text = ''
        prev = ''
        for i in ids:
            i = int(i)
            if i in skip:
                continue
            if not 0 <= i < len(self.tokens):
                raise ValueError(f'token id {i} is outside the vocabulary (0..'
                                 f'{len(self.tokens) - 1})')
            token = self.tokens[i]
            if text and token not in NO_SPACE_BEFORE and prev not in NO_SPACE_AFTER:
                text += ' '
            text += token
            prev = token
        return text

    def state_dict(self) -> dict:
        """Everything needed to rebuild the tokenizer (JSON-serialisable)."""
        return dict(format=self.FORMAT, max_size=self.max_size, min_freq=self.min_freq,
                    tokens=list(self.tokens))

    def load_state_dict(self, state: dict, source: str = 'the state') -> None:
        """Restore from :meth:`state_dict`; ``source`` names where it came from in errors."""
        if not isinstance(state, dict) or state.get('format') != self.FORMAT:
            raise ValueError(f'{source} is not a {self.FORMAT} vocabulary')
        if state['max_size'] > self.max_size:
            raise ValueError(f'{source} was built for max_size={state["max_size"]} but this '
                             f'tokenizer has max_size={self.max_size}')
        self.min_freq = state['min_freq']
        self.set_tokens(state['tokens'])

    def save(self, path: str) -> None:
        """Write the vocabulary to ``path`` as JSON."""
        self._require_built()
        os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(self.state_dict(), f, ensure_ascii=False, indent=0)

    @classmethod
    def from_file(cls, path: str, max_size: Optional[int] = None) -> 'WordTokenizer':
        """Read a vocabulary written by :meth:`save`."""
        with open(path, encoding='utf-8') as f:
            try:
                state = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f'{path}: not valid JSON ({e})') from e
        if not isinstance(state, dict) or 'max_size' not in state:
            raise ValueError(f'{path} is not a {cls.FORMAT} vocabulary')
        tokenizer = cls(max_size=max_size or state['max_size'])
        tokenizer.load_state_dict(state, source=path)
        return tokenizer
