"""Which database errors the bridge retries and which it never will."""
from django.db import DataError, IntegrityError

# Database errors that trying the same data again meets again: the data is at fault, not the
# database's state. Every other DatabaseError (a lost connection, a lock timeout: transient)
# is retried.
PERMANENT_DB_ERRORS = (DataError, IntegrityError)


def refused_by_database(error):
    """What a device is told of a message the database refused (a PERMANENT_DB_ERRORS error)."""
    return f"the database refused it: {str(error).strip()[:200]}"
