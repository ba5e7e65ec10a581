"""The test run's environment, set before pytest-django loads the settings (pytest.ini loads
this module with -p): a throwaway secret key, as production sets its own. The hub's processes
that tests start inherit it; tests that want a bare environment remove the HUB_* variables."""
import os

os.environ.setdefault("HUB_SECRET_KEY", "test-secret-key-not-for-production")
