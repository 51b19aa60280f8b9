"""A Runner hook that gives the text encoder its vocabulary, built from the training captions."""
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from saip_mm.models.text_encoders.word_tokenizer import WordTokenizer


@HOOKS.register_module()
class TextVocabularyHook(Hook):
    """Build the word vocabulary of ``model.text_encoder`` and write it once to the work dir.

    When training starts (``before_train``: after the weights are initialised and a
    ``load_from`` / ``--resume`` checkpoint is loaded), for a text encoder with a
    :class:`~saip_mm.models.WordTokenizer`:

    - if the encoder has no vocabulary yet, it is built from every caption of the training
      dataset (``dataset.get_captions()``) with the encoder's ``vocab_size`` and ``min_freq``;
      if it already has one (read from a checkpoint, whose embeddings were trained with it),
      that one is kept;
    - ``<work_dir>/<filename>`` is written if absent. If it exists (a resumed run) it must hold
      the same vocabulary, otherwise the run stops: the file belongs to another run, and is
      never overwritten.

    The vocabulary is also saved inside every checkpoint (the encoder's state dict), so
    ``tools/test.py`` needs neither this hook nor the file. Encoders with their own tokenizer
    (:class:`~saip_mm.models.HFTextEncoder`) are left alone.

    Args:
        filename (str): file name in the work dir. Defaults to 'text_vocab.json'.
        module (str): attribute of the model holding the text encoder. Defaults to
            'text_encoder'.
    """
    priority = 'NORMAL'

    def __init__(self, filename: str = 'text_vocab.json', module: str = 'text_encoder') -> None:
        self.filename = filename
        self.module = module
        self.path = None

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        encoder = getattr(model, self.module, None)
        if encoder is None:
            raise AttributeError(f'TextVocabularyHook: the model ({type(model).__name__}) has no '
                                 f'`{self.module}`')
        tokenizer = getattr(encoder, 'tokenizer', None)
        if not isinstance(tokenizer, WordTokenizer):
            runner.logger.info(f'TextVocabularyHook: {type(encoder).__name__} has its own '
                               f'tokenizer; nothing to build')
            return
        self.path = osp.join(runner.work_dir, self.filename)
        if tokenizer.is_built:
            source = 'the loaded checkpoint'
        else:
            dataset = runner.train_dataloader.dataset
            if not hasattr(dataset, 'get_captions'):
                raise TypeError(f'TextVocabularyHook: the training dataset '
                                f'{type(dataset).__name__} has no get_captions(); use a '
                                f'text-person dataset (saip_mm.datasets.TextPersonDataset)')
            captions = dataset.get_captions()
            tokenizer.build(captions)
            source = (f'{len(captions)} training captions, words seen >= {tokenizer.min_freq} '
                      f'times')
        if osp.exists(self.path):
            existing = WordTokenizer.from_file(self.path, max_size=tokenizer.max_size)
            if existing.tokens != tokenizer.tokens:
                raise ValueError(
                    f'TextVocabularyHook: {self.path} holds another vocabulary '
                    f'({len(existing)} tokens; this run has {len(tokenizer)} from {source}). It '
                    f'belongs to another run: use another work dir or move the file away')
            runner.logger.info(f'text vocabulary: {len(tokenizer)} tokens, as in {self.path}')
            return
        if is_main_process():
            tokenizer.save(self.path)
        runner.logger.info(f'text vocabulary: {len(tokenizer)} tokens from {source}; written to '
                           f'{self.path}')
