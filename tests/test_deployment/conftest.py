# The fixtures live with the helpers they use; conftest only exposes them to the test files.
from deploy_testlib import person_crops, tiny_models  # noqa: F401
