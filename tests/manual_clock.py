"""A clock the test moves, for code that takes a `clock` callable."""


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now
