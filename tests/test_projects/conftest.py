# The fixture lives with the helpers it uses; conftest only exposes it to the test files.
from projects_testlib import saip_checkpoints  # noqa: F401
