"""Tiny text-person datasets in the three released annotation formats, and the shared SAIP
checkpoint fixtures of tests/test_reid/conftest.py."""
import importlib.util
import json
import os.path as osp
from pathlib import Path
from typing import Callable

import pytest

_spec = importlib.util.spec_from_file_location(
    'saip_reid_test_fixtures', Path(__file__).resolve().parents[1] / 'test_reid' / 'conftest.py')
_shared = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shared)

saip_checkpoints = _shared.saip_checkpoints
write_image = _shared.write_image_fixture
TINY_ARCH = _shared.TINY_ARCH

# Two training identities with two images each; the evaluation splits have two identities,
# one of them with two images (so a caption has two correct gallery images).
CAPTIONS = {
    'red': ['A woman in a red coat carrying a black bag.',
            'The woman wears a red coat, black trousers and white shoes.'],
    'blue': ['A man in a blue shirt and black trousers.',
             'The man wears a blue shirt; he carries a black bag.'],
    'green': ['A man wearing a green jacket and blue jeans.',
              'The man has short hair and a green jacket.'],
    'white': ["A woman in a white dress, she's holding a phone.",
              'The woman wears a white dress and black shoes.'],
}
# (split, identity, captions) per image; the files add their id offset (CUHK-PEDES from 1)
LAYOUT = [
    ('train', 0, 'red'), ('train', 0, 'red'), ('train', 1, 'blue'), ('train', 1, 'blue'),
    ('val', 2, 'green'), ('val', 3, 'white'),
    ('test', 4, 'green'), ('test', 4, 'green'), ('test', 5, 'white'),
]
FORMATS = {
    # name: (annotation file, image path field, splits, captions per image, id offset, path)
    'cuhk': ('reid_raw.json', 'file_path', ('train', 'val', 'test'), 2, 1,
             lambda split, pid, i: f'CUHK01/{pid:04d}{i:03d}.png'),
    'icfg': ('ICFG-PEDES.json', 'file_path', ('train', 'test'), 1, 0,
             lambda split, pid, i: f'{split}/{pid:04d}/{pid:04d}_{i:03d}_01_0303morning_0001_0'
                                   f'.jpg'),
    'rstp': ('data_captions.json', 'img_path', ('train', 'val', 'test'), 2, 0,
             lambda split, pid, i: f'{pid:04d}_c{i % 15 + 1}_{i:04d}.jpg'),
}


def write_text_person_dataset(root: str, kind: str, write_image: Callable) -> str:
    """Write a tiny dataset of ``kind`` ('cuhk', 'icfg', 'rstp') in its released format."""
    ann_file, path_key, splits, num_captions, offset, path_of = FORMATS[kind]
    entries = []
    for i, (split, pid, colour) in enumerate(LAYOUT):
        if split not in splits:
            continue
        rel = path_of(split, pid + offset, i)
        write_image(osp.join(root, 'imgs', rel), seed=i)
        entry = {'split': split, 'captions': CAPTIONS[colour][:num_captions], path_key: rel,
                 'id': pid + offset}
        if kind != 'rstp':  # the PEDES files also hold pre-tokenised captions (ignored)
            entry['processed_tokens'] = [c.lower().split() for c in entry['captions']]
        entries.append(entry)
    with open(osp.join(root, ann_file), 'w') as f:
        json.dump(entries, f)
    return root


@pytest.fixture(scope='session')
def text_person_root(tmp_path_factory, write_image) -> Callable[[str], str]:
    """``text_person_root(kind)``: the folder of a tiny dataset in ``kind``'s format."""
    cache = {}

    def make(kind: str) -> str:
        if kind not in cache:
            cache[kind] = write_text_person_dataset(
                str(tmp_path_factory.mktemp(f'text_person_{kind}')), kind, write_image)
        return cache[kind]

    return make
tiny_arch = _shared.tiny_arch
