from django.db import models


class PendingDeletion(models.Model):
    """A replaced or orphaned file whose deletion failed (the store was down).

    Retried after the next successful write and by ``manage.py media_orphans``;
    the row goes once the file is gone, or if a row references the name again.
    """

    name = models.CharField(max_length=1024, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return self.name
