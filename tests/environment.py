"""The test run's environment, set before pytest-django loads the settings (pytest.ini loads
this module with -p): a throwaway secret key, as production sets its own. The hub's processes
that tests start inherit it; tests that want a bare environment remove the HUB_* variables."""
import os

os.environ.setdefault("HUB_SECRET_KEY", "test-secret-key-not-for-production")
# Many tests store readings at fixed times long past: the retention the hub's processes run
# (telemetry.retention) would delete them under the test. Tests of retention set their own.
for resolution in ("RAW", "MINUTE", "HOUR"):
    os.environ.setdefault(f"HUB_RETAIN_{resolution}_DAYS", "0")
