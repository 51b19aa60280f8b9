from .text_encoders import HFTextEncoder, TransformerTextEncoder
from .word_tokenizer import WordTokenizer

__all__ = ['HFTextEncoder', 'TransformerTextEncoder', 'WordTokenizer']
