class VerificationError(Exception):
    """A verification request or decision the rules refuse; ``message`` says why."""

    code = "verification_refused"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
