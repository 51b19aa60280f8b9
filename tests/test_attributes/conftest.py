"""Reuse the fixtures of tests/test_reid/conftest.py (SAIP checkpoints, tiny-run helpers)."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    'saip_reid_test_fixtures', Path(__file__).resolve().parents[1] / 'test_reid' / 'conftest.py')
_shared = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shared)

saip_checkpoints = _shared.saip_checkpoints
write_image = _shared.write_image_fixture
shrink_config = _shared.shrink_config_fixture
run_train = _shared.run_train
