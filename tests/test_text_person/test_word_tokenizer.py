"""The word tokenizer built from training captions, and the text encoder that carries it."""
import json

import pytest
import torch

from saip_mm.models import TransformerTextEncoder, WordTokenizer

CAPTIONS = ['A woman in a red coat carrying a black bag.',
            'The woman wears a red coat, black trousers and white shoes.',
            "A man in a blue shirt; he's holding a black bag."]


def test_vocabulary_order_and_min_freq():
    tok = WordTokenizer(max_size=100, min_freq=2).build(CAPTIONS)
    # specials, then by count (a: 7; '.', black: 3; bag, coat, in, red, woman: 2), ties in
    # alphabetical order; words seen once dropped
    assert tok.tokens == ['<pad>', '<unk>', '<cls>', '<eos>', 'a', '.', 'black', 'bag', 'coat',
                          'in', 'red', 'woman']
    capped = WordTokenizer(max_size=6, min_freq=1).build(CAPTIONS)
    assert capped.tokens == ['<pad>', '<unk>', '<cls>', '<eos>', 'a', '.']


def test_round_trip():
    tok = WordTokenizer(max_size=100, min_freq=1).build(CAPTIONS)
    text = "The woman, in a red coat; he's holding a black bag."
    ids = tok.encode(text)
    assert ids[0] == 2 and ids[-1] == 3  # <cls> ... <eos>
    assert tok.decode(ids) == text.lower()
    # unknown words map to <unk> (id 1); punctuation stays attached
    ids = tok.encode('A green coat.')
    assert ids == [2, tok.index['a'], 1, tok.index['coat'], tok.index['.'], 3]
    assert tok.decode(ids) == 'a <unk> coat.'
    # a cut keeps <eos>
    assert tok.encode(text, max_length=4) == [2, tok.index['the'], tok.index['woman'], 3]
    assert tok.decode(tok.encode(text) + [0, 0]) == text.lower()  # padding is skipped


def test_save_and_load(tmp_path):
    tok = WordTokenizer(max_size=100, min_freq=1).build(CAPTIONS)
    path = tmp_path / 'vocab' / 'text_vocab.json'
    tok.save(str(path))
    assert json.loads(path.read_text())['tokens'] == tok.tokens
    loaded = WordTokenizer.from_file(str(path))
    assert loaded.tokens == tok.tokens
    assert loaded.encode(CAPTIONS[2]) == tok.encode(CAPTIONS[2])
    path.write_text('{"tokens": []}')
    with pytest.raises(ValueError, match=r'text_vocab.json is not a saip_mm.WordTokenizer'):
        WordTokenizer.from_file(str(path))


def test_unbuilt_tokenizer_says_how_to_get_a_vocabulary():
    with pytest.raises(RuntimeError, match='TextVocabularyHook'):
        WordTokenizer().encode('a man')
    encoder = TransformerTextEncoder(vocab_size=32, width=16, num_layers=1, num_heads=2)
    with pytest.raises(RuntimeError, match=r"custom_hooks=\[dict\(type='TextVocabularyHook'\)\]"):
        encoder(['a man'])


def test_encoder_state_dict_carries_the_vocabulary(tmp_path):
    encoder = TransformerTextEncoder(vocab_size=32, max_length=8, width=16, num_layers=1,
                                     num_heads=2)
    encoder.tokenizer.build(CAPTIONS)
    encoder.init_weights()
    encoder.eval()
    path = tmp_path / 'enc.pth'
    torch.save(encoder.state_dict(), path)
    other = TransformerTextEncoder(vocab_size=32, max_length=8, width=16, num_layers=1,
                                   num_heads=2).eval()
    other.load_state_dict(torch.load(path, weights_only=True))
    assert other.tokenizer.tokens == encoder.tokenizer.tokens
    out = other(CAPTIONS)
    assert out.shape == (3, 16)
    torch.testing.assert_close(out, encoder(CAPTIONS))
    # padding does not change a caption's feature (the padding mask works)
    torch.testing.assert_close(other(CAPTIONS[:1])[0], out[0], rtol=1e-5, atol=1e-5)
    # a vocabulary larger than the embedding table is refused
    small = TransformerTextEncoder(vocab_size=8, width=16, num_layers=1, num_heads=2)
    with pytest.raises(ValueError, match='built for max_size=32 but this tokenizer has '
                                         'max_size=8'):
        small.load_state_dict(torch.load(path, weights_only=True), strict=False)
