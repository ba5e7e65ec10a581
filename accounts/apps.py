from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in, user_login_failed


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and API tokens"

    def ready(self):
        from accounts import signin_limits

        user_login_failed.connect(signin_limits.count_failure, dispatch_uid="signin_limits.count_failure")
        user_logged_in.connect(signin_limits.clear_on_success, dispatch_uid="signin_limits.clear_on_success")
