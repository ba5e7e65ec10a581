from django.contrib.auth import get_user_model
from django.core.management import BaseCommand, CommandError

from accounts.models import ApiToken
from accounts.tokens import issue_token, revoke


class Command(BaseCommand):
    help = "Makes, lists and revokes users' API tokens."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="Make a token and print it (it is not shown again).")
        create.add_argument("username")
        create.add_argument("--name", required=True, help="What the token is for.")
        listing = actions.add_parser("list", help="A user's tokens.")
        listing.add_argument("username")
        revoking = actions.add_parser("revoke", help="Revoke a token by its id (see list).")
        revoking.add_argument("token_id", type=int)

    def handle(self, *args, action, **options):
        getattr(self, action)(**options)

    def create(self, username, name, **options):
        _, token = issue_token(self.user(username), name)
        self.stdout.write(token)
        self.stderr.write(f"Made token {name!r} for {username}. Send it as 'Authorization: Bearer <token>'.")

    def list(self, username, **options):
        for token in self.user(username).api_tokens.all():
            state = f"revoked {token.revoked:%Y-%m-%d %H:%M}" if token.revoked else "active"
            self.stdout.write(f"{token.pk}\t{token.prefix}…\t{token.name}\t{state}")

    def revoke(self, token_id, **options):
        tokens = ApiToken.objects.filter(pk=token_id)
        if not tokens.exists():
            raise CommandError(f"No token {token_id}.")
        if revoke(tokens):
            self.stdout.write(f"Revoked token {token_id}.")
        else:
            self.stdout.write(f"Token {token_id} was revoked already.")

    def user(self, username):
        try:
            return get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user {username!r}.") from None
