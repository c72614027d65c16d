from django.core.validators import MaxValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Upper

from storage.fields import ProcessedImageField

MAX_DECIMALS = 18

symbol_validator = RegexValidator(
    r"^[A-Z0-9]{2,12}$",
    "A symbol is 2 to 12 capital letters or digits, like BTC or USDT.",
)


class Token(models.Model):
    name = models.CharField(max_length=100)
    symbol = models.CharField(max_length=12, unique=True, validators=[symbol_validator])
    decimals = models.PositiveSmallIntegerField(
        default=MAX_DECIMALS, validators=[MaxValueValidator(MAX_DECIMALS)]
    )
    description = models.TextField(blank=True)
    logo = ProcessedImageField(
        upload_to="token_logo/", size=200, keep_alpha=True, blank=True, max_length=255
    )
    is_active = models.BooleanField(default=True)
    withdrawal_daily_limit = models.DecimalField(
        max_digits=36,
        decimal_places=18,
        null=True,
        blank=True,
        help_text="Most a user may withdraw of this token per UTC day (pending, "
        "being sent and approved requests count). Empty: no limit; 0: no "
        "withdrawals.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["symbol"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(decimals__lte=MAX_DECIMALS),
                name="token_decimals_at_most_18",
            ),
            models.CheckConstraint(
                condition=models.Q(symbol=Upper("symbol")),
                name="token_symbol_upper_case",
            ),
            models.CheckConstraint(
                condition=models.Q(withdrawal_daily_limit__gte=0)
                | models.Q(withdrawal_daily_limit__isnull=True),
                name="token_withdrawal_daily_limit_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} ({self.name})"
