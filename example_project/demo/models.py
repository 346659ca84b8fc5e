from django.db import models


class DemoCounter(models.Model):
    """How many times a task has run for a key: lets `flaky` fail a set number of attempts."""

    key = models.CharField(max_length=100, unique=True)
    count = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.key}: {self.count}"
